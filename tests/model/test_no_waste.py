"""No waste in the forward: position tables built once per shape and device, interpolated kernels
resized once per forward."""

import torch

import tubevit
from tubevit.model import pos_embed, tokenizer


def test_position_table_built_once_per_shape(monkeypatch):
    calls = []
    real = pos_embed.sincos_from_centres
    monkeypatch.setattr(pos_embed, "sincos_from_centres", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = tubevit.create_model("tubevit_tiny", num_classes=5, depth=1)
    clip, image = torch.randn(1, 3, 32, 64, 64), torch.randn(1, 3, 64, 64)
    for _ in range(3):
        model(clip)
    assert len(calls) == 1
    with torch.no_grad():
        model.eval()(clip)  # eval and no_grad reuse it
    assert len(calls) == 1
    model(image)
    model(torch.randn(1, 3, 40, 64, 64))
    assert len(calls) == 3  # one per new input shape
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(clip)
        model(clip)
    assert len(calls) == 4  # and one per dtype


def test_interpolated_kernels_resized_once_per_forward(monkeypatch):
    calls = []
    real = tokenizer.resize_kernel
    monkeypatch.setattr(tokenizer, "resize_kernel", lambda k, size: calls.append(tuple(size)) or real(k, size))
    model = tubevit.create_model("tubevit_tiny", num_classes=5, depth=1, tokenizer="interpolated")
    specs = model.tokenizer.specs
    model(torch.randn(2, 3, 32, 64, 64))
    assert sorted(calls) == sorted(s.kernel for s in specs)  # one resize per tube, for the whole batch
    calls.clear()
    model(torch.randn(2, 3, 64, 64))
    assert calls == [specs[model.tokenizer.image_tube].kernel]  # images resize only the 2D tube's
