"""`tubevit train --init-from PATH --freeze-until S`: the trainer starts from converted image-ViT
weights, trains only blocks[S:], the gate and the readout, and its optimizer holds only those."""

from __future__ import annotations


import torch
from safetensors.torch import save_file

from tests.helpers import train as helpers


def test_trainer_init_from_and_freeze_until(tmp_path, vit):
    from tubevit.engine.trainer import Trainer

    sd = vit.timm_vit(7, width=24, depth=2, mlp=48, patch=8, grid=2)
    src = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(src))
    cfg = helpers.tiny_config(tmp_path / "run", steps=3, init_from=str(src), **{"model.freeze_until": 1,
                                                                                "model.gate_layer": 1})
    trainer = Trainer(cfg, resume=None, sources=helpers.tiny_sources(cfg, joint=False, val=False))
    model = trainer.model
    assert torch.equal(model.blocks[0].attn.qkv.weight, sd["blocks.0.attn.qkv.weight"])
    assert torch.equal(model.tokenizer.tubes[0].weight[:, :, 0], sd["patch_embed.proj.weight"])
    held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.parameters() if p.requires_grad}
    assert id(model.gate.alpha) in held and id(model.blocks[0].mlp.fc1.weight) not in held
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.fit()
    for n, p in model.named_parameters():
        if n.startswith(("tokenizer.", "blocks.0.")):
            assert torch.equal(p, before[n]) and p.grad is None, n
    assert not torch.equal(model.blocks[1].mlp.fc1.weight, before["blocks.1.mlp.fc1.weight"])


def test_train_cli_flags_map_to_config():
    from tubevit.cli import build_parser
    from tubevit.cli.train import overrides_from_args

    args = build_parser().parse_args(["train", "--init-from", "vit.npz", "--inflate", "average", "--freeze-until", "6"])
    o = overrides_from_args(args)
    assert o["init_from"] == "vit.npz" and o["init_inflate"] == "average"
    assert o["model.freeze_until"] == 6 and o["model.gate_layer"] == 6
    args = build_parser().parse_args(["train", "--freeze-until", "6", "--no-gate"])
    assert "model.gate_layer" not in overrides_from_args(args)
