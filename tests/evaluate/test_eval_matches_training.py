"""End to end: `tubevit eval` of a trained checkpoint with the views of the trainer's validation
gives exactly the trainer's own validation numbers (issue 10: no silent relabelling, the same
clips, crops, preprocessing and aggregation on both sides)."""

from __future__ import annotations

import json

import pytest

from tubevit.cli import main
from tubevit.data.synthetic import make_synthetic_data


@pytest.mark.parametrize("clips,crops", [(2, 3), (1, 1)])
def test_eval_reproduces_the_trainers_validation(tmp_path, capsys, clips, crops):
    # The built-in classes file is not in sorted order (move_right, move_left, ...): eval must
    # number the list's classes as the trainer did.
    data = make_synthetic_data(tmp_path / "data", seed=1, num_classes=4, videos_per_class=6, images_per_class=1,
                               val_fraction=0.5, frames=16, size=32)
    out = tmp_path / "run"
    train = ["train", "--model", "tubevit_tiny", "--tubes", "two_tube", "--frames", "16", "--size", "32",
             "--train-list", str(data["video_train"]), "--val-list", str(data["video_val"]),
             "--data-root", str(data["root"]), "--steps", "6", "--batch-size", "4", "--workers", "0",
             "--out", str(out), "--set", "model.depth=2", "--set", "progress=false", "--set", "data.stride=1",
             "--set", f"eval.clips={clips}", "--set", f"eval.crops={crops}", "--set", "device=cpu"]
    assert main(train) == 0
    capsys.readouterr()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (val,) = [r for r in rows if "val/video/top1" in r]  # eval.every=0: one validation, at the end
    assert val["step"] == 6
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--val-list", str(data["video_val"]),
                 "--data-root", str(data["root"]), "--clips", str(clips), "--crops", str(crops),
                 "--workers", "0", "--no-plot", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["views"] == clips * crops and r["videos"] == val["val/video/videos"] == 12
    assert r["top1"] == val["val/video/top1"] and r["top5"] == val["val/video/top5"]
