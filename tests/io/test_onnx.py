"""ONNX export (tubevit.io.onnx) and the position cache under tracing (model/pos_embed.py)."""

from __future__ import annotations

import copy

import pytest
import torch

import tubevit
from tubevit.cli import main
from tubevit.io.onnx import check_onnx

onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra (test extra) is not installed")


def _model():
    torch.manual_seed(0)
    return tubevit.create_model("tubevit_tiny", depth=1, tubes="two_tube", num_classes={"video": 3, "image": 4}).eval()


def test_torch_export_first_leaves_the_eager_model_unchanged():
    model, twin = _model(), None
    twin = copy.deepcopy(model)
    x = torch.randn(2, 3, 8, 32, 32)
    torch.export.export(model, (x,), kwargs={"head": "video"})  # the first call on a cold cache
    with torch.no_grad():
        y = model(x, head="video")
        assert type(y) is torch.Tensor and torch.equal(y, twin(x, head="video"))
        assert all(type(t) is torch.Tensor for t in model.pos_cache._cache.values())


def test_onnx_export_matches_pytorch_at_two_batch_sizes_and_keeps_the_eager_model(tmp_path, capsys):
    from tubevit.io.onnx import export_onnx

    model = tubevit.from_pretrained(_model().save_pretrained(tmp_path / "m"))
    twin = copy.deepcopy(model)
    assert not model.pos_cache._cache  # export is the first call on this model
    # export_onnx itself compares onnxruntime with PyTorch at batch 1 and 3 and raises above 1e-4.
    export_onnx(model, tmp_path / "m.onnx", head="video", frames=8, size=32)
    err = check_onnx(twin, tmp_path / "m.onnx", head="video", shape=(3, 8, 32, 32), batches=(2, 5))
    assert err <= 1e-4
    sess = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].shape[1] == 3 and not isinstance(sess.get_inputs()[0].shape[0], int)
    # The exporter traced this very model: its eager forward is still plain and unchanged.
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        y = model(x, head="video")
        assert type(y) is torch.Tensor and torch.equal(y, twin(x, head="video"))
    # The CLI on a joint model without --head: one line naming the heads, nothing written.
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "x.onnx")]) == 2
    assert "several heads" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()
