"""Fixtures of the evaluation tests: tiny synthetic videos with one unreadable file, a tiny model
factory, and a tiny checkpoint in the checkpoint contract format."""

from __future__ import annotations

import pytest
import torch

from tubevit.factory import create_model

NUM_CLASSES = 4
FRAMES, SIZE = 16, 32


def _tiny_model(num_classes=NUM_CLASSES, seed=0, heads=None):
    torch.manual_seed(seed)
    return create_model("tubevit_tiny", num_classes=heads or {"video": num_classes}, tubes="two_tube", depth=2)


def _save_checkpoint(path, model, classes, *, frames=FRAMES, size=SIZE, short="loop"):
    """The checkpoint contract of tubevit.engine.checkpoint: model, model_config, config, class_names."""
    from tubevit.configs import default_config

    cfg = default_config("tubevit_tiny")
    cfg.model = model.cfg
    cfg.data.frames, cfg.data.size, cfg.data.stride, cfg.data.short = frames, size, 1.0, short
    torch.save({"model": model.state_dict(), "model_config": model.cfg.to_dict(), "config": cfg.to_dict(),
                "class_names": classes, "step": 7}, path)
    return path


@pytest.fixture(scope="session")
def tiny_model():
    """Factory: ``tiny_model(num_classes=4, seed=0, heads=None)``."""
    return _tiny_model


@pytest.fixture(scope="session")
def save_checkpoint():
    """``save_checkpoint(path, model, {head: names})`` in the checkpoint contract format."""
    return _save_checkpoint


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """4 classes x 3 videos of 16 frames at 32x32 (2 per class in val), plus one unreadable file
    appended to the val list (a text file named .mp4)."""
    from tubevit.data.synthetic import make_synthetic_data

    root = tmp_path_factory.mktemp("evaldata")
    paths = make_synthetic_data(root, seed=0, num_classes=NUM_CLASSES, videos_per_class=3, images_per_class=1,
                                val_fraction=0.67, frames=FRAMES, size=SIZE)
    (root / "videos" / "broken.mp4").write_text("this is not a video\n")
    val = root / "videos" / "val_with_bad.txt"
    val.write_text(paths["video_val"].read_text() + "videos/broken.mp4 1\n")
    names = paths["video_classes"].read_text().split()
    return {"root": root, "val": val, "val_clean": paths["video_val"], "names": names, "paths": paths,
            "frames": FRAMES, "size": SIZE}


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_data):
    folder = tmp_path_factory.mktemp("ckpt")
    return _save_checkpoint(folder / "best.pt", _tiny_model(), {"video": tiny_data["names"]})
