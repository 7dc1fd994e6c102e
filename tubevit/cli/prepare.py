"""`tubevit prepare LIST --data-root ROOT --out DIR --fps F --short-side S [--gop N | --intra]`:
re-encode a data set into a copy made for training (tubevit.data.prepare)."""

from __future__ import annotations

NAME = "prepare"
HELP = "re-encode a video data set for fast training (fps, short side, key frames, x264 fastdecode)"


def add_arguments(parser) -> None:
    parser.add_argument("list", help="annotation file (list .txt, CSV, Kinetics CSV, SSv2 JSON)")
    parser.add_argument("--data-root", help="directory the list's paths are relative to (default: its folder)")
    parser.add_argument("--out", required=True, help="new directory for the copy and its annotation file")
    parser.add_argument("--fps", type=float, default=15.0,
                        help="output frame rate (default 15, the Kinetics recipe; SSv2 uses 24; 0 keeps the source's)")
    parser.add_argument("--short-side", type=int, default=256, help="shorter side in pixels (default 256; 0 keeps it)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--gop", type=int, default=16, help="key frame every N output frames (default 16)")
    group.add_argument("--intra", action="store_true", help="every frame a key frame (3-6x the disk)")
    parser.add_argument("--crf", type=int, default=23, help="x264 quality, lower is better and larger (default 23)")
    parser.add_argument("--classes", help="class names file (default: from the annotation format)")
    parser.add_argument("--workers", type=int, help="parallel encoders (default: one per usable core)")
    parser.add_argument("--max-fail-fraction", type=float, default=0.5,
                        help="stop when more than this fraction of the sources cannot be read (default 0.5)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from tubevit.data.prepare import PrepareSettings, default_workers, prepare

    settings = PrepareSettings(fps=args.fps, short_side=args.short_side, gop=1 if args.intra else args.gop,
                               crf=args.crf)
    try:
        result = prepare(args.list, args.data_root, args.out, settings, workers=args.workers or default_workers(),
                         classes=args.classes, max_fail_fraction=args.max_fail_fraction,
                         progress=not args.no_progress)
    except RuntimeError as err:
        print(f"tubevit prepare: error: {err}")
        return 1
    gb_h = result.bytes_per_hour / 1e9
    print(f"prepared {result.done} videos into {result.out} ({result.encoded} encoded now, {result.skipped} "
          f"already done) in {result.seconds:.1f} s; {result.bytes / 1e6:.1f} MB for "
          f"{result.video_seconds / 3600:.3f} h of video = {gb_h:.2f} GB per hour")
    print(f"annotation file: {result.annotation}  (train with --train-list {result.annotation} "
          f"--data-root {result.out} --fps {settings.fps:g})")
    if result.failed:
        print(f"{len(result.failed)} sources could not be read and are not in the copy "
              f"(listed in {result.out / 'prepare_manifest.json'}):")
        for path, reason in result.failed.items():
            print(f"  {path}: {reason}")
        return 1
    return 0
