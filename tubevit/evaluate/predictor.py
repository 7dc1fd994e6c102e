"""Prediction as a library: :class:`Predictor` (``tubevit predict`` is a thin layer over it).

``Predictor(model_file)`` takes any whole-model file (training checkpoint, export, save_pretrained
folder) or a TubeViT. ``predictor(inputs)`` accepts file paths, folders (every video and image in
them, recursively, sorted) and tensors, and returns one dict per input with the top-k classes.

* Videos go through every tube with the multi-view protocol of §5 (``clips`` x ``crops`` views,
  aggregated per video, default 4 x 3); images through the 2D tube alone (§3.5) with ``crops``
  (1 or 3) spatial views; both preprocessed with the model file's clip settings and mean/std.
* Each file is decoded once; decoding runs in DataLoader workers (``workers``) while the model
  works on the previous batch.
* A file that cannot be decoded is reported (``ok: False`` with the reason) and counted; the
  others still run.
* Tensors are pixels in [0, 1], ``[C, T, H, W]`` (video) or ``[C, H, W]`` (image), already at the
  model's size: normalised with the file's mean/std and forwarded as one view.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from tubevit.defaults import EVAL_CLIPS, EVAL_CROPS, IMAGE_EXTENSIONS
from tubevit.evaluate.multiview import aggregate_views, check_aggregation
from tubevit.evaluate.session import InferenceSession

__all__ = ["Predictor", "expand_inputs"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


def expand_inputs(inputs) -> list:
    """Paths, folders and tensors -> a flat list of files and tensors (folders expanded, sorted)."""
    if isinstance(inputs, (str, Path, torch.Tensor)):
        inputs = [inputs]
    out = []
    media = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
    for item in inputs:
        if isinstance(item, torch.Tensor):
            out.append(item)
            continue
        p = Path(item)
        if p.is_dir() and not _is_frame_folder(p):
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in media)
            if not found:
                raise ValueError(f"{p} holds no video or image files (looked for {', '.join(media)})")
            out.extend(found)
        else:
            out.append(p)
    if not out:
        raise ValueError("give at least one video or image file, folder or tensor")
    return out


def _is_frame_folder(p: Path) -> bool:
    """A folder holding only image files (no videos, no sub-folders) is one video as frames (the
    SSv2 / Charades dumps the decoders read); any other folder is expanded into its files. For a
    folder of photos, pass the files (``folder/*.jpg``)."""
    entries = list(p.iterdir())
    return bool(entries) and all(f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS for f in entries)


def is_image_file(p) -> bool:
    return isinstance(p, (str, Path)) and Path(p).suffix.lower() in IMAGE_EXTENSIONS


class _Items(Dataset):
    """Item i: decoded views of file i, or the reason it failed (one decode per file)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        from tubevit.data.decode import VideoDecodeError

        t0 = time.perf_counter()
        rel, _ = self.dataset.samples[i]
        try:
            data, view, *_ = self.dataset._load(Path(rel), None)
            return {"i": i, "data": data, "view": view, "decode_s": time.perf_counter() - t0}
        except VideoDecodeError as err:
            return {"i": i, "error": err.reason, "decode_s": time.perf_counter() - t0}
        except (OSError, ValueError, RuntimeError) as err:
            return {"i": i, "error": f"{type(err).__name__}: {err}", "decode_s": time.perf_counter() - t0}


class Predictor:
    def __init__(self, model, *, device="auto", precision: str = "fp32", head: str | None = None, topk: int = 5,
                 clips: int = EVAL_CLIPS, crops: int = EVAL_CROPS, aggregation: str = "mean_logits",
                 frames: int | None = None,
                 size: int | None = None, stride: float | None = None, fps: float | None = None,
                 decoder: str | None = None, batch_size: int = 4, workers: int = 0, view_batch: int | None = None,
                 progress: bool = False):
        check_aggregation(aggregation)
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        if clips < 1 or crops not in (1, 3):
            raise ValueError(f"clips must be >= 1 and crops 1 or 3, got {clips} and {crops}")
        t0 = time.perf_counter()
        self.session = InferenceSession(model, device=device, precision=precision, head=head,
                                        reader="tubevit predict --checkpoint")
        self.load_s = time.perf_counter() - t0
        self.topk, self.clips, self.crops, self.aggregation = topk, clips, crops, aggregation
        self.clip = self.session.clip_settings(frames=frames, size=size, stride=stride, fps=fps, decoder=decoder)
        self.batch_size, self.workers, self.view_batch, self.progress = max(1, batch_size), workers, view_batch, progress

    # ------------------------------------------------------------------ datasets
    def _dataset(self, kind: str, files: Sequence[Path], head: str):
        from tubevit.data import ImageDataset, VideoDataset

        c = self.clip
        samples = [(str(Path(f).absolute()), -1) for f in files]
        if kind == "image":
            return ImageDataset(samples, "/", size=c.size, train=False, crops=self.crops, mean=c.mean, std=c.std,
                                name=head, class_names=self.session.class_names(head))
        return VideoDataset(samples, "/", frames=c.frames, stride=c.stride, fps=c.fps, size=c.size, train=False,
                            clips=self.clips, crops=self.crops, decoder=c.decoder, mean=c.mean, std=c.std,
                            name=head, class_names=self.session.class_names(head), max_frame_pixels=c.max_frame_pixels,
                            short=c.short)

    def _top(self, logits: torch.Tensor, views: torch.Tensor, expected: int, head: str) -> list[dict]:
        agg = aggregate_views([0] * logits.shape[0], views, logits, aggregation=self.aggregation,
                              expected_views=expected, missing="error")
        names = self.session.class_names(head)
        top = agg.probs[0].topk(min(self.topk, len(names)))
        return [{"class": names[j], "index": int(j), "prob": float(p)} for p, j in zip(top.values.tolist(),
                                                                                        top.indices.tolist())]

    # ------------------------------------------------------------------ prediction
    def predict(self, inputs) -> list[dict]:
        """One dict per input (in order): ``file``, ``kind``, ``head``, ``ok``, ``topk`` (class,
        index, prob) or ``error``, ``views``, ``decode_s``, ``model_s``."""
        items = expand_inputs(inputs)
        results: list[dict | None] = [None] * len(items)
        for kind in ("video", "image"):
            idx = [i for i, it in enumerate(items) if not isinstance(it, torch.Tensor) and (is_image_file(it) == (kind == "image"))]
            if idx:
                self._run_files(kind, [items[i] for i in idx], idx, results)
        for i, it in enumerate(items):
            if isinstance(it, torch.Tensor):
                results[i] = self._run_tensor(it)
        return results

    __call__ = predict

    def _run_files(self, kind: str, files: list, where: list[int], results: list) -> None:
        head = self.session.head_for(kind)
        if kind == "image" and self.session.model.tokenizer.image_tube is None:
            for i, f in zip(where, files):
                results[i] = {"file": str(f), "kind": kind, "head": head, "ok": False,
                              "error": "this model's tube set has no 2D tube, so it cannot take images"}
            return
        ds = self._dataset(kind, files, head)
        loader = DataLoader(_Items(ds), batch_size=self.batch_size, num_workers=self.workers, collate_fn=list,
                            shuffle=False, prefetch_factor=2 if self.workers else None)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(files), unit=kind, desc="predict", leave=False)
        try:
            for batch in loader:
                good = [b for b in batch if "error" not in b]
                model_s = 0.0
                if good:
                    views = torch.cat([b["data"] for b in good])
                    t1 = time.perf_counter()
                    logits = self.session.logits(views, head, self.view_batch)
                    if self.session.device.type == "cuda":
                        torch.cuda.synchronize(self.session.device)
                    model_s = time.perf_counter() - t1
                    start = 0
                for b in batch:
                    entry = {"file": str(files[b["i"]]), "kind": kind, "head": head, "decode_s": round(b["decode_s"], 4)}
                    if "error" in b:
                        results[where[b["i"]]] = {**entry, "ok": False, "error": b["error"]}
                        continue
                    n = b["data"].shape[0]
                    lg = logits[start : start + n]
                    start += n
                    results[where[b["i"]]] = {**entry, "ok": True, "topk": self._top(lg, b["view"], ds.views, head),
                                              "views": n, "model_s": round(model_s * n / views.shape[0], 4)}
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()

    def _run_tensor(self, x: torch.Tensor) -> dict:
        from tubevit.data.transforms import normalize

        if x.dim() not in (3, 4):
            raise ValueError(f"a tensor input is [C, T, H, W] (video) or [C, H, W] (image), got shape {list(x.shape)}")
        kind = "image" if x.dim() == 3 else "video"
        head = self.session.head_for(kind)
        x = x.float() / 255.0 if not x.is_floating_point() else x.float()
        view = normalize(x, self.clip.mean, self.clip.std)[None]
        t1 = time.perf_counter()
        logits = self.session.logits(view, head)
        return {"file": None, "kind": kind, "head": head, "ok": True, "views": 1, "decode_s": 0.0,
                "model_s": round(time.perf_counter() - t1, 4), "topk": self._top(logits, torch.zeros(1, dtype=torch.long), 1, head)}
