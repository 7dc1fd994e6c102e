"""One-line errors instead of tracebacks: a CUDA device on a CPU build, absurd or non-finite
values, a full disk at checkpoint time, too many unreadable validation videos."""

from __future__ import annotations

import errno

import pytest
import torch
from tests.helpers.backends import hide_backend
from tests.helpers.train import tiny_trainer

from tubevit.cli import main
from tubevit.configs import load_config
from tubevit.devices import resolve_device
from tubevit.engine import checkpoint as ckpt_io
from tubevit.engine.trainer import DiskFull, UnreadableData


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-build message needs a machine without CUDA")
def test_cuda_on_a_cpu_machine_is_one_line_naming_the_flag(tmp_path):
    with pytest.raises(ValueError, match=r"^--device cuda requested but .*use --device cpu"):
        resolve_device("cuda")  # eval / predict
    with pytest.raises(ValueError, match=r"^--set device cuda requested but .*use --set device cpu"):
        tiny_trainer(tmp_path, 2, joint=False, device="cuda")


def test_a_device_name_that_is_not_a_device():
    with pytest.raises(ValueError, match=r"--device 'gpu0' is not a device"):
        resolve_device("gpu0")


@pytest.mark.parametrize("sets,match", [
    ({"optim.lr": 1e39}, r"optim.lr = 1e\+39 is not a usable learning rate.*--lr"),
    ({"optim.lr": float("nan")}, r"optim.lr = nan is not a finite number"),
    ({"optim.weight_decay": float("inf")}, r"optim.weight_decay = inf is not a finite number.*--set optim.weight_decay"),
    ({"threads": -2}, r"threads must be >= 1, 0 for all cores, or -1.*--threads"),
])
def test_absurd_or_non_finite_values_are_refused_before_anything(sets, match):
    with pytest.raises(ValueError, match=match):
        load_config(overrides=sets)


def test_lr_1e39_from_the_cli_is_one_line(tmp_path, capsys):
    rc = main(["train", "--lr", "1e39", "--out", str(tmp_path / "o"), "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "--lr" in err and len(err.strip().splitlines()) == 1


def test_a_full_disk_at_checkpoint_time_is_one_error_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    tiny_trainer(tmp_path, 4, joint=False, **{"eval.every": 0}).fit()
    t = tiny_trainer(tmp_path, 8, joint=False, **{"eval.every": 0})

    def full(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_io, "save_checkpoint", full)
    with pytest.raises(DiskFull, match=r"could not write .*last.pt at step 8: no space left.*previous last.pt is "
                                       r"intact.*another --out"):
        t.fit()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 4


def test_too_many_unreadable_validation_videos_name_the_training_flag(tmp_path):
    t = tiny_trainer(tmp_path, 2, joint=False, **{"eval.every": 0})
    t.sources[0].val.get = lambda index, generator=None: None  # every validation video unreadable
    t.sources[0].val.__class__ = type("Broken", (type(t.sources[0].val),),
                                      {"__getitem__": lambda self, i: None})
    with pytest.raises(UnreadableData) as err:
        t.fit()
    msg = str(err.value)
    assert "--set data.max_fail_fraction=F" in msg and "--max-fail-fraction" not in msg
    assert "validation of source 'video'" in msg and "could not be read" in msg


def test_train_with_a_missing_optional_decoder_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    from tubevit.cli import main
    from tubevit.data.synthetic import make_synthetic_data

    paths = make_synthetic_data(tmp_path / "data", seed=0, num_classes=2, videos_per_class=2, images_per_class=1,
                                val_fraction=0.5, frames=8, size=16)
    hide_backend(monkeypatch, "torchcodec")
    rc = main(["train", "--train-list", str(paths["video_train"]), "--data-root", str(tmp_path / "data"),
               "--steps", "1", "--out", str(tmp_path / "run"), "--model", "tubevit_tiny", "--set", "device=cpu",
               "--set", "data.decoder=torchcodec", "--set", "progress=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("tubevit train: error: decoder 'torchcodec' is not installed: "
                              "pip install 'tubevit[torchcodec]'") and "--set data.decoder=pyav" in err[-1]
