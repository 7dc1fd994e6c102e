"""Joint image + video training against video only, at the same number of video steps (paper §3.5,
Table 5: joint training gains 1.1-3.9 points). Several seeds; prints each run and the difference of
the means with its spread (docs/TRAINING.md, "Joint training on the built-in data").

    python benchmarks/joint_vs_video.py --out runs/joint --seeds 0 1 2 --video-steps 150

Both arms use the `demo` recipe on the built-in data (written once to OUT/data); the joint arm takes
one image step for every three video steps (weights 3 : 1) and runs 4/3 as many optimizer steps,
so the video head and the shared model see the same number of video batches in expectation (the
count actually drawn is printed). Extra ``--set`` keys apply to both arms (e.g. a smaller model).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from tubevit.configs import load_config
from tubevit.data.joint import source_counts
from tubevit.data.synthetic import DEMO_DATA, ensure_synthetic_data
from tubevit.engine.trainer import train
from tubevit.evaluate.commands import evaluate_checkpoint


def run_arm(data: Path, out: Path, joint: bool, seed: int, video_steps: int, sets: list[str], clips: int) -> dict:
    overrides = {
        "data.video.train_list": str(data / "videos" / "train.txt"), "data.video.root": str(data),
        "data.video.val_list": str(data / "videos" / "val.txt"), "seed": seed, "out": str(out), "progress": False,
        "steps": video_steps * 4 // 3 if joint else video_steps, "ckpt_every": 0,
    }
    if joint:
        overrides.update({"data.image.train_list": str(data / "images" / "train.txt"), "data.image.root": str(data)})
    cfg = load_config(overrides=overrides, sets=sets, recipe="demo")
    result = train(cfg, resume=None)
    n_video = source_counts(seed, result["step"], [3.0, 1.0])[0] if joint else result["step"]
    ev = evaluate_checkpoint(out / "last.pt", data / "videos" / "val.txt", data, clips=clips, crops=1,
                             head="video", workers=0, plot=False, device="cpu")
    return {"joint": joint, "seed": seed, "steps": result["step"], "video_steps": int(n_video),
            "video_top1": round(ev["top1"], 4), "seconds": result["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/joint_vs_video")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--video-steps", type=int, default=150)
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--set", dest="sets", action="append", default=[])
    args = p.parse_args()
    out = Path(args.out)
    data = out / "data"
    ensure_synthetic_data(data, seed=0, **DEMO_DATA)
    rows = []
    for seed in args.seeds:
        for joint in (False, True):
            rows.append(run_arm(data, out / f"{'joint' if joint else 'video'}_s{seed}", joint, seed,
                                args.video_steps, args.sets, args.clips))
            print(json.dumps(rows[-1]), flush=True)
    diffs = [j["video_top1"] - v["video_top1"] for v, j in zip(rows[::2], rows[1::2])]
    summary = {"seeds": args.seeds, "video_only": [r["video_top1"] for r in rows[::2]],
               "joint": [r["video_top1"] for r in rows[1::2]], "diff_mean": round(statistics.mean(diffs), 4),
               "diff_std": round(statistics.stdev(diffs), 4) if len(diffs) > 1 else None}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
