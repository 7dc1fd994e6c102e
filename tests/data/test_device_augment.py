"""augment_on=device: workers hand over uint8 clips plus the drawn ops; finishing the batch on the
step's device gives the clips the worker path gives, for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tubevit.data.datasets import VideoDataset
from tubevit.data.device_augment import finish_batch, finish_clips
from tubevit.data.loader import build_loader
from tubevit.data.synthetic import write_video
from tubevit.data.transforms import RandAugment


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("devaug")
    g = np.random.default_rng(0)
    for i in range(3):
        frames = np.kron(g.integers(0, 256, (20, 6, 8, 3), np.uint8), np.ones((1, 8, 8, 1), np.uint8))
        write_video(d / f"v{i}.mp4", frames, fps=20, gop=5)
    return d


def _ds(root, augment_on, ra=RandAugment(2, 10)):
    return VideoDataset([(f"v{i}.mp4", i) for i in range(3)], root, frames=6, size=24, train=True,
                        randaugment=ra, augment_on=augment_on)


@pytest.mark.parametrize("with_ra", [True, False])
def test_device_batches_equal_worker_batches(root, with_ra):
    ra = RandAugment(2, 10) if with_ra else None
    worker = build_loader(_ds(root, "worker", ra), batch_size=3, shuffle=True, seed=7)
    device = build_loader(_ds(root, "device", ra), batch_size=3, shuffle=True, seed=7)
    for epoch in range(3):  # several epochs: many different ops
        worker.sampler.set_epoch(epoch)
        device.sampler.set_epoch(epoch)
        (wb,), (db,) = list(worker), list(device)
        assert db["video"].dtype == torch.uint8 and wb["video"].dtype == torch.float32
        assert db["augment"].shape == ((3, 2, 2) if with_ra else (3, 0, 2))
        assert "augment" not in wb
        finished = finish_batch(db["video"], db, device.dataset.dataset)
        torch.testing.assert_close(finished, wb["video"], atol=1e-6, rtol=0)
        assert torch.equal(db["label"], wb["label"])


def test_float_batches_pass_through_and_ops_are_per_sample():
    x = torch.rand(2, 3, 2, 4, 4)
    assert finish_batch(x, {}, None) is x
    ra = RandAugment(1, 10)
    u8 = torch.full((2, 3, 2, 4, 4), 100, dtype=torch.uint8)
    ops = torch.tensor([[[RandAugment.OPS.index("brightness"), 1]], [[0, 1]]])  # brighten sample 0 only
    out = finish_clips(u8, ops, randaugment=ra, mean=(0, 0, 0), std=(1, 1, 1))
    assert torch.allclose(out[1], torch.full_like(out[1], 100 / 255))
    assert torch.allclose(out[0], torch.full_like(out[0], 190 / 255))


def test_augment_on_is_checked(root):
    with pytest.raises(ValueError, match="augment_on"):
        _ds(root, "gpu")
    # evaluation has nothing random to move: always finished in the worker
    ev = VideoDataset([("v0.mp4", 0)], root, frames=6, size=24, train=False, augment_on="device")
    assert ev[0]["video"].dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_finish_on_cuda_matches_cpu(root):
    loader = build_loader(_ds(root, "device"), batch_size=3, shuffle=False, seed=1)
    (b,) = list(loader)
    cpu = finish_batch(b["video"], b, loader.dataset.dataset)
    gpu = finish_batch(b["video"].cuda(), {**b, "augment": b["augment"]}, loader.dataset.dataset)
    # float ops on another device may round a pixel to the next level (and a later threshold op
    # may then flip it): nearly all values agree to that one level
    err = (gpu.cpu() - cpu).abs()
    assert float((err > 1.5 / 255 / 0.224).float().mean()) < 0.01
