"""tubevit: TubeViT (Piergiovanni, Kuo, Angelova, "Rethinking Video ViTs: Sparse Video Tubes for Joint
Image and Video Learning", CVPR 2023) in PyTorch.

Axis order everywhere: tensors ``[B, C, T, H, W]``; kernels, strides and offsets ``(t, h, w)``.
"""

from tubevit.factory import create_model, from_pretrained
from tubevit.model import ModelConfig, TubeSpec, TubeViT, get_tube_set, list_models

__version__ = "0.1.0"
__all__ = ["ModelConfig", "TubeSpec", "TubeViT", "create_model", "from_pretrained", "get_tube_set", "list_models",
           "__version__"]
