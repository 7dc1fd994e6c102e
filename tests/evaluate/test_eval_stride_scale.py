"""`tubevit eval --stride-scale` (Table 7d): the same checkpoint evaluated with more tokens."""

from __future__ import annotations

import json

import torch

from tubevit.cli import main


def test_eval_stride_scale_changes_the_tokens_and_is_recorded(tiny_ckpt, tiny_data, capsys, tmp_path):
    from tubevit.evaluate.loading import load_model

    model = load_model(tiny_ckpt).model  # eval mode
    n = model.embed(torch.zeros(1, 3, 16, 32, 32)).shape[1]
    model.set_eval_stride_scale(0.5)
    assert model.embed(torch.zeros(1, 3, 16, 32, 32)).shape[1] > n  # strides 16 -> 8: more tokens
    args = ["eval", "--checkpoint", str(tiny_ckpt), "--val-list", str(tiny_data["val_clean"]),
            "--data-root", str(tiny_data["root"]), "--clips", "1", "--crops", "1", "--workers", "0",
            "--no-plot", "--json", "--out", str(tmp_path)]
    assert main(args + ["--stride-scale", "0.5"]) == 0
    dense = json.loads(capsys.readouterr().out)
    assert dense["stride_scale"] == 0.5 and dense["videos"] == len(tiny_data["val_clean"].read_text().split("\n")) - 1
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["stride_scale"] == 1.0
    assert main(args + ["--stride-scale", "0"]) == 2
    assert "--stride-scale must be a positive number" in capsys.readouterr().err
