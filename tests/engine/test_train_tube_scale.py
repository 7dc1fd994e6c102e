"""model.tube_scale is resolved into an explicit tube list that config.yaml and checkpoints keep."""

from __future__ import annotations

import yaml

from tests.helpers.train import TUBES, tiny_trainer

from tubevit.configs import load_config
from tubevit.engine.checkpoint import model_from_checkpoint
from tubevit.model.tubes import get_tube_set


def test_scaled_tubes_round_trip_through_config_and_checkpoint(tmp_path):
    tr = tiny_trainer(tmp_path / "run", steps=2, joint=True, **{"model.tube_scale": 0.5})
    tr.fit()
    scaled = get_tube_set(tr.cfg.model.tubes)
    assert scaled[0] == get_tube_set(TUBES)[0]               # the 2D tube is kept exactly
    assert scaled[1].stride == (4, 4, 4) and scaled[1].kernel == (4, 8, 8)  # stride 8 -> 4, kernel kept
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]
    assert saved["tube_scale"] == 1.0 and saved["tubes"] == [s.to_dict() for s in scaled]
    # The saved config rebuilds the same tubes even at another frame size (no second scaling) ...
    again = load_config(tmp_path / "run" / "config.yaml", overrides={"data.size": 32})
    assert get_tube_set(again.model.tubes) == scaled
    # ... and so does the checkpoint, strictly.
    model, _ = model_from_checkpoint(tmp_path / "run" / "last.pt")
    assert tuple(model.tokenizer.specs) == scaled
    assert model.token_layout((8, 16, 16)).counts == (2 * 2 * 2, 2 * 3 * 3)
