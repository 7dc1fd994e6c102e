"""Pretrained weights: image-ViT import (timm, Hugging Face, Google .npz), FlexiViT kernel resizing
and temporal inflation, and image-to-video scaling with the gated shortcut (paper §3.6, Eq. 8).
See docs/PRETRAINED.md."""

from tubevit.convert.formats import ConversionError, detect_format, read_file, to_canonical
from tubevit.convert.image_vit import Conversion, convert_image_vit, load_converted, load_pretrained
from tubevit.convert.kernels import group_average, inflate, interpolated_base, pi_resize, resize_patch, tube_from_patch

__all__ = [
    "ConversionError", "detect_format", "read_file", "to_canonical", "Conversion", "convert_image_vit",
    "load_converted", "load_pretrained", "group_average", "inflate", "interpolated_base", "pi_resize", "resize_patch",
    "tube_from_patch",
]
