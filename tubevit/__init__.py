"""tubevit: TubeViT (Piergiovanni, Kuo, Angelova, "Rethinking Video ViTs: Sparse Video Tubes for Joint
Image and Video Learning", CVPR 2023) in PyTorch.

Axis order everywhere: tensors ``[B, C, T, H, W]``; kernels, strides and offsets ``(t, h, w)``.
"""

from tubevit.factory import create_model, from_pretrained
from tubevit.model import ModelConfig, TubeSpec, TubeViT, get_tube_set, list_models

__version__ = "0.1.0"
__all__ = ["ModelConfig", "Predictor", "TubeSpec", "TubeViT", "create_model", "from_pretrained", "get_tube_set",
           "list_models", "__version__"]


def __getattr__(name):
    # The predictor pulls in the data pipeline (PyAV); import it only when asked for.
    if name == "Predictor":
        from tubevit.evaluate.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'tubevit' has no attribute {name!r}")
