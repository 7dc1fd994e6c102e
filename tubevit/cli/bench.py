"""`tubevit bench model ...`: the model benchmark (tubevit.bench.model); `tubevit bench pipeline ...`:
the data loader against the train step it feeds (tubevit.bench.pipeline); `tubevit bench data ...`
runs the data benchmark (the same as `tubevit bench-data`)."""

from __future__ import annotations

NAME = "bench"
HELP = ("benchmarks: `bench model` (TubeViT fp32/bf16 vs a dense video ViT), `bench pipeline` (loader vs train "
        "step), `bench data` (decoding)")


def add_arguments(parser) -> None:
    from tubevit.bench import model as bench_model
    from tubevit.bench import pipeline as bench_pipeline

    sub = parser.add_subparsers(dest="target", metavar="{model,pipeline,data}", required=True)
    p = sub.add_parser("model", help="throughput, memory, tokens and GFLOPs: tubevit vs dense, fp32 vs bf16")
    bench_model.add_arguments(p)
    p.set_defaults(_bench=bench_model.main)
    p = sub.add_parser("pipeline", help="train-step throughput fed by the real loader vs by tensors in memory")
    bench_pipeline.add_arguments(p)
    p.set_defaults(_bench=bench_pipeline.main)
    try:
        from tubevit.cli import bench_data
    except ImportError:  # the data benchmark's command is not installed
        return
    p = sub.add_parser("data", help=bench_data.HELP)
    bench_data.add_arguments(p)
    p.set_defaults(_bench=bench_data.run)


def run(args) -> int:
    return args._bench(args)
