"""`tubevit train --scale-from SMALL --init-from LARGE_IMAGE_VIT --freeze-until S` (§3.6) through the
trainer: the scaled model trains, its config (tubes with new space-to-depth factors) is what the
run writes, the checkpoint rebuilds it exactly, and resuming reads neither initialisation file."""

from __future__ import annotations


import pytest
import torch
import yaml
from safetensors.torch import save_file

from tests.helpers import train as helpers
from tubevit.configs import load_config
from tubevit.engine.checkpoint import model_from_checkpoint
from tubevit.engine.trainer import Trainer
from tubevit.model.config import ModelConfig
from tubevit.model.tubevit import TubeViT

SMALL = {"model.width": 96, "model.num_heads": 2, "model.mlp_dim": 192, "model.depth": 2}
LARGE = {"model.width": 192, "model.num_heads": 3, "model.mlp_dim": 384, "model.depth": 3}
S = 2  # blocks 0, 1 frozen; the gate and block 2 train


def _trainer(out, steps, **sets):
    cfg = helpers.tiny_config(out, steps, **sets)
    return Trainer(cfg, resume="auto", sources=helpers.tiny_sources(cfg, joint=False, val=False))


@pytest.fixture(scope="module")
def files(tmp_path_factory, vit):
    """A trained small TubeViT checkpoint (1 step) and a wider fake image ViT (timm naming)."""
    root = tmp_path_factory.mktemp("scale")
    _trainer(root / "small", 1, **SMALL).fit()
    sd = vit.timm_vit(7, width=192, depth=3, mlp=384, patch=8, grid=2)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(root / "vit_l.safetensors"))
    return root / "small" / "last.pt", root / "vit_l.safetensors", sd


def _scaled_sets(small, large):
    return {**LARGE, "scale_from": str(small), "init_from": str(large), "model.freeze_until": S, "model.gate_layer": S}


def test_train_scale_from_writes_the_scaled_config_and_resumes_without_the_files(tmp_path, files):
    small_ckpt, large_file, large_sd = files
    small, _ = model_from_checkpoint(small_ckpt)
    # Copies, so that this test can delete them before resuming.
    small_copy, large_copy = tmp_path / "small.pt", tmp_path / "vit_l.safetensors"
    small_copy.write_bytes(small_ckpt.read_bytes())
    large_copy.write_bytes(large_file.read_bytes())
    sets = _scaled_sets(small_copy, large_copy)

    t = _trainer(tmp_path / "run", 3, **sets)
    m = t.model
    # The run's model config is the scaled model's: 3d tube widened by 2 on t, then the image tube.
    assert t.cfg.model.tokenizer == "s2d" and t.cfg.model.width == 192
    assert [tuple(d["s2d"]) for d in t.cfg.model.tubes] == [(2, 1, 1), (1, 1, 1)]
    assert t.cfg.model.to_dict() == m.cfg.to_dict()
    assert m.cfg.freeze_until == S and m.cfg.gate_layer == S and m.cfg.num_classes == {"video": 3}
    # Video tube from the small model (96 channels x 2 neighbours = 192), image tube and blocks from the image ViT.
    assert torch.equal(m.tokenizer.tubes[0].weight, small.tokenizer.tubes[1].weight)
    assert torch.equal(m.tokenizer.tubes[1].weight[:, :, 0], large_sd["patch_embed.proj.weight"])
    assert torch.equal(m.blocks[0].attn.qkv.weight, large_sd["blocks.0.attn.qkv.weight"])
    held = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in m.parameters() if p.requires_grad} and id(m.gate.alpha) in held

    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    assert t.fit(stop_after=2)["step"] == 2
    for n, p in m.named_parameters():
        if n.startswith(("tokenizer.", "blocks.0.", "blocks.1.")):
            assert torch.equal(p, before[n]) and p.grad is None, n
    assert not torch.equal(m.blocks[2].mlp.fc1.weight, before["blocks.2.mlp.fc1.weight"])

    # config.yaml and the checkpoint carry the scaled model; both rebuild it exactly.
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["model"] == t.cfg.model.to_dict() and written["scale_from"] == str(small_copy)
    rebuilt, ckpt = model_from_checkpoint(tmp_path / "run" / "last.pt")  # strict load
    assert ckpt["model_config"] == t.cfg.model.to_dict()
    assert [s.s2d for s in rebuilt.tokenizer.specs] == [(2, 1, 1), (1, 1, 1)]
    from_yaml = TubeViT(load_config(tmp_path / "run" / "config.yaml").model)
    from_yaml.load_state_dict(ckpt["model"], strict=True)
    clip, image = torch.randn(2, 3, helpers.FRAMES, helpers.SIZE, helpers.SIZE), torch.randn(2, 3, 16, 16)
    m.eval()
    with torch.no_grad():
        for x in (clip, image):
            assert torch.equal(rebuilt(x), m(x)) and torch.equal(from_yaml.eval()(x), m(x))

    # Resume (the same command, auto) with both initialisation files gone: it continues from the
    # checkpoint, on the same trajectory as an uninterrupted run.
    small_copy.unlink()
    large_copy.unlink()
    resumed = _trainer(tmp_path / "run", 3, **sets)
    assert resumed.step == 2 and resumed.cfg.model.to_dict() == ckpt["model_config"]
    assert resumed.fit()["step"] == 3
    straight = _trainer(tmp_path / "straight", 3, **_scaled_sets(small_ckpt, large_file))
    straight.fit()
    for (n, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), n


def test_resume_does_not_read_init_from(tmp_path, vit):
    """--init-from (no scaling): the resumed run never opens the file, so a moved file is no error."""
    sd = vit.timm_vit(3, width=24, depth=2, mlp=48, patch=8, grid=2)
    src = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(src))
    _trainer(tmp_path / "run", 3, init_from=str(src)).fit(stop_after=2)
    src.unlink()
    resumed = _trainer(tmp_path / "run", 3, init_from=str(src))
    assert resumed.step == 2 and resumed.fit()["step"] == 3
    # A fresh start still needs it.
    with pytest.raises(FileNotFoundError):
        _trainer(tmp_path / "fresh", 3, init_from=str(src))


def test_scale_from_errors(tmp_path, files):
    small_ckpt, large_file, _ = files
    with pytest.raises(ValueError, match="--init-from LARGE_IMAGE_VIT"):
        helpers.tiny_config(tmp_path, 2, **LARGE, scale_from=str(small_ckpt))
    with pytest.raises(ValueError, match="gated shortcut sits at the first trained block"):
        helpers.tiny_config(tmp_path, 2, **{**_scaled_sets(small_ckpt, large_file), "model.gate_layer": 1})
    # A model no wider than the small one is no scale-up.
    with pytest.raises(ValueError, match="width 96 is not below the model's width 96"):
        _trainer(tmp_path / "a", 2, **{**_scaled_sets(small_ckpt, large_file), **SMALL, "model.freeze_until": 1,
                                        "model.gate_layer": 1})
    # The image ViT must be of the model's size (here 192 wide, the model 384).
    with pytest.raises(ValueError, match="--scale-from .* width 192 != model width 384"):
        _trainer(tmp_path / "b", 2, **{**_scaled_sets(small_ckpt, large_file), "model.width": 384})
    # --scale-from must be a TubeViT with its config, not an image ViT.
    with pytest.raises(ValueError, match="image-ViT checkpoint .* not a TubeViT; --scale-from needs"):
        _trainer(tmp_path / "c", 2, **{**_scaled_sets(large_file, large_file)})


def test_train_cli_scale_from_flag():
    from tubevit.cli import build_parser
    from tubevit.cli.train import overrides_from_args

    args = build_parser().parse_args(["train", "--model", "tubevit_huge", "--scale-from", "runs/b/best.pt",
                                      "--init-from", "ViT-H_14.npz", "--freeze-until", "26"])
    o = overrides_from_args(args)
    assert o["scale_from"] == "runs/b/best.pt" and o["init_from"] == "ViT-H_14.npz"
    assert o["model.freeze_until"] == 26 == o["model.gate_layer"] and o["preset"] == "tubevit_huge"
    assert ModelConfig.from_dict(load_config(overrides=o).model.to_dict()).width == 1280
