"""One inference session shared by ``tubevit eval`` and ``tubevit predict`` (and
:class:`tubevit.Predictor`): load any whole-model file once, put it on the device, cast it for the
precision once, pick the head, and know the clip settings and normalisation the weights expect.

Clip settings, most specific first: what the caller passes, the model file's ``preprocessing``
(written by training and export), the file's training config (older files; read as a typed
``TrainConfig`` with ``config_from_dict``), and the ``DataConfig`` defaults.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from tubevit.devices import resolve_device
from tubevit.defaults import MAX_FRAME_PIXELS, SHORT_POLICIES
from tubevit.evaluate.evaluator import autocast_context
from tubevit.evaluate.loading import LoadedModel, load_model
from tubevit.model.precision import cast_for_inference, emulation_warning, resolve_precision

__all__ = ["ClipSettings", "InferenceSession"]


@dataclass
class ClipSettings:
    frames: int
    size: int
    stride: float
    fps: float | None
    decoder: str
    mean: tuple
    std: tuple
    # The training run's data.max_frame_pixels (tubevit.defaults.MAX_FRAME_PIXELS if it had none).
    max_frame_pixels: int = MAX_FRAME_PIXELS
    # The training run's data.short (the file's preprocessing, else its config): what a clip does on
    # a video shorter than its span.
    short: str = SHORT_POLICIES[0]


class InferenceSession:
    """``InferenceSession(path_or_model, device=, precision=, head=)``; ``reader`` names the call in
    errors. ``head=None``: the only head, else the video head (``data.video.name``) for videos and
    the image head (``data.image.name``) for images (see :meth:`head_for`)."""

    def __init__(self, source, *, device="auto", precision: str = "fp32", head: str | None = None,
                 reader: str = "tubevit eval/predict --checkpoint"):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)  # "auto" -> what the device runs natively
        precision = self.precision
        if slow := emulation_warning(precision, self.device):
            print(slow, file=sys.stderr, flush=True)
        if isinstance(source, torch.nn.Module):
            from tubevit.io import Preprocessing

            names = source.class_names or {h: [str(i) for i in range(k)] for h, k in source.cfg.num_classes.items()}
            self.loaded = LoadedModel(source.to(self.device).eval(), {}, dict(names), Path("<model>"), {},
                                      source.preprocessing or Preprocessing())
        else:
            self.loaded = load_model(source, device=self.device, reader=reader)
        # bf16/fp16: cast the weights once (autocast alone re-casts every weight on every forward).
        cast_for_inference(self.loaded.model, precision)
        self.train_config = self._typed_config(self.loaded.config)
        self.requested_head = head
        if head is not None:
            self.loaded.head(head)  # unknown head: one line now, before any decoding

    @staticmethod
    def _typed_config(raw):
        if not raw:
            return None
        from tubevit.configs.load import config_from_dict

        try:
            return config_from_dict(raw)
        except (ValueError, TypeError, KeyError):
            return None  # a config of another version: the file's preprocessing still applies

    @property
    def model(self):
        return self.loaded.model

    @property
    def path(self) -> Path:
        return self.loaded.path

    def head_for(self, kind: str = "video") -> str:
        """The head for ``kind`` ("video" | "image") inputs (see the class doc)."""
        cfg = self.train_config
        prefer = (cfg.data.image.name if kind == "image" else cfg.data.video.name) if cfg else kind
        if self.requested_head is None and kind == "image" and prefer not in self.model.head_names:
            prefer = "imagenet" if "imagenet" in self.model.head_names else prefer
        return self.loaded.head(self.requested_head, prefer=prefer)

    def class_names(self, head: str) -> list[str]:
        return self.loaded.classes[head]

    def clip_settings(self, *, frames=None, size=None, stride=None, fps=None, decoder=None) -> ClipSettings:
        from tubevit.configs.schema import DataConfig

        p = self.loaded.preprocessing
        d = self.train_config.data if self.train_config else DataConfig()
        return ClipSettings(
            frames=int(frames or p.frames or d.frames), size=int(size or p.size or d.size),
            stride=float(stride or p.stride or d.stride),
            fps=(float(fps) if fps is not None else (p.fps or d.fps or 0.0)) or None,
            decoder=decoder or d.decoder, mean=tuple(p.mean), std=tuple(p.std),
            max_frame_pixels=int(d.max_frame_pixels), short=str(p.short or d.short),
        )

    def logits(self, views: torch.Tensor, head: str, view_batch: int | None = None) -> torch.Tensor:
        """``views [V, C, (T,) H, W]`` -> float logits ``[V, classes]`` on the CPU, at most
        ``view_batch`` views per forward."""
        outs = []
        step = view_batch or max(1, views.shape[0])
        with torch.inference_mode():
            for s in range(0, views.shape[0], step):
                x = views[s : s + step].to(self.device, non_blocking=True)
                with autocast_context(self.device, self.precision):
                    outs.append(self.model(x, head=head).float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0, len(self.class_names(head)))
