"""Two-process CPU DDP through torchrun (gloo): it runs, the ranks end with identical weights,
and only rank 0 writes the checkpoint and the metrics."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT



@pytest.mark.slow
def test_two_process_ddp_on_cpu_keeps_ranks_in_sync(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tests.helpers.train", str(tmp_path), "6", "ckpt_every=3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    assert len(results) == 2 and results[0].startswith("RESULT rank=0") and results[1].startswith("RESULT rank=1")
    digests = {line.split("weights=")[1] for line in results}
    assert len(digests) == 1, results  # the ranks stayed in sync
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["step"] == 6
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert (tmp_path / "metrics.jsonl").read_text().count('"loss"') == 3  # log_every=2, rank 0 only
