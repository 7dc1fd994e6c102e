"""Checkpoints that can be trusted: no non-finite weights saved whatever the clipping; best.pt and
last.pt stay consistent across kills (best.pt written first; verified and repaired on resume)."""

from __future__ import annotations

import pytest
import torch
from tests.helpers.train import tiny_trainer

from tubevit.engine import checkpoint as ckpt_io
from tubevit.engine.trainer import NonFiniteLoss


def test_non_finite_weights_are_never_checkpointed_even_without_clipping(tmp_path):
    t = tiny_trainer(tmp_path, 8, joint=False, **{"optim.clip_grad": 0.0, "eval.every": 0})
    t.fit(stop_after=4)
    good = torch.load(tmp_path / "last.pt", weights_only=True)
    with torch.no_grad():
        next(t.model.parameters()).view(-1)[0] = float("inf")  # a NaN/inf update the loss did not show
    with pytest.raises(NonFiniteLoss, match="parameters became non-finite.*last good checkpoint"):
        t.save(1.0, {"video": 4})
    kept = torch.load(tmp_path / "last.pt", weights_only=True)
    assert kept["step"] == good["step"] == 4
    assert all(torch.isfinite(v).all() for v in kept["model"].values())


def test_best_is_written_before_last_records_it(tmp_path, monkeypatch):
    order = []
    real = ckpt_io.save_checkpoint

    def spy(obj, path):
        order.append((path.name, obj["step"], obj.get("best_step")))
        return real(obj, path)

    monkeypatch.setattr(ckpt_io, "save_checkpoint", spy)
    tiny_trainer(tmp_path, 4, joint=False, **{"eval.every": 2, "ckpt_every": 0}).fit()
    bests = [i for i, (n, _, _) in enumerate(order) if n == "best.pt"]
    assert bests, "validation should have improved at least once"
    for i in bests:  # each best.pt is followed by the last.pt of the same step that records it
        name, step, best_step = order[i + 1]
        assert name == "last.pt" and step == order[i][1] == best_step


def test_resume_repairs_a_missing_best(tmp_path):
    tiny_trainer(tmp_path, 4, joint=False, **{"eval.every": 0, "ckpt_every": 0}).fit(stop_after=4)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["best_step"] == 4  # the run-end validation was the first, hence the best
    (tmp_path / "best.pt").unlink()  # a kill during the pair's write, or a lost file
    t = tiny_trainer(tmp_path, 8, joint=False, **{"eval.every": 0, "ckpt_every": 0})
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["step"] == 4 and t.best_step == 4
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])


def test_resume_forgets_a_best_it_cannot_find(tmp_path):
    t = tiny_trainer(tmp_path, 8, joint=False, **{"eval.every": 2, "ckpt_every": 2})
    t.fit(stop_after=6)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    last["best_step"] = 2  # the best was an earlier step than last.pt's own
    ckpt_io.atomic_save(last, tmp_path / "last.pt")
    (tmp_path / "best.pt").unlink()
    t = tiny_trainer(tmp_path, 8, joint=False, **{"eval.every": 2, "ckpt_every": 2})
    assert t.best_top1 == -1.0 and t.best_step is None  # the next validation writes best.pt
    t.fit()
    assert (tmp_path / "best.pt").is_file()
