"""Small real videos for the data tests, generated once per session with PyAV (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest

from tubevit.data.synthetic import write_video


def numbered_frames(t: int, h: int, w: int) -> np.ndarray:
    """Frames whose brightness encodes the frame number (survives lossy coding): frame i is a
    flat grey of level 8*i (mod 256), plus a noise block in the top-left corner so that the
    file has real payload (a truncated file then loses frames, not just its index)."""
    frames = np.empty((t, h, w, 3), np.uint8)
    noise = np.random.default_rng(1).integers(0, 256, (t, h // 3, w // 3, 3), dtype=np.uint8)
    for i in range(t):
        frames[i] = (8 * i) % 256
        frames[i, : h // 3, : w // 3] = noise[i]
    return frames


def frame_number(frame: np.ndarray) -> int:
    """Inverse of :func:`numbered_frames`, read from the flat bottom-right quarter."""
    h, w = frame.shape[:2]
    return int(round(float(frame[h // 2 :, w // 2 :].mean()) / 8))


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    out = {}
    out["normal"] = write_video(d / "normal.mp4", numbered_frames(30, 48, 64), fps=30, gop=8)
    out["three"] = write_video(d / "three.mp4", numbered_frames(3, 48, 64), fps=30)
    out["gray"] = write_video(d / "gray.mp4", numbered_frames(12, 48, 64)[..., 0], pix_fmt="gray")
    out["qcif"] = write_video(d / "qcif.mp4", rng.integers(0, 255, (6, 144, 176, 3), np.uint8))
    out["wide"] = write_video(d / "wide.mp4", rng.integers(0, 255, (4, 272, 640, 3), np.uint8))
    # Variable frame rate: gaps of 20-60 ms.
    pts = np.concatenate([[0], np.cumsum(rng.integers(20, 61, 29))])
    out["vfr_pts_ms"] = pts
    out["vfr"] = write_video(d / "vfr.mp4", numbered_frames(30, 48, 64), fps=30, pts_ms=pts.tolist())
    out["missing"] = d / "missing.mp4"
    (d / "empty.mp4").write_bytes(b"")
    out["empty"] = d / "empty.mp4"
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    out["text"] = d / "text.mp4"
    data = out["normal"].read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    out["truncated"] = d / "truncated.mp4"
    # A truncated "fast start" file (index first) opens, then runs out of frames.
    fs = write_video(d / "faststart.mp4", numbered_frames(30, 48, 64), fps=30, gop=8,
                     container_options={"movflags": "+faststart"})
    (d / "truncated_faststart.mp4").write_bytes(fs.read_bytes()[: len(fs.read_bytes()) // 3])
    out["truncated_faststart"] = d / "truncated_faststart.mp4"
    # Frame folder of PNGs.
    from tubevit.data.synthetic import write_image

    folder = d / "frames"
    for i, f in enumerate(numbered_frames(10, 32, 40)):
        write_image(folder / f"img_{i:05d}.png", f)
    out["folder"] = folder
    return out
