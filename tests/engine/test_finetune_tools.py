"""Fine-tuning tools: layer-wise lr decay groups and the EMA of the weights (closed form, in the
trainer: validated, checkpointed single-file and sharded, resumed exactly, exported on request)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from tests.helpers.train import tiny_config, tiny_trainer

from tubevit.configs import load_config
from tubevit.engine.ema import EMA
from tubevit.engine.export import export_checkpoint, load_exported
from tubevit.engine.optim import build_optimizer, build_scheduler, layer_id
from tubevit.model.tubevit import TubeViT


def test_layer_decay_gives_each_depth_its_rate():
    cfg = tiny_config("unused", **{"optim.layer_decay": 0.5, "optim.lr": 1e-3, "model.num_classes": {"v": 3}})
    model = TubeViT(cfg.model)  # depth 2: tubes 0.5**3, block 0 0.5**2, block 1 0.5, heads 1
    opt = build_optimizer(model, cfg.optim)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    expected = {"tokenizer": 1e-3 / 8, "blocks.0": 1e-3 / 4, "blocks.1": 1e-3 / 2, "norm": 1e-3, "pool": 1e-3,
                "heads": 1e-3}
    seen = set()
    for name, p in model.named_parameters():
        key = next(k for k in expected if name.startswith(k))
        assert lr_of[id(p)] == pytest.approx(expected[key]), name
        seen.add(key)
    assert seen == set(expected)
    # No decay for biases / norms / the probe in every layer; the schedule scales all alike.
    for g in opt.param_groups:
        assert (g["weight_decay"] == 0) == g["name"].startswith("no_decay")
    sched = build_scheduler(opt, cfg.optim, 10)
    opt.step()
    sched.step()
    ratios = {g["lr"] / g["lr_scale"] for g in opt.param_groups}
    assert max(ratios) == pytest.approx(min(ratios))
    assert layer_id("module.blocks.3.mlp.fc1.weight", 12) == 4 and layer_id("gate.alpha", 12, gate_layer=5) == 6
    # Off: the two usual groups.
    assert [g["name"] for g in build_optimizer(model, load_config(overrides={}).optim).param_groups] == ["decay", "no_decay"]
    with pytest.raises(ValueError, match="layer_decay"):
        load_config(overrides={"optim.layer_decay": 0})


def test_ema_is_the_closed_form_average_and_applied_restores_the_weights():
    lin = nn.Linear(2, 1)
    lin.bias.requires_grad_(False)  # frozen parameters are not averaged
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema = EMA(lin, 0.9)
    assert set(ema.shadow) == {"weight"}
    for v in (2.0, 4.0):
        with torch.no_grad():
            lin.weight.fill_(v)
        ema.update()
    expected = 0.9 * (0.9 * 1.0 + 0.1 * 2.0) + 0.1 * 4.0  # 1.48
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), expected))
    with ema.applied():
        assert torch.allclose(lin.weight, torch.full((1, 2), expected))
    assert torch.equal(lin.weight, torch.full((1, 2), 4.0))


@pytest.mark.parametrize("fsdp", [False, True], ids=["single_file", "sharded"])
def test_ema_in_training_is_validated_checkpointed_resumed_and_exported(tmp_path, fsdp):
    sets = {"optim.ema_decay": 0.6, "fsdp": fsdp, "ckpt_every": 0}
    straight = tiny_trainer(tmp_path / "a", 4, joint=False, **sets)
    res = straight.fit()
    assert "val/video/ema_top1" in res["val"]
    records = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert any("val/video/ema_top1" in r for r in records)
    shadow = straight.ema.full()
    # The shadow is a real average: not the trained weights.
    assert any(not torch.equal(v, straight.model.state_dict()[k]) for k, v in shadow.items())

    first = tiny_trainer(tmp_path / "b", 4, joint=False, **sets)
    first.fit(stop_after=2)
    second = tiny_trainer(tmp_path / "b", 4, joint=False, **sets)
    assert second.step == 2
    second.fit()
    for k, v in second.ema.full().items():
        assert torch.equal(v, shadow[k]), k  # the EMA resumes exactly too

    model, _ = load_exported(export_checkpoint(tmp_path / "a", tmp_path / "ema.safetensors", ema=True)[0])
    for k, v in shadow.items():
        assert torch.equal(model.state_dict()[k], v), k
    plain, _ = load_exported(export_checkpoint(tmp_path / "a", tmp_path / "w.safetensors")[0])
    assert torch.equal(plain.state_dict()["heads.video.weight"], straight.model.state_dict()["heads.video.weight"])


def test_export_ema_of_a_run_without_one_is_a_clear_error(tmp_path):
    tiny_trainer(tmp_path, 2, joint=False, ckpt_every=0).fit()
    with pytest.raises(ValueError, match="no EMA"):
        export_checkpoint(tmp_path, tmp_path / "x.safetensors", ema=True)
