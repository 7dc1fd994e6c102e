"""Choices and defaults shared by the library, the configs and every CLI, defined once.

A leaf module (it imports nothing from tubevit), so the config schema, the data pipeline, the
evaluator and the argparse builders can all read it without import cycles. A CLI's ``choices=``
and a function's validation use the same tuple, so they cannot drift apart
(tests/test_defaults.py checks every CLI against these).
"""

from __future__ import annotations

__all__ = [
    "AGGREGATIONS", "DECODERS", "EVAL_CLIPS", "EVAL_CROPS", "IMAGE_EXTENSIONS", "INFLATE_STRATEGIES",
    "MAX_FAIL_FRACTION", "MAX_FRAME_PIXELS", "PRECISIONS", "PRECISION_CHOICES", "SHORT_EFFECT", "SHORT_POLICIES",
    "VAL_CLIPS", "VAL_CROPS",
]

# Numeric precision of the matrix products (tubevit.model.precision): fp32 as is, bf16 / fp16 under
# autocast with low-precision weights for inference.
PRECISIONS = ("fp32", "bf16", "fp16")
# What a user may ask for: a precision, or "auto" (tubevit.model.precision.resolve_precision): bf16
# where the device computes it natively (a CUDA GPU with bf16; a CPU with AVX512-BF16 or AMX, where
# a training step runs ~2x faster than fp32), fp32 elsewhere.
PRECISION_CHOICES = ("auto",) + PRECISIONS

# How the views of one video are combined (tubevit.evaluate.multiview): mean logits (Scenic,
# big_vision) or mean softmax probabilities (mmaction2's average_clips="prob").
AGGREGATIONS = ("mean_logits", "mean_probs")

# Video decoder backends (tubevit.data.decode); "auto" is PyAV, the one always installed.
DECODERS = ("auto", "pyav", "torchcodec", "decord")

# What a clip does on a video shorter than its span (tubevit.data.sampling): loop (wrap around, as
# mmaction2), pad (repeat the last frame), fit (a smaller stride, so the clip covers the video once
# forward, with no jump and no frozen tail). The first is data.short's default.
SHORT_POLICIES = ("loop", "pad", "fit")
# How the warnings about such videos say what happened to them.
SHORT_EFFECT = {"loop": "their clips loop", "pad": "their clips repeat the last frame",
                "fit": "their clips run through the whole video at a lower stride"}

# How a 2D patch kernel is spread over a tube's frames (tubevit.convert.kernels.inflate; scenic
# ViViT's central_frame / average_frame initialisers).
INFLATE_STRATEGIES = ("central", "average")

# Files read as images: image datasets and frame folders (a video stored as one image per frame).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Largest fraction of unreadable samples, counted over the whole run (training: every sample
# drawn from the start of the run, and each validation; evaluation: the whole list), before the
# run stops with an error naming the files. 10%: a few broken downloads in a scraped dataset
# (Kinetics loses a few percent a year) are skipped, a wrong data root is not.
MAX_FAIL_FRACTION = 0.1

# Multi-view testing (§5): 4 temporal clips x 3 spatial crops per video, their logits averaged.
# The default of `tubevit eval` and `tubevit predict` (the number to report).
EVAL_CLIPS = 4
EVAL_CROPS = 3
# Periodic validation during training (eval.clips / eval.crops): one centre view per video, 12x
# cheaper than the paper's protocol, to pick best.pt and draw the curve; the reported number is
# `tubevit eval`'s. `tubevit eval --clips 1 --crops 1` of the same checkpoint gives exactly the
# trainer's figure (tests/evaluate/test_eval_matches_training.py).
VAL_CLIPS = 1
VAL_CROPS = 1

# The datasets let FFmpeg scale frames while decoding only when the source's short side is more
# than this many times the size the clip needs (VideoDataset.decode_short_side). Below it the
# crop-and-scale that follows on the uint8 frames does the only resize: swscale's extra pass cost
# more than it saved (a 32x112 item from 256p: 143 -> 107-120 ms; from 340p: 224-240 -> 197-218 ms,
# docs/BENCHMARKS.md "Decode-time scaling").
DECODE_SCALE_ABOVE = 2.0

# Largest decoded frame (width x height) accepted from a video's header, checked before the first
# frame is allocated: DCI 8K (8192 x 4320, ~106 MB per RGB frame). A header claiming more (a
# corrupt or hostile file, e.g. 16000 x 16000 = 768 MB per frame) makes the video unreadable
# instead of taking gigabytes in every decoding process. Set with data.max_frame_pixels.
MAX_FRAME_PIXELS = 8192 * 4320
