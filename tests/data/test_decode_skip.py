"""Decoding with non-reference pictures skipped, and header + frames from one open.

Every check compares against a decode that skips nothing: ``decode_all_frames`` (every frame,
in order) and ``decode_frames`` with skipping switched off (the packet-level skipper is only
used for streams ``_h264_nal_length_size`` understands; patching it to None is the plain decode).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

import tubevit.data.decode as decode_mod
from tubevit.data.datasets import VideoDataset
from tubevit.data.decode import VideoDecodeError, VideoReader, decode_all_frames, decode_frames, probe
from tubevit.data.synthetic import write_video


def _texture_frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Moving 8x8-block texture: enough motion that x264 uses B-frames (flat frames get few)."""
    rng = np.random.default_rng(seed)
    texture = np.kron(rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), np.uint8), np.ones((8, 8, 1), np.uint8))
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i] = np.roll(texture, (i, 2 * i), axis=(0, 1))[:h, :w]
    return frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("skip")
    frames = _texture_frames(90, 64, 96)
    out = {}
    # tubevit's writer (x264 veryfast: B-frames with b-pyramid), key frame every 30 frames
    out["bframes"] = write_video(d / "bframes.mp4", frames, fps=30, gop=30)
    # PyAV's libx264 with its default settings (preset medium: B-frames)
    path = d / "x264_default.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    out["x264_default"] = path
    out["bf0"] = write_video(d / "bf0.mp4", frames, fps=30, gop=30, options={"bf": "0"})
    out["mkv"] = write_video(d / "bframes.mkv", frames, fps=30, gop=30)
    # Annex B H.264 (MPEG-TS) and MPEG-4 part 2: not understood, decoded without skipping
    out["ts"] = write_video(d / "bframes.ts", frames, fps=30, gop=30)
    out["mpeg4"] = write_video(d / "mpeg4.mp4", frames, fps=30, gop=30, codec="mpeg4")
    rng = np.random.default_rng(3)
    pts = np.concatenate([[0], np.cumsum(rng.integers(20, 61, 59))])
    out["vfr"] = write_video(d / "vfr.mp4", frames[:60], fps=30, pts_ms=pts.tolist(), gop=30)
    return out


def _nonref_packets(path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        size = decode_mod._h264_nal_length_size(stream)
        return sum(decode_mod._is_nonref_picture(memoryview(p), size) for p in container.demux(stream) if p.size)


def _plain(path, idx, monkeypatch, **kw):
    with monkeypatch.context() as m:
        m.setattr(decode_mod, "_h264_nal_length_size", lambda stream: None)
        st = {}
        out = decode_frames(path, idx, threads=1, stats=st, **kw)
        assert st["skipped"] == 0 and not st["skipping"]
        return out


def _index_sets(n: int, rng) -> list[list[int]]:
    sets = []
    for stride in (1, 2, 3, 4):
        for start in (0, 1, int(rng.integers(2, n // 2)), n - 8):
            sets.append([start + stride * k for k in range(12) if start + stride * k < n])
    sets += [sorted(rng.choice(n, 10, replace=False).tolist()) for _ in range(4)]  # random sets
    sets += [[5, 5, 5, 40, 40, 7], [n - 1, n - 1, 0], [n - 3, n - 2, n - 1, n], [31, 33, n - 29, n - 27, n - 1]]
    sets += [[40, 2, n - 13, 2, 13]]  # any order
    return sets  # repeats, the end, one past the end (within the slack)


def _outcome(fn):
    """The frames, or the VideoDecodeError's message: a skipping decode must fail where and as
    the plain one does."""
    try:
        return fn()
    except VideoDecodeError as err:
        return str(err)


@pytest.mark.parametrize("name", ["bframes", "x264_default", "bf0", "mkv", "ts", "mpeg4", "vfr"])
def test_frames_bit_identical_to_a_decode_that_skips_nothing(clips, name, monkeypatch):
    path = clips[name]
    n = probe(path).num_frames
    full = decode_all_frames(path, threads=1)
    skipped = 0
    for idx in _index_sets(n, np.random.default_rng(0)):
        st = {}
        got = _outcome(lambda: decode_frames(path, idx, threads=1, stats=st))
        want = _outcome(lambda: _plain(path, idx, monkeypatch))
        if isinstance(want, str):  # MPEG-TS near its end: the plain decode fails, and so must this
            assert got == want and name == "ts", (name, idx, want)
            continue
        np.testing.assert_array_equal(got, want, err_msg=f"{name} {idx}")
        # constant rate, seekable by timestamp: index i is the i-th frame (past the end: the last);
        # MPEG-TS seeks by byte position, where the sparse decode is only equal to itself
        if name not in ("vfr", "ts"):
            np.testing.assert_array_equal(got, full[np.minimum(idx, len(full) - 1)], err_msg=f"{name} {idx}")
        assert not st["fallback"]
        skipped += st["skipped"]
    if name in ("ts", "mpeg4"):
        assert skipped == 0  # fallback: plain decoding
    elif name == "bf0":
        assert _nonref_packets(path) == 0 and skipped == 0  # every P-frame is a reference
    else:
        assert _nonref_packets(path) > 0 and skipped > 0, name


def test_stats_say_whether_the_stream_allows_skipping(clips):
    for name, allowed in (("bframes", True), ("mkv", True), ("ts", False), ("mpeg4", False), ("bf0", True)):
        st = {}
        decode_frames(clips[name], [10, 12], threads=1, stats=st)
        assert st["skipping"] is allowed, name


def test_stride_two_skips_the_unneeded_non_reference_frames(clips, monkeypatch):
    path = clips["bframes"]
    n = probe(path).num_frames
    skipped = {}
    for phase in (0, 1):  # x264's non-reference B-frames sit at one parity within a mini-GOP
        idx = list(range(30 + phase, 60, 2))
        st = {}
        got = decode_frames(path, idx, threads=1, stats=st)
        np.testing.assert_array_equal(got, _plain(path, idx, monkeypatch))
        skipped[phase] = st["skipped"]
        # every packet sent or skipped, none both: sent + skipped covers the range once
        assert st["decoded"] + st["skipped"] >= 30 and len(st["skipped_pts"]) == st["skipped"]
    assert max(skipped.values()) > 0
    # stride 1 over a range that starts at its key frame: every frame is wanted, nothing skipped
    st = {}
    decode_frames(path, list(range(30, 50)), threads=1, stats=st)
    assert st["skipped"] == 0
    assert n == 90


def test_skipping_with_frame_threads_is_identical(clips, monkeypatch):
    path = clips["x264_default"]
    idx = list(range(3, 80, 3))
    st = {}
    got = decode_frames(path, idx, threads=2, stats=st)
    np.testing.assert_array_equal(got, _plain(path, idx, monkeypatch))
    assert st["skipped"] > 0


def test_decoder_output_that_does_not_bear_out_the_skips_is_decoded_again(clips, monkeypatch):
    path = clips["bframes"]
    idx = list(range(1, 60, 2)) + list(range(0, 60, 4))
    want = _plain(path, idx, monkeypatch)
    monkeypatch.setattr(decode_mod._NonRefSkipper, "consistent", lambda self, seen: False)
    st = {}
    got = decode_frames(path, idx, threads=1, stats=st)
    assert st["fallback"] and st["skipped"] == 0
    np.testing.assert_array_equal(got, want)


def test_consistency_check_rejects_what_would_be_wrong():
    s = decode_mod._NonRefSkipper.__new__(decode_mod._NonRefSkipper)
    s.dropped = [(512, 1024), (1024, 1536)]  # two consecutive skipped frames, next shown at 1536
    assert s.consistent([0, 1536, 2048])
    assert not s.consistent([0, 2048])  # the successor never came out
    assert not s.consistent([0, 2048, 1536])  # out of display order
    assert not s.consistent([0, None, 1536])  # a frame without timestamp
    assert not s.consistent([1536, 2048])  # nothing shown before the first skipped frame
    s.dropped = []
    assert s.consistent([None, 5])  # nothing skipped: nothing to confirm


def _nal(kind: int, ref_idc: int, payload: bytes = b"\x88\x84", size: int = 4) -> bytes:
    body = bytes([(ref_idc << 5) | kind]) + payload
    return len(body).to_bytes(size, "big") + body


def test_nal_parser_drops_only_non_reference_slices_with_harmless_neighbours():
    nonref = decode_mod._is_nonref_picture
    assert nonref(_nal(1, 0), 4)
    assert nonref(_nal(9, 0, b"\x10") + _nal(1, 0), 4)  # access unit delimiter + slice
    assert nonref(_nal(1, 0, size=2), 2)
    assert not nonref(_nal(1, 2), 4)  # nal_ref_idc 2: a reference B-frame (b-pyramid)
    assert not nonref(_nal(5, 3), 4)  # IDR
    assert not nonref(_nal(7, 3) + _nal(1, 0), 4)  # in-band SPS
    assert not nonref(_nal(6, 0, b"\x05\x01\xaa\x80"), 4)  # SEI only: no slice
    assert nonref(_nal(6, 0, b"\x01\x01\xaa\x80") + _nal(1, 0), 4)  # picture timing SEI
    assert not nonref(_nal(6, 0, b"\x06\x01\xaa\x80") + _nal(1, 0), 4)  # recovery point SEI
    assert not nonref(_nal(1, 0)[:-1], 4)  # truncated NAL unit
    assert not nonref(b"\x00\x00\x00\x00" + _nal(1, 0), 4)  # zero length


def test_reader_probes_and_decodes_from_one_open(clips, monkeypatch):
    path = clips["bframes"]
    opens = []
    real_open = av.open
    monkeypatch.setattr(decode_mod.av, "open", lambda *a, **k: opens.append(a[0]) or real_open(*a, **k))
    with VideoReader(path, threads=1) as video:
        assert video.info == probe(path)
        first = video.decode([10, 11, 12])
        again = video.decode([0, 1, 2])  # a second decode on the same reader seeks back
    assert len(opens) == 2  # the reader's one open for header and both decodes, plus probe's above
    np.testing.assert_array_equal(first, decode_frames(path, [10, 11, 12], threads=1))
    np.testing.assert_array_equal(again, decode_frames(path, [0, 1, 2], threads=1))


def test_dataset_item_opens_the_file_once(clips, monkeypatch):
    path = Path(clips["bframes"])
    ds = VideoDataset([(path.name, 0)], path.parent, frames=8, size=32, train=True, stride=2, decode_threads=1)
    opens = []
    real_open = av.open
    monkeypatch.setattr(decode_mod.av, "open", lambda *a, **k: opens.append(a[0]) or real_open(*a, **k))
    item = ds.get(0, torch.Generator().manual_seed(0))
    assert item is not None and item["video"].shape == (1, 3, 8, 32, 32)
    assert opens == [str(path)]


def test_reader_errors_are_the_decoders(clips, tmp_path):
    with pytest.raises(VideoDecodeError, match="file not found"):
        VideoReader(tmp_path / "none.mp4")
    (tmp_path / "junk.mp4").write_text("not a video\n" * 20)
    with pytest.raises(VideoDecodeError, match="junk.mp4"):
        VideoReader(tmp_path / "junk.mp4").info
    with pytest.raises(ValueError, match="unknown decoder backend"):
        VideoReader(clips["bframes"], backend="nope")
    with VideoReader(clips["bframes"]) as video, pytest.raises(ValueError, match="negative"):
        video.decode([-1])


def test_evaluation_skips_non_reference_frames_between_its_views(clips, monkeypatch):
    import tubevit.data.datasets as datasets_mod

    path = Path(clips["bframes"])
    ds = VideoDataset([(path.name, 0)], path.parent, frames=6, size=32, train=False, clips=3, crops=1, stride=1,
                      decode_threads=1)
    stats = []
    real = datasets_mod.decode_frames

    def counting(p, i, **k):
        stats.append({})
        return real(p, i, stats=stats[-1], **k)

    with monkeypatch.context() as m:
        m.setattr(datasets_mod, "decode_frames", counting)
        item = ds[0]
    with monkeypatch.context() as m:
        m.setattr(decode_mod, "_h264_nal_length_size", lambda stream: None)
        plain = ds[0]
    torch.testing.assert_close(item["video"], plain["video"], rtol=0, atol=0)
    # 3 clips of 6 consecutive frames spread over 90: the frames between them are not needed
    assert len(stats) == 1 and stats[0]["skipped"] > 0
