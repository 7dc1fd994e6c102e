"""Config resolution (YAML, shortcut flags, --set with type checks) and the optimizer/schedule."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from tubevit.cli import train as train_cli
from tubevit.configs import config_from_dict, load_config, save_config
from tubevit.engine.optim import build_optimizer, lr_factor, param_groups, warmup_steps
from tubevit.factory import create_model


def test_precedence_preset_yaml_flags_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: tubevit_tiny\noptim: {lr: 0.002, weight_decay: 0.1}\nmodel: {drop_path: 0.2}\nsteps: 7\n")
    cfg = load_config(f, overrides={"optim.lr": 0.003}, sets=["optim.weight_decay=1e-3", "model.tubes=two_tube"])
    assert (cfg.model.width, cfg.model.depth) == (192, 12)  # the preset
    assert cfg.model.drop_path == 0.2 and cfg.steps == 7  # the file
    assert cfg.optim.lr == 0.003  # the flag over the file
    assert cfg.optim.weight_decay == 1e-3 and cfg.model.tubes == "two_tube"  # --set over all


def test_round_trip_through_config_yaml(tmp_path):
    tubes = [{"kernel": [1, 8, 8], "stride": [8, 8, 8]}]
    cfg = load_config(overrides={"preset": "tubevit_small", "model.tubes": tubes, "data.image.train_list": "x"})
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("item, message", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'; valid keys under optim: optim.lr, optim.weight_decay"),
    ("nope=1", "valid keys: preset, model, data"),
    ("model.zz=1", "valid keys under model: model.width"),
    ("optim.lr=fast", "optim.lr: expected a number"),
    ("batch_size=1.5", "batch_size: expected an integer"),
    ("data.hflip=3", "data.hflip: expected true or false"),
    ("precision=fp8", "--precision with one of"),
    ("model.tubes=cubes", "unknown tube set 'cubes'"),
    ("optim.lr", "KEY=VALUE"),
    ("optim=3", "optim: expected a mapping"),
])
def test_bad_settings_name_the_fix(item, message):
    with pytest.raises(ValueError) as err:
        load_config(sets=[item])
    assert message in str(err.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="--config"):
        load_config(tmp_path / "none.yaml")


def test_shortcut_flags_map_to_config_keys():
    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    args = p.parse_args(["--model", "tubevit_tiny", "--tubes", "image2d", "--frames", "16", "--size", "64",
                         "--train-list", "t.txt", "--val-list", "v.txt", "--data-root", "d", "--classes", "10",
                         "--image-train-list", "it.txt", "--image-root", "i", "--epochs", "2", "--batch-size", "3",
                         "--lr", "1e-3", "--workers", "1", "--precision", "bf16", "--out", "o", "--seed", "5"])
    cfg = load_config(overrides=train_cli.overrides_from_args(args))
    assert cfg.preset == "tubevit_tiny" and cfg.model.tubes == "image2d"
    assert (cfg.data.frames, cfg.data.size, cfg.data.workers) == (16, 64, 1)
    assert (cfg.data.video.train_list, cfg.data.video.val_list, cfg.data.video.root) == ("t.txt", "v.txt", "d")
    assert cfg.data.video.num_classes == 10 and cfg.data.image.root == "i"
    assert (cfg.epochs, cfg.batch_size, cfg.optim.lr, cfg.precision, cfg.out, cfg.seed) == (2, 3, 1e-3, "bf16", "o", 5)
    args = p.parse_args(["--classes", "names.txt"])
    assert train_cli.overrides_from_args(args)["data.video.classes"] == "names.txt"


def test_param_groups_skip_biases_norms_probe_and_frozen():
    model = create_model("tubevit_tiny", num_classes=3, depth=2)
    model.blocks[0].requires_grad_(False)
    groups = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)] for p in groups[0]["params"]}
    no_decay = {names[id(p)] for p in groups[1]["params"]}
    assert "pool.probe" in no_decay and "norm.weight" in no_decay and "blocks.1.attn.qkv.bias" in no_decay
    assert "blocks.1.attn.qkv.weight" in decay and "heads.default.weight" in decay
    assert not any(n.startswith("blocks.0.") for n in decay | no_decay)
    assert groups[1]["weight_decay"] == 0.0
    opt = build_optimizer(model, load_config().optim)
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in model.parameters())


def test_warmup_then_cosine():
    total, warm = 100, 10
    f = [lr_factor(s, total, warm, 0.1) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10]))  # linear rise
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # cosine fall
    assert f[-1] == pytest.approx(0.1)
    assert f[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 89)))
    cfg = load_config().optim
    assert warmup_steps(cfg, 1000) == 50  # -1: 5% of the run


def test_scheduler_drives_the_optimizer_lr():
    from tubevit.engine.optim import build_scheduler

    model = torch.nn.Linear(2, 2)
    cfg = load_config(sets=["optim.warmup_steps=2", "optim.lr=1.0"]).optim
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, 10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
