"""Training on data that cannot be read: stop with one line naming the root, the first missing file
and the flags; never log a loss for a step that trained on nothing; count skipped samples."""

from __future__ import annotations

import json

import pytest
from tests.helpers.train import TensorSet, tiny_config, tiny_sources

from tubevit.cli import main
from tubevit.engine.trainer import Source, Trainer, UnreadableData


class BrokenSet(TensorSet):
    """A TensorSet whose samples in ``bad`` are unreadable (``None``, as the real datasets return)."""

    def __init__(self, *args, bad=(), **kw):
        super().__init__(*args, **kw)
        self.bad = set(bad)

    def get(self, index, generator=None):
        return None if index in self.bad else super().get(index, generator)


def _trainer(tmp_path, bad, steps=6, **sets):
    cfg = tiny_config(tmp_path, steps, **sets)
    train = BrokenSet(24, "video", 3, "video", bad=bad)
    return Trainer(cfg, resume=None, sources=[Source(cfg.data.video, "video", train, None, ["c0", "c1", "c2"])])


def test_root_without_the_files_stops_naming_root_first_path_and_flag(tmp_path, capsys):
    root = tmp_path / "videos"
    root.mkdir()
    (tmp_path / "train.txt").write_text("".join(f"clip{i}.mp4 {i % 2}\n" for i in range(12)))
    rc = main(["train", "--train-list", str(tmp_path / "train.txt"), "--data-root", str(root), "--steps", "3",
               "--batch-size", "2", "--workers", "0", "--out", str(tmp_path / "run"), "--model", "tubevit_tiny",
               "--frames", "32", "--size", "32", "--set", "progress=false", "--set", "device=cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert "every sample of the first 2 batches" in line
    assert f"data root {root}," in line and "--data-root" in line and "data.max_fail_fraction" in line
    assert str(root / "clip") in line and "(does not exist)" in line
    assert not (tmp_path / "run" / "last.pt").exists()
    metrics = tmp_path / "run" / "metrics.jsonl"
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.exists() else []
    assert not any("loss" in r for r in rows)


def test_every_sample_failing_stops_in_the_first_batches(tmp_path):
    t = _trainer(tmp_path, bad=range(24), steps=50)
    with pytest.raises(UnreadableData, match="every sample of the first 2 batches"):
        t.fit()
    assert t.step <= 2  # stopped at once, not after the 100-sample minimum


def test_fraction_over_the_run_is_checked_at_the_end(tmp_path):
    # 6 of 24 unreadable (25% > 10%) on a run far shorter than the 100-sample minimum of the counter
    with pytest.raises(UnreadableData, match=r"> data.max_fail_fraction=0.1"):
        _trainer(tmp_path, bad=range(0, 24, 4), steps=4, **{"data.max_fail_fraction": 0.1}).fit()


def test_skipped_samples_are_counted_in_metrics_and_result_and_no_loss_for_nothing(tmp_path):
    t = _trainer(tmp_path, bad=range(0, 24, 4), steps=6, **{"data.max_fail_fraction": 0.5, "log_every": 1})
    result = t.fit()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "lr" in r]
    assert result["skipped"]["video"] == t.failures["video"].failed > 0
    assert train_rows[-1]["skipped"] == result["skipped"]["video"]
    assert all(r["skipped"] <= s["skipped"] for r, s in zip(train_rows, train_rows[1:]))


def test_a_step_of_only_unreadable_batches_logs_no_loss(tmp_path):
    # 8 of 24 readable; batch 4: some steps draw only unreadable samples
    t = _trainer(tmp_path, bad=[i for i in range(24) if i % 3], steps=12,
                 **{"data.max_fail_fraction": 1.0, "log_every": 1, "ckpt_every": 0})
    t.loaders["video"]  # noqa: B018
    result = t.fit()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "lr" in r]
    assert len(train_rows) == 12
    assert any("loss" not in r for r in train_rows), "some step should have had no readable sample"
    assert all(r["loss"] > 0 for r in train_rows if "loss" in r)
    assert result["skipped"]["video"] > 0
