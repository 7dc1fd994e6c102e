"""The multi-machine command lines of docs/TRAINING.md, on one machine: two torchrun launchers
with ``--nnodes=2`` (one process each) meet at a c10d rendezvous on localhost and train an FSDP2
run from real files through ``python -m tubevit train``; the run then resumes in a single process
from the sharded checkpoint (resharded from 2 ranks to 1) and ``tubevit export RUN_DIR`` writes
the shareable file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from tubevit.data.synthetic import make_synthetic_data
from tubevit.engine.export import load_exported


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_localhost_then_one_process_resume_then_export(tmp_path):
    data = make_synthetic_data(tmp_path / "data", num_classes=2, videos_per_class=4, images_per_class=4,
                               frames=8, size=16)
    out = tmp_path / "run"
    train = ["-m", "tubevit", "train", "--model", "tubevit_tiny", "--tubes", "two_tube", "--frames", "8",
             "--size", "16", "--train-list", str(data["video_train"]), "--data-root", str(data["root"]),
             "--batch-size", "2", "--workers", "0", "--out", str(out), "--set", "model.depth=2",
             "--set", "progress=false", "--set", "data.stride=1", "--set", "fsdp=true", "--set", "device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = _free_port()
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", f"--node_rank={rank}",
         "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=tubevit-test",
         *train, "--steps", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for rank in range(2)]
    outs = [n.communicate(timeout=400) for n in nodes]
    for n, (o, e) in zip(nodes, outs):
        assert n.returncode == 0, e[-3000:]
    assert "step 2/2" in outs[0][0] + outs[1][0]
    shards = sorted(p.name for p in (out / "last.dcp").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]  # one shard per node

    one = subprocess.run([sys.executable, *train, "--steps", "3", "--resume"], capture_output=True, text=True,
                         env=env, timeout=400)
    assert one.returncode == 0, one.stderr[-3000:]
    assert "resumed from" in one.stderr and "at step 2" in one.stderr and "step 3/3" in one.stdout

    exp = subprocess.run([sys.executable, "-m", "tubevit", "export", str(out), str(tmp_path / "w.safetensors")],
                         capture_output=True, text=True, env=env, timeout=200)
    assert exp.returncode == 0, exp.stderr[-2000:]
    model, meta = load_exported(tmp_path / "w.safetensors")
    assert int(meta["step"]) == 3 and model(torch.randn(1, 3, 8, 16, 16), head="video").shape == (1, 2)
