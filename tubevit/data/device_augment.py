"""Training augmentation finished on the accelerator (``data.augment_on=device``).

With ``augment_on="worker"`` (the default) loader workers return normalised float clips. With
``"device"`` they stop after the cheap part, the random window cut from the uint8 frames, scaled
to the crop size and flipped, and hand over ``uint8 [B, C, T, H, W]`` (4x less host memory and
host-to-device traffic than float) together with the RandAugment ops they drew (``augment``,
``LongTensor [B, L, 2]`` of op index and sign). :func:`finish_batch` then applies those very ops
and the normalisation on the device, so both settings give the same clips for the same seed (up to
float arithmetic on another device; tests/data/test_device_augment.py), and a GPU run is no longer
bound by CPU RandAugment (paper §5: RandAugment 2 layers, magnitude 10, one draw per clip).
Mixup/CutMix already run on the device, in :class:`tubevit.engine.step.TrainStep`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from tubevit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, RandAugment, normalize_uint8

__all__ = ["finish_batch", "finish_clips"]


def finish_clips(
    x: torch.Tensor,
    ops: torch.Tensor | None,
    *,
    randaugment: RandAugment | None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """``uint8 [B, C, (T,) H, W]`` on any device + per-sample ops ``[B, L, 2]`` -> normalised
    float. Each sample gets its own ops (one draw per clip, as in the worker)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"finish_clips takes the uint8 clips of augment_on='device', got {x.dtype}")
    out = []
    for b in range(x.shape[0]):
        clip = x[b]
        if randaugment is not None and ops is not None and ops.shape[1] > 0:
            clip = randaugment.apply_drawn(clip, ops[b])
        out.append(normalize_uint8(clip, mean, std))
    return torch.stack(out) if out else x.float()


def finish_batch(x: torch.Tensor, batch: dict, dataset) -> torch.Tensor:
    """The trainer's hook: ``x`` is ``batch[key]`` already on the device. Float batches (worker
    augmentation, images) pass through; uint8 ones are finished with ``dataset``'s RandAugment,
    mean and std."""
    if x.dtype != torch.uint8:
        return x
    return finish_clips(x, batch.get("augment"), randaugment=getattr(dataset, "randaugment", None),
                        mean=getattr(dataset, "mean", IMAGENET_MEAN), std=getattr(dataset, "std", IMAGENET_STD))
