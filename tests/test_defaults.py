"""Every choice list and shared default comes from tubevit.defaults: each CLI offers exactly its
tuples (read from the `--help` a user sees), and the library and config defaults agree with it."""

from __future__ import annotations

import re

import pytest

from tubevit import defaults
from tubevit.cli import main

# Every command and nested command; the choice flags each one has are found in its help.
COMMANDS = [["train"], ["eval"], ["predict"], ["demo"], ["convert"], ["bench", "model"], ["bench", "pipeline"],
            ["bench", "data"], ["bench-data"], ["inspect"], ["export"], ["prepare"]]
CHOICES = {"--precision": defaults.PRECISION_CHOICES, "--aggregation": defaults.AGGREGATIONS,
           "--decoder": defaults.DECODERS, "--inflate": defaults.INFLATE_STRATEGIES}
# The benchmarks measure named precisions (a row per precision), so they offer no "auto".
BENCH_CHOICES = {**CHOICES, "--precision": defaults.PRECISIONS}


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_every_command_is_covered(capsys):
    listed = set(re.findall(r"^    ([a-z][a-z-]*)\b", _help([], capsys), re.M))  # one command a line
    assert len(listed) >= 10 and listed == {a[0] for a in COMMANDS}


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_cli_choices_are_the_shared_tuples(argv, capsys):
    text = " ".join(_help(argv, capsys).split())
    for flag, expected in (BENCH_CHOICES if argv[0] == "bench" else CHOICES).items():
        for found in re.findall(re.escape(flag) + r" \{([^}]*)\}", text):
            assert tuple(found.split(",")) == expected, (argv, flag)


def test_the_choice_flags_exist_where_expected(capsys):
    # Guards the scan above against a help format it would not read.
    seen = {tuple(a): " ".join(_help(a, capsys).split()) for a in (["eval"], ["predict"], ["train"], ["convert"])}
    assert "--precision {auto,fp32,bf16,fp16}" in seen[("eval",)] and "--decoder {auto," in seen[("predict",)]
    assert "--inflate {central,average}" in seen[("train",)] and "--inflate {central,average}" in seen[("convert",)]


def test_views_and_failure_limit_defaults_agree(tmp_path):
    import argparse
    import inspect

    from tubevit.cli import build_parser
    from tubevit.configs import load_config
    from tubevit.evaluate.commands import evaluate_checkpoint
    from tubevit.evaluate.evaluator import evaluate
    from tubevit.evaluate.predictor import Predictor

    views = (defaults.EVAL_CLIPS, defaults.EVAL_CROPS)
    assert views == (4, 3)  # the paper's multi-view testing (§5)
    parser = build_parser()
    parsed = {
        "eval": parser.parse_args(["eval", "--checkpoint", "c", "--val-list", "v", "--data-root", "r"]),
        "predict": parser.parse_args(["predict", "--checkpoint", "c", "x.mp4"]),
    }
    for name, args in parsed.items():
        assert isinstance(args, argparse.Namespace) and (args.clips, args.crops) == views, name
    # The demo's frames are square at the crop size: 4 temporal views, one spatial one.
    demo = parser.parse_args(["demo"])
    assert (demo.clips, demo.crops) == (defaults.EVAL_CLIPS, 1)
    assert parsed["eval"].max_fail_fraction == defaults.MAX_FAIL_FRACTION
    cfg = load_config()
    # Periodic validation during training: one view per video (12x cheaper), its own default.
    assert (cfg.eval.clips, cfg.eval.crops) == (defaults.VAL_CLIPS, defaults.VAL_CROPS) == (1, 1)
    assert cfg.data.max_fail_fraction == defaults.MAX_FAIL_FRACTION
    assert cfg.data.max_frame_pixels == defaults.MAX_FRAME_PIXELS
    for fn in (evaluate_checkpoint, Predictor):
        params = inspect.signature(fn).parameters
        assert (params["clips"].default, params["crops"].default) == views, fn
    assert inspect.signature(evaluate).parameters["max_fail_fraction"].default == defaults.MAX_FAIL_FRACTION
    assert inspect.signature(evaluate_checkpoint).parameters["max_fail_fraction"].default == defaults.MAX_FAIL_FRACTION


def test_library_validation_uses_the_same_tuples():
    from tubevit.bench.model import BenchSpec
    from tubevit.configs import load_config
    from tubevit.convert.kernels import inflate
    from tubevit.data.loader import FailureCounter
    from tubevit.evaluate.multiview import ViewAccumulator
    from tubevit.model.precision import compute_dtype

    import torch

    assert [compute_dtype(p) for p in defaults.PRECISIONS] == [torch.float32, torch.bfloat16, torch.float16]
    for bad in ("fp8", "int8"):
        with pytest.raises(ValueError, match="fp32"):
            compute_dtype(bad)
        with pytest.raises(ValueError, match="precision"):
            BenchSpec(precisions=(bad,)).resolved()
        with pytest.raises(ValueError, match="precision"):
            load_config(sets=[f"precision={bad}"])
    for agg in defaults.AGGREGATIONS:
        ViewAccumulator(2, agg)
    with pytest.raises(ValueError, match="mean_logits"):
        ViewAccumulator(2, "median")
    for s in defaults.INFLATE_STRATEGIES:
        assert inflate(torch.ones(1, 3, 2, 2), 2, s).shape == (1, 3, 2, 2, 2)
    with pytest.raises(ValueError, match="central"):
        load_config(sets=["init_inflate=tiled"])
    with pytest.raises(ValueError, match="pyav"):
        load_config(sets=["data.decoder=opencv"])
    for policy in defaults.SHORT_POLICIES:
        assert load_config(sets=[f"data.short={policy}"]).data.short == policy
        assert set(defaults.SHORT_EFFECT) == set(defaults.SHORT_POLICIES)
    with pytest.raises(ValueError, match="--set data.short= one of"):
        load_config(sets=["data.short=wrap"])
    assert FailureCounter().max_fraction == defaults.MAX_FAIL_FRACTION
