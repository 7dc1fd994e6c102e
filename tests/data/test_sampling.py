"""Clip index math, closed form, no video."""

from __future__ import annotations

import numpy as np
import pytest

from tubevit.data.sampling import (
    clip_indices,
    clip_span,
    eval_clip_indices,
    fit_stride,
    resolve_stride,
    train_clip_indices,
)


def test_resolve_stride():
    assert resolve_stride(2, None, 30) == 2.0
    assert resolve_stride(None, 15, 30) == 2.0  # Kinetics: 64 frames at 15 fps from 30 fps
    assert resolve_stride(None, 24, 12) == 0.5  # target above source: frames repeat
    assert resolve_stride(3, 15, 25) == pytest.approx(25 / 15)  # fps wins over stride
    with pytest.raises(ValueError):
        resolve_stride(None, None, 30)
    with pytest.raises(ValueError):
        resolve_stride(None, 15, None)


def test_span():
    assert clip_span(32, 2) == 63
    assert clip_span(1, 5) == 1
    assert clip_span(4, 1.5) == 5  # 0, 1.5, 3, 4.5 -> 0, 1, 3, 4


def test_clip_indices_fractional_stride_floors():
    np.testing.assert_array_equal(clip_indices(10, 4, 1.5, 100), [10, 11, 13, 14])
    np.testing.assert_array_equal(clip_indices(0, 5, 25 / 15, 100), [0, 1, 3, 5, 6])


def test_short_video_loop_and_pad():
    np.testing.assert_array_equal(clip_indices(0, 6, 2, 5, short="loop"), [0, 2, 4, 1, 3, 0])
    np.testing.assert_array_equal(clip_indices(0, 6, 2, 5, short="pad"), [0, 2, 4, 4, 4, 4])
    with pytest.raises(ValueError):
        clip_indices(0, 6, 2, 5, short="crash")
    with pytest.raises(ValueError):
        clip_indices(0, 6, 2, 0)


def test_train_clip_is_uniform_over_valid_starts():
    rng = np.random.default_rng(0)
    starts = [int(train_clip_indices(100, 8, 2, rng)[0]) for _ in range(4000)]
    # span 15 -> starts 0..85 inclusive, all reachable, none beyond
    assert min(starts) == 0 and max(starts) == 85
    counts = np.bincount(starts, minlength=86)
    assert counts.min() > 20  # ~46 expected each
    clip = train_clip_indices(100, 8, 2, np.random.default_rng(1))
    np.testing.assert_array_equal(np.diff(clip), 2)


def test_train_clip_short_video_never_fails():
    rng = np.random.default_rng(0)
    for n in (1, 3, 10):
        loop = train_clip_indices(n, 16, 2, rng, short="loop")
        pad = train_clip_indices(n, 16, 2, rng, short="pad")
        assert loop.shape == pad.shape == (16,)
        assert loop.max() < n and pad.max() < n and loop.min() >= 0
        assert pad[0] == 0 and pad[-1] == n - 1


def test_eval_clips_uniform_and_deterministic():
    got = eval_clip_indices(100, 4, 2, 4)  # span 7, room 93 -> starts 0, 31, 62, 93
    np.testing.assert_array_equal(got[:, 0], [0, 31, 62, 93])
    np.testing.assert_array_equal(got[-1], [93, 95, 97, 99])
    np.testing.assert_array_equal(eval_clip_indices(100, 4, 2, 1)[0], [46, 48, 50, 52])  # centred
    short = eval_clip_indices(5, 4, 2, 3)
    np.testing.assert_array_equal(short, [[0, 2, 4, 1]] * 3)
    np.testing.assert_array_equal(eval_clip_indices(5, 4, 2, 3, short="pad")[0], [0, 2, 4, 4])


def test_fit_stride_closed_form():
    assert fit_stride(100, 32, 2) == 2.0  # span 63 fits 100 frames: the run's stride
    assert fit_stride(48, 32, 2) == pytest.approx(47 / 31)  # span exactly the video
    assert fit_stride(63, 32, 2) == 2.0  # just fits
    assert fit_stride(10, 16, 2) == pytest.approx(9 / 15)  # fewer frames than the clip: below 1
    assert fit_stride(5, 1, 3) == 3.0  # one frame always fits
    with pytest.raises(ValueError):
        fit_stride(0, 4, 2)


@pytest.mark.parametrize("n", [1, 2, 10, 31, 47, 48, 62])
def test_fit_runs_once_through_a_short_video_first_frame_to_last(n):
    # 32 frames at stride 2 span 63 source frames: every n here is shorter.
    rng = np.random.default_rng(0)
    for clip in (train_clip_indices(n, 32, 2, rng, short="fit"), *eval_clip_indices(n, 32, 2, 3, short="fit")):
        assert clip.shape == (32,)
        assert clip[0] == 0 and clip[-1] == n - 1  # the whole video
        assert (np.diff(clip) >= 0).all()  # forward only: no jump back, unlike loop
        assert (np.diff(clip) <= 2).all()  # never faster than the run's stride
        if n >= 32:
            assert len(np.unique(clip)) == 32  # no frame repeats while the video has enough
    np.testing.assert_array_equal(clip_indices(0, 6, 2, 5, short="fit"), [0, 0, 1, 2, 3, 4])


def test_fit_changes_nothing_where_the_clip_fits():
    for seed in range(5):
        a = train_clip_indices(100, 8, 2, np.random.default_rng(seed), short="fit")
        b = train_clip_indices(100, 8, 2, np.random.default_rng(seed), short="loop")
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(eval_clip_indices(100, 4, 2, 4, short="fit"), eval_clip_indices(100, 4, 2, 4))
    with pytest.raises(ValueError, match="short must be one of"):
        train_clip_indices(100, 8, 2, np.random.default_rng(0), short="wrap")
