"""Sharded (DCP) checkpoints in one process: complete-or-absent folders, export from a run folder
whatever its checkpoint kind, and consolidation without a process group."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from tubevit.engine.checkpoint import latest_in_run, load_checkpoint
from tubevit.engine.export import export_checkpoint, load_exported
from tubevit.io import sharded

from tests.helpers.train import tiny_trainer


@pytest.fixture(scope="module")
def dcp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dcp_run")
    trainer = tiny_trainer(out, 3, fsdp=True, ckpt_every=0)
    trainer.fit()
    return out, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_fsdp_run_writes_a_complete_sharded_checkpoint(dcp_run):
    out, _ = dcp_run
    assert not (out / "last.pt").exists()
    assert sharded.is_sharded_checkpoint(out / "last.dcp")
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no .tmp / .old left behind
    meta = sharded.read_meta(out / "last.dcp")
    assert meta["step"] == 3 and "model" not in meta
    # On disk the folder names its kind; readers see the training checkpoint's format.
    raw = torch.load(out / "last.dcp" / sharded.META, weights_only=True)
    assert raw["format"] == sharded.FORMAT and meta["format"] == raw["checkpoint_format"] != sharded.FORMAT


def test_export_of_a_run_folder_with_a_sharded_checkpoint(dcp_run, tmp_path):
    out, weights = dcp_run
    path, n = export_checkpoint(out, tmp_path / "m.safetensors")
    model, info = load_exported(path)
    assert n == len(weights) and int(info["step"]) == 3
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    x = torch.randn(2, 3, 8, 16, 16)
    assert model(x, head="video").shape == (2, 3)


def test_a_folder_without_trainer_pt_is_not_a_checkpoint_and_a_mid_swap_copy_is_found(dcp_run, tmp_path):
    out, _ = dcp_run
    run = tmp_path / "run"
    shutil.copytree(out / "last.dcp", run / ".last.dcp.old")  # crash between the two renames
    (run / ".last.dcp.tmp").mkdir()  # a half-written one
    assert latest_in_run(run) == run / ".last.dcp.old"
    assert load_checkpoint(run)["step"] == 3
    os.remove(run / ".last.dcp.old" / sharded.META)  # incomplete: never taken for a checkpoint
    assert latest_in_run(run) is None
    with pytest.raises(ValueError, match="holds no model file"):
        load_checkpoint(run)


def test_single_file_checkpoint_runs_still_export_from_the_run_folder(tmp_path):
    trainer = tiny_trainer(tmp_path, 2, joint=False, ckpt_every=0)
    trainer.fit()
    assert (tmp_path / "last.pt").is_file() and not (tmp_path / "last.dcp").exists()
    model, _ = load_exported(export_checkpoint(tmp_path, tmp_path / "w.safetensors")[0])
    assert torch.equal(model.state_dict()["heads.video.weight"], trainer.model.state_dict()["heads.video.weight"])
