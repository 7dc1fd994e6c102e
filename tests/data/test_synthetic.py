"""Built-in data: real files, deterministic, classes that need frame order."""

from __future__ import annotations

import numpy as np
import pytest

from tubevit.data.datasets import ImageDataset, VideoDataset, read_annotations
from tubevit.data.decode import probe
from tubevit.data.synthetic import VIDEO_CLASSES, _video_params, make_synthetic_data, render_video


def _small(root, seed=0):
    return make_synthetic_data(root, seed=seed, num_classes=4, videos_per_class=4, images_per_class=4,
                               frames=8, size=32)


def test_files_lists_and_decoding(tmp_path):
    paths = _small(tmp_path)
    samples, names = read_annotations(paths["video_train"], paths["root"])
    assert names == list(VIDEO_CLASSES[:4])
    assert len(samples) == 4 * 3 and sorted({lab for _, lab in samples}) == [0, 1, 2, 3]
    val, _ = read_annotations(paths["video_val"], paths["root"])
    assert len(val) == 4 and not {p for p, _ in val} & {p for p, _ in samples}
    info = probe(paths["root"] / samples[0][0])
    assert (info.num_frames, info.height, info.width) == (8, 32, 32)
    img, img_names = read_annotations(paths["image_train"], paths["root"])
    assert len(img) == 5 * 3 and img_names == ["circle", "square", "triangle", "cross", "hand"]
    v = VideoDataset(samples, paths["root"], frames=8, stride=1, size=32, train=False)
    assert v[0]["video"].shape == (1, 3, 8, 32, 32)
    assert ImageDataset(img, paths["root"], size=32, train=False)[0]["image"].shape == (1, 3, 32, 32)


def test_deterministic_from_seed(tmp_path):
    a, b, c = _small(tmp_path / "a"), _small(tmp_path / "b"), _small(tmp_path / "c", seed=1)
    files = sorted(p.relative_to(a["root"]) for p in a["root"].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b["root"]) for p in b["root"].rglob("*") if p.is_file())
    assert all((a["root"] / f).read_bytes() == (b["root"] / f).read_bytes() for f in files)
    assert any((a["root"] / f).read_bytes() != (c["root"] / f).read_bytes() for f in files if f.suffix == ".mp4")


@pytest.mark.parametrize("pair", range(len(VIDEO_CLASSES) // 2))
def test_pairs_are_time_reversals(pair):
    params = _video_params(np.random.default_rng(pair), 2 * pair, 32)
    forward = render_video(2 * pair, params, 12, 32)
    backward = render_video(2 * pair + 1, params, 12, 32)
    np.testing.assert_array_equal(backward, forward[::-1])
    assert not np.array_equal(forward, forward[::-1])  # the motion is visible


def _shift(a, b, axis):
    # the integer displacement (with wrap) that best maps frame a onto frame b
    errs = {s: np.abs(np.roll(a, s, axis=axis) - b).sum() for s in range(-4, 5)}
    return min(errs, key=errs.get)


def test_direction_is_in_the_frame_order():
    rng = np.random.default_rng(0)
    for cls, axis, sign in ((0, 1, 1), (1, 1, -1), (2, 0, 1), (3, 0, -1)):
        params = _video_params(rng, cls, 64)
        params["velocity"] = 2.0  # whole pixels per frame
        v = render_video(cls, params, 4, 64).astype(np.float32).mean(-1)
        assert _shift(v[0], v[1], axis) == 2 * sign, VIDEO_CLASSES[cls]


def test_every_frame_distribution_is_class_agnostic_within_a_pair():
    # With a uniform phase and wrap-around, the first frame of "move right" and of "move left"
    # are drawn from the same distribution: compare the mean shape column over many videos.
    cols = {0: [], 1: []}
    for cls in (0, 1):
        rng = np.random.default_rng(cls)
        for _ in range(300):
            p = _video_params(rng, cls, 32)
            p["shape"] = "square"
            frame = render_video(cls, p, 6, 32)[0].astype(np.float32).sum(-1)
            bright = frame > frame.min() + 1
            cols[cls].append(np.nonzero(bright.any(0))[0].mean() if bright.any() else 16)
    assert abs(np.mean(cols[0]) - np.mean(cols[1])) < 1.0  # pixels, out of 32


def test_rejects_unpaired_class_counts(tmp_path):
    with pytest.raises(ValueError, match="even"):
        make_synthetic_data(tmp_path, num_classes=3)


def test_ensure_reuses_only_the_set_its_manifest_records(tmp_path):
    from tubevit.data.synthetic import MANIFEST, ensure_synthetic_data, synthetic_data_matches

    small = dict(num_classes=2, videos_per_class=2, images_per_class=1, frames=8, size=16)
    root = tmp_path / "d"
    assert ensure_synthetic_data(root, seed=0, **small) is True
    assert synthetic_data_matches(root, seed=0, **small)
    lists = root / "videos" / "train.txt"
    stamp = lists.stat().st_mtime_ns
    assert ensure_synthetic_data(root, seed=0, **small) is False and lists.stat().st_mtime_ns == stamp
    # Another seed or size is another set: written again, never reused.
    assert not synthetic_data_matches(root, seed=1, **small)
    assert ensure_synthetic_data(root, seed=0, **dict(small, videos_per_class=4)) is True
    assert len(lists.read_text().splitlines()) == 2 * 3
    # A folder without its manifest (an interrupted write, or an older version's demo data) is rewritten.
    (root / MANIFEST).unlink()
    assert not synthetic_data_matches(root, seed=0, **dict(small, videos_per_class=4))
    assert ensure_synthetic_data(root, seed=0, **dict(small, videos_per_class=4)) is True
    (root / MANIFEST).write_text("{not json")
    assert ensure_synthetic_data(root, seed=0, **dict(small, videos_per_class=4)) is True
