"""One experiment per output folder: resume only an identical configuration (apart from the run
length) unless asked; a lock keeps a second run out; a stale lock of a dead process is taken over."""

from __future__ import annotations

import os
import socket

import pytest
from tests.helpers.train import tiny_config, tiny_sources, tiny_trainer

from tubevit.engine.trainer import Trainer, config_differences


def test_a_different_experiment_in_the_same_out_is_refused_naming_the_keys(tmp_path):
    tiny_trainer(tmp_path, 4, joint=False, **{"eval.every": 0}).fit()
    with pytest.raises(ValueError) as err:
        tiny_trainer(tmp_path, 8, joint=False, **{"eval.every": 0, "optim.lr": 5e-3, "seed": 7})
    msg = str(err.value)
    assert "optim.lr: 0.001 -> 0.005" in msg and "seed: 0 -> 7" in msg
    assert "--resume" in msg and "--fresh" in msg and "--out" in msg
    assert "steps" not in msg  # the run length may change


def test_a_longer_run_of_the_same_experiment_resumes_and_changes_continue_when_asked(tmp_path):
    tiny_trainer(tmp_path, 4, joint=False, **{"eval.every": 0}).fit()
    assert tiny_trainer(tmp_path, 6, joint=False, **{"eval.every": 0, "log_every": 3}).step == 4
    cfg = tiny_config(tmp_path, 8, **{"eval.every": 0, "optim.lr": 5e-3})
    t = Trainer(cfg, sources=tiny_sources(cfg, joint=False), allow_changes=True)
    assert t.step == 4 and t.fit()["step"] == 8


def test_config_differences_reads_nested_keys_and_lists():
    a = {"model": {"depth": 2, "tubes": [[1, 2]]}, "steps": 4, "data": {"video": {"root": "/a"}}}
    b = {"model": {"depth": 4, "tubes": ((1, 2),)}, "steps": 9, "data": {"video": {"root": "/b"}}}
    assert config_differences(b, a) == ["data.video.root: '/a' -> '/b'", "model.depth: 2 -> 4"]


def test_a_second_run_on_a_locked_out_is_refused(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".lock").write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a live process
    t = tiny_trainer(tmp_path, 2, joint=False, **{"eval.every": 0})
    with pytest.raises(ValueError, match=rf"in use by another run \(process {os.getppid()} on"):
        t.fit()
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "last.pt").exists()


def test_a_stale_lock_of_a_dead_process_is_named_and_taken_over(tmp_path, capsys):
    tmp_path.mkdir(exist_ok=True)
    dead = 2**22 + 4321
    (tmp_path / ".lock").write_text(f"{dead} {socket.gethostname()}\n")
    tiny_trainer(tmp_path, 2, joint=False, **{"eval.every": 0}).fit()
    assert f"stale lock {tmp_path / '.lock'} of process {dead}" in capsys.readouterr().err
    assert (tmp_path / "last.pt").is_file() and not (tmp_path / ".lock").exists()  # released at the end


def test_the_lock_is_held_during_the_run(tmp_path, monkeypatch):
    seen = []
    t = tiny_trainer(tmp_path, 2, joint=False, **{"eval.every": 0})
    real = t.save

    def spy(*a, **k):
        seen.append((tmp_path / ".lock").read_text().split()[0])
        return real(*a, **k)

    monkeypatch.setattr(t, "save", spy)
    t.fit()
    assert seen and seen[0] == str(os.getpid())


def test_auto_precision_is_resolved_saved_and_resumed(tmp_path, monkeypatch):
    import yaml

    from tubevit.model import precision as precision_mod

    # A CPU with native bf16: "auto" trains in bf16, config.yaml records bf16, and running the
    # same command again ("auto" once more) resumes instead of seeing a changed experiment.
    monkeypatch.setattr(precision_mod, "_cpu_flags", lambda: {"avx512_bf16"})
    t = tiny_trainer(tmp_path, 2, joint=False, **{"eval.every": 0, "precision": "auto"})
    assert t.cfg.precision == "bf16" and t.stepper.precision == "bf16"
    t.fit()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["precision"] == "bf16"
    assert tiny_trainer(tmp_path, 3, joint=False, **{"eval.every": 0, "precision": "auto"}).step == 2
    # Without it, "auto" is fp32.
    monkeypatch.setattr(precision_mod, "_cpu_flags", lambda: set())
    assert tiny_trainer(tmp_path / "b", 1, joint=False, **{"eval.every": 0, "precision": "auto"}).cfg.precision == "fp32"


def test_threads_setting_wins_over_omp_num_threads_and_does_not_block_resume(tmp_path, monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        # OMP_NUM_THREADS is kept when threads is left at -1 ...
        torch.set_num_threads(2)
        tiny_trainer(tmp_path / "a", 1, joint=False, **{"eval.every": 0}).fit()
        assert torch.get_num_threads() == 2
        # ... and a set threads wins over it; changing it later is not another experiment
        tiny_trainer(tmp_path / "b", 1, joint=False, **{"eval.every": 0, "threads": 1}).fit()
        assert torch.get_num_threads() == 1
        assert tiny_trainer(tmp_path / "b", 2, joint=False, **{"eval.every": 0, "threads": 2}).step == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
