"""Faults and bad input: non-finite loss, class-count mismatch, missing files, SIGTERM/SIGINT,
SIGKILL + resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT
from tests.helpers.train import tiny_config, tiny_trainer
from tubevit.configs import load_config
from tubevit.engine.trainer import NonFiniteLoss, Trainer

def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    tiny_trainer(tmp_path, 8).fit(stop_after=4)
    good = torch.load(tmp_path / "last.pt", weights_only=True)
    t = tiny_trainer(tmp_path, 8, nan=True)
    with pytest.raises(NonFiniteLoss, match="non-finite.*last good checkpoint"):
        t.fit()
    kept = torch.load(tmp_path / "last.pt", weights_only=True)
    assert kept["step"] == 4
    assert all(torch.equal(good["model"][k], kept["model"][k]) for k in good["model"])
    assert all(torch.isfinite(v).all() for v in kept["model"].values())


def test_class_count_disagreeing_with_the_checkpoint_fails_before_training(tmp_path):
    tiny_trainer(tmp_path, 4).fit()
    with pytest.raises(ValueError, match="head 'video' has 5 classes in the data but 3"):
        tiny_trainer(tmp_path, 8, video_classes=5)


def test_missing_list_file_and_root_fail_with_the_fix(tmp_path):
    cfg = load_config(overrides={"data.video.train_list": str(tmp_path / "nope.txt"), "steps": 1,
                                 "out": str(tmp_path / "o")})
    with pytest.raises(FileNotFoundError, match="annotation file .*nope.txt not found"):
        Trainer(cfg)
    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    cfg = load_config(overrides={"data.video.train_list": str(tmp_path / "list.txt"), "steps": 1,
                                 "data.video.root": str(tmp_path / "missing_root"), "out": str(tmp_path / "o")})
    with pytest.raises(FileNotFoundError, match="data root .*missing_root.*--data-root"):
        Trainer(cfg)
    cfg = load_config(overrides={"steps": 1, "out": str(tmp_path / "o")})
    with pytest.raises(ValueError, match="--train-list"):
        Trainer(cfg)
    assert not (tmp_path / "o").exists()  # nothing was started


def test_input_too_small_for_the_tubes_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="too small for tube"):
        tiny_trainer(tmp_path, 4, **{"data.frames": 2})


def _start(out: Path, steps: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "tests.helpers.train", str(out), str(steps), "ckpt_every=2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _wait_for_checkpoint(proc, path: Path, min_step: int, timeout: float = 120) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.is_file():
            try:
                step = torch.load(path, weights_only=True)["step"]
            except Exception:  # noqa: BLE001 - a rename racing the read: try again
                step = -1
            if step >= min_step:
                return step
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    proc = _start(tmp_path, 100000)
    _wait_for_checkpoint(proc, tmp_path / "last.pt", 2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    step = int(line.split("step=")[1].split()[0])
    assert f"interrupted={signal.Signals(sig).name}" in line
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == step  # the final step was saved


def test_sigkill_resume_loses_at_most_the_steps_since_the_checkpoint(tmp_path):
    proc = _start(tmp_path, 100000)
    _wait_for_checkpoint(proc, tmp_path / "last.pt", 6)
    proc.kill()
    proc.wait()
    saved = torch.load(tmp_path / "last.pt", weights_only=True)  # intact despite the kill
    assert saved["step"] % 2 == 0  # a checkpoint step: nothing half-written
    t = tiny_trainer(tmp_path, saved["step"] + 3, ckpt_every=2)
    assert t.step == saved["step"]
    assert t.fit()["step"] == saved["step"] + 3
