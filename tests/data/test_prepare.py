"""tubevit prepare: round trip (frame counts, frame times, labels), resume after a kill, failures
listed (never dropped silently), settings recorded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from tubevit.cli import main as cli_main
from tubevit.data.datasets import read_annotations
from tubevit.data.decode import decode_all_frames, probe
from tubevit.data.prepare import MANIFEST, PrepareSettings, encode_video, prepare
from tubevit.data.synthetic import write_video

from .conftest import frame_number, numbered_frames


@pytest.fixture()
def source(tmp_path):
    root = tmp_path / "src"
    for i, n in enumerate((30, 31, 20)):
        write_video(root / "cls" / f"v{i}.mp4", numbered_frames(n, 48, 64), fps=30, gop=30)
    (root / "bad.mp4").write_text("not a video\n" * 20)
    # CSV with class names in a non-sorted order given by a classes file
    (root / "train.csv").write_text("path,label\ncls/v0.mp4,zebra\ncls/v1.mp4,ant\ncls/v2.mp4,zebra\n")
    (root / "classes.txt").write_text("zebra\nant\n")
    return root


def test_round_trip_frames_times_and_labels(source, tmp_path):
    out = tmp_path / "out"
    res = prepare(source / "train.csv", source, out, PrepareSettings(fps=15, short_side=32, gop=4),
                  classes=source / "classes.txt", progress=False)
    assert res.done == 3 and res.encoded == 3 and not res.failed
    samples, names = read_annotations(res.annotation, out)
    assert names == ["zebra", "ant"]  # class order kept, not re-sorted
    assert samples == [("cls/v0.mp4", 0), ("cls/v1.mp4", 1), ("cls/v2.mp4", 0)]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["settings"]["fps"] == 15 and manifest["settings"]["gop"] == 4
    for (rel, _), n in zip(samples, (30, 31, 20)):
        info = probe(out / rel)
        assert info.fps == pytest.approx(15)
        assert (info.height, info.width) == (32, 42)  # short side 32, other side even
        frames = decode_all_frames(out / rel)
        # output frame k is the source frame shown at k / 15 s: source frame 2k
        expect = [2 * k for k in range(len(frames))]
        assert len(frames) == (n + 1) // 2 == manifest["files"][rel]["frames"]
        assert [frame_number(f) for f in frames] == expect
        assert manifest["files"][rel]["source_frames"] == n
        with av.open(str(out / rel)) as c:
            keys = [p.pts for p in c.demux(c.streams.video[0]) if p.is_keyframe and p.pts is not None]
        assert len(keys) == -(-len(frames) // 4)  # a key frame every 4 output frames exactly


def test_slower_source_keeps_its_rate_and_intra(tmp_path):
    src = write_video(tmp_path / "slow.mp4", numbered_frames(10, 32, 32), fps=10)
    info = encode_video(src, tmp_path / "o.mp4", PrepareSettings(fps=15, short_side=0, gop=1))
    assert info["fps"] == 10 and info["frames"] == 10  # never invents frames
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert all(p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size)


def test_failures_listed_not_dropped(source, tmp_path, capsys):
    (source / "list.txt").write_text("cls/v0.mp4 0\nbad.mp4 1\ncls/v1.mp4 1\nmissing.mp4 1\ncls/v2.mp4 0\n")
    out = tmp_path / "out"
    rc = cli_main(["prepare", str(source / "list.txt"), "--out", str(out), "--fps", "15", "--short-side", "32",
                   "--workers", "2", "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert "bad.mp4" in printed and "missing.mp4" in printed and "2 sources could not be read" in printed
    files = json.loads((out / MANIFEST).read_text())["files"]
    assert files["bad.mp4"]["status"] == "failed" and files["missing.mp4"]["error"] == "file not found"
    assert (out / "list.txt").read_text().split() == ["cls/v0.mp4", "0", "cls/v1.mp4", "1", "cls/v2.mp4", "0"]


def test_wrong_root_stops(source, tmp_path):
    (source / "many.txt").write_text("".join(f"nope{i}.mp4 0\n" for i in range(12)))
    with pytest.raises(RuntimeError, match="could not be read"):
        prepare(source / "many.txt", source, tmp_path / "out", PrepareSettings(short_side=32), progress=False)


def test_resume_after_kill_skips_finished_files(source, tmp_path):
    out = tmp_path / "out"
    settings = dict(fps=15, short_side=32, gop=4)
    # A real SIGKILL of the preparing process right after its first file is recorded.
    code = (
        "import os, signal, sys\n"
        "from tubevit.data.prepare import PrepareSettings, prepare\n"
        f"prepare({str(source / 'train.csv')!r}, {str(source)!r}, {str(out)!r}, PrepareSettings(**{settings!r}),\n"
        f"        classes={str(source / 'classes.txt')!r}, progress=False,\n"
        "        on_file=lambda *a: os.kill(os.getpid(), signal.SIGKILL))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    files = json.loads((out / MANIFEST).read_text())["files"]
    assert list(files) == ["cls/v0.mp4"] and not (out / "train.txt").exists()
    first = (out / "cls/v0.mp4").stat().st_mtime_ns
    (out / "cls" / ".v1.partial.prepare-tmp.mp4").write_bytes(b"half a file")  # as a kill mid-encode leaves
    res = prepare(source / "train.csv", source, out, PrepareSettings(**settings), classes=source / "classes.txt",
                  progress=False)
    assert (res.skipped, res.encoded, res.done) == (1, 2, 3)
    assert (out / "cls/v0.mp4").stat().st_mtime_ns == first  # not re-encoded
    assert not list(out.rglob("*prepare-tmp*"))
    assert len(read_annotations(res.annotation, out)[0]) == 3
    with pytest.raises(ValueError, match="other settings"):
        prepare(source / "train.csv", source, out, PrepareSettings(fps=24, short_side=32, gop=4), progress=False)


def test_settings_checked():
    with pytest.raises(ValueError, match="--gop"):
        PrepareSettings(gop=0).check()
    with pytest.raises(ValueError, match="--fps"):
        PrepareSettings(fps=-1).check()
