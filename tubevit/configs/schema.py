"""Training configuration: every training default lives here, once (model defaults live in
:class:`tubevit.model.ModelConfig`, which :class:`TrainConfig` embeds).

Recipe values from the paper (§5, Table 10) are noted where they differ from the defaults: the
defaults are chosen for training from scratch on one machine, the paper fine-tunes from an image
ViT with batch 256 for 300k steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tubevit import defaults
from tubevit.defaults import AGGREGATIONS, PRECISIONS  # noqa: F401 - re-exported by tubevit.configs
from tubevit.model.config import ModelConfig
from tubevit.model.presets import preset_config


@dataclass
class SourceConfig:
    """One dataset of a (possibly joint) run. Its ``name`` is the name of the head its batches
    go through (§3.5: one linear head per dataset) and the prefix of its logged metrics."""

    # Head name, e.g. "k400" or "imagenet"; "video" and "image" for the built-in data.
    name: str = "video"
    # video | image. Set by data.video / data.image; required in data.sources entries.
    kind: str = ""
    # Training annotations: list file, CSV, Kinetics CSV or SSv2 JSON (videos); list file or a
    # class-per-folder directory (images). Empty: this source is not used.
    train_list: str = ""
    # Validation annotations (same formats). Empty: no validation for this source.
    val_list: str = ""
    # Directory the annotation paths are relative to.
    root: str = ""
    # Optional classes file (one name per line) mapping label names to indices and back.
    classes: str = ""
    # Classes of this source's head; 0 = take it from the data (classes file or labels).
    num_classes: int = 0
    # Per-source batch size (images are ~T times cheaper than clips); 0 = train.batch_size.
    batch_size: int = 0
    # Relative share of training steps drawn from this source (joint schedule).
    weight: float = 1.0
    # Clip settings of this source where they differ from data.frames / stride / fps / size
    # (e.g. SSv2 at 32 frames 24 fps next to K400 at 64 frames 15 fps); 0 (fps: -1) = the run's.
    frames: int = 0
    stride: float = 0.0
    fps: float = -1.0
    size: int = 0


SOURCE_KINDS = ("video", "image")
TRACKER_NAMES = ("tensorboard", "wandb", "mlflow")


@dataclass
class DataConfig:
    # Any number of video and image datasets, each its own head (keys of SourceConfig; `kind`
    # required). When given, data.video / data.image must be left empty.
    sources: list[SourceConfig] = field(default_factory=list)
    # Shorthand for the common two-source case (the --train-list / --image-train-list flags).
    video: SourceConfig = field(default_factory=lambda: SourceConfig(name="video", kind="video"))
    image: SourceConfig = field(default_factory=lambda: SourceConfig(name="image", kind="image"))
    # Frames per clip (§5: 64 Kinetics, 32 SSv2, 128 Charades).
    frames: int = 32
    # Frame stride in source frames (ignored when fps > 0).
    stride: float = 2.0
    # A video shorter than one clip's span, one of tubevit.defaults.SHORT_POLICIES: loop (wrap
    # around), pad (repeat the last frame), fit (that video's stride lowered so the clip covers it
    # once, first frame to last). Training, validation, eval and predict read the same key.
    short: str = defaults.SHORT_POLICIES[0]
    # Target frame rate (§5: 15 Kinetics, 24 SSv2, 6 Charades); 0 = use stride.
    fps: float = 0.0
    # Square crop size (§5: 224).
    size: int = 224
    # DataLoader worker processes per source and rank; -1 = from the machine (tubevit.data.loader
    # .plan_cpu: the cores left to the step; per GPU with torchrun). Torch threads get the rest.
    workers: int = -1
    # Video decoder, one of tubevit.defaults.DECODERS (auto = pyav, always installed).
    decoder: str = "auto"
    # Largest frame (width x height) a video header may claim; a larger one is an unreadable
    # sample, refused before any frame is allocated (tubevit.defaults.MAX_FRAME_PIXELS: DCI 8K).
    max_frame_pixels: int = defaults.MAX_FRAME_PIXELS
    # Where training RandAugment and normalisation of clips run: worker (loader processes, float
    # clips) | device (workers crop and scale uint8; the step's device finishes the batch, so a
    # GPU run is not bound by CPU augmentation). Same clips for a seed either way.
    augment_on: str = "worker"
    # RandAugment layers and magnitude (§5: 2, 10); 0 layers disables it. "auto" scales the
    # magnitude with the size of each training set (tubevit.data.transforms.auto_randaugment):
    # off below 10k samples, log-linear up to the paper's 10 at 100k and more. On 180 clips the
    # paper's 2 x 10 (with flips and the old head init) kept a from-scratch model at ln K
    # (docs/TRAINING.md, "The default recipe ... why the old defaults did not train").
    randaugment_layers: int = 2
    randaugment_magnitude: float | str = "auto"
    # Horizontal flips in training. Off by default: the paper's recipe lists none (§5), and a flip
    # changes the label wherever left/right is part of it (SSv2, the built-in data's move
    # right/left and rotate cw/ccw). The k400 recipe turns it on.
    hflip: bool = False
    # Smallest area fraction of the random resized crop (clips and images; ImageNet recipes use 0.08).
    min_scale: float = 0.25
    # Above this fraction of unreadable files, counted over the run (every sample drawn since the
    # start, and each validation on its own), the run stops naming them (tubevit.defaults).
    max_fail_fraction: float = defaults.MAX_FAIL_FRACTION
    # Input normalisation (x - mean) / std per channel, pixels in [0, 1]. Empty: the --init-from
    # file's (0.5 for Google/AugReg .npz and google/vit-* weights, which expect [-1, 1]), else
    # ImageNet's. The values used are written into config.yaml and every checkpoint, and
    # eval/predict read them from the model file.
    mean: list = field(default_factory=list)
    std: list = field(default_factory=list)


@dataclass
class OptimConfig:
    # Peak learning rate after warm-up, quoted for a global batch of lr_ref_batch (§5: 5e-5 for B,
    # 1e-5 for L/H, fine-tuning from an image ViT at batch 256). The default is the from-scratch
    # rate measured in docs/TRAINING.md ("The default recipe") at batch 16: 1e-3 beat 5e-4 and 2e-3
    # on the built-in frame-order set (0.600 against 0.417 and 0.467 top-1, tubevit_tiny, seed 0).
    lr: float = 1e-3
    # Decoupled (AdamW) weight decay (§5: 1e-3 for B, 1e-5 for L/H which diverge otherwise).
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    # Linear warm-up steps (§5: 10k of 300k); -1 = warmup_fraction of the run, so the warm-up
    # scales with the run's length.
    warmup_steps: int = -1
    warmup_fraction: float = 0.05
    # Cosine decay ends at lr * min_lr_ratio.
    min_lr_ratio: float = 0.0
    # Global gradient-norm clip; 0 disables it.
    clip_grad: float = 1.0
    # Layer-wise lr decay (BEiT, VideoMAE fine-tuning; e.g. 0.75): block i trains at
    # lr * layer_decay ** (depth - i), the tubes and embedding at lr * layer_decay ** (depth + 1),
    # the norm, pooling and heads at lr. 1 = off.
    layer_decay: float = 1.0
    # EMA of the weights (e.g. 0.9998): updated after every optimizer step, validated next to
    # the trained weights (val/<name>/ema_top1), checkpointed, exported with `tubevit export --ema`.
    # 0 = off.
    ema_decay: float = 0.0
    # Global batch (clips per optimizer step over all processes and accumulation) the lr is quoted
    # for; the run uses lr * sqrt(global_batch / lr_ref_batch) (lr_scaling), so changing
    # --batch-size or the process count keeps the recipe; 0 uses lr as given.
    lr_ref_batch: int = 16
    # sqrt (Adam's rule: the update noise scales with 1/sqrt(batch)) | linear (Goyal et al., SGD) | none.
    lr_scaling: str = "sqrt"


@dataclass
class EvalConfig:
    # Validate (and maybe write best.pt) every N optimizer steps; 0 = only at the end.
    every: int = 0
    # Views during training-time validation: one centre view (tubevit.defaults.VAL_CLIPS), 12x
    # cheaper than the paper's 4x3 multi-view testing that `tubevit eval` reports.
    clips: int = defaults.VAL_CLIPS
    crops: int = defaults.VAL_CROPS
    # How views of one video are combined (tubevit.evaluate.multiview).
    aggregation: str = "mean_logits"
    # Batch size of evaluation (views per forward); 0 = train.batch_size.
    batch_size: int = 0


@dataclass
class TrainConfig:
    # Preset the model section started from (tubevit.model.presets); fields set in `model`
    # override it.
    preset: str = "tubevit_base"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Length of the run: optimizer steps, or epochs of the first source with training data when
    # steps is 0 (an "epoch" there is one pass over it at its batch size).
    steps: int = 0
    epochs: float = 0.0
    # Clips (or images) per optimizer micro-batch per rank, before accumulation.
    batch_size: int = 8
    # Micro-batches accumulated into one optimizer step.
    grad_accum: int = 1
    # fp32 | bf16 (autocast, CPU AMX or GPU) | fp16 (autocast + GradScaler, GPU).
    precision: str = "fp32"
    # torch.compile the model.
    compile: bool = False
    # Label smoothing (§5: 0.3 SSv2, 0.1 Charades).
    label_smoothing: float = 0.0
    # Mixup / CutMix alphas (0 disables; §5: mixup 0.3 on SSv2), probability of mixing a batch,
    # and the chance CutMix is picked when both are on.
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    # Everything random (init, data order, augmentation, joint schedule) derives from it.
    seed: int = 0
    # Output directory: config.yaml, metrics.jsonl, last.pt, best.pt, plots.
    out: str = "runs/train"
    # Initial weights: an image ViT (timm / Hugging Face / Google .npz, converted on the fly) or a
    # `tubevit convert` output; loaded strictly, pool.* / heads.* / gate.* new (docs/PRETRAINED.md).
    init_from: str = ""
    # How an image ViT's 2D kernel fills the video tubes' frames: central | average.
    init_inflate: str = defaults.INFLATE_STRATEGIES[0]
    # Image-to-video scaling (§3.6): a trained smaller TubeViT (a tubevit checkpoint or `tubevit
    # convert` output, weights with their config) whose video tubes, widened by space-to-depth, feed
    # the `preset`-sized model built from the image ViT in init_from (tubevit.convert.scaling). The
    # run's model.tubes and tokenizer then become the scaled model's. Read only when a run starts,
    # not on resume (the checkpoint holds the weights).
    scale_from: str = ""
    # Log (and sync losses to the host) every N steps.
    log_every: int = 10
    # Write out/last.pt every N steps (and at the end); 0 = only at the end.
    ckpt_every: int = 100
    # cpu | cuda | cuda:N | auto.
    device: str = "auto"
    # Torch intra-op threads per process: -1 = OMP_NUM_THREADS when set, else the cores the loader
    # workers leave (tubevit.data.loader.plan_cpu); 0 = all of the process's cores, for a loader
    # that costs little (the demo); n = n. Set (>= 0), it wins over OMP_NUM_THREADS.
    threads: int = -1
    # Shard parameters, gradients and optimizer state with FSDP2 instead of replicating them with
    # DDP (large/huge presets; CPU gloo too); checkpoints are then sharded folders (last.dcp).
    fsdp: bool = False
    # Experiment trackers, any of tensorboard | wandb | mlflow (optional extras; tubevit.engine.trackers).
    trackers: list[str] = field(default_factory=list)
    # Shorthand for trackers: [tensorboard] (events in out/tb).
    tensorboard: bool = False
    # Draw a tqdm progress bar on rank 0.
    progress: bool = True

    # ------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    def sources(self) -> list[SourceConfig]:
        """The sources of the run: ``data.sources`` in order, else the shorthand ones with
        training data (video first)."""
        if self.data.sources:
            return list(self.data.sources)
        return [s for s in (self.data.video, self.data.image) if s.train_list]

    def clip(self, src: SourceConfig) -> dict:
        """``{frames, stride, fps, size}`` of a source: its overrides, else the run's."""
        d = self.data
        return {"frames": src.frames or d.frames, "stride": src.stride or d.stride,
                "fps": d.fps if src.fps < 0 else src.fps, "size": src.size or d.size}


def default_config(preset: str = "tubevit_base") -> TrainConfig:
    return TrainConfig(preset=preset, model=preset_config(preset))
