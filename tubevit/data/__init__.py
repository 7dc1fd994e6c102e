"""Data side of TubeViT: decoding, clip sampling, transforms, dataset formats, loaders, the joint
image + video schedule and the built-in synthetic data. See docs/DATA.md.

Axis order: clips ``[C, T, H, W]`` (batches ``[B, C, T, H, W]``), images ``[C, H, W]``
(batches ``[B, C, H, W]``); decoders return ``uint8 [T, H, W, 3]``.
"""

from tubevit.data.datasets import ImageDataset, VideoDataset, read_annotations, read_classes
from tubevit.data.decode import BackendNotInstalled, VideoDecodeError, VideoInfo, decode_frames, probe
from tubevit.data.joint import JointLoader, source_for_step
from tubevit.data.loader import FailureCounter, ShardedSampler, build_loader, collate
from tubevit.data.synthetic import make_synthetic_data
from tubevit.data.transforms import MixupCutmix, RandAugment

__all__ = [
    "BackendNotInstalled",
    "FailureCounter",
    "ImageDataset",
    "JointLoader",
    "MixupCutmix",
    "RandAugment",
    "ShardedSampler",
    "VideoDataset",
    "VideoDecodeError",
    "VideoInfo",
    "build_loader",
    "collate",
    "decode_frames",
    "make_synthetic_data",
    "probe",
    "read_annotations",
    "read_classes",
    "source_for_step",
]
