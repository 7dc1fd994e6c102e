"""`tubevit eval` and `tubevit predict` on a checkpoint saved in the contract format."""

from __future__ import annotations

import json

import pytest

from tests.helpers.backends import hide_backend
from tubevit.cli import main
from tubevit.evaluate.loading import load_model

EVAL_KEYS = ("top1", "top5", "videos", "skipped", "views")


def _eval_args(ckpt, data, *extra):
    return ["eval", "--checkpoint", str(ckpt), "--val-list", str(data["val"]), "--data-root", str(data["root"]),
            "--clips", "2", "--crops", "3", "--workers", "0", "--max-fail-fraction", "0.5", *extra]


def test_load_model_reads_the_contract(tiny_ckpt, tiny_data, tiny_model):
    loaded = load_model(tiny_ckpt)
    assert loaded.classes == {"video": tiny_data["names"]}
    assert loaded.head() == "video"
    assert loaded.data_config()["frames"] == tiny_data["frames"]
    assert not loaded.model.training
    ref = tiny_model()
    for k, v in ref.state_dict().items():
        assert (loaded.model.state_dict()[k] == v).all()


def test_eval_json(tiny_ckpt, tiny_data, capsys, tmp_path):
    assert main(_eval_args(tiny_ckpt, tiny_data, "--json", "--out", str(tmp_path))) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    r = json.loads(out[0])
    for k in EVAL_KEYS:
        assert k in r
    assert r["videos"] == 8 and r["skipped"] == 1 and r["views"] == 6
    assert 0 <= r["top1"] <= 1 and 0 <= r["top5"] <= 1
    assert r["classes"] == tiny_data["names"] and r["head"] == "video"
    png = tmp_path / "best_confusion.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "best_eval.json").read_text())["videos"] == 8


def test_eval_text_writes_png_next_to_checkpoint(tiny_ckpt, tiny_data, capsys):
    assert main(_eval_args(tiny_ckpt, tiny_data, "--aggregation", "mean_probs", "--precision", "bf16")) == 0
    text = capsys.readouterr().out
    assert "top-1" in text and "top-5" in text and "1 skipped" in text and "mean_probs" in text
    for name in tiny_data["names"]:
        assert name in text
    assert (tiny_ckpt.parent / "best_confusion.png").is_file()


def test_eval_class_count_mismatch_fails_before_running(tmp_path, tiny_data, tiny_model, save_checkpoint, capsys,
                                                        monkeypatch):
    # 6-class checkpoint, 4-class list (classes.txt beside it): a clear error, before any decoding.
    import tubevit.data.datasets as datasets

    def no_decoding(*args, **kwargs):
        raise AssertionError("a video was opened before the class check")

    monkeypatch.setattr(datasets, "probe", no_decoding)
    monkeypatch.setattr(datasets, "decode_frames", no_decoding)
    ckpt = save_checkpoint(tmp_path / "six.pt", tiny_model(6), {"video": [f"c{i}" for i in range(6)]})
    assert main(_eval_args(ckpt, tiny_data, "--json")) == 2
    err = capsys.readouterr().err
    # The list's names are looked up in the checkpoint's (issue 10): the ones it lacks are named.
    assert "move_down" in err and "c2" in err and "--head" in err
    # 2-class checkpoint with other names: the list's names it lacks are named.
    ckpt2 = save_checkpoint(tmp_path / "two.pt", tiny_model(2), {"video": ["a", "b"]})
    assert main(_eval_args(ckpt2, tiny_data)) == 2
    err = capsys.readouterr().err
    assert "move_down" in err and "'a'" in err
    assert not (tmp_path / "six_confusion.png").exists()


def test_eval_bad_inputs(tmp_path, tiny_ckpt, tiny_data, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--val-list", str(tiny_data["val"]),
                 "--data-root", str(tiny_data["root"])]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tiny_ckpt), "--val-list", str(tmp_path / "none.txt"),
                 "--data-root", str(tiny_data["root"])]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["eval", "--checkpoint", str(bad), "--val-list", str(tiny_data["val"]),
                 "--data-root", str(tiny_data["root"])]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(_eval_args(tiny_ckpt, tiny_data, "--head", "imagenet")) == 2
    assert "unknown head" in capsys.readouterr().err


def test_eval_joint_checkpoint_needs_or_picks_a_head(tmp_path, tiny_data, tiny_model, save_checkpoint, capsys):
    model = tiny_model(heads={"video": 4, "image": 5})
    ckpt = save_checkpoint(tmp_path / "joint.pt", model, {"video": tiny_data["names"], "image": list("abcde")})
    # default: the video head (the config's data.video.name)
    assert main(_eval_args(ckpt, tiny_data, "--json", "--clips", "1", "--crops", "1")) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["head"] == "video" and r["num_classes"] == 4
    assert main(_eval_args(ckpt, tiny_data, "--head", "image")) == 2  # 5-class image head vs 4-class list
    assert "5" in capsys.readouterr().err


def test_predict_reports_bad_files_and_keeps_going(tiny_ckpt, tiny_data, tmp_path, capsys):
    root = tiny_data["root"]
    good = [root / line.split()[0] for line in tiny_data["val_clean"].read_text().splitlines()[:2]]
    files = [str(good[0]), str(root / "videos" / "broken.mp4"), str(tmp_path / "missing.mp4"), str(good[1])]
    rc = main(["predict", "--checkpoint", str(tiny_ckpt), *files, "--topk", "3", "--clips", "2", "--crops", "1", "--json"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["files"] == 4 and r["failed"] == 2
    p = r["predictions"]
    assert [x["ok"] for x in p] == [True, False, False, True]
    assert "not found" in p[2]["error"]
    for x in (p[0], p[3]):
        assert len(x["topk"]) == 3 and x["views"] == 2
        probs = [t["prob"] for t in x["topk"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(t["class"] in tiny_data["names"] for t in x["topk"])
        assert x["decode_s"] >= 0 and x["model_s"] > 0
    # text mode
    assert main(["predict", "--checkpoint", str(tiny_ckpt), str(good[0]), "--clips", "1", "--crops", "1"]) == 0
    text = capsys.readouterr().out
    assert "decode" in text and "%" in text


def test_predict_all_failed_is_nonzero(tiny_ckpt, tmp_path, capsys):
    bad = tmp_path / "x.mp4"
    bad.write_text("nope")
    assert main(["predict", "--checkpoint", str(tiny_ckpt), str(bad), str(tmp_path / "missing.mp4")]) == 1
    assert "ERROR" in capsys.readouterr().out


@pytest.mark.parametrize("stride,short", [("1", 0), ("2", 8)])
def test_eval_warns_once_with_the_count_of_videos_shorter_than_a_clip(tiny_ckpt, tiny_data, capsys, stride, short):
    # The videos have 16 frames: 16 frames at stride 1 fit; at stride 2 a clip spans 31 frames.
    args = ["eval", "--checkpoint", str(tiny_ckpt), "--val-list", str(tiny_data["val_clean"]), "--data-root",
            str(tiny_data["root"]), "--clips", "2", "--crops", "1", "--workers", "0", "--no-plot", "--json",
            "--stride", stride]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["short_videos"] == short
    lines = [line for line in err.splitlines() if "shorter than one clip" in line]
    assert lines == ([] if not short else [f"tubevit eval: warning: {short} of 8 videos are shorter than one clip "
                                           f"(16 frames at stride 2); their clips loop"])


def test_eval_samples_short_videos_by_the_checkpoints_data_short(tiny_data, tmp_path, capsys):
    from tests.evaluate.conftest import _save_checkpoint, _tiny_model

    ckpt = _save_checkpoint(tmp_path / "fit.pt", _tiny_model(), {"video": tiny_data["names"]}, short="fit")
    args = ["eval", "--checkpoint", str(ckpt), "--val-list", str(tiny_data["val_clean"]), "--data-root",
            str(tiny_data["root"]), "--clips", "2", "--crops", "1", "--workers", "0", "--no-plot", "--json",
            "--stride", "2"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["short"] == "fit" and result["short_videos"] == 8
    assert ("8 of 8 videos are shorter than one clip (16 frames at stride 2); their clips run through the whole "
            "video at a lower stride") in err


@pytest.mark.parametrize("decoder", ["torchcodec", "decord"])
def test_a_missing_optional_decoder_is_one_line_naming_the_extra(tiny_ckpt, tiny_data, capsys, monkeypatch, decoder):
    hide_backend(monkeypatch, decoder)  # not installed, even where it is
    assert main(_eval_args(tiny_ckpt, tiny_data, "--decoder", decoder)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("tubevit eval: error: ") and f"pip install 'tubevit[{decoder}]'" in err
    assert "--decoder pyav" in err
