"""Checkpoint contents and exact resume: N steps straight == N/2 + resume + N/2 (CPU, fp32)."""

from __future__ import annotations

import json
import math

import torch
import yaml
from tests.helpers.train import tiny_trainer

from tubevit.engine.checkpoint import FORMAT, model_from_checkpoint

# Dropout, drop-path and Mixup/CutMix on, so the RNG handling is exercised too.
NOISY = {"model.dropout": 0.1, "model.drop_path": 0.1, "mixup": 0.2, "cutmix": 1.0, "label_smoothing": 0.1}


def _weights(trainer) -> dict:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    straight = tiny_trainer(tmp_path / "a", 8, **NOISY)
    straight.fit()
    first = tiny_trainer(tmp_path / "b", 8, **NOISY)
    res = first.fit(stop_after=3)  # not a multiple of the checkpoint interval
    assert res["step"] == 3
    second = tiny_trainer(tmp_path / "b", 8, **NOISY)  # picks up b/last.pt by itself
    assert second.step == 3
    res = second.fit()
    assert res["step"] == 8
    _assert_same(_weights(straight), _weights(second))
    # metrics.jsonl of the resumed run holds each step once
    steps = [r["step"] for r in map(json.loads, (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == sorted(set(steps)) == [2, 3, 4, 6, 8]  # 3: the log at the stop


def test_resume_with_gradient_accumulation(tmp_path):
    straight = tiny_trainer(tmp_path / "a", 6, grad_accum=2)
    straight.fit()
    tiny_trainer(tmp_path / "b", 6, grad_accum=2).fit(stop_after=2)
    resumed = tiny_trainer(tmp_path / "b", 6, grad_accum=2)
    resumed.fit()
    _assert_same(_weights(straight), _weights(resumed))


def test_checkpoint_contract(tmp_path):
    t = tiny_trainer(tmp_path, 4)
    res = t.fit()
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["format"] == FORMAT
    assert ckpt["step"] == 4 == res["step"]
    assert ckpt["class_names"] == {"video": ["c0", "c1", "c2"], "image": ["c0", "c1"]}
    assert ckpt["model_config"]["num_classes"] == {"video": 3, "image": 2} == ckpt["config"]["model"]["num_classes"]
    assert {"optimizer", "scheduler", "scaler", "rng", "data_state", "best_top1", "metrics", "epoch"} <= set(ckpt)
    assert ckpt["data_state"]["micro_step"] == 4 and sum(ckpt["data_state"]["batches"].values()) == 4
    model, _ = model_from_checkpoint(tmp_path / "last.pt")
    _assert_same(model.state_dict(), t.model.state_dict())
    assert (tmp_path / "best.pt").is_file()
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved == ckpt["config"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert {"step", "epoch", "loss", "lr", "clips_per_s", "loss/video", "loss/image"} <= set().union(*train_rows)
    val = [r for r in rows if "val_top1" in r][-1]
    assert 0 <= val["val_top1"] <= 1 and 0 <= val["val_top5"] <= 1 and "val/image/top1" in val
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "accuracy.png").is_file()


def test_joint_schedule_uses_each_head(tmp_path):
    t = tiny_trainer(tmp_path, 6)
    before = {k: v.clone() for k, v in t.model.heads.state_dict().items()}
    t.fit()
    after = t.model.heads.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)  # both heads were trained


def test_training_learns_the_tensor_task(tmp_path):
    t = tiny_trainer(tmp_path, 40, joint=False, **{"optim.lr": 3e-3, "log_every": 10, "ckpt_every": 0})
    res = t.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "loss" in line]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert res["val"]["val_top1"] >= 0.5


def test_bf16_autocast_on_cpu_trains_with_fp32_master_weights(tmp_path):
    t = tiny_trainer(tmp_path, 2, precision="bf16", ckpt_every=0)
    res = t.fit()
    assert res["step"] == 2
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert rows and all(math.isfinite(r["loss"]) for r in rows)
