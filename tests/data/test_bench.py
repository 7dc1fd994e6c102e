"""The data benchmark runs end to end on a tiny clip and is reachable from the CLI."""

from __future__ import annotations

import pytest

from tubevit.cli import main
from tubevit.data.bench import format_rows, run_benchmark


def test_benchmark_tiny_run():
    logs = []
    rows = run_benchmark(frames=4, stride=2, repeats=1, sizes=((32, 48),), gops=(10,), seconds=1,
                         real=False, log=logs.append)
    assert len(rows) == 1 and rows[0].sparse > 0 and rows[0].whole > 0
    assert rows[0].size == "48x32, 30 fr"
    assert "| synthetic 32p |" in format_rows(rows)


@pytest.mark.parametrize("argv", [["bench-data"], ["bench", "data"]])
def test_cli_runs_the_data_benchmark_with_the_quick_settings(argv, monkeypatch, capsys):
    """Both spellings reach run_benchmark with --quick's 2 s clips and 2 repeats, and print its table."""
    import tubevit.data.bench as bench

    calls = []
    rows = run_benchmark(frames=4, stride=2, repeats=1, sizes=((32, 48),), gops=(10,), seconds=1, real=False,
                         log=lambda _: None)

    def fake(**kw):
        calls.append(kw)
        return rows

    monkeypatch.setattr(bench, "run_benchmark", fake)
    assert main([*argv, "--quick", "--no-real", "--frames", "8"]) == 0
    (kw,) = calls
    assert (kw["seconds"], kw["repeats"], kw["real"], kw["frames"], kw["stride"]) == (2, 2, False, 8, 2)
    assert format_rows(rows) in capsys.readouterr().out
