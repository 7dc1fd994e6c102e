"""Dataset formats and the video / image datasets.

Annotation formats (paths relative to a data root), detected from the file by
:func:`read_annotations`:

1. List file: ``relative/path.mp4 label_index`` per line (mmaction2 / VideoMAE style; the path may
   contain spaces, the label is the last field). Images use the same format.
2. CSV whose header contains ``path`` and ``label``: the label is an index or a class name.
3. The official Kinetics CSV (``label,youtube_id,time_start,time_end,split``), mapped to
   ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``, either flat under the root or in
   per-class folders ``<root>/<label>/`` (decided from the first sample).
4. Something-Something v2 JSON (``id``, ``template``) with its labels JSON
   (``{"Approaching something with your camera": "0", ...}``); ``[something]`` -> ``something``.
   Videos are ``<id>.webm``, or frame folders ``<id>/`` if the first one is a folder.
5. Images: a class-per-folder tree (ImageFolder layout; pass the directory) or a list file.

Class names come from ``classes`` (a list, a file with one name per line, or a JSON
``{name: index}``/list), else from the format (SSv2 labels file next to the JSON), else sorted
unique names (CSV/Kinetics/ImageFolder); list files use a ``classes.txt`` beside them, else
``"0".."K-1"``. The trainer saves the
mapping with checkpoints.

Every dataset item is the same dict in every split (train or eval):
``{"video": float [V, C, T, H, W] | "image": float [V, C, H, W], "label": int, "index": int,
"view": LongTensor [V], "source": str}``; V = 1 in training, clips * crops in evaluation (paper
§5: 4 x 3). An unreadable sample returns ``None`` after one warning naming the file; the loader's
``collate`` drops it and records the index (see :mod:`tubevit.data.loader`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tubevit.data.decode import (
    DEFAULT_FOLDER_FPS,
    VideoDecodeError,
    VideoReader,
    check_backend,
    decode_frames,
    default_decode_threads,
    probe,  # noqa: F401  (part of this module's namespace: callers and tests patch it)
    read_image,
)
from tubevit.data.sampling import check_short, clip_span, eval_clip_indices, resolve_stride, train_clip_indices
from tubevit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RandAugment,
    crop_resize,
    hflip as _hflip,
    normalize_uint8,
    random_resized_crop_params,
    short_side_size,
    spatial_crops,
    to_planes,
)
from tubevit.defaults import DECODE_SCALE_ABOVE, IMAGE_EXTENSIONS, MAX_FRAME_PIXELS

__all__ = ["IMAGE_EXTENSIONS", "ImageDataset", "VideoDataset", "read_annotations", "read_classes"]

log = logging.getLogger(__name__)

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
Sample = tuple[str, int]

AUGMENT_ON = ("worker", "device")  # where training RandAugment + normalisation run (data.augment_on)

_warned: set[str] = set()  # per process: one warning per unreadable file


def _check_augment_on(augment_on: str, train: bool) -> str:
    if augment_on not in AUGMENT_ON:
        raise ValueError(f"augment_on must be one of {AUGMENT_ON}, got {augment_on!r}")
    return augment_on if train else "worker"  # evaluation has no random augmentation to move


def _warn_once(path, err) -> None:
    key = str(path)
    if key not in _warned:
        _warned.add(key)
        log.warning("skipping unreadable sample %s: %s", key, err)


# ---------------------------------------------------------------------------------------------
# Annotations


# Every annotation and classes file: UTF-8, with the byte-order mark that spreadsheet programs and
# Windows tools write dropped (else it sticks to the first header name and the label column is lost).
ANNOTATION_ENCODING = "utf-8-sig"


def read_classes(classes) -> list[str]:
    """Class names from a list, a text file (one per line) or a JSON file (``{name: index}`` or a
    list)."""
    if isinstance(classes, (list, tuple)):
        return [str(c) for c in classes]
    path = Path(classes)
    if not path.is_file():
        raise FileNotFoundError(
            f"classes file {path} not found; pass an existing file (one class name per line, "
            "or a JSON name->index map) or leave it out to use sorted names"
        )
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding=ANNOTATION_ENCODING))
        if isinstance(data, dict):
            by_index = sorted(data.items(), key=lambda kv: int(kv[1]))
            names = [name for name, _ in by_index]
            if [int(i) for _, i in by_index] != list(range(len(names))):
                raise ValueError(f"{path}: class indices must be 0..{len(names) - 1}")
            return names
        return [str(c) for c in data]
    return [line.strip() for line in path.read_text(encoding=ANNOTATION_ENCODING).splitlines() if line.strip()]


def read_annotations(path, root, classes=None) -> tuple[list[Sample], list[str]]:
    """Parse any supported annotation file into ``(samples, class_names)``.

    ``samples`` are ``(path relative to root, label index)``; ``label`` is -1 for unlabelled
    entries (Kinetics/SSv2 test splits). ``path`` may be a directory (ImageFolder tree; it is
    then also the root if ``root`` is None). Malformed lines raise ``ValueError`` naming the file
    and line; a missing file or root raises ``FileNotFoundError`` saying what to pass instead.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"annotation file {path} not found; pass the list/CSV/JSON file of the split (or an "
            "ImageFolder directory), or make the built-in data with "
            "tubevit.data.synthetic.make_synthetic_data"
        )
    root = Path(root) if root is not None else (path if path.is_dir() else path.parent)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data root {root} not found; pass the directory that the paths in {path} are "
            "relative to"
        )
    names = read_classes(classes) if classes is not None else None
    if path.is_dir():
        samples, found = _read_image_folder(path, root)
    elif path.suffix.lower() == ".json":
        samples, found = _read_ssv2(path, root, names)
    elif path.suffix.lower() == ".csv":
        samples, found = _read_csv(path, root, names)
    else:
        samples, found = _read_list(path)
        if names is None and (path.parent / "classes.txt").is_file():
            names = read_classes(path.parent / "classes.txt")
    if not samples:
        raise ValueError(f"{path}: no samples")
    _report_duplicates(path, samples)
    class_names = names if names is not None else found
    bad = [(i, lab) for i, (_, lab) in enumerate(samples) if lab >= len(class_names)]
    if bad:
        raise ValueError(
            f"{path}: label {bad[0][1]} (sample {bad[0][0]}) is out of range for "
            f"{len(class_names)} classes; pass a classes file"
        )
    return samples, class_names


def _report_duplicates(path, samples) -> None:
    """One warning for all repeated files of an annotation file (each would be trained on or
    scored twice), with the count and the first few."""
    seen, dups = set(), []
    for rel, _ in samples:
        (dups.append(rel) if rel in seen else seen.add(rel))
    if dups:
        shown = ", ".join(sorted(set(dups))[:3])
        log.warning("%s: %d duplicate row(s) (the same file listed again), e.g. %s; they are kept as listed",
                    path, len(dups), shown)


def _read_list(path: Path) -> tuple[list[Sample], list[str]]:
    samples = []
    with path.open(encoding=ANNOTATION_ENCODING) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
                raise ValueError(f"{path}:{n}: expected 'relative/path label_index', got {line!r}")
            samples.append((parts[0], int(parts[1])))
    k = max((lab for _, lab in samples), default=-1) + 1
    return samples, [str(i) for i in range(k)]


def _read_csv(path: Path, root: Path, names) -> tuple[list[Sample], list[str]]:
    with path.open(newline="", encoding=ANNOTATION_ENCODING) as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        rows = list(enumerate(reader, 2))  # line 1 is the header
    if all(c in header for c in KINETICS_COLUMNS[1:]):
        return _read_kinetics(path, root, rows, header, names)
    if "path" not in header or "label" not in header:
        raise ValueError(
            f"{path}:1: CSV header must contain 'path,label' (or the Kinetics columns "
            f"{','.join(KINETICS_COLUMNS)}), got {','.join(header)}"
        )
    raw = []
    for n, row in rows:
        p, lab = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not p or not lab:
            raise ValueError(f"{path}:{n}: empty path or label")
        raw.append((n, p, lab))
    return _labels_to_indices(path, raw, names)


def _labels_to_indices(path, raw, names) -> tuple[list[Sample], list[str]]:
    """Labels may be indices or names; names map through ``names`` or sorted unique names."""
    if all(re.fullmatch(r"-?\d+", lab) for _, _, lab in raw) and names is None:
        k = max(int(lab) for _, _, lab in raw) + 1
        return [(p, int(lab)) for _, p, lab in raw], [str(i) for i in range(k)]
    class_names = names if names is not None else sorted({lab for _, _, lab in raw})
    index = {c: i for i, c in enumerate(class_names)}
    samples = []
    for n, p, lab in raw:
        if lab in index:
            samples.append((p, index[lab]))
        elif lab == "-1" or re.fullmatch(r"\d+", lab) and (names is None or int(lab) < len(class_names)):
            samples.append((p, int(lab)))  # an index into the classes (-1: unlabelled)
        else:
            raise ValueError(_unknown_label(path, n, lab, names))
    return samples, class_names


def _unknown_label(path, line: int, label: str, names) -> str:
    where = "the classes file" if names is not None else "the classes"
    return (f"{path}:{line}: label {label!r} is not in {where} ({len(names or [])} names); add it there, "
            f"fix the row, or leave the classes file out to take the names from the data")


def _read_kinetics(path, root: Path, rows, header, names) -> tuple[list[Sample], list[str]]:
    has_label = "label" in header
    raw = []
    for n, row in rows:
        try:
            yt = row["youtube_id"].strip()
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(f"{path}:{n}: expected youtube_id,time_start,time_end, got {row}") from None
        if not yt:
            raise ValueError(f"{path}:{n}: empty youtube_id")
        label = (row.get("label") or "").strip() if has_label else ""
        raw.append((n, f"{yt}_{start:06d}_{end:06d}.mp4", label))
    labelled = [r for r in raw if r[2]]
    class_names = names if names is not None else sorted({lab for _, _, lab in labelled})
    index = {c: i for i, c in enumerate(class_names)}
    # Layout: flat, or one folder per class (as several Kinetics downloaders write it).
    first = raw[0]
    per_class = bool(first[2]) and not (root / first[1]).exists() and (root / first[2] / first[1]).exists()
    samples = []
    for n, name, label in raw:
        if label and label not in index:
            raise ValueError(_unknown_label(path, n, label, names))
        rel = f"{label}/{name}" if per_class and label else name
        samples.append((rel, index[label] if label else -1))
    return samples, class_names


def ssv2_label(template: str) -> str:
    """``"Putting [something] on [something]"`` -> ``"Putting something on something"``, the form
    used as keys in the official labels file."""
    return template.replace("[", "").replace("]", "")


def _read_ssv2(path: Path, root: Path, names) -> tuple[list[Sample], list[str]]:
    try:
        entries = json.loads(path.read_text(encoding=ANNOTATION_ENCODING))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    if not isinstance(entries, list):
        raise ValueError(f"{path}:1: expected a JSON list of {{'id', 'template'}} entries")
    if names is None:
        for candidate in ("something-something-v2-labels.json", "labels.json"):
            if (path.parent / candidate).is_file():
                names = read_classes(path.parent / candidate)
                break
    raw = []
    for n, e in enumerate(entries):
        if not isinstance(e, dict) or "id" not in e:
            raise ValueError(f"{path}: entry {n} has no 'id': {e!r}")
        raw.append((n, str(e["id"]), ssv2_label(e["template"]) if "template" in e else ""))
    class_names = names if names is not None else sorted({lab for _, _, lab in raw if lab})
    index = {c: i for i, c in enumerate(class_names)}
    as_folders = (root / raw[0][1]).is_dir()
    samples = []
    for n, vid, label in raw:
        if label and label not in index:
            raise ValueError(f"{path}: entry {n} (id {vid}): template {label!r} not in the labels")
        samples.append((vid if as_folders else f"{vid}.webm", index[label] if label else -1))
    return samples, class_names


def _read_image_folder(folder: Path, root: Path) -> tuple[list[Sample], list[str]]:
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir())
    if not class_dirs:
        raise ValueError(f"{folder}: an ImageFolder tree needs one sub-folder per class")
    samples = []
    for i, d in enumerate(class_dirs):
        for f in sorted(d.rglob("*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append((str(f.relative_to(root)) if f.is_relative_to(root) else str(f), i))
    return samples, [d.name for d in class_dirs]


# ---------------------------------------------------------------------------------------------
# Datasets


class _Base(Dataset):
    """Shared bits: sample list, class names, per-item randomness, failure handling."""

    def __init__(self, samples, root, *, name, class_names=None):
        self.samples = [(str(p), int(lab)) for p, lab in samples]
        self.root = Path(root)
        self.name = name
        self.class_names = list(class_names) if class_names is not None else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        return self.get(index)

    def get(self, index: int, generator: torch.Generator | None = None):
        """The item for ``index``; ``generator`` drives all randomness (None: torch's global RNG).
        Returns ``None`` if the file cannot be read."""
        rel, label = self.samples[index]
        path = Path(rel) if Path(rel).is_absolute() else self.root / rel
        try:
            data, view, *extra = self._load(path, generator)
        except VideoDecodeError as err:
            _warn_once(path, err)
            return None
        # "short": a video with fewer frames than one clip spans (its clips loop, pad or fit:
        # data.short); never for images.
        item = {self._key: data, "label": label, "index": index, "view": view, "source": self.name, "short": False}
        for more in extra:  # videos: "short", and with augment_on="device" the drawn ops "augment"
            item.update(more)
        return item

    @classmethod
    def from_annotations(cls, annotations, root, *, classes=None, **kwargs):
        """Read ``annotations`` with :func:`read_annotations` and build the dataset."""
        annotations = Path(annotations)
        if root is None:
            root = annotations if annotations.is_dir() else annotations.parent
        samples, names = read_annotations(annotations, root, classes)
        return cls(samples, root, class_names=names, **kwargs)


class VideoDataset(_Base):
    """Video clips for training (one random clip, V = 1) or evaluation (``clips`` x ``crops``).

    Training: a random temporal crop (``frames`` at ``stride``, or at ``fps`` from the container's
    rate), a random resized crop shared by all frames, a horizontal flip with probability 0.5 if
    ``hflip`` (off for SSv2, where left/right is in the label), RandAugment (paper §5: 2 layers,
    magnitude 10), normalisation; all on the uint8 frames until normalisation (see
    :mod:`tubevit.data.transforms`). ``augment_on="device"`` stops after crop, scale and flip and
    returns the uint8 clip with the drawn RandAugment ops (item key ``augment``) for the trainer to
    finish on its device. Evaluation: the short side resized to ``size``, ``clips``
    uniformly spaced clips, ``crops`` (1 centre or 3 along the long side) cut from each clip. All
    frames of all clips come from one sparse decode pass; views are never decoded twice.

    Paper settings (Table 10): Kinetics ``frames=64, fps=15``, SSv2 ``frames=32, fps=24,
    hflip=False``; evaluation ``clips=4, crops=3`` (tubevit.defaults.EVAL_CLIPS / EVAL_CROPS); resolution 224.
    """

    _key = "video"

    def __init__(
        self,
        samples: Sequence[Sample],
        root,
        *,
        frames: int,
        stride: float = 2,
        fps: float | None = None,
        size: int,
        train: bool,
        clips: int = 1,
        crops: int = 1,
        hflip: bool = True,
        randaugment: RandAugment | None = RandAugment(2, 10),
        scale: tuple[float, float] = (0.25, 1.0),
        short: str = "loop",
        decoder: str = "auto",
        decode_threads: int | None = None,
        max_frame_pixels: int = MAX_FRAME_PIXELS,
        augment_on: str = "worker",
        folder_fps: float = DEFAULT_FOLDER_FPS,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        name: str = "video",
        class_names: Sequence[str] | None = None,
    ):
        super().__init__(samples, root, name=name, class_names=class_names)
        if train and (clips, crops) != (1, 1):
            raise ValueError("training takes one clip and one crop per video (V = 1)")
        self.frames, self.stride, self.fps, self.size, self.train = frames, stride, fps, size, train
        self.clips, self.crops, self.hflip, self.randaugment = clips, crops, hflip, randaugment
        check_short(short)  # at construction, not at the first item
        self.scale, self.short, self.decoder, self.folder_fps = scale, short, decoder, folder_fps
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment_on = _check_augment_on(augment_on, train)
        self._decode_threads = decode_threads
        self.max_frame_pixels = max_frame_pixels
        check_backend(decoder)  # a missing optional decoder: one error now, not one per sample

    @property
    def decode_threads(self) -> int:
        """FFmpeg threads per decode: as given, else :func:`tubevit.data.decode.default_decode_threads`
        (1 inside a loader worker, where the workers are the parallelism)."""
        return self._decode_threads if self._decode_threads is not None else default_decode_threads()

    @property
    def views(self) -> int:
        return 1 if self.train else self.clips * self.crops

    def decode_short_side(self, source_short: int | None = None) -> int | None:
        """Decode-time resize target, or None to decode at the source size. Evaluation resizes
        the short side to ``size`` anyway; in training the smallest random crop spans
        ``sqrt(scale[0])`` of the short side, so decoding at ``size / sqrt(scale[0])`` avoids
        upscaling any crop while skipping the full 720p+ frame. Given the source's short side,
        a source at most :data:`~tubevit.defaults.DECODE_SCALE_ABOVE` times that target is
        decoded as it is: the uint8 crop-and-scale that follows is then the only resize."""
        target = self.size if not self.train else int(math.ceil(self.size / math.sqrt(self.scale[0])))
        # 0: a header without frame dimensions: scale as before rather than hold unknown-size frames
        if source_short and source_short <= DECODE_SCALE_ABOVE * target:
            return None
        return target

    def _load(self, path: Path, generator):
        # One open for the header and the frames (a second open costs a second header parse and
        # stream probe: 2-5 ms per item at 256-340p); closed before the transforms.
        with VideoReader(path, backend=self.decoder, threads=self.decode_threads, folder_fps=self.folder_fps,
                         max_frame_pixels=self.max_frame_pixels) as video:
            info = video.info
            stride = resolve_stride(self.stride, self.fps, info.fps)
            # Shorter than one clip: its clips loop, pad or fit, which the loader counts per run (item "short").
            short = {"short": info.num_frames < clip_span(self.frames, stride)}
            if self.train:
                seed = int(torch.randint(0, 2**62, (), generator=generator))
                idx = train_clip_indices(
                    info.num_frames, self.frames, stride, np.random.default_rng(seed), short=self.short
                )[None]
            else:
                idx = eval_clip_indices(info.num_frames, self.frames, stride, self.clips, short=self.short)
            # One decode for every frame of every clip: [clips, frames] -> unique sorted indices.
            wanted, inverse = np.unique(idx, return_inverse=True)
            short_side = self.decode_short_side(min(info.height, info.width))
            frames = decode_frames(video, wanted, short_side=short_side)  # uint8 [U, H, W, 3]
        inverse = inverse.reshape(idx.shape)
        if self.train:
            data, view, *pending = self._train_view(frames, inverse[0], generator)
            # augment_on="device": uint8 data plus the drawn RandAugment ops [V, L, 2]
            return data, view, {**short, **({"augment": pending[0]} if pending else {})}
        # Evaluation: the short side scaled once for all clips (uint8), then the views cut from it.
        clip_all = to_planes(frames)  # [C, U, H, W] view
        clip_all = crop_resize(clip_all, None, short_side_size(*clip_all.shape[-2:], self.size))
        views = []
        for c in range(idx.shape[0]):
            clip = clip_all[:, inverse[c]]  # [C, T, H, W]
            views.extend(normalize_uint8(v, self.mean, self.std) for v in spatial_crops(clip, self.size, self.crops))
        video = torch.stack(views)  # [V, C, T, H, W]; view v = clip * crops + crop
        return video, torch.arange(len(views), dtype=torch.long), short

    def _train_view(self, frames: np.ndarray, order: np.ndarray, generator):
        """One training view from the decoded frames, cheapest first: the random window is cut
        from the uint8 frames and only it is gathered into clip order and scaled (once, straight
        to ``size``); flip and RandAugment run on the uint8 clip; normalisation converts to float
        last. Random draws come in the order of the float reference path (crop, flip, ops), so a
        seed gives the same crop box, flip and ops (tests/data/test_transforms.py)."""
        top, left, h, w = random_resized_crop_params(*frames.shape[1:3], self.scale, generator=generator)
        window = frames[:, top : top + h, left : left + w][order]  # [T, h, w, 3], only the crop is copied
        clip = crop_resize(to_planes(window), None, (self.size, self.size))  # uint8 [C, T, S, S]
        if self.hflip and float(torch.rand((), generator=generator)) < 0.5:
            clip = _hflip(clip)
        if self.randaugment is not None:
            drawn = self.randaugment.draw(generator)
            if self.augment_on == "device":
                # crop and scale only: 4x less to ship than float; the trainer finishes the batch
                # on its device (tubevit.data.device_augment) with these very ops.
                return clip.unsqueeze(0).contiguous(), torch.zeros(1, dtype=torch.long), drawn[None]
            clip = self.randaugment.apply_drawn(clip, drawn)
        if self.augment_on == "device":
            return clip.unsqueeze(0).contiguous(), torch.zeros(1, dtype=torch.long), torch.zeros(1, 0, 2, dtype=torch.long)
        return normalize_uint8(clip, self.mean, self.std)[None], torch.zeros(1, dtype=torch.long)


class ImageDataset(_Base):
    """Images: training is random resized crop + flip + RandAugment; evaluation resizes the short
    side to ``size`` and takes ``crops`` (1 centre or 3) views. Item key ``"image"``: ``[V, C, H, W]``.
    Images are read with PyAV (FFmpeg decodes PNG/JPEG/BMP/WebP), so no imaging library is needed."""

    _key = "image"

    def __init__(
        self,
        samples: Sequence[Sample],
        root,
        *,
        size: int,
        train: bool,
        crops: int = 1,
        hflip: bool = True,
        randaugment: RandAugment | None = RandAugment(2, 10),
        scale: tuple[float, float] = (0.08, 1.0),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        name: str = "image",
        class_names: Sequence[str] | None = None,
    ):
        super().__init__(samples, root, name=name, class_names=class_names)
        if train and crops != 1:
            raise ValueError("training takes one crop per image (V = 1)")
        self.size, self.train, self.crops, self.hflip = size, train, crops, hflip
        self.randaugment, self.scale = randaugment, scale
        self.mean, self.std = tuple(mean), tuple(std)

    @property
    def views(self) -> int:
        return 1 if self.train else self.crops

    def _load(self, path: Path, generator):
        short = self.size if not self.train else int(math.ceil(self.size / math.sqrt(self.scale[0])))
        image = to_planes(read_image(path, short_side=short))  # uint8 [C, H, W]
        if self.train:
            box = random_resized_crop_params(*image.shape[-2:], self.scale, generator=generator)
            image = crop_resize(image, box, (self.size, self.size))
            if self.hflip and float(torch.rand((), generator=generator)) < 0.5:
                image = _hflip(image)
            if self.randaugment is not None:
                image = self.randaugment(image, generator)
            views = [image]
        else:
            image = crop_resize(image, None, short_side_size(*image.shape[-2:], self.size))
            views = spatial_crops(image, self.size, self.crops)
        out = torch.stack([normalize_uint8(v, self.mean, self.std) for v in views])  # [V, C, H, W]
        return out, torch.arange(len(views), dtype=torch.long)
