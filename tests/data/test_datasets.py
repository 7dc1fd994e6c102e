"""Annotation formats, dataset items (same dict in every split), robustness to bad files."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

import tubevit.data.datasets as datasets_mod
from tubevit.data.datasets import ImageDataset, VideoDataset, read_annotations, read_classes
from tubevit.data.synthetic import write_image


# ------------------------------------------------------------------ formats


def test_list_file(tmp_path):
    (tmp_path / "train.txt").write_text("a/x.mp4 2\n\n# comment\nb/with space.mp4 0\n")
    samples, names = read_annotations(tmp_path / "train.txt", tmp_path)
    assert samples == [("a/x.mp4", 2), ("b/with space.mp4", 0)]
    assert names == ["0", "1", "2"]
    (tmp_path / "classes.txt").write_text("cat\ndog\nemu\n")  # picked up beside the list
    assert read_annotations(tmp_path / "train.txt", tmp_path)[1] == ["cat", "dog", "emu"]


def test_list_file_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "bad.txt").write_text("a.mp4 1\nb.mp4 dog\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2:"):
        read_annotations(tmp_path / "bad.txt", tmp_path)


def test_csv_with_names_and_indices(tmp_path):
    (tmp_path / "a.csv").write_text("path,label\nv/1.mp4,dog\nv/2.mp4,cat\nv/3.mp4,dog\n")
    samples, names = read_annotations(tmp_path / "a.csv", tmp_path)
    assert names == ["cat", "dog"] and samples == [("v/1.mp4", 1), ("v/2.mp4", 0), ("v/3.mp4", 1)]
    samples, names = read_annotations(tmp_path / "a.csv", tmp_path, classes=["dog", "cat"])
    assert [s[1] for s in samples] == [0, 1, 0]
    (tmp_path / "b.csv").write_text("label,path\n1,x.mp4\n0,y.mp4\n")
    assert read_annotations(tmp_path / "b.csv", tmp_path)[0] == [("x.mp4", 1), ("y.mp4", 0)]
    (tmp_path / "c.csv").write_text("path,label\nx.mp4,dog\ny.mp4,\n")
    with pytest.raises(ValueError, match=r"c\.csv:3:"):
        read_annotations(tmp_path / "c.csv", tmp_path)
    (tmp_path / "d.csv").write_text("file,class\nx.mp4,dog\n")
    with pytest.raises(ValueError, match=r"d\.csv:1:.*path,label"):
        read_annotations(tmp_path / "d.csv", tmp_path)


def test_kinetics_csv_flat_and_per_class(tmp_path):
    text = (
        "label,youtube_id,time_start,time_end,split\n"
        '"passing American football (in game)",--07WQ2iBlw,1,11,train\n'
        "abseiling,-3B32lodo2M,59,69,train\n"
    )
    (tmp_path / "k.csv").write_text(text)
    samples, names = read_annotations(tmp_path / "k.csv", tmp_path)
    assert names == ["abseiling", "passing American football (in game)"]
    assert samples == [("--07WQ2iBlw_000001_000011.mp4", 1), ("-3B32lodo2M_000059_000069.mp4", 0)]
    # per-class folders, detected from the first sample
    d = tmp_path / "passing American football (in game)"
    d.mkdir()
    (d / "--07WQ2iBlw_000001_000011.mp4").write_bytes(b"")
    samples, _ = read_annotations(tmp_path / "k.csv", tmp_path)
    assert samples[1] == ("abseiling/-3B32lodo2M_000059_000069.mp4", 0)
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\nabc,5,15,test\n")
    assert read_annotations(tmp_path / "test.csv", tmp_path, classes=names)[0] == [("abc_000005_000015.mp4", -1)]
    (tmp_path / "bad.csv").write_text("label,youtube_id,time_start,time_end,split\nx,abc,five,15,train\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2:"):
        read_annotations(tmp_path / "bad.csv", tmp_path)


def test_ssv2_json(tmp_path):
    labels = {"Putting something on something": "1", "Approaching something with your camera": "0"}
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(labels))
    entries = [
        {"id": "78687", "label": "putting a cup on a table", "template": "Putting [something] on [something]",
         "placeholders": ["a cup", "a table"]},
        {"id": "42326", "template": "Approaching [something] with your camera"},
        {"id": "1"},  # test split: no template -> unlabelled
    ]
    (tmp_path / "train.json").write_text(json.dumps(entries))
    samples, names = read_annotations(tmp_path / "train.json", tmp_path)
    assert names == ["Approaching something with your camera", "Putting something on something"]
    assert samples == [("78687.webm", 1), ("42326.webm", 0), ("1.webm", -1)]
    (tmp_path / "78687").mkdir()  # frame-folder layout
    assert read_annotations(tmp_path / "train.json", tmp_path)[0][0] == ("78687", 1)
    (tmp_path / "bad.json").write_text(json.dumps([{"id": "1", "template": "Unknown [thing]"}]))
    with pytest.raises(ValueError, match="not in the labels"):
        read_annotations(tmp_path / "bad.json", tmp_path)


def test_image_folder_and_classes_files(tmp_path):
    for cls in ("b_dog", "a_cat"):
        write_image(tmp_path / "imgs" / cls / "0.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "imgs" / "a_cat" / "notes.txt").write_text("ignored")
    samples, names = read_annotations(tmp_path / "imgs", None)
    assert names == ["a_cat", "b_dog"]
    assert samples == [("a_cat/0.png", 0), ("b_dog/0.png", 1)]
    (tmp_path / "c.json").write_text(json.dumps({"x": 1, "y": 0}))
    assert read_classes(tmp_path / "c.json") == ["y", "x"]


def test_missing_annotation_or_root_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.txt.*make_synthetic_data"):
        read_annotations(tmp_path / "nope.txt", tmp_path)
    (tmp_path / "a.txt").write_text("x.mp4 0\n")
    with pytest.raises(FileNotFoundError, match=r"data root .*gone.*relative to"):
        read_annotations(tmp_path / "a.txt", tmp_path / "gone")
    with pytest.raises(FileNotFoundError, match="classes file"):
        read_annotations(tmp_path / "a.txt", tmp_path, classes=tmp_path / "missing_classes.txt")


def test_label_out_of_range_for_classes(tmp_path):
    (tmp_path / "a.txt").write_text("x.mp4 3\n")
    with pytest.raises(ValueError, match="out of range"):
        read_annotations(tmp_path / "a.txt", tmp_path, classes=["a", "b"])


# ------------------------------------------------------------------ items

KEYS = {"label", "index", "view", "source", "short"}


def _video_ds(videos, names, **kw):
    root = videos["normal"].parent
    samples = [(f"{n}.mp4" if n != "folder" else "frames", i) for i, n in enumerate(names)]
    kw.setdefault("randaugment", None)
    return VideoDataset(samples, root, frames=4, size=32, name="toy", **kw)


def test_train_item_contract(videos):
    ds = _video_ds(videos, ["normal"], train=True, stride=2)
    item = ds.get(0, torch.Generator().manual_seed(0))
    assert set(item) == KEYS | {"video"}
    assert item["video"].shape == (1, 3, 4, 32, 32) and item["video"].dtype == torch.float32
    assert item["label"] == 0 and item["index"] == 0 and item["source"] == "toy"
    assert item["view"].tolist() == [0]
    again = ds.get(0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(item["video"], again["video"])  # seeded: reproducible


def test_eval_item_contract_and_single_decode(videos, monkeypatch):
    ds = _video_ds(videos, ["normal"], train=False, clips=4, crops=3, stride=2)
    calls = []
    real = datasets_mod.decode_frames
    monkeypatch.setattr(datasets_mod, "decode_frames", lambda p, i, **k: calls.append(list(i)) or real(p, i, **k))
    item = ds[0]
    assert set(item) == KEYS | {"video"}
    assert item["video"].shape == (12, 3, 4, 32, 32)
    assert item["view"].tolist() == list(range(12))
    # one decode pass for all 4 clips: 30 frames, span 7 -> starts 0, 8, 15, 23
    assert calls == [sorted({s + 2 * k for s in (0, 8, 15, 23) for k in range(4)})]
    # views 0..2 are crops of clip 0, views 9..11 of clip 3: crops of a clip share the frame
    # content (flat grey per frame), so clip c's level is its first frame's number
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)
    for view, first in ((0, 0), (2, 0), (9, 23)):
        pixels = (item["video"][view] * std + mean)[:, 0, 16:, 16:]  # flat region of frame 0
        assert round(float(pixels.mean()) * 255 / 8) == first


def test_fps_sampling_uses_container_rate(videos, monkeypatch):
    ds = _video_ds(videos, ["normal"], train=False, fps=10)  # 30 fps source -> stride 3
    calls = []
    real = datasets_mod.decode_frames
    monkeypatch.setattr(datasets_mod, "decode_frames", lambda p, i, **k: calls.append(list(i)) or real(p, i, **k))
    ds[0]
    assert calls == [[10, 13, 16, 19]]  # span 10, room 30 - 10 = 20, centred start 20 // 2


@pytest.mark.parametrize("name", ["three", "gray", "qcif", "wide", "vfr", "folder"])
def test_unusual_but_valid_videos_load_in_both_splits(videos, name):
    for train in (True, False):
        ds = _video_ds(videos, [name], train=train, clips=1 if train else 2, crops=1 if train else 3)
        item = ds.get(0, torch.Generator().manual_seed(1))
        assert item is not None, name
        assert item["video"].shape == ((1,) if train else (6,)) + (3, 4, 32, 32)
        assert torch.isfinite(item["video"]).all()


@pytest.mark.parametrize("name", ["missing", "empty", "text", "truncated"])
def test_unreadable_returns_none_with_one_warning(videos, name, caplog):
    datasets_mod._warned.discard(str(videos[name]))
    ds = VideoDataset([(videos[name].name, 0)], videos[name].parent, frames=4, size=32, train=True)
    with caplog.at_level(logging.WARNING, logger="tubevit.data.datasets"):
        assert ds[0] is None
        assert ds[0] is None
    warnings = [r for r in caplog.records if str(videos[name]) in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize("train", [True, False])
def test_a_frame_above_max_frame_pixels_is_an_unreadable_sample_with_its_reason(videos, train, caplog):
    path = videos["normal"]  # 64 x 48
    datasets_mod._warned.discard(str(path))
    kw = {} if train else {"clips": 2, "crops": 1}
    ok = VideoDataset([(path.name, 0)], path.parent, frames=4, size=32, train=train, **kw)
    assert ok[0] is not None  # the default limit (DCI 8K) takes it
    small = VideoDataset([(path.name, 0)], path.parent, frames=4, size=32, train=train, max_frame_pixels=1000, **kw)
    with caplog.at_level(logging.WARNING, logger="tubevit.data.datasets"):
        assert small[0] is None
    (warning,) = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert "header claims a 64x48 frame" in warning and "max_frame_pixels=1000" in warning


def test_image_dataset_items(tmp_path):
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, 30:] = 255
    write_image(tmp_path / "a.png", img)
    train = ImageDataset([("a.png", 1)], tmp_path, size=16, train=True, randaugment=None, name="img")
    item = train.get(0, torch.Generator().manual_seed(0))
    assert set(item) == KEYS | {"image"} and item["image"].shape == (1, 3, 16, 16)
    ev = ImageDataset([("a.png", 1), ("missing.png", 0)], tmp_path, size=16, train=False, crops=3)
    item = ev[0]
    assert item["image"].shape == (3, 3, 16, 16) and item["view"].tolist() == [0, 1, 2]
    # left crop is black, right crop is white (after un-normalising)
    assert item["image"][0].mean() < item["image"][2].mean()
    assert ev[1] is None


def test_train_rejects_multiple_views(videos):
    with pytest.raises(ValueError, match="V = 1"):
        _video_ds(videos, ["normal"], train=True, clips=4)


@pytest.mark.parametrize("train", [True, False])
def test_videos_shorter_than_one_clip_are_flagged_and_collated(videos, train):
    from tubevit.data.loader import collate

    root = videos["normal"].parent  # normal: 30 frames; three: 3 frames < the span of 4 frames at stride 2
    kw = {} if train else {"clips": 2, "crops": 1}
    ds = VideoDataset([("normal.mp4", 0), ("three.mp4", 1), ("three.mp4", 1)], root, frames=4, stride=2, size=32,
                      train=train, **kw)
    items = [ds[i] for i in range(3)]
    assert [it["short"] for it in items] == [False, True, True]
    assert collate([(i, it) for i, it in enumerate(items)])["short"] == [1, 2]
    # 3 frames at stride 1 span 3 source frames: "three" just fits.
    ds1 = VideoDataset([("normal.mp4", 0), ("three.mp4", 1)], root, frames=3, stride=1, size=32, train=train, **kw)
    assert [ds1[i]["short"] for i in range(2)] == [False, False]


@pytest.mark.parametrize("train", [True, False])
def test_short_policy_picks_the_frames_a_short_video_is_decoded_at(videos, monkeypatch, train):
    import tubevit.data.datasets as datasets_mod

    seen = []
    real = datasets_mod.decode_frames
    monkeypatch.setattr(datasets_mod, "decode_frames",
                        lambda v, idx, short_side=None: seen.append(list(idx)) or real(v, idx, short_side=short_side))
    root = videos["normal"].parent  # 30 frames; 8 frames at stride 8 span 57
    kw = {} if train else {"clips": 1, "crops": 1}
    for short in ("fit", "pad", "loop"):
        item = VideoDataset([("normal.mp4", 0)], root, frames=8, stride=8, size=32, train=train, short=short,
                            randaugment=None, **kw)[0]
        assert item["short"] and item["video"].shape[2] == 8
    fit, pad, loop = seen
    assert fit == [0, 4, 8, 12, 16, 20, 24, 29]  # floor(i * 29 / 7): first frame to last, once
    assert pad == [0, 8, 16, 24, 29]
    # A loop wraps (8 distinct frames, decoded once each in sorted order); evaluation starts it at 0.
    assert len(loop) == 8 and (train or loop == [0, 2, 8, 10, 16, 18, 24, 26])
    with pytest.raises(ValueError, match="short must be one of"):
        VideoDataset([("normal.mp4", 0)], root, frames=8, size=32, train=train, short="wrap", **kw)


def test_decode_time_scaling_only_for_sources_well_above_the_needed_size(tmp_path, monkeypatch):
    from tubevit.data.synthetic import write_video
    from tubevit.defaults import DECODE_SCALE_ABOVE

    ds = VideoDataset([("a.mp4", 0)], tmp_path, frames=4, size=32, train=True, scale=(0.25, 1.0))
    target = 64  # 32 / sqrt(0.25): the smallest crop is never upscaled
    assert ds.decode_short_side() == target
    assert ds.decode_short_side(int(DECODE_SCALE_ABOVE * target)) is None  # decoded as it is
    assert ds.decode_short_side(int(DECODE_SCALE_ABOVE * target) + 1) == target
    ev = VideoDataset([("a.mp4", 0)], tmp_path, frames=4, size=32, train=False)
    assert ev.decode_short_side(64) is None and ev.decode_short_side(65) == 32
    assert ds.decode_short_side(0) == target  # a header without dimensions: scaled as before
    # The item passes the source's short side: a 3x source is scaled while decoding, 1.5x is not.
    seen = []
    real = datasets_mod.decode_frames
    monkeypatch.setattr(datasets_mod, "decode_frames",
                        lambda v, idx, short_side=None: seen.append(short_side) or real(v, idx, short_side=short_side))
    for name, side in (("big.mp4", 3 * target), ("small.mp4", 96)):
        write_video(tmp_path / name, np.zeros((6, side, side, 3), np.uint8), fps=8)
        item = VideoDataset([(name, 0)], tmp_path, frames=4, size=32, train=True, scale=(0.25, 1.0),
                            randaugment=None)[0]
        assert item["video"].shape == (1, 3, 4, 32, 32)  # [V, C, T, H, W]
    assert seen == [target, None]
