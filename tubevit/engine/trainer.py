"""The training loop (paper §3.5 and §5): one shared TubeViT, one head per dataset, each step one
homogeneous batch from one source chosen by the seeded joint schedule (tubevit.data.joint), AdamW
with warm-up + cosine, periodic multi-view validation (tubevit.evaluate), checkpoints and resume.

Reading order: :func:`build_sources` (data, classes) -> :func:`build_model` -> :class:`Trainer`
(``__init__`` does everything that can fail on bad input, so it fails before any step;
``fit`` is the loop).

Reproducibility: the data order and augmentation are pure functions of (seed, epoch, index)
(tubevit.data.loader), the joint schedule of (seed, micro-step), Mixup draws and the global torch
generator (dropout, drop-path) are re-seeded from (seed, step, rank) at every step. So the state to
resume is the model, optimizer, scheduler, scaler and the step; a resumed run continues the
trajectory of the uninterrupted one exactly (on CPU in fp32; GPU kernels may differ in the last
bits).
"""

from __future__ import annotations

import copy
import errno
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from tubevit.configs.load import save_config
from tubevit.configs.schema import SourceConfig, TrainConfig
from tubevit.data.datasets import ImageDataset, VideoDataset
from tubevit.data.joint import JointLoader, source_counts
from tubevit.data.device_augment import finish_batch
from tubevit.data.loader import FailureCounter, build_loader, plan_cpu
from tubevit.data.transforms import MixupCutmix, RandAugment, auto_randaugment
from tubevit.defaults import SHORT_EFFECT
from tubevit.engine import checkpoint as ckpt_io
from tubevit.engine import distributed as D
from tubevit.engine.ema import EMA
from tubevit.engine.trackers import check_trackers
from tubevit.engine.logs import MetricsLog, plot_metrics
from tubevit.engine.optim import build_optimizer, build_scheduler, scaled_lr
from tubevit.engine.step import TrainStep
from tubevit.io import sharded
from tubevit.io.schema import Preprocessing, meta_from_checkpoint
from tubevit.model.config import ModelConfig
from tubevit.model.tubes import check_fits, get_tube_set, resolve_model_tubes
from tubevit.model.tubevit import TubeViT
from tubevit.model.precision import cast_for_inference, compute_dtype, emulation_warning, resolve_precision

__all__ = ["DiskFull", "NonFiniteLoss", "Source", "Trainer", "UnreadableData", "build_model", "build_sources", "train"]


class NonFiniteLoss(RuntimeError):
    """The training loss (or gradient norm) became NaN or infinite."""


class DiskFull(RuntimeError):
    """A checkpoint could not be written: the disk (or quota) is full."""


class UnreadableData(ValueError):
    """Too many training samples could not be read: every sample of a source's first batches, or more
    than ``data.max_fail_fraction`` of those attempted over the run (a wrong data root, a broken copy)."""


# A source whose first batches (this many, or all of them if fewer) held no readable sample stops the run.
FIRST_BATCHES = 2
_ROOT_FLAG = {"video": "--data-root", "image": "--image-root"}


def _sample_path(dataset, index: int) -> str:
    """The file behind ``dataset``'s sample ``index`` as the dataset resolves it (root / relative)."""
    samples, root = getattr(dataset, "samples", None), getattr(dataset, "root", None)
    if samples is None or not 0 <= index < len(samples):
        return f"sample {index}"
    rel = Path(str(samples[index][0]))
    return str(rel if rel.is_absolute() or root is None else Path(root) / rel)


def _unreadable_message(source: "Source", counter: FailureCounter, *, why: str) -> str:
    """One line naming the source, its root, the first unreadable file, and the flags that fix it."""
    root = getattr(source.train, "root", None) or source.cfg.root or "(none)"
    first = _sample_path(source.train, counter.failed_indices[0]) if counter.failed_indices else "?"
    exists = Path(first).exists() if first[:7] != "sample " else True
    return (f"source {source.name!r}: {counter.failed} of {counter.seen} training samples could not be read "
            f"({why}); data root {root}, first unreadable file {first}"
            f"{'' if exists else ' (does not exist)'}. Pass the directory the paths in "
            f"{source.cfg.train_list or 'the annotation file'} are relative to with {_ROOT_FLAG[source.kind]}, "
            f"or allow more failures with --set data.max_fail_fraction=F (now {counter.max_fraction:g})")


@dataclass
class Source:
    """One dataset of the run: its config, kind, datasets and class names."""

    cfg: SourceConfig
    kind: str  # "video" | "image"
    train: Any  # a Dataset returning the item dict of tubevit.data.datasets
    val: Any | None
    classes: list[str]

    @property
    def name(self) -> str:
        return self.cfg.name


# ------------------------------------------------------------------------------------ building


def _class_names(src: SourceConfig, names: Sequence[str]) -> list[str]:
    names = list(names)
    if src.num_classes and src.num_classes < len(names):
        raise ValueError(
            f"source {src.name}: num_classes={src.num_classes} but the data has {len(names)} classes; "
            f"leave num_classes at 0 to take it from the data, or give the matching classes file"
        )
    return names + [str(i) for i in range(len(names), src.num_classes)]


def build_sources(cfg: TrainConfig) -> list[Source]:
    """Read the annotation files of every configured source (``cfg.sources()``: data.sources, or
    the data.video / data.image shorthand); fails on a missing file or root. Each source's clips
    use its own frames / stride / fps / size where it sets them (``cfg.clip``)."""
    d = cfg.data
    fixed_ra = not isinstance(d.randaugment_magnitude, str)  # "auto": per source, from its size
    ra = RandAugment(d.randaugment_layers, d.randaugment_magnitude) if d.randaugment_layers > 0 and fixed_ra else None
    if not d.sources:
        for kind, src in (("video", d.video), ("image", d.image)):
            if src.val_list and not src.train_list:
                raise ValueError(f"{kind} source {src.name!r} has a val_list but no train_list; pass "
                                 f"{'--train-list' if kind == 'video' else '--image-train-list'}")
    flags = {"video": "--data-root", "image": "--image-root"} if not d.sources else {}
    sources = []
    for src in cfg.sources():
        kind = src.kind
        root = src.root or None
        if root is not None and not Path(root).is_dir():
            fix = f" ({flags[kind]})" if kind in flags else f" (data.sources entry {src.name!r}, key root)"
            raise FileNotFoundError(
                f"data root {root} of source {src.name!r} does not exist; pass the directory the "
                f"paths in {src.train_list} are relative to{fix}"
            )
        classes = src.classes or None
        clip = cfg.clip(src)
        # Videos and images differ only in the dataset class and the clip-specific settings.
        if kind == "video":
            dataset_cls, eval_views = VideoDataset, dict(clips=cfg.eval.clips, crops=cfg.eval.crops)
            common = dict(frames=clip["frames"], stride=clip["stride"], fps=clip["fps"] or None, size=clip["size"],
                          decoder=d.decoder, max_frame_pixels=d.max_frame_pixels, short=d.short, name=src.name)
            train_only = dict(augment_on=d.augment_on)
        else:
            dataset_cls, eval_views = ImageDataset, dict(crops=cfg.eval.crops)
            common = dict(size=clip["size"], name=src.name)
            train_only = {}
        train = dataset_cls.from_annotations(src.train_list, root, classes=classes, train=True, hflip=d.hflip,
                                             randaugment=ra, scale=(d.min_scale, 1.0), **common, **train_only)
        if not fixed_ra and d.randaugment_layers > 0:
            magnitude = auto_randaugment(len(train))
            train.randaugment = RandAugment(d.randaugment_layers, magnitude) if magnitude > 0 else None
        names = _class_names(src, train.class_names)
        val = None
        if src.val_list:
            val = dataset_cls.from_annotations(src.val_list, root, classes=names, train=False, **eval_views, **common)
        sources.append(Source(src, kind, train, val, names))
    if not sources:
        raise ValueError("no training data: pass --train-list (videos) and/or --image-train-list (images), "
                         "list datasets in data.sources, or run `tubevit demo` to train on the built-in data")
    return sources


def build_model(cfg: TrainConfig, *, weights: bool = True) -> TubeViT:
    """The model of a run, from ``cfg.model`` (heads already set from the data), built by
    :func:`tubevit.factory.model_for_run`: initialised from ``--init-from`` and, with
    ``--scale-from``, the scaled model of §3.6 built by ``tubevit.convert`` (the trainer only
    receives a model). With scaling ``cfg.model`` becomes the scaled model's config (its tubes
    carry new space-to-depth factors), so that config.yaml and checkpoints rebuild it.
    ``weights=False`` builds the architecture only and reads neither file (resume: the checkpoint
    holds the weights). The optimizer takes only parameters with ``requires_grad``.
    """
    from tubevit.factory import model_for_run

    model = model_for_run(cfg.model, preset=cfg.preset, init_from=cfg.init_from if weights else "",
                          inflate=cfg.init_inflate, scale_from=cfg.scale_from if weights else "")
    if cfg.scale_from and weights:
        cfg.model = ModelConfig.from_dict(model.cfg.to_dict())
    return model


def _resolve_preprocessing(cfg: TrainConfig, model: TubeViT, ckpt: Mapping | None) -> Preprocessing:
    """Input normalisation of the run: ``data.mean/std`` when set, else the resumed checkpoint's,
    else the --init-from file's (``model.preprocessing``), else ImageNet's; with the clip settings.
    ``cfg.data.mean/std`` are set to the result, so config.yaml records what was used."""
    d = cfg.data
    if d.mean:
        mean, std, source = d.mean, d.std, "data.mean"
    else:
        base = (meta_from_checkpoint(ckpt, "the checkpoint").preprocessing if ckpt is not None
                else model.preprocessing or Preprocessing())
        mean, std, source = base.mean, base.std, base.source
    d.mean, d.std = [float(v) for v in mean], [float(v) for v in std]
    return Preprocessing(mean, std, frames=d.frames, size=d.size, stride=d.stride, fps=d.fps or None, short=d.short,
                         source=source)


def _check_inputs(cfg: TrainConfig, sources: Sequence[Source]) -> None:
    specs = get_tube_set(cfg.model.tubes)
    for s in sources:
        clip = cfg.clip(s.cfg)
        size, frames = clip["size"], clip["frames"]
        if s.kind == "video":
            check_fits(specs, (frames, size, size))
        elif not any(t.is_2d for t in specs):
            raise ValueError(f"source {s.name!r} is an image set but tube set {cfg.model.tubes!r} has no 2D "
                             f"(1-frame) tube for images; choose tubes with one, e.g. --tubes paper")
        else:
            check_fits([t for t in specs if t.is_2d][:1], (1, size, size))


# Keys that may differ between a run and the checkpoint it resumes: the run's length and what only
# changes how it is watched or where it runs (not the trajectory). Any other difference is another
# experiment, which resuming by itself would silently mix into the old one.
RESUME_FREE_KEYS = ("steps", "epochs", "out", "progress", "log_every", "ckpt_every", "tensorboard",
                    "device", "compile", "data.workers", "threads", "eval.every", "eval.batch_size")

# Keys a run fills in when left empty (the resumed checkpoint's value is then used).
RESOLVED_FROM_CHECKPOINT = ("data.mean", "data.std")


def _flatten(d: Mapping, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = list(v) if isinstance(v, tuple) else v
    return flat


def config_differences(now: Mapping, saved: Mapping) -> list[str]:
    """``"key: saved -> now"`` for every resolved config key (dotted) that differs between the
    checkpoint's config and this run's, ignoring :data:`RESUME_FREE_KEYS`."""
    a, b = _flatten(saved), _flatten(now)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in RESUME_FREE_KEYS:
            continue
        va, vb = a.get(key, "(absent)"), b.get(key, "(absent)")
        if key in RESOLVED_FROM_CHECKPOINT and vb in ([], None, ""):
            continue  # left empty: the run takes the checkpoint's value
        if _norm(va) != _norm(vb):
            out.append(f"{key}: {_short(va)} -> {_short(vb)}")
    return out


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _norm(x) for k, x in v.items()}
    return v


def _short(v, limit: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OutLock:
    """``OUT/.lock`` (rank 0): one run per output folder. The file holds ``pid host``; a lock whose
    process no longer runs on this host is stale: it is named, removed and taken over."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self.held = False

    def acquire(self, log) -> None:
        import os
        import socket

        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{os.getpid()} {socket.gethostname()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self._owner()
                if host == socket.gethostname() and pid is not None and not ckpt_io._alive(pid):
                    log(f"removing the stale lock {self.path} of process {pid} (no longer running)")
                    self.path.unlink(missing_ok=True)
                    continue
                who = f"process {pid} on {host}" if pid is not None else "an unknown process"
                raise ValueError(
                    f"output folder {self.path.parent} is in use by another run ({who}, lock {self.path}); "
                    f"wait for it to finish, or pass another --out (delete {self.path} only if no run uses "
                    f"the folder)") from None
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            self.held = True
            return

    def _owner(self) -> tuple[int | None, str | None]:
        try:
            pid, host = self.path.read_text().split()[:2]
            return int(pid), host
        except (OSError, ValueError):
            return None, None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, step, rank, 0x7B]).generate_state(1, np.uint64)[0] >> 1)


# ------------------------------------------------------------------------------------ trainer


class Trainer:
    """``Trainer(cfg).fit()``. ``resume``: ``"auto"`` (continue from ``out/last.pt`` if it exists),
    a checkpoint path, or ``None`` (start fresh; an existing ``last.pt`` is overwritten). A resume
    whose resolved config differs from the checkpoint's (apart from :data:`RESUME_FREE_KEYS`) is
    refused naming the keys, unless ``allow_changes`` (the CLI's explicit ``--resume``).
    ``sources`` replaces :func:`build_sources` (tests pass in-memory datasets)."""

    def __init__(self, cfg: TrainConfig, *, resume: str | Path | None = "auto",
                 sources: Sequence[Source] | None = None, allow_changes: bool = False):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.sources = list(sources) if sources is not None else build_sources(cfg)
        if not cfg.scale_from:  # a scaled model's tubes are known once it is built
            # model.tube_scale (auto: the named set from 224 px to data.size) becomes an explicit
            # tube list here, so config.yaml and every checkpoint rebuild exactly these tubes.
            cfg.model = resolve_model_tubes(cfg.model, cfg.data.size)
            _check_inputs(cfg, self.sources)
        cfg.model.num_classes = {s.name: len(s.classes) for s in self.sources}

        ckpt_path = None
        if resume == "auto":
            ckpt_path = ckpt_io.latest_in_run(self.out)
        elif resume:
            ckpt_path = Path(resume)
            if ckpt_path.is_dir() and not sharded.is_sharded_checkpoint(ckpt_path):  # a run folder
                ckpt_path = ckpt_io.latest_in_run(ckpt_path) or ckpt_path
        # A sharded checkpoint (a folder) is read after the model is sharded; its trainer.pt now.
        self.sharded_ckpt = ckpt_path is not None and ckpt_path.is_dir()
        if self.sharded_ckpt:
            self.ckpt = sharded.read_meta(ckpt_path)
        else:
            self.ckpt = ckpt_io.load_checkpoint(ckpt_path) if ckpt_path is not None else None
        if self.ckpt is not None:
            ckpt_io.check_classes(self.ckpt, cfg.model.num_classes, where=str(ckpt_path))
        self.ckpt_path = ckpt_path

        self.info = D.setup(cfg.device)
        # "auto" becomes what this device computes natively; the resolved name is what the run
        # uses, saves in config.yaml and checkpoints, and reports.
        cfg.precision = resolve_precision(cfg.precision, self.info.device)
        if (slow := emulation_warning(cfg.precision, self.info.device)) and self.info.is_main:
            print(slow, file=sys.stderr, flush=True)
        if cfg.precision == "fp16" and self.info.device.type == "cpu":
            raise ValueError("fp16 needs a GPU (loss scaling on CPU fp16 is slow and unsupported here); "
                             "use --precision bf16 on CPU")
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        if self.ckpt is not None and cfg.scale_from:
            # The scaled tubes were derived from the small model, which resuming does not read.
            saved = ckpt_io.model_config_of(self.ckpt)
            cfg.model = cfg.model.replace(tubes=saved.tubes, tokenizer=saved.tokenizer)
        if self.ckpt is not None and isinstance(self.ckpt.get("config"), Mapping):
            diff = config_differences(cfg.to_dict(), self.ckpt["config"])
            if diff and not allow_changes:
                raise ValueError(
                    f"{ckpt_path} was trained with another configuration ({'; '.join(diff)}); "
                    f"pass --resume to continue it anyway with the new settings, --fresh to start over in "
                    f"{self.out}, or another --out for a new run")
            if diff:
                self._log(f"resuming {ckpt_path} with changed settings: {'; '.join(diff)}")
        # Resuming: the checkpoint holds the weights, so --init-from / --scale-from are not read.
        model = build_model(cfg, weights=self.ckpt is None)
        if cfg.scale_from:
            _check_inputs(cfg, self.sources)
        if self.ckpt is not None:
            ckpt_io.check_architecture(self.ckpt, model.cfg, str(ckpt_path))
        if self.ckpt is not None and not self.sharded_ckpt:
            try:
                model.load_state_dict(self.ckpt["model"], strict=True)
            except RuntimeError as err:
                raise ValueError(f"{ckpt_path} does not match the configured model ({str(err).splitlines()[0]}); "
                                 f"resume with the model options it was trained with (its config.yaml), "
                                 f"or start a new run in another --out directory") from None
        self.preprocessing = _resolve_preprocessing(cfg, model, self.ckpt)
        for s in self.sources:  # the datasets normalise with what the model's weights expect
            for ds in (s.train, s.val):
                if ds is not None:
                    ds.mean, ds.std = self.preprocessing.mean, self.preprocessing.std
        self.model = model.to(self.info.device)
        if cfg.fsdp:  # FSDP2 shards the module in place, before compiling it
            self.model = D.shard_model(self.model, self.info, cfg.precision)
        net: nn.Module = self.model
        if cfg.compile:
            net = torch.compile(net)
        multi = len(self.sources) > 1 or any(s.kind == "image" for s in self.sources)
        self.net = net if cfg.fsdp else D.wrap_model(net, self.info, find_unused=multi)

        # Data: one loader per source; the joint schedule picks which one each micro-step reads.
        # Workers and torch threads from the machine's cores (per process on a torchrun host).
        self.workers, threads = plan_cpu(cfg.data.workers, device_type=self.info.device.type,
                                         processes_per_host=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                                         sources=len(self.sources), threads=cfg.threads)
        # A set cfg.threads wins; otherwise a user's (or torchrun's) OMP_NUM_THREADS does.
        if cfg.threads >= 0 or "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(threads)
        self.loaders = {}
        self._val_loaders: dict = {}  # built once, re-iterated at every validation (persistent workers)
        self._short_warned: set[str] = set()  # "train/<source>", "val/<source>": warned once per run
        for k, s in enumerate(self.sources):
            bs = s.cfg.batch_size or cfg.batch_size
            self.loaders[s.name] = build_loader(
                s.train, batch_size=bs, workers=self.workers, shuffle=True, seed=cfg.seed + 1000 * k,
                drop_last=True, distributed=self.info.enabled,
            )
            if len(self.loaders[s.name]) == 0:
                raise ValueError(f"source {s.name!r} has {len(s.train)} samples, fewer than one batch of {bs} "
                                 f"per process; lower --batch-size (or the source's batch_size)")
        # Batches per epoch, taken before the joint loader's resume skip shortens len() of the
        # resumed epoch (reading len() later made `epoch` 1.5 instead of 0.75 after a resume).
        self._epoch_batches = {name: len(loader) for name, loader in self.loaders.items()}
        self._train_sets = {s.name: s.train for s in self.sources}
        self.weights = {s.name: s.cfg.weight for s in self.sources}
        if sum(self.weights.values()) <= 0:
            raise ValueError("every source has weight 0; give at least one a positive data.*.weight")
        self.total_steps = self._total_steps()

        # The lr is quoted for optim.lr_ref_batch clips per step; this run's steps see
        # batch x grad_accum x processes clips of its first source.
        first = self.sources[0]
        self.global_batch = (first.cfg.batch_size or cfg.batch_size) * cfg.grad_accum * self.info.world_size
        self.lr = scaled_lr(cfg.optim, self.global_batch)
        self.optimizer = build_optimizer(self.model, cfg.optim, lr=self.lr)
        # After sharding: under FSDP2 the EMA shadow is sharded like the parameters.
        self.ema = EMA(self.model, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, self.total_steps)
        mix = None
        if cfg.mixup > 0 or cfg.cutmix > 0:
            mix = MixupCutmix(cfg.mixup, cfg.cutmix, cfg.mix_prob, cfg.mix_switch_prob, cfg.label_smoothing)
        self.stepper = TrainStep(
            self.net, self.optimizer, self.scheduler, device=self.info.device,
            num_classes=cfg.model.num_classes, precision=cfg.precision, clip_grad=cfg.optim.clip_grad,
            label_smoothing=cfg.label_smoothing, mix=mix,
        )
        self.step, self.best_top1, self.best_step, self.last_eval = 0, -1.0, None, {}
        if self.ckpt is not None:
            self._restore(self.ckpt)
            self._check_best(self.ckpt)
        self._stop_signal: int | None = None
        self.tracker_names = list(cfg.trackers) + (["tensorboard"] if cfg.tensorboard else [])
        if self.info.is_main:
            check_trackers(self.tracker_names)  # a missing package stops here, before any step

    # -------------------------------------------------------------------------------- helpers
    def _total_steps(self) -> int:
        cfg = self.cfg
        if cfg.steps:
            return cfg.steps
        if not cfg.epochs:
            raise ValueError("set the length of the run: --steps N or --epochs E")
        first = self.sources[0].name
        share = self.weights[first] / sum(self.weights.values())
        if share == 0:
            raise ValueError(f"--epochs counts passes over {first!r}, whose weight is 0; use --steps")
        micro = math.ceil(cfg.epochs * self._epoch_batches[first] / share)
        return max(1, math.ceil(micro / cfg.grad_accum))

    def _log(self, msg: str) -> None:
        if self.info.is_main:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def _restore(self, ck: Mapping) -> None:
        if "optimizer" not in ck and not self.sharded_ckpt:
            raise ValueError(f"{self.ckpt_path} holds weights only (no optimizer state) and cannot be resumed; "
                             f"start a new run in another --out directory")
        if self.sharded_ckpt:  # every rank reads the parts of the shards it now holds (any world size)
            sharded.load_sharded(self.ckpt_path, self.model, self.optimizer, ema=self.ema)
        elif D.is_sharded(self.model):
            raise ValueError(f"{self.ckpt_path} is a single-file checkpoint; an fsdp=true run with several processes "
                             f"resumes from a sharded one (last.dcp). Resume it without fsdp, or in one process")
        else:
            self.optimizer.load_state_dict(ck["optimizer"])
            if self.ema is not None and ck.get("ema"):
                self.ema.load_state_dict({"shadow": ck["ema"]})
        if self.ema is not None and not (ck.get("ema") if not self.sharded_ckpt else ck.get("ema") is True):
            self._log(f"{self.ckpt_path} has no EMA of the weights: the EMA starts from the resumed weights")
        self.scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            self.stepper.scaler.load_state_dict(ck["scaler"])
        ckpt_io.restore_rng(ck["rng"])
        self.step = int(ck["step"])
        self.best_top1 = float(ck.get("best_top1", -1.0))
        self.best_step = ck.get("best_step")
        self.last_eval = dict(ck.get("metrics", {}))

    def _epoch(self, counts: Mapping[str, int]) -> float:
        first = self.sources[0].name
        return counts[first] / self._epoch_batches[first]

    def _meta(self, epoch: float, counts: Mapping[str, int]) -> dict:
        """Everything of a checkpoint but the model and optimizer tensors."""
        return {
            "format": ckpt_io.FORMAT,
            "model_config": self.cfg.model.to_dict(),
            "config": self.cfg.to_dict(),
            "class_names": {s.name: list(s.classes) for s in self.sources},
            "preprocessing": self.preprocessing.to_dict(),
            "step": self.step,
            "epoch": epoch,
            # Informational: the schedule is a pure function of (seed, micro-step), so resuming
            # recomputes it; this records where each source stood.
            "data_state": {"seed": self.cfg.seed, "micro_step": self.step * self.cfg.grad_accum,
                           "weights": dict(self.weights), "batches": dict(counts)},
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.stepper.scaler.state_dict() if self.stepper.scaler.is_enabled() else {},
            "rng": ckpt_io.capture_rng(),
            "best_top1": self.best_top1,
            "best_step": self.best_step,
            "metrics": self.last_eval,
        }

    def _checkpoint_state(self, epoch: float, counts: Mapping[str, int]) -> dict | None:
        """The single-file checkpoint dict on rank 0 (None elsewhere)."""
        if not self.info.is_main:
            return None
        state = {**self._meta(epoch, counts), "model": D.full_state_dict(self.net),
                 "optimizer": self.optimizer.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.full()
        return state

    def _params_finite(self) -> bool:
        """Every rank's parameters (its shard under FSDP) are finite; one host sync per checkpoint.
        Checked whatever the clipping: with ``optim.clip_grad=0`` a NaN gradient reaches the weights
        without a non-finite gradient norm being recorded."""
        # The local shard of a DTensor: a reduction over the DTensor itself would be a collective
        # (and DTensor has no all() across shards); the flag is all-reduced below.
        flags = [torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all() for p in self.model.parameters()]
        ok = bool(torch.stack(flags).all()) if flags else True
        if self.info.enabled:
            ok = not D.all_reduce_flag(not ok, self.info)
        return ok

    def save(self, epoch: float, counts: Mapping[str, int], *, best: bool = False) -> None:
        """fsdp=true: a sharded checkpoint folder (last.dcp, best.dcp), every rank writing its shard;
        otherwise one file (last.pt, best.pt) written by rank 0. The best one is written first:
        the last one records the best step, so a kill between the two writes leaves a best
        checkpoint at least as new as the last one says."""
        if not self._params_finite():
            raise self._non_finite(f"the model's parameters became non-finite by step {self.step}; "
                                   f"nothing was saved")
        if best:
            self.best_step = self.step
        if self.cfg.fsdp:
            meta = self._meta(epoch, counts)
            for name in ("best", "last") if best else ("last",):
                sharded.save_sharded(self.out / f"{name}{sharded.SUFFIX}", self.model, self.optimizer, meta,
                                     ema=self.ema)
            return
        state = self._checkpoint_state(epoch, counts)
        if state is not None:
            for name in (("best.pt",) if best else ()) + ("last.pt",):
                try:
                    ckpt_io.save_checkpoint(state, self.out / name)
                except OSError as err:
                    if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    import shutil

                    free = shutil.disk_usage(self.out).free / 2**20
                    raise DiskFull(
                        f"could not write {self.out / name} at step {self.step}: no space left on the device "
                        f"({free:.0f} MiB free there); the previous {name} is intact. Free space and run the same "
                        f"command to continue, or pass another --out") from None
        D.barrier(self.info)

    def _non_finite(self, what: str) -> NonFiniteLoss:
        """One message for a non-finite loss or weights: what happened, the checkpoint kept, the fix."""
        last = self._last_path()
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        return NonFiniteLoss(f"{what} and {kept}. Lower the learning rate (--lr), keep gradient clipping on "
                             f"(--set optim.clip_grad=1.0), or use --precision fp32/bf16 instead of fp16")

    def _last_path(self) -> Path:
        return self.out / ("last.dcp" if self.cfg.fsdp else "last.pt")

    def _check_best(self, ck: Mapping) -> None:
        """On resume, make ``best.pt`` agree with what ``last.pt`` records (a kill can leave it
        missing or older): rewrite it from the checkpoint when that is the best one, else forget
        the recorded best so that the next validation writes a fresh ``best.pt``. Rank 0 decides
        (it owns the files) and every rank follows, so all agree on when ``save(best=True)`` runs."""
        want = ck.get("best_step")
        if want is None or self.sharded_ckpt:  # sharded: both folders are complete-or-absent
            return
        forget = False
        if self.info.is_main:
            path = self.out / "best.pt"
            have = None
            if path.is_file():
                try:
                    have = int(torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("step", -1))
                except Exception:  # unreadable: treat as missing
                    have = None
            was = "missing" if have is None else f"at step {have}"
            if have is not None and have >= want:
                pass  # as recorded, or written just before a kill that kept last.pt from recording it
            elif want == int(ck["step"]):
                path.parent.mkdir(parents=True, exist_ok=True)
                ckpt_io.save_checkpoint(dict(ck), path)
                self._log(f"best.pt was {was}; rewrote it from {self.ckpt_path} (the best checkpoint, step {want})")
            else:
                forget = True
                self._log(f"best.pt is {was} but {self.ckpt_path} records the best at step {want}; "
                          f"the next validation writes a new best.pt")
        if self.info.enabled:
            forget = D.all_reduce_flag(forget, self.info)
        if forget:
            self.best_top1, self.best_step = -1.0, None

    def summary(self, start: int | None = None) -> list[str]:
        """The start-of-training lines: the model (preset, tubes, tokens per clip, parameters
        trainable/frozen), each source, the output folder, and whether the run is new or resumed."""
        from tubevit.model.tubes import tube_token_count

        cfg, m = self.cfg, self.model
        size, frames = cfg.data.size, cfg.data.frames
        specs = get_tube_set(m.cfg.tubes)
        tokens = sum(tube_token_count(t, (frames, size, size)) for t in specs)
        trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in m.parameters() if not p.requires_grad)
        tubes = m.cfg.tubes if isinstance(m.cfg.tubes, str) else f"{len(specs)} custom tubes"
        lines = [f"model {cfg.preset}: tubes {tubes}, {tokens} tokens per {frames}x{size}x{size} clip, "
                 f"{trainable / 1e6:.2f}M trainable / {frozen / 1e6:.2f}M frozen parameters"]
        if cfg.init_from or cfg.scale_from:
            what = " + ".join(f"{k} {v}" for k, v in (("--scale-from", cfg.scale_from), ("--init-from", cfg.init_from)) if v)
            lines.append(f"weights: {'from the checkpoint (not re-read)' if self.ckpt is not None else 'loaded from'} {what}")
        for s in self.sources:
            bs = s.cfg.batch_size or cfg.batch_size
            lines.append(f"source {s.name}: {s.kind}s, {len(s.classes)} classes, {len(s.train)} training samples"
                         f"{f', {len(s.val)} validation' if s.val is not None else ''}, batch {bs}, head {s.name!r}, "
                         f"weight {self.weights[s.name]:g}")
        step = self.step if start is None else start
        run = (f"resumed from {self.ckpt_path} at step {step} of {self.total_steps}" if self.ckpt is not None
               else f"new run of {self.total_steps} steps")
        lines.append(f"output {self.out}: {run}")
        return lines

    def _on_signal(self, signum, frame) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum
            self._log(f"\n{signal.Signals(signum).name} received: finishing this step, writing a checkpoint")
        else:  # a second signal: stop now
            raise KeyboardInterrupt

    # -------------------------------------------------------------------------------- validation
    def _eval_net(self) -> nn.Module:
        """The network validation runs: under bf16/fp16 one low-precision copy per validation, since
        under autocast alone every forward re-casts every fp32 weight (the training weights must
        stay fp32, so they are not cast in place)."""
        if self.cfg.fsdp:
            return self.net
        if compute_dtype(self.cfg.precision) != torch.float32:
            return cast_for_inference(copy.deepcopy(self.model), self.cfg.precision)
        return self.model

    def validate(self, epoch: float) -> dict:
        from tubevit.evaluate.evaluator import TooManyFailures, evaluate

        cfg = self.cfg
        eval_net = self._eval_net()
        results = {}
        for s in self.sources:
            if s.val is None:
                continue
            loader = self._val_loaders.get(s.name)
            if loader is None:  # one loader (and one set of workers) for every validation of the run
                loader = self._val_loaders[s.name] = build_loader(
                    s.val, batch_size=cfg.eval.batch_size or cfg.batch_size, workers=self.workers,
                    shuffle=False, seed=cfg.seed, distributed=self.info.enabled)
            # The training-side flag in a failure message, not eval's --max-fail-fraction.
            kw = dict(head=s.name, aggregation=cfg.eval.aggregation, precision=cfg.precision, device=self.info.device,
                      max_fail_fraction=cfg.data.max_fail_fraction, expected_views=s.val.views,
                      fail_flag=f"--set data.max_fail_fraction=F, now {cfg.data.max_fail_fraction:g}")
            try:
                r = evaluate(eval_net, loader, **kw)
                if self.ema is not None:  # the averaged weights on the same views
                    with self.ema.applied():
                        e = evaluate(self._eval_net(), loader, **kw)
                    r = {**r, "ema_top1": e["top1"], "ema_top5": e["top5"]}
            except TooManyFailures as err:
                raise UnreadableData(f"validation of source {s.name!r} at step {self.step}: {err}") from None
            results[s.name] = r
            if r.get("short_videos"):
                self._warn_short(f"val/{s.name}", r["short_videos"], r["videos"] + r["skipped"], s)
        if results:
            first = next(iter(results.values()))
            record = {"step": self.step, "epoch": round(epoch, 4), "val_top1": first["top1"], "val_top5": first["top5"]}
            for name, r in results.items():
                record.update({f"val/{name}/top1": r["top1"], f"val/{name}/top5": r["top5"],
                               f"val/{name}/videos": r["videos"], f"val/{name}/skipped": r["skipped"]})
                record.update({f"val/{name}/{k}": r[k] for k in ("ema_top1", "ema_top5") if k in r})
            self.last_eval = record
            if self.info.is_main:
                self.metrics.write(record)
                self._log(f"step {self.step}: " + "  ".join(
                    f"{n} top1 {r['top1']:.3f} top5 {r['top5']:.3f} ({r['videos']} x {r['views']} views, "
                    f"{r['skipped']} skipped)" for n, r in results.items()))
        return results

    def _warn_short(self, key: str, count: int, total: int, source) -> None:
        """One line per run and source (not one per video): videos shorter than one clip are
        not errors (their clips loop, pad or fit, data.short), but a data set of many such videos
        trains on clips it does not hold at the run's rate."""
        if key in self._short_warned or not count:
            return
        self._short_warned.add(key)
        if self.info.is_main:
            clip = self.cfg.clip(source.cfg)
            rate = f"{clip['fps']:g} fps" if clip["fps"] else f"stride {clip['stride']:g}"
            split = "training" if key.startswith("train/") else "validation"
            self._log(f"warning: source {source.name!r}: {count} of {total} {split} videos are shorter than one "
                      f"clip ({clip['frames']} frames at {rate}); {SHORT_EFFECT[self.cfg.data.short]}")

    # -------------------------------------------------------------------------------- the loop
    def fit(self, stop_after: int | None = None) -> dict:
        """Train to ``total_steps`` (or stop after step ``stop_after``, writing a checkpoint), holding
        the output folder's lock."""
        info = self.info
        start = self.step
        self._lock = OutLock(self.out)
        if info.is_main:
            self._lock.acquire(self._log)  # before anything in the folder is touched
        try:
            return self._fit(start, stop_after)
        finally:
            self._lock.release()

    def _fit(self, start: int, stop_after: int | None) -> dict:
        from tqdm import tqdm

        cfg, info = self.cfg, self.info
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            # Each a full checkpoint (or config) that a killed write left behind.
            for tmp in ckpt_io.remove_stale_temporaries(self.out):
                self._log(f"removed {tmp}, left by an interrupted write")
            save_config(cfg, self.out / "config.yaml")
            self.metrics = MetricsLog(self.out, resume_step=start if self.ckpt is not None else None,
                                      trackers=self.tracker_names, config=cfg.to_dict())
            for line in self.summary(start):
                self._log(line)
        accum = cfg.grad_accum
        names = [s.name for s in self.sources]
        kinds = {s.name: s.kind for s in self.sources}
        counts = dict(zip(names, source_counts(cfg.seed, start * accum, [self.weights[n] for n in names])))
        # Counted here (the counter's own threshold is applied below with a message naming the flags).
        failures = {s.name: FailureCounter(1.0, name=s.name) for s in self.sources}
        self.failures = failures
        by_name = {s.name: s for s in self.sources}
        first_batches = {n: min(FIRST_BATCHES, len(self.loaders[n])) for n in names}
        fetched = {n: 0 for n in names}
        short = {n: set() for n in names}  # distinct short videos drawn on this rank (warned once)

        def warn_short(name: str) -> None:  # every rank at the same step: the count is summed
            if f"train/{name}" not in self._short_warned:
                self._warn_short(f"train/{name}", D.all_reduce_sum(len(short[name]), info),
                                 len(by_name[name].train), by_name[name])
                self._short_warned.add(f"train/{name}")

        def check_unreadable(name: str, final: bool = False) -> None:
            c, limit = failures[name], cfg.data.max_fail_fraction
            if not c.failed:
                return
            if c.failed == c.seen and fetched[name] >= first_batches[name]:
                raise UnreadableData(_unreadable_message(by_name[name], c, why=f"every sample of the first "
                                                         f"{fetched[name]} batches"))
            if (final or c.seen >= c.min_samples) and c.fraction > limit:
                raise UnreadableData(_unreadable_message(by_name[name], c, why=f"{c.fraction:.1%} > "
                                                         f"data.max_fail_fraction={limit:g}"))
        batches = iter(JointLoader(self.loaders, self.weights, cfg.seed, start_step=start * accum))

        handlers = {}
        if threading.current_thread() is threading.main_thread():  # signal handlers live there
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        dev = info.device
        zero = torch.zeros((), device=dev)
        loss_sum = {n: zero.clone() for n in names}
        loss_n = {n: 0 for n in names}
        bad = zero.clone()  # non-finite gradient norms since the last check
        seen, t_log, t_start = 0, time.perf_counter(), time.perf_counter()
        end = self.total_steps if stop_after is None else min(stop_after, self.total_steps)
        bar = tqdm(total=self.total_steps, initial=start, unit="step", dynamic_ncols=True,
                   disable=not (info.is_main and cfg.progress), file=sys.stderr)
        interrupted, saved_at = None, start
        stop_vote = D.StopVote(info)  # a signal stops every rank at one step, within two steps

        def check_finite(step: int) -> dict:
            """Sync the pending losses to the host (the only sync point) and stop on NaN/inf."""
            used = [n for n in names if loss_n[n]]
            vals = torch.stack([loss_sum[n] for n in used] + [bad]).tolist() if used else [bad.item()]
            means = {n: v / loss_n[n] for n, v in zip(used, vals)}
            if not all(math.isfinite(v) for v in vals[:-1]) or vals[-1] > 0:
                what = ", ".join(f"{n} {v:g}" for n, v in means.items())
                raise self._non_finite(f"the loss became non-finite before step {step} (mean losses since the "
                                       f"last log: {what}); training stopped")
            return means

        try:
            while self.step < end:
                torch.manual_seed(_step_seed(cfg.seed, self.step, info.rank))  # dropout, drop-path
                gen = torch.Generator().manual_seed(_step_seed(cfg.seed, self.step, info.rank) + 1)  # mixup
                micros = []
                try:
                    for _ in range(accum):
                        _, name, batch = next(batches)
                        counts[name] += 1
                        fetched[name] += 1
                        failures[name].update(batch)
                        short[name].update(batch.get("short") or ())
                        check_unreadable(name)
                        if batch["num_samples"] == 0:
                            continue
                        x = batch[kinds[name]].to(dev, non_blocking=True)
                        x = finish_batch(x, batch, self._train_sets[name])  # augment_on=device
                        micros.append((name, x, batch["label"].to(dev, non_blocking=True)))
                        seen += batch["num_samples"]
                except Exception:
                    if self._stop_signal is not None:  # workers killed by the same Ctrl-C
                        interrupted = self._stop_signal
                        break
                    raise
                # A step whose every batch was unreadable trains on nothing: no loss is logged for it;
                # the schedule still advances so the run keeps its length.
                losses = self.stepper(micros, gen)  # with no micro-batch: no gradient, no update
                if self.ema is not None and micros:
                    self.ema.update()
                for (name, _, _), loss in zip(micros, losses):
                    loss_sum[name] += loss
                    loss_n[name] += 1
                if self.stepper.last_grad_norm is not None and cfg.precision != "fp16":
                    bad += ~torch.isfinite(self.stepper.last_grad_norm)
                self.step += 1
                bar.update(1)
                for n in names:  # after a first pass over a source, its count of short videos
                    if fetched[n] >= len(self.loaders[n]):
                        warn_short(n)
                epoch = self._epoch(counts)

                at_end = self.step == end
                if self.step % cfg.log_every == 0 or at_end:
                    means = check_finite(self.step)
                    now = time.perf_counter()
                    rate = seen * info.world_size / max(now - t_log, 1e-9)
                    lr = max(g["lr"] for g in self.optimizer.param_groups)  # the peak (layer decay)
                    if info.is_main:
                        record = {"step": self.step, "epoch": round(epoch, 4)}
                        if means:  # no loss for a stretch that trained on nothing
                            record["loss"] = sum(v * loss_n[n] for n, v in means.items()) / sum(loss_n.values())
                        record.update({"lr": lr, "clips_per_s": round(rate, 2),
                                       "skipped": sum(c.failed for c in failures.values())})
                        record.update({f"loss/{n}": v for n, v in means.items()})
                        self.metrics.write(record)
                        bar.set_postfix({**{f"loss_{n}": f"{v:.3f}" for n, v in means.items()},
                                         "lr": f"{lr:.2e}", "clips/s": f"{rate:.1f}"}, refresh=False)
                    for n in names:
                        loss_sum[n].zero_()
                        loss_n[n] = 0
                    seen, t_log = 0, now
                # Every step (a Python bool and, distributed, a CPU message: no device sync), so a
                # signal checkpoint is written within seconds, long before torchrun's SIGKILL.
                if stop_vote(self._stop_signal is not None):
                    interrupted = self._stop_signal or signal.SIGTERM
                improved = False
                if (cfg.eval.every and self.step % cfg.eval.every == 0) or (self.step == self.total_steps):
                    results = self.validate(epoch)
                    if results:
                        top1 = next(iter(results.values()))["top1"]
                        improved = math.isfinite(top1) and top1 > self.best_top1
                        if improved:
                            self.best_top1 = top1
                ckpt_due = cfg.ckpt_every and self.step % cfg.ckpt_every == 0
                if ckpt_due or at_end or improved or interrupted:
                    check_finite(self.step)
                    self.save(epoch, counts, best=improved)
                    saved_at = self.step
                if interrupted:
                    break
        finally:
            bar.close()
            stop_vote.close()
            for sig, h in handlers.items():
                signal.signal(sig, h)
        if not interrupted:
            for n in names:  # the run-wide threshold, also for runs shorter than its minimum count
                check_unreadable(n, final=True)
                warn_short(n)  # a run shorter than one pass: what it drew
        if interrupted and saved_at != self.step:
            # The loop broke while fetching data (a worker died with the signal): keep what was done.
            check_finite(self.step)
            self.save(self._epoch(counts), counts)
        if info.is_main:
            self.metrics.close()
            if self.step >= self.total_steps or interrupted:
                plot_metrics(self.out)
        result = {
            "step": self.step, "total_steps": self.total_steps, "epoch": self._epoch(counts),
            "best_top1": self.best_top1, "val": self.last_eval, "out": str(self.out),
            "seconds": round(time.perf_counter() - t_start, 2),
            "interrupted": signal.Signals(interrupted).name if interrupted else None,
            "skipped": {n: c.failed for n, c in failures.items()},
        }
        if interrupted:
            self._log(f"stopped by {result['interrupted']} at step {self.step}; checkpoint {self._last_path()} "
                      f"(the same command continues the run)")
        return result


def train(cfg: TrainConfig, *, resume: str | Path | None = "auto", sources=None, allow_changes: bool = False) -> dict:
    """Build and run a :class:`Trainer`; tears the process group down afterwards."""
    trainer = Trainer(cfg, resume=resume, sources=sources, allow_changes=allow_changes)
    try:
        return trainer.fit()
    finally:
        D.teardown(trainer.info)
