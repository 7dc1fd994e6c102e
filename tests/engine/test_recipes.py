"""Named recipes (--recipe, --list-recipes), the lr scaling rule and the automatic augmentation."""

from __future__ import annotations

import math

import pytest

from tests.helpers.train import tiny_trainer
from tubevit.cli import main
from tubevit.configs import load_config
from tubevit.configs.recipes import list_recipes, recipe_header
from tubevit.data.transforms import auto_randaugment
from tubevit.engine.optim import scaled_lr
from tubevit.model.tubevit import TubeViT

NAMES = ["charades", "demo", "in1k_k400", "k400", "small", "ssv2"]


def test_every_recipe_has_a_header_resolves_and_builds():
    assert list_recipes() == NAMES
    for name in NAMES:
        h = recipe_header(name)
        assert {"recipe", "command", "budget", "expect"} <= set(h), name
        assert "--recipe" in h["command"] or name == "demo"
        cfg = load_config(recipe=name, overrides={"preset": "tubevit_tiny"})
        TubeViT(cfg.model.replace(num_classes={"x": 3}))  # the model it describes builds


def test_recipe_values_and_resolution_order(tmp_path):
    k = load_config(recipe="k400")
    assert (k.data.frames, k.data.fps, k.optim.lr, k.optim.weight_decay, k.optim.lr_ref_batch) == (64, 15, 5e-5, 1e-3, 256)
    # per-size optimiser settings (Table 10): L/H get 1e-5 / 1e-5
    kl = load_config(recipe="k400", overrides={"preset": "tubevit_large"})
    assert (kl.optim.lr, kl.optim.weight_decay, kl.preset) == (1e-5, 1e-5, "tubevit_large")
    s = load_config(recipe="ssv2")
    assert (s.mixup, s.label_smoothing, s.model.dropout, s.data.hflip, s.data.frames, s.data.fps) == \
        (0.3, 0.3, 0.3, False, 32, 24)
    # recipe <- --config <- flags <- --set, including over the recipe's per-size table
    f = tmp_path / "c.yaml"
    f.write_text("optim: {lr: 0.002}\ndata: {frames: 16}\n")
    c = load_config(f, recipe="k400", overrides={"preset": "tubevit_large", "data.frames": 8},
                    sets=["data.size=112"])
    assert (c.optim.lr, c.optim.weight_decay, c.data.frames, c.data.size, c.data.fps) == (0.002, 1e-5, 8, 112, 15)
    j = load_config(recipe="in1k_k400")
    assert (j.data.video.name, j.data.image.name, j.data.image.batch_size) == ("k400", "imagenet", 64)


def test_unknown_recipe_lists_the_valid_ones(capsys):
    with pytest.raises(ValueError, match=r"unknown recipe 'kinetics'.*'k400'"):
        load_config(recipe="kinetics")
    assert main(["train", "--recipe", "kinetics", "--steps", "1"]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_list_recipes_cli(capsys):
    assert main(["train", "--list-recipes"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert f"\n{name}: " in "\n" + out
    assert out.count("budget:") == len(NAMES)


def test_lr_scales_with_the_global_batch():
    o = load_config().optim
    assert (o.lr_ref_batch, o.lr_scaling) == (16, "sqrt")
    assert scaled_lr(o, 16) == o.lr
    assert math.isclose(scaled_lr(o, 64), 2 * o.lr)  # sqrt(64 / 16)
    lin = load_config(sets=["optim.lr_scaling=linear"]).optim
    assert math.isclose(scaled_lr(lin, 64), 4 * lin.lr)
    assert scaled_lr(load_config(sets=["optim.lr_ref_batch=0"]).optim, 64) == o.lr


def test_trainer_uses_the_scaled_lr(tmp_path):
    tr = tiny_trainer(tmp_path / "r", steps=2, joint=False, **{"optim.lr_ref_batch": 16, "grad_accum": 4})
    assert tr.global_batch == 16 and tr.lr == pytest.approx(1e-3)  # batch 4 x accumulation 4
    tr = tiny_trainer(tmp_path / "r2", steps=2, joint=False, **{"optim.lr_ref_batch": 64})
    assert tr.lr == pytest.approx(1e-3 * 0.25) and tr.optimizer.param_groups[0]["initial_lr"] == pytest.approx(2.5e-4)


def test_randaugment_scales_with_the_data():
    assert auto_randaugment(180) == 0 and auto_randaugment(9_999) == 0
    assert auto_randaugment(100_000) == 10 and auto_randaugment(240_000) == 10
    assert 4.9 < auto_randaugment(31_623) < 5.1  # log-linear between 10k and 100k
    with pytest.raises(ValueError, match="randaugment_magnitude"):
        load_config(sets=["data.randaugment_magnitude=strong"])
