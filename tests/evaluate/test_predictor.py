"""tubevit.Predictor and image evaluation: images through the 2D path agree with the trainer's image
validation of the same checkpoint; the model file's mean/std is what inference uses; videos,
folders and unreadable files."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import tubevit
from tubevit.cli import main
from tubevit.data import ImageDataset, read_annotations
from tubevit.data.synthetic import make_synthetic_data
from tubevit.evaluate.commands import evaluate_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step joint run on the built-in files, normalised with mean = std = 0.5 (data.mean/std)."""
    root = tmp_path_factory.mktemp("pred")
    data = make_synthetic_data(root / "data", num_classes=4, videos_per_class=3, images_per_class=4, frames=16, size=32)
    out = root / "run"
    args = ["train", "--model", "tubevit_tiny", "--tubes", "two_tube", "--frames", "16", "--size", "32",
            "--train-list", str(data["video_train"]), "--val-list", str(data["video_val"]),
            "--data-root", str(data["root"]), "--image-train-list", str(data["image_train"]),
            "--image-val-list", str(data["image_val"]), "--image-root", str(data["root"]),
            "--steps", "2", "--batch-size", "4", "--workers", "0", "--out", str(out), "--json",
            "--set", "model.depth=2", "--set", "progress=false", "--set", "data.stride=1",
            "--set", "data.mean=[0.5,0.5,0.5]", "--set", "data.std=[0.5,0.5,0.5]"]
    assert main(args) == 0
    return {"data": data, "ckpt": out / "last.pt", "root": root}


def test_image_eval_and_predict_equal_the_trainers_image_validation(run):
    data = run["data"]
    ck = torch.load(run["ckpt"], weights_only=True)
    trainer_val = ck["metrics"]  # the trainer's validation of this very checkpoint
    assert ck["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and ck["config"]["data"]["mean"] == [0.5, 0.5, 0.5]
    r = evaluate_checkpoint(run["ckpt"], data["image_val"], data["root"], crops=1, plot=False, device="cpu")
    assert r["kind"] == "image" and r["head"] == "image" and r["views"] == 1
    assert r["top1"] == trainer_val["val/image/top1"] and r["videos"] == trainer_val["val/image/videos"]
    # The predictor on the same image files: the same top-1 decisions.
    samples, _ = read_annotations(data["image_val"], data["root"])
    files = [data["root"] / p for p, _ in samples]
    preds = tubevit.Predictor(run["ckpt"], crops=1, topk=1, device="cpu").predict(files)
    assert all(p["ok"] and p["kind"] == "image" and p["head"] == "image" for p in preds)
    acc = sum(p["topk"][0]["index"] == lab for p, (_, lab) in zip(preds, samples)) / len(samples)
    assert acc == pytest.approx(r["top1"])


def test_predictor_uses_the_files_mean_and_std(run):
    data = run["data"]
    samples, _ = read_annotations(data["image_val"], data["root"])
    model = tubevit.from_pretrained(run["ckpt"])
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    pred = tubevit.Predictor(run["ckpt"], crops=1, topk=3, device="cpu")([data["root"] / samples[0][0]])[0]

    def probs(mean, std):
        ds = ImageDataset(samples[:1], data["root"], size=32, train=False, crops=1, mean=mean, std=std)
        with torch.no_grad():
            return model(ds[0]["image"], head="image").softmax(-1)[0]

    want, imagenet = probs((0.5,) * 3, (0.5,) * 3), probs((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    got = torch.tensor([t["prob"] for t in pred["topk"]])
    torch.testing.assert_close(got, want[[t["index"] for t in pred["topk"]]])
    assert (want - imagenet).abs().max() > 1e-3  # the normalisation matters, so the check above can fail


def test_predict_videos_images_folders_and_bad_files(run, tmp_path, capsys):
    data = run["data"]
    samples, _ = read_annotations(data["video_val"], data["root"])
    folder = tmp_path / "clips"
    folder.mkdir()
    for p, _ in samples[:2]:
        shutil.copy(data["root"] / p, folder / (p.replace("/", "_")))
    (folder / "broken.mp4").write_text("not a video")
    img = data["root"] / read_annotations(data["image_val"], data["root"])[0][0][0]
    predictor = tubevit.Predictor(run["ckpt"], clips=2, crops=1, device="cpu", workers=1, batch_size=2)
    out = predictor([folder, img, torch.rand(3, 16, 32, 32)])
    by_kind = [(p["kind"], p["ok"]) for p in out]
    assert by_kind == [("video", False), ("video", True), ("video", True), ("image", True), ("video", True)]
    assert out[0]["file"].endswith("broken.mp4") and out[0]["error"]
    assert out[1]["views"] == 2 and out[1]["head"] == "video" and out[3]["head"] == "image"
    # Each video decoded once, through the same dataset as eval: the same scores as a second run.
    again = tubevit.Predictor(run["ckpt"], clips=2, crops=1, device="cpu")([folder / sorted(f.name for f in folder.iterdir())[1]])
    assert again[0]["topk"] == out[1]["topk"]
    # The CLI: image files work, an unreadable file is reported and the run continues.
    assert main(["predict", "--checkpoint", str(run["ckpt"]), str(img), str(folder / "broken.mp4"), "--workers", "0",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["failed"] == 1 and r["predictions"][0]["kind"] == "image" and r["mean"] == [0.5, 0.5, 0.5]
