"""`tubevit demo` end to end (what `make demo` runs), on a shrunken copy of its built-in data."""

from __future__ import annotations

import json

import pytest
import yaml

from tubevit.cli import main
from tubevit.model.tubes import TubeSpec, scaled_tube_set, tube_token_count


@pytest.mark.slow
def test_demo_writes_data_trains_the_paper_model_jointly_and_evaluates(tmp_path, monkeypatch, capsys):
    import tubevit.data.synthetic as synthetic

    # The real demo writes 80 videos per class; 4 per class (3 train, 1 val) keep the test short
    # while every stage runs: data, joint training of the unmodified tubevit_tiny, evaluation.
    monkeypatch.setattr(synthetic, "DEMO_DATA", dict(synthetic.DEMO_DATA, videos_per_class=4))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "4", "--clips", "2", "--precision", "fp32", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["steps"] == 4 and res["videos"] == 10 and res["views"] == 2 and res["chance_video"] == 0.1
    assert 0.0 <= res["video_top1"] <= res["video_top5"] <= 1.0
    assert all((out / "train" / n).is_file() for n in ("config.yaml", "last.pt", "loss.png", "metrics.jsonl"))
    # The paper's model: the unmodified tiny preset, s2d, the paper tubes scaled to 64 px (saved as
    # an explicit list), 294 tokens per 32-frame clip.
    cfg = yaml.safe_load((out / "train" / "config.yaml").read_text())
    m = cfg["model"]
    assert cfg["preset"] == "tubevit_tiny" and m["tokenizer"] == "s2d"
    assert (m["width"], m["depth"], m["num_heads"], m["mlp_dim"]) == (192, 12, 3, 768)
    assert m["tubes"] == list(scaled_tube_set("paper", "auto", 64))
    specs = [TubeSpec(**t) for t in m["tubes"]]
    assert sum(tube_token_count(t, (32, 64, 64)) for t in specs) == 294
    lines = (out / "data" / "videos" / "train.txt").read_text().splitlines()
    assert len(lines) == 30
    # A second run finds its data and does not rewrite it.
    stamp = (out / "data" / "videos" / "train.txt").stat().st_mtime_ns
    assert main(["demo", "--out", str(out), "--steps", "1", "--clips", "1", "--precision", "fp32"]) == 0
    assert "already in" in capsys.readouterr().err
    assert (out / "data" / "videos" / "train.txt").stat().st_mtime_ns == stamp


def test_demo_says_when_auto_falls_back_to_fp32_on_cpu(monkeypatch):
    """Without bf16 instructions the demo's measured budget does not hold: it says so before it
    trains, and only then (bf16 found, an explicit precision, or a GPU: no note)."""
    import tubevit.model.precision as precision
    from tubevit.cli import demo
    from tubevit.configs.load import load_config

    cfg = load_config(overrides={"precision": "auto", "device": "cpu"}, recipe="demo")
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    note = demo._precision_note(cfg)
    assert "fp32" in note and "no bf16 instructions" in note and demo.FP32_MINUTES in note
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert demo._precision_note(cfg) == ""
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert demo._precision_note(load_config(overrides={"precision": "fp32", "device": "cpu"}, recipe="demo")) == ""
