"""Run records stay right: `epoch` after a mid-epoch resume, no NaN in metrics.jsonl, atomic
rewrites of metrics.jsonl / config.yaml on resume, stale temporaries removed at start-up."""

from __future__ import annotations

import json
import math
import os

import pytest
from tests.helpers.train import tiny_trainer

from tubevit.engine.logs import MetricsLog, read_metrics


def _train_rows(out):
    return {r["step"]: r for r in read_metrics(out / "metrics.jsonl") if "lr" in r}


def test_epoch_after_a_mid_epoch_resume_matches_the_uninterrupted_run(tmp_path):
    sets = {"eval.every": 0, "ckpt_every": 0, "log_every": 1}
    tiny_trainer(tmp_path / "a", 9, joint=False, **sets).fit()
    tiny_trainer(tmp_path / "b", 9, joint=False, **sets).fit(stop_after=3)  # 24 clips / 4 = 6 per epoch
    tiny_trainer(tmp_path / "b", 9, joint=False, **sets).fit()
    a, b = _train_rows(tmp_path / "a"), _train_rows(tmp_path / "b")
    assert [b[s]["epoch"] for s in range(4, 10)] == [a[s]["epoch"] for s in range(4, 10)]
    assert b[9]["epoch"] == pytest.approx(9 / 6, abs=1e-4)


def test_metrics_are_strict_json_with_null_for_non_finite(tmp_path):
    log = MetricsLog(tmp_path)
    log.write({"step": 1, "val_top1": float("nan"), "loss": float("inf"), "x": {"y": float("-inf")}, "ok": 0.5})
    line = (tmp_path / "metrics.jsonl").read_text().strip()
    assert "NaN" not in line and "Infinity" not in line
    row = json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert row == {"step": 1, "val_top1": None, "loss": None, "x": {"y": None}, "ok": 0.5}


def test_resume_rewrite_of_metrics_is_atomic(tmp_path, monkeypatch):
    rows = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(1, 50)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)  # the rename of the rewritten file fails
    with pytest.raises(OSError):
        MetricsLog(tmp_path, resume_step=10)
    assert read_metrics(tmp_path / "metrics.jsonl") == rows  # the old file, whole
    assert not list(tmp_path.glob(".metrics.jsonl.tmp*"))


def test_config_rewrite_is_atomic(tmp_path, monkeypatch):
    from tubevit.configs import load_config
    from tubevit.configs.load import save_config

    path = save_config(load_config(), tmp_path / "config.yaml")
    before = path.read_text()
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError):
        save_config(load_config(overrides={"optim.lr": 0.5}), path)
    assert path.read_text() == before


def test_stale_checkpoint_temporaries_are_removed_at_start_up(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    stale = tmp_path / f".last.pt.tmp{dead}"
    stale.write_bytes(b"x" * 1000)
    live = tmp_path / f".last.pt.tmp{os.getppid()}"  # a running process may still be writing
    live.write_bytes(b"y")
    tiny_trainer(tmp_path, 2, joint=False, **{"eval.every": 0}).fit()
    assert not stale.exists() and live.exists()
    assert math.isfinite(_train_rows(tmp_path)[2]["loss"])
