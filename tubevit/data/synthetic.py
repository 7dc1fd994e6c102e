"""Built-in data: a small video + image set written as real files from a seed, in seconds.

It is the embedded default for the demo and the tests (no download). The video classes come in
time-reversed pairs (move right/left, down/up, grow/shrink, rotate clockwise/anticlockwise, fade
in/out, diagonal down-right/up-left): a class-``2k+1`` video is exactly a class-``2k`` video played
backwards. Every motion is periodic with a uniformly random phase (positions wrap around the frame,
sizes and brightness follow a sawtooth), so the distribution of any single frame, and of an
unordered bag of frames, is the same for both classes of a pair: only the *order* of frames tells
them apart, which is what a video model (and TubeViT's temporal tubes, §3) must learn. Shape,
colours, background, speed and phase are randomised per video.

The image set shares the visual content: one class per shape (circle, square, triangle, cross,
hand), at random position, size, rotation and colours, so joint image + video training (§3.3)
has shared appearance to transfer.

Files: ``videos/<class>/<n>.mp4`` (H.264 yuv420p via PyAV's libx264; MPEG-4 Part 2 where the
FFmpeg build lacks it), ``images/<class>/<n>.png``, and list files ``videos/train.txt``,
``videos/val.txt``, ``images/train.txt``, ``images/val.txt`` (``relative/path label`` per line,
paths relative to ``root``) plus ``videos/classes.txt`` and ``images/classes.txt``.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "DEMO_DATA",
    "IMAGE_CLASSES",
    "VIDEO_CLASSES",
    "ensure_synthetic_data",
    "make_synthetic_data",
    "render_image",
    "render_video",
    "synthetic_data_matches",
    "write_image",
    "write_video",
]

# What `tubevit demo` (and benchmarks/joint_vs_video.py) write: 48-frame videos, so 32-frame clips are
# random temporal crops; 80 videos per class (600 training, 200 validation) because with the demo's
# ~640 steps the 12-block model generalised from 600 videos (0.73 top-1) and not from 180 (0.40),
# at the same cost per step (docs/TRAINING.md, "The demo").
DEMO_DATA = {"frames": 48, "size": 64, "videos_per_class": 80}

# Pairs (2k, 2k+1) are time reversals of each other.
VIDEO_CLASSES = (
    "move_right", "move_left",
    "move_down", "move_up",
    "grow", "shrink",
    "rotate_cw", "rotate_ccw",
    "fade_in", "fade_out",
    "diagonal_down_right", "diagonal_up_left",
)
SHAPES = ("circle", "square", "triangle", "cross", "hand")
IMAGE_CLASSES = SHAPES


def _video_codec() -> str:
    # libx264 gives real H.264 (what Kinetics/YouTube files are); mpeg4 is in every FFmpeg build.
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(
    path,
    frames: np.ndarray,
    *,
    fps: float = 30,
    codec: str | None = None,
    pix_fmt: str = "yuv420p",
    gop: int | None = None,
    pts_ms: list[int] | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    rotation: int | None = None,
) -> Path:
    """Encode ``uint8 [T, H, W, 3]`` (or ``[T, H, W]`` for ``pix_fmt="gray"``) with PyAV.

    ``pts_ms`` gives explicit presentation times in milliseconds (variable frame rate);
    ``gop`` is the key-frame interval. x264 runs single-threaded so output bytes depend only on
    the frames (deterministic data from a seed). ``options`` go to the encoder,
    ``container_options`` to the muxer (e.g. ``{"movflags": "+faststart"}``). ``rotation``: a
    display matrix turning the frames that many degrees counterclockwise (as phones write).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or _video_codec()
    frames = np.asarray(frames, dtype=np.uint8)
    t, h, w = frames.shape[:3]
    opts = {}
    if codec == "libx264":
        # One thread and constant QP: x264's bytes then depend only on the input. (With CRF the
        # floating-point rate control gave different bytes once torch had been imported.)
        opts = {"preset": "veryfast", "qp": "20", "threads": "1",
                "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0"}
    opts.update(options or {})
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate, options=opts)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if codec == "mpeg4":
            stream.bit_rate = max(200_000, h * w * 60)
        if codec == "libx264":
            stream.codec_context.thread_count = 1  # threaded x264 output varies run to run
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if gop:
            stream.codec_context.gop_size = gop
        if pts_ms is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(t):
            fmt = "gray" if frames.ndim == 3 else "rgb24"
            frame = av.VideoFrame.from_ndarray(frames[i], format=fmt)
            if pts_ms is not None:
                frame.pts = int(pts_ms[i])
                frame.time_base = Fraction(1, 1000)
            else:  # explicit timestamps: nothing left for the encoder to guess
                frame.pts = i
                frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_image(path, image: np.ndarray) -> Path:
    """Write ``uint8 [H, W, 3]`` as PNG through PyAV's encoder (no imaging library needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image, dtype=np.uint8), format="rgb24")
    data = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(bytes(p) for p in ctx.encode())
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# Rendering (pure numpy, deterministic from the parameters)


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float, angle: float) -> np.ndarray:
    # Rotate the sampling grid by -angle, i.e. the shape by +angle (clockwise on screen, y down).
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if shape == "circle":
        return u * u + v * v <= r * r
    if shape == "square":
        return (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
    if shape == "triangle":  # apex up; inside three half-planes
        return (v <= 0.6 * r) & (v >= -r + 1.7 * np.abs(u))
    if shape == "cross":
        return ((np.abs(u) <= r) & (np.abs(v) <= 0.3 * r)) | ((np.abs(v) <= r) & (np.abs(u) <= 0.3 * r))
    if shape == "hand":  # off-centre bar plus hub: no rotational symmetry, so rotation shows
        return ((u >= -0.2 * r) & (u <= r) & (np.abs(v) <= 0.25 * r)) | (u * u + v * v <= (0.35 * r) ** 2)
    raise ValueError(f"unknown shape {shape!r}")


def _draw(canvas, shape, cx, cy, r, angle, colour, alpha=1.0, wrap=True):
    h, w = canvas.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    mask = np.zeros((h, w), bool)
    shifts = (-1, 0, 1) if wrap else (0,)
    for sx in shifts:  # wrap-around: draw the copies that straddle the edges
        for sy in shifts:
            mask |= _shape_mask(shape, xs - (cx + sx * w), ys - (cy + sy * h), r, angle)
    canvas[mask] = (1 - alpha) * canvas[mask] + alpha * np.asarray(colour, np.float32)


def _video_params(rng: np.random.Generator, cls: int, size: int) -> dict:
    kind = VIDEO_CLASSES[cls - cls % 2]
    shapes = [s for s in SHAPES if s != "circle"] if kind == "rotate_cw" else list(SHAPES)
    return {
        "shape": shapes[int(rng.integers(len(shapes)))],
        "background": rng.uniform(0, 90, 3),
        "colour": rng.uniform(140, 255, 3),
        "x": rng.uniform(0, size), "y": rng.uniform(0, size),
        "radius": rng.uniform(0.12, 0.2) * size,
        "angle": rng.uniform(0, 2 * math.pi),
        "phase": rng.uniform(0, 1),
        # Whole-frame travel per period varies per video; at least ~1 px/frame at 64 px.
        "speed": rng.uniform(0.6, 1.2),  # periods per clip for sawtooth motions
        "velocity": rng.uniform(0.02, 0.04) * size,  # pixels per frame for translations
        "spin": rng.uniform(0.06, 0.12),  # radians per frame
    }


def render_video(cls: int, params: dict, frames: int, size: int) -> np.ndarray:
    """Render class ``cls`` as ``uint8 [frames, size, size, 3]``; odd classes are the even class
    of the pair played backwards (``render_video(2k+1, p, T, S) == render_video(2k, p, T, S)[::-1]``)."""
    kind = VIDEO_CLASSES[cls - cls % 2]
    out = np.empty((frames, size, size, 3), np.uint8)
    for i in range(frames):
        t = (frames - 1 - i) if cls % 2 else i  # reversed time for the odd class
        canvas = np.empty((size, size, 3), np.float32)
        canvas[:] = params["background"]
        x, y, r, a, alpha = params["x"], params["y"], params["radius"], params["angle"], 1.0
        saw = (params["phase"] + t * params["speed"] / max(frames - 1, 1)) % 1.0
        v = params["velocity"]
        if kind == "move_right":
            x += v * t
        elif kind == "move_down":
            y += v * t
        elif kind == "diagonal_down_right":
            x, y = x + 0.7 * v * t, y + 0.7 * v * t
        elif kind == "grow":
            r *= 0.4 + 1.2 * saw
        elif kind == "rotate_cw":
            a += params["spin"] * t
        elif kind == "fade_in":
            alpha = 0.15 + 0.85 * saw
        _draw(canvas, params["shape"], x % size, y % size, r, a, params["colour"], alpha)
        out[i] = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return out


def render_image(cls: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``uint8 [size, size, 3]`` image of shape ``IMAGE_CLASSES[cls]`` with random appearance."""
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = rng.uniform(0, 90, 3)
    _draw(
        canvas, IMAGE_CLASSES[cls],
        rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size,
        rng.uniform(0.15, 0.3) * size, rng.uniform(0, 2 * math.pi), rng.uniform(140, 255, 3),
        wrap=False,
    )
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------


def make_synthetic_data(
    root,
    *,
    seed: int = 0,
    num_classes: int = 10,
    videos_per_class: int = 24,
    images_per_class: int = 40,
    val_fraction: float = 0.25,
    frames: int = 32,
    size: int = 64,
    fps: float = 24,
) -> dict[str, Path]:
    """Write the built-in video and image sets under ``root`` and return their paths.

    Keys: ``root``, ``video_train``, ``video_val``, ``video_classes``, ``image_train``,
    ``image_val``, ``image_classes`` (list-file paths are relative to ``root``). The defaults
    (10 classes x 24 videos of 32 frames at 64x64, 5 x 40 images) take a few seconds on one core.
    The same ``seed`` gives byte-identical files.
    """
    if not 2 <= num_classes <= len(VIDEO_CLASSES) or num_classes % 2:
        raise ValueError(f"num_classes must be even and in [2, {len(VIDEO_CLASSES)}] (time-reversed pairs)")
    if size % 2:
        raise ValueError("size must be even (yuv420p needs even dimensions)")
    root = Path(root)
    rng = np.random.default_rng(seed)
    paths = {"root": root}
    n_val_v = max(1, int(round(videos_per_class * val_fraction)))
    n_val_i = max(1, int(round(images_per_class * val_fraction)))

    video_lines = {"train": [], "val": []}
    for c in range(num_classes):
        for n in range(videos_per_class):
            params = _video_params(rng, c, size)
            rel = f"videos/{VIDEO_CLASSES[c]}/{n:04d}.mp4"
            write_video(root / rel, render_video(c, params, frames, size), fps=fps, gop=frames)
            video_lines["val" if n < n_val_v else "train"].append(f"{rel} {c}")
    image_lines = {"train": [], "val": []}
    for c in range(len(IMAGE_CLASSES)):
        for n in range(images_per_class):
            rel = f"images/{IMAGE_CLASSES[c]}/{n:04d}.png"
            write_image(root / rel, render_image(c, rng, size))
            image_lines["val" if n < n_val_i else "train"].append(f"{rel} {c}")

    for kind, lines, names in (
        ("video", video_lines, VIDEO_CLASSES[:num_classes]),
        ("image", image_lines, IMAGE_CLASSES),
    ):
        folder = root / f"{kind}s"
        for split in ("train", "val"):
            paths[f"{kind}_{split}"] = folder / f"{split}.txt"
            paths[f"{kind}_{split}"].write_text("\n".join(lines[split]) + "\n")
        paths[f"{kind}_classes"] = folder / "classes.txt"
        paths[f"{kind}_classes"].write_text("\n".join(names) + "\n")
    return paths


MANIFEST = "synthetic.json"


def synthetic_data_matches(root, **params) -> bool:
    """Whether ``root`` holds a complete built-in set made with ``params`` (its manifest says so)."""
    try:
        recorded = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False  # absent (interrupted, or written before manifests existed) or unreadable
    return json.dumps(recorded, sort_keys=True) == json.dumps(params, sort_keys=True)


def ensure_synthetic_data(root, **params) -> bool:
    """The built-in set under ``root`` made with ``params`` (:func:`make_synthetic_data`'s keywords):
    reused when ``root/synthetic.json`` records exactly these parameters, written (again) otherwise.
    Returns True when it wrote the data.

    The manifest is written last and atomically, so a folder from an interrupted write, from another
    seed or size, or from a version whose demo wrote fewer videos (no manifest) is never mistaken for
    the set asked for: reusing it would give another result with exit 0.
    """
    from tubevit.io.files import atomic_write_text

    root = Path(root)
    if synthetic_data_matches(root, **params):
        return False
    (root / MANIFEST).unlink(missing_ok=True)
    make_synthetic_data(root, **params)
    atomic_write_text(json.dumps(params, sort_keys=True) + "\n", root / MANIFEST)
    return True
