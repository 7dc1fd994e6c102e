"""`tubevit bench model ...`: the model benchmark (tubevit.bench.model); `tubevit bench data ...`
runs the data benchmark (the same as `tubevit bench-data`)."""

from __future__ import annotations

NAME = "bench"
HELP = "benchmarks: `bench model` (TubeViT fp32/bf16 vs a dense video ViT), `bench data` (decoding)"


def add_arguments(parser) -> None:
    from tubevit.bench import model as bench_model

    sub = parser.add_subparsers(dest="target", metavar="{model,data}", required=True)
    p = sub.add_parser("model", help="throughput, memory, tokens and GFLOPs: tubevit vs dense, fp32 vs bf16")
    bench_model.add_arguments(p)
    p.set_defaults(_bench=bench_model.main)
    try:
        from tubevit.cli import bench_data
    except ImportError:  # the data benchmark's command is not installed
        return
    p = sub.add_parser("data", help=bench_data.HELP)
    bench_data.add_arguments(p)
    p.set_defaults(_bench=bench_data.run)


def run(args) -> int:
    return args._bench(args)
