"""``tubevit prepare``: re-encode a data set into a copy made for training.

Decoding, not the model, bounds a cheap video model's training (paper §5 trains on 64 frames at
15 fps; Kinetics ships at 25-30 fps, 360p-1080p, with key frames every 4-10 s). The copy keeps
what a training clip needs and nothing it has to skip:

* the frame rate of the recipe (``--fps``, e.g. 15 for Kinetics): no frame decoded only to be
  dropped by the temporal stride; a slower source keeps its own rate (frames are never invented);
* the short side scaled to ``--short-side`` (e.g. 256: the largest random crop at 224 needs no
  more), never upscaled; both sides even (4:2:0 chroma);
* a fixed key-frame interval (``--gop``, default 16, or ``--intra``): a seek lands at most
  ``gop - 1`` frames before a clip's first frame;
* H.264 through PyAV with x264's ``fastdecode`` tune (no CABAC, no deblocking: about 2x faster
  raw decoding for ~10% more disk), yuv420p, no audio.

Output frame ``k`` is the source frame shown at ``k / fps`` (the nearest within half a source
frame), the definition :mod:`tubevit.data.decode` samples by, so ``--fps`` here and
``data.fps`` in training agree. Every file is encoded to a temporary name and renamed when
complete; ``prepare_manifest.json`` (rewritten atomically after each file) records the source,
the settings, frame counts, sizes and failures, so a killed run resumes where it stopped (finished
files are skipped; failed ones are tried again). The new annotation file (``<list name>.txt``,
paths relative to ``--out``, the same label indices) and ``classes.txt`` are written at the top of
``--out``; unreadable sources are left out of it, listed in the manifest and printed, never
dropped silently. Disk size per hour of video for the settings: docs/DATA.md.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import av
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from tubevit.data.decode import DEFAULT_FOLDER_FPS, FRAME_EXTENSIONS, VideoDecodeError, _AV_ERRORS, _frame_files

__all__ = ["MANIFEST", "PrepareSettings", "PrepareResult", "default_workers", "encode_video", "prepare"]

MANIFEST = "prepare_manifest.json"
MANIFEST_VERSION = 1
_TMP_MARK = ".prepare-tmp"


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _umask_mode()  # what open() would give; mkstemp's 0600 would hide a shared copy


@dataclass(frozen=True)
class PrepareSettings:
    """What the copy is made with (recorded in the manifest; a resume must use the same)."""

    # Output frame rate; 0 keeps the source rate. Sources slower than this keep theirs.
    fps: float = 15.0
    # Shorter side of the output (never upscaled); 0 keeps the source size.
    short_side: int = 256
    # Key-frame interval in output frames; 1 = intra-only (--intra).
    gop: int = 16
    # x264 constant rate factor: 23 is x264's default quality; lower is larger and closer.
    crf: int = 23
    preset: str = "veryfast"
    tune: str = "fastdecode"
    folder_fps: float = DEFAULT_FOLDER_FPS  # frame rate of frame-folder sources

    def check(self) -> None:
        if self.fps < 0:
            raise ValueError(f"--fps must be positive (or 0 to keep the source rate), got {self.fps}")
        if self.short_side < 0 or self.short_side == 1:
            raise ValueError(f"--short-side must be at least 2 (or 0 to keep the size), got {self.short_side}")
        if self.gop < 1:
            raise ValueError(f"--gop must be at least 1 frame, got {self.gop}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"--crf must be in 0..51 (x264), got {self.crf}")


@dataclass
class PrepareResult:
    out: Path
    annotation: Path
    done: int  # files in the copy (encoded now or before)
    encoded: int  # encoded by this run
    skipped: int  # already done (resume)
    failed: dict[str, str] = field(default_factory=dict)  # source path -> reason
    seconds: float = 0.0
    bytes: int = 0
    video_seconds: float = 0.0

    @property
    def bytes_per_hour(self) -> float:
        return self.bytes / self.video_seconds * 3600 if self.video_seconds else float("nan")


# ---------------------------------------------------------------------------------------------
# One file


def _even(n: float) -> int:
    return max(2, int(round(n / 2)) * 2)


def _output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    if not short_side or min(height, width) <= short_side:
        return _even(height), _even(width)
    scale = short_side / min(height, width)
    return (short_side, _even(width * scale)) if height <= width else (_even(height * scale), short_side)


def _source_frames(path: Path, folder_fps: float):
    """``(rate, iterator of (time s, av.VideoFrame))`` for a file or a frame folder."""
    if path.is_dir():
        files = _frame_files(path)

        def frames():
            for i, f in enumerate(files):
                with av.open(str(f)) as c:
                    for frame in c.decode(video=0):
                        yield i / folder_fps, frame
                        break
        return float(folder_fps), frames(), None

    container = av.open(str(path), metadata_errors="ignore")
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    tb, start = stream.time_base, stream.start_time or 0

    def frames():
        n = 0
        for frame in container.decode(stream):
            t = float((frame.pts - start) * tb) if frame.pts is not None else n / float(rate or 30)
            n += 1
            yield t, frame
    return float(rate) if rate else 0.0, frames(), container


def encode_video(src: Path, dst: Path, settings: PrepareSettings) -> dict:
    """Re-encode ``src`` (file or frame folder) into ``dst`` (H.264 mp4, atomically). Returns
    what the manifest records: output frames, fps, size, bytes, seconds, source frames."""
    settings.check()
    if not src.exists():
        raise VideoDecodeError(src, "file not found")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.stem}", suffix=f"{_TMP_MARK}.mp4", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    container = None
    try:
        rate, frames, container = _source_frames(src, settings.folder_fps)
        if rate <= 0:
            raise VideoDecodeError(src, "the container reports no frame rate")
        fps = min(settings.fps, rate) if settings.fps else rate
        half_src = 0.5 / rate
        rf = VideoReformatter()
        out_frames = src_frames = 0
        size = None
        with av.open(str(tmp), "w", format="mp4") as out:
            enc = None
            prev = None  # (t, frame) of the newest decoded source frame

            def emit(frame):
                nonlocal out_frames
                y = rf.reformat(frame, width=size[1], height=size[0], format="yuv420p",
                                interpolation="AREA", threads=1)
                y.pts = out_frames
                y.time_base = time_base
                # A decoded frame keeps its source picture type and x264 honours an I there as a
                # forced key frame: the source's key frames would leak into the fixed interval.
                y.pict_type = PictureType.NONE
                for packet in enc.encode(y):
                    out.mux(packet)
                out_frames += 1

            for t, frame in frames:
                src_frames += 1
                if enc is None:
                    size = _output_size(frame.height, frame.width, settings.short_side)
                    rate_q = _rational(fps)
                    # Fixed key-frame interval (no scene-cut key frames) so that a seek lands at
                    # most gop - 1 frames early; one x264 thread per encoder (the workers are the
                    # parallelism).
                    enc = out.add_stream("libx264", rate=rate_q, options={
                        "crf": str(settings.crf), "preset": settings.preset, "tune": settings.tune,
                        "threads": "1",
                        "x264-params": f"keyint={settings.gop}:min-keyint={settings.gop}:scenecut=0:"
                                       f"threads=1:lookahead-threads=1:sliced-threads=0"})
                    enc.width, enc.height, enc.pix_fmt = size[1], size[0], "yuv420p"
                    enc.codec_context.gop_size = settings.gop
                    enc.codec_context.thread_count = 1
                    time_base = 1 / rate_q
                # Output frame k shows the source frame nearest k / fps: every k whose time falls
                # before this frame's (less half a source frame) is shown by the previous one.
                while prev is not None and out_frames / fps < t - half_src:
                    emit(prev[1])
                prev = (t, frame)
            if prev is None:
                raise VideoDecodeError(src, "no decodable frames")
            while out_frames / fps <= prev[0] + half_src:  # the last source frame's share
                emit(prev[1])
            for packet in enc.encode(None):
                out.mux(packet)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, dst)
    except VideoDecodeError:
        raise
    except _AV_ERRORS as err:
        raise VideoDecodeError(src, f"{type(err).__name__}: {err}") from err
    finally:
        if container is not None:
            container.close()
        tmp.unlink(missing_ok=True)
    return {"frames": out_frames, "fps": fps, "height": size[0], "width": size[1],
            "bytes": dst.stat().st_size, "seconds": out_frames / fps, "source_frames": src_frames}


def _rational(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def _encode_job(src: str, dst: str, settings: dict) -> tuple[str, dict | None, str | None]:
    try:
        return dst, encode_video(Path(src), Path(dst), PrepareSettings(**settings)), None
    except VideoDecodeError as err:
        return dst, None, err.reason
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the others; listed
        return dst, None, f"{type(err).__name__}: {err}"


# ---------------------------------------------------------------------------------------------
# A data set


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _output_rel(rel: str) -> str:
    p = Path(rel)
    return str(p.with_suffix(".mp4")) if p.suffix.lower() not in ("", *FRAME_EXTENSIONS) else str(p) + ".mp4"


def _load_manifest(out: Path, settings: PrepareSettings) -> dict:
    path = out / MANIFEST
    if not path.is_file():
        return {"version": MANIFEST_VERSION, "settings": asdict(settings), "files": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg}); delete it to start the copy again") from None
    if manifest.get("settings") != asdict(settings):
        old = manifest.get("settings", {})
        diff = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in asdict(settings).items() if old.get(k) != v)
        raise ValueError(f"{out} was prepared with other settings ({diff}); resume with the same settings "
                         f"or pass another --out")
    return manifest


def prepare(
    annotations,
    data_root,
    out,
    settings: PrepareSettings = PrepareSettings(),
    *,
    workers: int = 1,
    classes=None,
    max_fail_fraction: float = 0.5,
    progress: bool = True,
    on_file: Callable[[str, dict | None, str | None], None] | None = None,
) -> PrepareResult:
    """Re-encode every video of ``annotations`` (any format :func:`read_annotations` reads) from
    ``data_root`` into ``out`` and write ``out/<annotations stem>.txt`` + ``out/classes.txt``.

    Raises ``RuntimeError`` when more than ``max_fail_fraction`` of the sources fail (after at
    least 10, or at the end): a wrong ``data_root`` should stop the run, not produce an empty copy.
    """
    from tqdm import tqdm

    from tubevit.data.datasets import read_annotations

    settings.check()
    t0 = time.perf_counter()
    annotations, out = Path(annotations), Path(out)
    root = Path(data_root) if data_root is not None else annotations.parent
    samples, names = read_annotations(annotations, root, classes)
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() == root.resolve():
        raise ValueError(f"--out {out} is the data root; pass a new directory for the copy")
    manifest = _load_manifest(out, settings)
    manifest.update(source_list=str(annotations.resolve()), data_root=str(root.resolve()))
    files = manifest["files"]

    classes_path = out / "classes.txt"
    if classes_path.is_file() and classes_path.read_text(encoding="utf-8").splitlines() != list(names):
        raise ValueError(f"{classes_path} holds other class names than {annotations}; prepare this list into "
                         f"another --out")
    for stale in out.rglob(f"*{_TMP_MARK}*"):  # left by a killed run
        stale.unlink(missing_ok=True)

    jobs, skipped = [], 0
    rel_out = [_output_rel(rel) for rel, _ in samples]
    for (rel, _), dst_rel in zip(samples, rel_out):
        entry = files.get(dst_rel)
        if entry and entry.get("status") == "ok" and (out / dst_rel).is_file():
            skipped += 1
            continue
        src = Path(rel) if Path(rel).is_absolute() else root / rel
        jobs.append((str(src), str(out / dst_rel), rel, dst_rel))

    failed: dict[str, str] = {}
    encoded = 0
    bar = tqdm(total=len(samples), initial=skipped, unit="video", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    by_dst = {dst: (rel, dst_rel) for _, dst, rel, dst_rel in jobs}

    def record(dst: str, info: dict | None, error: str | None) -> None:
        nonlocal encoded
        rel, dst_rel = by_dst[dst]
        if info is None:
            failed[rel] = error or "unknown error"
            files[dst_rel] = {"source": rel, "status": "failed", "error": failed[rel]}
            bar.write(f"tubevit prepare: cannot read {rel}: {failed[rel]}")
        else:
            encoded += 1
            files[dst_rel] = {"source": rel, "status": "ok", **info}
        _write_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
        bar.update(1)
        if on_file is not None:
            on_file(rel, info, error)
        attempted = encoded + len(failed)
        if attempted >= 10 and len(failed) > max_fail_fraction * attempted:
            raise RuntimeError(_too_many(failed, attempted, max_fail_fraction))

    job_settings = asdict(settings)
    try:
        if workers <= 1:
            for src, dst, _, _ in jobs:
                record(*_encode_job(src, dst, job_settings))
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_encode_job, src, dst, job_settings) for src, dst, _, _ in jobs]
                try:
                    for fut in as_completed(futures):
                        record(*fut.result())
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        bar.close()
    if failed and len(failed) > max_fail_fraction * max(encoded + len(failed), 1):
        raise RuntimeError(_too_many(failed, encoded + len(failed), max_fail_fraction))

    # The new annotation file: the same label indices, paths relative to --out, readable sources only.
    lines = [f"{dst_rel} {label}" for (rel, label), dst_rel in zip(samples, rel_out)
             if files.get(dst_rel, {}).get("status") == "ok"]
    annotation = out / f"{annotations.stem}.txt"
    if annotation.resolve() == annotations.resolve():
        raise ValueError(f"the new annotation file would overwrite {annotations}; pass another --out")
    _write_atomic(annotation, "\n".join(lines) + "\n")
    _write_atomic(classes_path, "\n".join(names) + "\n")
    ok = [files[d] for d in rel_out if files.get(d, {}).get("status") == "ok"]
    return PrepareResult(out, annotation, len(lines), encoded, skipped, failed, time.perf_counter() - t0,
                         sum(e["bytes"] for e in ok), sum(e["seconds"] for e in ok))


def _too_many(failed: dict, attempted: int, fraction: float) -> str:
    first = "; ".join(f"{p}: {r}" for p, r in list(failed.items())[:3])
    return (f"{len(failed)} of {attempted} sources could not be read (more than {fraction:.0%}; first: {first}). "
            f"Check --data-root and the annotation file")


def default_workers() -> int:
    """One encoder per usable core (each runs x264 single-threaded)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)

