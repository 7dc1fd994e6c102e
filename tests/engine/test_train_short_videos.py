"""Videos shorter than one clip: one warning per run and source with their count (training and
validation), not one per video and not one per epoch."""

from __future__ import annotations

from tests.helpers.train import TensorSet, tiny_config
from tubevit.engine.trainer import Source, Trainer

LINE = "shorter than one clip"


class ShortSet(TensorSet):
    """Items flagged ``short`` as tubevit.data.VideoDataset flags a video with fewer frames than
    one clip spans (their clips loop)."""

    def __init__(self, *args, short=(), **kw):
        super().__init__(*args, **kw)
        self.short = set(short)

    def get(self, index, generator=None):
        return {**super().get(index, generator), "short": index in self.short}


def _trainer(tmp_path, steps, short=(), val_short=None, **sets):
    cfg = tiny_config(tmp_path, steps, **sets)
    train = ShortSet(24, "video", 3, "video", short=short)
    val = None if val_short is None else ShortSet(6, "video", 3, "video", seed=1, short=val_short)
    return Trainer(cfg, resume=None, sources=[Source(cfg.data.video, "video", train, val, ["c0", "c1", "c2"])])


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if LINE in line]


def test_one_warning_per_run_with_the_count_over_several_epochs(tmp_path, capsys):
    # 24 videos, batch 4: 6 steps an epoch; 14 steps see every video at least twice.
    _trainer(tmp_path, 14, short=(1, 5, 9), val_short=(0, 3), **{"eval.every": 4}).fit()
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 2, lines  # one for training, one for the 4 validations
    train, val = sorted(lines, key=lambda line: "validation" in line)
    assert "source 'video': 3 of 24 training videos" in train and "8 frames at stride" in train
    assert "2 of 6 validation videos" in val


def test_a_run_shorter_than_one_pass_warns_at_the_end(tmp_path, capsys):
    _trainer(tmp_path, 2, short=tuple(range(24))).fit()  # 8 of 24 drawn, every one short
    (line,) = _lines(capsys.readouterr().err)
    assert "8 of 24 training videos" in line


def test_no_warning_without_short_videos(tmp_path, capsys):
    _trainer(tmp_path, 8, val_short=()).fit()
    assert _lines(capsys.readouterr().err) == []
