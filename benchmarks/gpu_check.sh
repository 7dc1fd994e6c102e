#!/usr/bin/env bash
# The GPU check, one command: bash benchmarks/gpu_check.sh [OUT_DIR]
#
# Runs on a CUDA machine with the project's .venv (make install-test; for CUDA, install the CUDA
# wheel of torch==2.13.0 in it). Each part prints its figures; record them in docs/BENCHMARKS.md
# with the machine. Stops at the first failure. About 5-10 minutes on one H100/H200.
#   1. the GPU tests (skipped on CPU elsewhere): flash attention, bf16 parity, sync-free step,
#      device-side augmentation
#   2. a short bf16 training run with --compile on the built-in data
#   3. tubevit bench model --device cuda --precision bf16 --compile (clips/s, MFU)
#   4. a 1-GPU FSDP2 step (bf16 parameters, fp32 reduction) and a DCP save + load
#      (and a 2-GPU one when the machine has two)
#   5. the loader feeding the step (tubevit bench pipeline)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-runs/gpu_check}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}

echo "== 0. device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch; assert torch.cuda.is_available(), 'CUDA not available to torch'; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())"

echo "== 1. GPU tests"
"$PY" -m pytest -q -p no:cacheprovider -rs tests/bench/test_precision.py tests/data/test_device_augment.py

echo "== 2. bf16 training with --compile (built-in data, tubevit_tiny, 60 steps)"
"$PY" - "$OUT/data" <<'PYEOF'
import sys
from tubevit.data.synthetic import make_synthetic_data
make_synthetic_data(sys.argv[1], num_classes=4, videos_per_class=8, images_per_class=8, frames=32, size=64)
PYEOF
"$PY" -m tubevit train --model tubevit_tiny --frames 16 --size 64 \
    --train-list "$OUT/data/videos/train.txt" --val-list "$OUT/data/videos/val.txt" --data-root "$OUT/data" \
    --steps 60 --batch-size 16 --workers 4 --precision bf16 --compile --fresh --out "$OUT/train_bf16" \
    --set device=cuda --set progress=false --set log_every=20
tail -n 3 "$OUT/train_bf16/metrics.jsonl"

echo "== 3. tubevit bench model (TubeViT-B, bf16, compiled): MFU"
"$PY" -m tubevit bench model --model tubevit_base --device cuda --precision bf16 --compile bf16 \
    --modes infer,train --variants tubevit,dense --repeats 3 --iters 5

echo "== 4. FSDP2 step + DCP save/load on 1 GPU"
"$PY" -m torch.distributed.run --standalone --nproc_per_node=1 benchmarks/gpu_fsdp_dcp.py "$OUT"
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -ge 2 ]; then
  echo "== 4b. FSDP2 + DCP on 2 GPUs (NCCL)"
  "$PY" -m torch.distributed.run --standalone --nproc_per_node=2 benchmarks/gpu_fsdp_dcp.py "$OUT"
fi

echo "== 5. the loader feeding the step"
"$PY" -m tubevit bench pipeline --model tubevit_tiny --data synthetic --precision bf16 --workers 0,4,8

echo "gpu_check: all parts passed; outputs in $OUT"
