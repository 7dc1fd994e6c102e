"""data.sources: any number of video and image datasets in one run, each its own head, batch
size, weight and clip settings; the per-step schedule resumes exactly with three sources."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tests.helpers.train import SIZE, TensorSet, tiny_config

from tubevit.configs import load_config
from tubevit.configs.load import config_from_dict
from tubevit.engine.trainer import Source, Trainer, build_sources

THREE = [
    {"name": "k400", "kind": "video", "train_list": "mem", "weight": 2.0},
    {"name": "ssv2", "kind": "video", "train_list": "mem", "frames": 4, "batch_size": 3},
    {"name": "inet", "kind": "image", "train_list": "mem", "batch_size": 6, "weight": 1.5},
]


def _three(out, steps=6, **sets):
    cfg = tiny_config(out, steps, **{"data.sources": THREE, "model.dropout": 0.1, "mixup": 0.2, **sets})
    k400, ssv2, inet = cfg.data.sources
    srcs = [
        Source(k400, "video", TensorSet(16, "video", 3, "k400", 0), TensorSet(6, "video", 3, "k400", 1), ["a", "b", "c"]),
        Source(ssv2, "video", TensorSet(12, "video", 4, "ssv2", 2, frames=4), TensorSet(4, "video", 4, "ssv2", 3, frames=4),
               [f"s{i}" for i in range(4)]),
        Source(inet, "image", TensorSet(18, "image", 2, "inet", 4), None, ["x", "y"]),
    ]
    return Trainer(cfg, resume="auto", sources=srcs)


def test_config_accepts_any_number_of_sources_and_checks_their_keys():
    cfg = load_config(overrides={"data.sources": THREE})
    assert [s.name for s in cfg.sources()] == ["k400", "ssv2", "inet"]
    assert cfg.clip(cfg.data.sources[1])["frames"] == 4 and cfg.clip(cfg.data.sources[0])["frames"] == cfg.data.frames
    assert cfg.clip(cfg.data.sources[0])["fps"] == cfg.data.fps  # -1 = the run's
    assert [s.name for s in config_from_dict(cfg.to_dict()).sources()] == ["k400", "ssv2", "inet"]  # config.yaml round trip
    with pytest.raises(ValueError, match=r"data.sources\[0\].frame.*valid keys"):
        load_config(overrides={"data.sources": [{"name": "a", "kind": "video", "train_list": "x", "frame": 4}]})
    with pytest.raises(ValueError, match="kind must be one of"):
        load_config(overrides={"data.sources": [{"name": "a", "train_list": "x"}]})
    with pytest.raises(ValueError, match="distinct"):
        load_config(overrides={"data.sources": [THREE[0], THREE[0]]})
    with pytest.raises(ValueError, match="must not be"):
        load_config(overrides={"data.sources": THREE, "data.video.train_list": "v.txt"})
    # The shorthand keeps working: data.video / data.image (the CLI flags) are the two-source case.
    cfg = load_config(overrides={"data.video.train_list": "v.txt", "data.image.train_list": "i"})
    assert [(s.name, s.kind) for s in cfg.sources()] == [("video", "video"), ("image", "image")]


def test_three_sources_train_log_and_validate_per_source_and_resume_exactly(tmp_path):
    straight = _three(tmp_path / "a")
    res = straight.fit()
    assert set(straight.model.cfg.num_classes) == {"k400", "ssv2", "inet"}
    records = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    logged = {k for r in records for k in r if k.startswith("loss/")}
    assert logged == {"loss/k400", "loss/ssv2", "loss/inet"}  # every source was drawn and logged
    assert {"val/k400/top1", "val/ssv2/top1"} <= set(res["val"]) and "val/inet/top1" not in res["val"]

    first = _three(tmp_path / "b")
    first.fit(stop_after=3)
    second = _three(tmp_path / "b")
    assert second.step == 3
    second.fit()
    a, b = straight.model.state_dict(), second.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_build_sources_reads_each_source_with_its_own_clip_settings(tmp_path):
    from tubevit.data.synthetic import write_image, write_video

    rng = np.random.default_rng(0)
    lines = {"v": [], "w": [], "i": []}
    for c in range(2):
        for j in range(2):
            write_video(tmp_path / f"v{c}{j}.mp4", rng.integers(0, 255, (12, SIZE, SIZE, 3), np.uint8), fps=10)
            lines["v"].append(f"v{c}{j}.mp4 {c}")
            lines["w"].append(f"v{c}{j}.mp4 {c}")
            write_image(tmp_path / f"i{c}{j}.png", rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8))
            lines["i"].append(f"i{c}{j}.png {c}")
    for k, v in lines.items():
        (tmp_path / f"{k}.txt").write_text("\n".join(v) + "\n")
    entries = [
        {"name": "a", "kind": "video", "train_list": str(tmp_path / "v.txt"), "root": str(tmp_path)},
        {"name": "b", "kind": "video", "train_list": str(tmp_path / "w.txt"), "root": str(tmp_path), "frames": 4,
         "size": 8, "val_list": str(tmp_path / "w.txt")},
        {"name": "c", "kind": "image", "train_list": str(tmp_path / "i.txt"), "root": str(tmp_path)},
    ]
    cfg = tiny_config(tmp_path / "out", **{"data.sources": entries})
    a, b, c = build_sources(cfg)
    assert (a.kind, b.kind, c.kind) == ("video", "video", "image")
    assert a.train.frames == 8 and b.train.frames == 4 and b.val.frames == 4 and b.train.size == 8
    assert a.val is None and len(c.train) == 4
    assert b.train.get(0)["video"].shape[-3:] == (4, 8, 8)
    entries[0]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="source 'a'.*data.sources entry"):
        build_sources(tiny_config(tmp_path / "out", **{"data.sources": entries}))
