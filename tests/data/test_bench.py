"""The data benchmark runs end to end on a tiny clip and is reachable from the CLI."""

from __future__ import annotations

from tubevit.cli import build_parser
from tubevit.data.bench import format_rows, run_benchmark


def test_benchmark_tiny_run():
    logs = []
    rows = run_benchmark(frames=4, stride=2, repeats=1, sizes=((32, 48),), gops=(10,), seconds=1,
                         real=False, log=logs.append)
    assert len(rows) == 1 and rows[0].sparse > 0 and rows[0].whole > 0
    assert rows[0].size == "48x32, 30 fr"
    assert "| synthetic 32p |" in format_rows(rows)


def test_cli_has_bench_data():
    args = build_parser().parse_args(["bench-data", "--quick", "--no-real"])
    assert args.quick and args.no_real and callable(args._run)
