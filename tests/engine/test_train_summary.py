"""The start-of-training summary says what is being trained, on what, where, new or resumed."""

from __future__ import annotations

from tests.helpers.train import tiny_trainer


def test_summary_names_model_tokens_params_sources_output_and_resume(tmp_path, capsys):
    t = tiny_trainer(tmp_path, 2, **{"eval.every": 0, "model.freeze_until": 1})
    lines = t.summary()
    trainable = sum(p.numel() for p in t.model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in t.model.parameters() if not p.requires_grad)
    assert frozen > 0
    # two tubes on 8x16x16: the 1x8x8 tube at stride (4, 8, 8) gives 2*2*2, the 4x8x8 one 2*2*2
    assert lines[0].startswith("model tubevit_tiny: tubes 2 custom tubes, 16 tokens per 8x16x16 clip, ")
    assert f"{trainable / 1e6:.2f}M trainable / {frozen / 1e6:.2f}M frozen" in lines[0]
    assert "source video: videos, 3 classes, 24 training samples, 6 validation, batch 4, head 'video'" in lines[1]
    assert "source image: images, 2 classes, 20 training samples" in lines[2]
    assert lines[-1] == f"output {tmp_path}: new run of 2 steps"
    t.fit()
    assert lines[0] in capsys.readouterr().err
    t = tiny_trainer(tmp_path, 4, **{"eval.every": 0, "model.freeze_until": 1})
    assert t.summary()[-1] == f"output {tmp_path}: resumed from {tmp_path / 'last.pt'} at step 2 of 4"
