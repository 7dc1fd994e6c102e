"""End-to-end on real files: `tubevit train` jointly on the built-in mp4/png data, resume refusal on
a class-count change, `tubevit export` round trip."""

from __future__ import annotations

import json

import pytest
import torch

from tubevit.cli import main
from tubevit.data.synthetic import make_synthetic_data
from tubevit.engine.export import load_exported


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("builtin")
    return make_synthetic_data(root, num_classes=4, videos_per_class=5, images_per_class=6, frames=16, size=32)


def _args(data, out, *extra):
    return ["train", "--model", "tubevit_tiny", "--tubes", "two_tube", "--frames", "16", "--size", "32",
            "--train-list", str(data["video_train"]), "--val-list", str(data["video_val"]),
            "--data-root", str(data["root"]), "--image-train-list", str(data["image_train"]),
            "--image-val-list", str(data["image_val"]), "--image-root", str(data["root"]),
            "--steps", "4", "--batch-size", "4", "--workers", "0", "--out", str(out),
            "--set", "model.depth=2", "--set", "progress=false", "--set", "data.stride=1", *extra]


def test_train_joint_on_files_then_export(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(data, out, "--json")) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 4 and result["interrupted"] is None
    assert {"val/video/top1", "val/image/top1"} <= set(result["val"])
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["class_names"]["video"] == ["move_right", "move_left", "move_down", "move_up"]
    assert ckpt["model_config"]["num_classes"] == {"video": 4, "image": 5}

    assert main(["export", str(out / "last.pt"), str(tmp_path / "w.safetensors")]) == 0
    model, meta = load_exported(tmp_path / "w.safetensors")
    assert meta["class_names"] == ckpt["class_names"] and meta["config"]["preset"] == "tubevit_tiny"
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k

    # The same directory with another class count: refused before training, naming the fix.
    assert main(_args(data, out, "--classes", "6")) == 2
    err = capsys.readouterr().err
    assert "head 'video' has 6 classes in the data but 4" in err and "--out" in err


def test_unknown_set_key_is_a_one_line_error(data, tmp_path, capsys):
    assert main(_args(data, tmp_path / "r", "--set", "optim.lrr=1")) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'optim.lrr'" in err and "Traceback" not in err
