"""`tubevit bench model`: rows, keys and sane values on a tiny model and a tiny input."""

import json

import pytest
import torch

from tubevit.bench.model import (BenchSpec, build_model, build_rows, make_batch, peak_memory_mb, run_benchmark,
                                 train_flops)
from tubevit.cli import main
from tubevit.model.flops import count_flops

KEYS = {"variant", "precision", "mode", "clips_per_s", "peak_mem_mb", "tokens", "gflops"}
# Tiny preset, two blocks, a 32x64x64 clip: every paper tube fits (the widest needs 28 pixels).
SMALL = dict(model="tubevit_tiny", frames=32, size=64, batch=2, repeats=1, overrides={"depth": 2})


@pytest.fixture(scope="module")
def rows():
    return run_benchmark(BenchSpec(**SMALL, memory=False))


def test_rows_cover_the_matrix_with_sane_values(rows):
    assert {(r["variant"], r["precision"], r["mode"]) for r in rows} == {
        (v, p, m) for v in ("tubevit", "dense") for p in ("fp32", "bf16") for m in ("infer", "train")}
    for r in rows:
        assert KEYS <= set(r)
        assert r["clips_per_s"] > 0 and r["gflops"] > 0 and r["tflops_per_s"] > 0 and r["peak_mem_mb"] is None
    for variant in ("tubevit", "dense"):
        model = build_model(BenchSpec(**SMALL), variant, device="meta")
        tokens = model.token_layout((32, 64, 64)).total
        forward = count_flops(model, (3, 32, 64, 64)) / 1e9
        for r in rows:
            if r["variant"] == variant:
                assert r["tokens"] == tokens
                if r["mode"] == "infer":
                    assert r["gflops"] == pytest.approx(forward, abs=1e-3)  # rounded to MFLOPs
                else:  # backward costs about twice the forward
                    assert r["gflops"] == pytest.approx(3 * forward, rel=0.25)
    by = {(r["variant"], r["precision"], r["mode"]): r for r in rows}
    assert by[("dense", "fp32", "infer")]["tokens"] > by[("tubevit", "fp32", "infer")]["tokens"]
    assert by[("dense", "fp32", "infer")]["gflops"] > by[("tubevit", "fp32", "infer")]["gflops"]
    assert by[("tubevit", "bf16", "infer")]["logits_rel_err"] < 2e-2
    assert by[("tubevit", "fp32", "infer")]["logits_rel_err"] is None


def test_peak_memory_counts_the_row_not_the_parent():
    spec = BenchSpec(**SMALL).resolved()
    ballast = torch.ones(160 * 2**20)  # 640 MB resident here, which a child must not report
    train = peak_memory_mb(spec, "tubevit", "fp32", "train")
    infer = peak_memory_mb(spec, "tubevit", "bf16", "infer")
    del ballast
    weights_mb = sum(p.numel() for p in build_model(spec, "tubevit").parameters()) * 4 / 2**20
    # weights, gradients and two AdamW moments at least, and far below the ballast
    assert 4 * weights_mb < train < 600
    assert 0 < infer < train


def test_train_flops_are_forward_plus_backward():
    model = build_model(BenchSpec(**SMALL), "tubevit", device="meta")
    fwd, both = count_flops(model, (3, 32, 64, 64)), train_flops(model, (3, 32, 64, 64))
    assert 2.5 * fwd < both < 3.5 * fwd


def test_hot_loop_reads_nothing_back_to_the_host(monkeypatch):
    spec = BenchSpec(**SMALL).resolved()
    x, y = make_batch(spec, "cpu")
    rows, _ = build_rows(spec, x, y)
    for row in rows:
        row.step()  # the first step creates the optimizer state
    # AdamW's step counters live on the host by design (on CUDA too, unless fused): reading them
    # is no device sync. Every other read of a tensor's value inside a step is.
    allowed = {id(state["step"]) for row in rows if row.train_step
               for state in row.train_step.optimizer.state.values()}
    originals = {name: getattr(torch.Tensor, name) for name in ("item", "tolist", "__bool__", "__float__", "__int__")}

    def guard(name):
        def read(self, *args, **kwargs):
            if id(self) not in allowed:
                raise AssertionError(f"Tensor.{name} inside the benchmarked step")
            return originals[name](self, *args, **kwargs)
        return read

    for name in originals:
        monkeypatch.setattr(torch.Tensor, name, guard(name))
    for row in rows:
        row.step()


def test_cli_json(capsys):
    assert main(["bench", "model", "--size", "64", "--batch", "1", "--repeats", "1", "--variants", "tubevit",
                 "--precision", "bf16", "--modes", "infer", "--no-memory", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert KEYS <= set(row) and row["variant"] == "tubevit" and row["precision"] == "bf16" and row["mode"] == "infer"


def test_cli_rejects_unknown_precision(capsys):
    assert main(["bench", "model", "--precision", "fp8", "--no-memory"]) == 2
    assert "fp8" in capsys.readouterr().err
