"""The assembled TubeViT (paper §3, Fig. 2): sparse tubes -> fixed tube-centre position embedding
-> one ViT shared by images and videos -> attention pooling -> one linear head per dataset.

Inputs: images ``[B, C, H, W]`` (through the 2D tube alone) or videos ``[B, C, T, H, W]`` (through
every tube), of any size the tubes fit; outputs logits ``[B, classes]`` of the chosen head.
"""

from __future__ import annotations

from contextlib import nullcontext
import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from tubevit.model.config import ModelConfig
from tubevit.model.gate import GatedShortcut
from tubevit.model.heads import AttentionPool, DatasetHeads, init_head
from tubevit.model.pos_embed import POS_EMBEDS, LearnedPosition, PositionCache
from tubevit.model.presets import preset_config
from tubevit.model.tokenizer import TubeTokenizer
from tubevit.model.tubes import TubeLayout, get_tube_set, scaled_tube_set
from tubevit.model.vit import Block


class TubeViT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        # Not a buffer: the table depends on the input shape and is never saved. Built first so a
        # width the embedding cannot take fails before anything is allocated.
        self.pos_cache = PositionCache(d, cfg.pos_tau, cfg.pos_zero_fill)
        # A numeric tube_scale acts here; "auto" needs the frame size, which only a training run
        # (or inspect) knows: they resolve it into an explicit list first (factor 1 here).
        tubes = scaled_tube_set(cfg.tubes, cfg.tube_scale, None, kernels=cfg.tube_scale_kernels)
        self.tokenizer = TubeTokenizer(get_tube_set(tubes), d, cfg.in_chans, cfg.tokenizer, cfg.eval_stride_scale)
        if cfg.pos_embed not in POS_EMBEDS:
            raise ValueError(f"unknown pos_embed {cfg.pos_embed!r}; choose one of {POS_EMBEDS}")
        if cfg.pos_embed == "learned":
            self.pos_learned = LearnedPosition(d)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_dim, qkv_bias=cfg.qkv_bias, drop=cfg.dropout, attn_drop=cfg.attn_dropout,
                  drop_path=r, layer_scale=cfg.layer_scale, eps=cfg.norm_eps)
            for r in rates
        )
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.pool = AttentionPool(d, cfg.num_heads)
        self.heads = DatasetHeads(d, dict(cfg.num_classes), cfg.head_dropout)
        if cfg.gate_layer is not None:
            if not 0 <= cfg.gate_layer < cfg.depth:
                raise ValueError(f"gate_layer {cfg.gate_layer} is not a block index (depth {cfg.depth})")
            self.gate = GatedShortcut(d, cfg.gate_per_channel)
        self.grad_checkpointing = cfg.grad_checkpointing
        # Set from a model file (tubevit.io): {head: [names]} and the input preprocessing.
        self.class_names: dict | None = None
        self.preprocessing = None
        self.apply(_init_linear)
        self.heads.reset_parameters()  # after the model-wide xavier init, which must not reach the heads
        self.freeze_until(cfg.freeze_until)

    # ------------------------------------------------------------------ geometry
    def token_layout(self, input_shape) -> TubeLayout:
        """The tube layout for an input shape ``(T, H, W)`` (video) or ``(H, W)`` (image)."""
        if len(input_shape) == 2:
            i = self.tokenizer.image_tube
            if i is None:
                raise ValueError("this tube set has no 2D tube, so it cannot take images")
            return TubeLayout((1, *map(int, input_shape)), (self.tokenizer.specs[i],))
        return self.tokenizer.layout(input_shape)

    def position_embedding(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``[N, d]`` table for the input ``x``'s shape, cached per (shape, device, dtype)."""
        is_image, thw = self.tokenizer.check_input(x)
        return self._position_table(is_image, thw, x.device, dtype)

    def _position_table(self, is_image: bool, thw, device, dtype) -> torch.Tensor:
        # The layout (and its positions) is only built on a cache miss. The key holds the tubes in
        # use, which differ between training and eval mode when eval_stride_scale != 1.
        mode = self.cfg.pos_embed
        layout = lambda: self.token_layout(thw[1:] if is_image else thw)  # noqa: E731
        key = ("image" if is_image else "video", thw, self.tokenizer.specs)
        if mode == "sincos_centres":
            return self.pos_cache.get(key, lambda: layout().centres(), device, dtype)
        if mode == "sincos_grid":
            return self.pos_cache.get(key + ("grid",), lambda: layout().grid_positions(), device, dtype)
        if mode == "none":
            return self.pos_cache.get(key + ("none",), lambda: [], device, dtype, zeros=layout().total)
        # learned: integer centre coordinates (cached) index the learned tables (not cached: they train)
        index = self.pos_cache.get(key + ("index",), lambda: layout().centres(), device, torch.long, raw=True)
        return self.pos_learned(index).to(dtype)

    # ------------------------------------------------------------------ forward
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tube tokens plus position embedding: ``[B, N, d]`` (the paper's z0 plus positions)."""
        is_image, thw = self.tokenizer.check_input(x)  # validated once per forward
        tokens = self.tokenizer.tokenize(x, is_image)
        return tokens + self._position_table(is_image, thw, x.device, tokens.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised encoder tokens ``[B, N, d]``."""
        s = self.cfg.freeze_until
        # The frozen prefix (tokenizer and blocks[:s]) needs no gradient, so it stores no activations.
        with torch.no_grad() if s > 0 else nullcontext():
            z = z0 = self.embed(x)
            for blk in self.blocks[:s]:
                z = blk(z)
        for i in range(s, len(self.blocks)):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                z = checkpoint(self.blocks[i], z, use_reentrant=False)
            else:
                z = self.blocks[i](z)
            if i == self.cfg.gate_layer:
                z = self.gate(z, z0)  # Eq. 8: z_s = MLP(LN(y_s)) + y_s + tanh(alpha) * z0
        return self.norm(z)

    def forward_head(self, tokens: torch.Tensor, head: str | None = None, pre_logits: bool = False) -> torch.Tensor:
        pooled = self.pool(tokens)
        return pooled if pre_logits else self.heads(pooled, head)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Attention-pooled features ``[B, d]``, shared by every head."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor, head: str | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x), head)

    # ------------------------------------------------------------------ common model surface
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def freeze_until(self, s: int) -> None:
        """Freeze the tokenizer and blocks[:s] (§3.6); s = 0 unfreezes everything. Only blocks[s:],
        the final norm, the gate, pooling and heads keep ``requires_grad``."""
        if not 0 <= s <= len(self.blocks):
            raise ValueError(f"freeze_until {s} is outside 0..{len(self.blocks)} (the model has {len(self.blocks)} blocks)")
        if s > 0 and self.cfg.gate_layer is not None and self.cfg.gate_layer < s:
            raise ValueError(f"gate_layer {self.cfg.gate_layer} lies in the frozen prefix (freeze_until {s}); "
                             "the gate must sit at a trained layer, normally gate_layer == freeze_until")
        self.cfg.freeze_until = int(s)
        self.tokenizer.requires_grad_(s == 0)
        for i, blk in enumerate(self.blocks):
            blk.requires_grad_(i >= s)
        self.train(self.training)

    def train(self, mode: bool = True) -> "TubeViT":
        """As ``nn.Module.train``, but a frozen prefix (``freeze_until``) always runs in eval mode:
        frozen layers are fixed feature extractors, so dropout and drop-path there only add noise."""
        super().train(mode)
        for blk in self.blocks[: self.cfg.freeze_until]:
            blk.eval()
        return self

    def set_eval_stride_scale(self, factor: float) -> None:
        """Evaluate at spatial strides x ``factor`` (Table 7d: more tokens than in training with
        the same weights); training mode keeps the configured strides."""
        self.tokenizer.set_eval_stride_scale(factor)
        self.cfg.eval_stride_scale = float(factor)

    def no_weight_decay(self) -> set[str]:
        """Parameter names the optimizer should not decay (besides biases and norms)."""
        # The gate is a gain that starts at 0; decaying it would pull the shortcut shut.
        return ({"pool.probe"} | ({"gate.alpha"} if hasattr(self, "gate") else set())
                | ({"pos_learned.t", "pos_learned.y", "pos_learned.x"} if hasattr(self, "pos_learned") else set()))

    def add_head(self, name: str, num_classes: int) -> None:
        """Add (or replace) one dataset's head, e.g. for fine-tuning on a new label space."""
        head = nn.Linear(self.cfg.width, num_classes)
        init_head(head)
        p = next(self.parameters())
        self.heads[name] = head.to(device=p.device, dtype=p.dtype)
        self.cfg.num_classes = {**self.cfg.num_classes, name: int(num_classes)}

    @property
    def head_names(self) -> list[str]:
        return self.heads.names

    # ------------------------------------------------------------------ timm's surface
    @property
    def num_features(self) -> int:
        """Width of the pooled features every head reads (``forward_head(..., pre_logits=True)``)."""
        return self.cfg.width

    def get_classifier(self, head: str | None = None) -> nn.Module:
        """The linear head ``head`` (default: the only one)."""
        return self.heads[self.heads.resolve(head)]

    def reset_classifier(self, num_classes: int, head: str | None = None) -> None:
        """A new linear head of ``num_classes`` in place of ``head`` (default: the only one), e.g.
        to fine-tune on another label space; its class names become ``0..K-1``. For features
        without a head use ``forward_pooled`` (timm's ``num_classes=0``)."""
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}; for the pooled features use "
                             "model.forward_pooled(x) (width model.num_features)")
        name = self.heads.resolve(head)
        self.add_head(name, int(num_classes))
        if self.class_names is not None:
            self.class_names = {**self.class_names, name: [str(i) for i in range(int(num_classes))]}

    @property
    def pretrained_cfg(self) -> dict:
        """What the weights expect of their input, in timm's keys (plus the clip settings): mean,
        std, input_size, num_frames, frame_stride, fps, and the class names per head. Set from the
        model file by ``from_pretrained`` / ``create_model(pretrained=)``; ImageNet mean/std when
        the model was built from scratch."""
        from tubevit.io.schema import Preprocessing  # the file layer owns the schema

        p = self.preprocessing or Preprocessing()
        return {
            "mean": p.mean, "std": p.std, "input_size": (self.cfg.in_chans, p.size, p.size) if p.size else None,
            "num_frames": p.frames, "frame_stride": p.stride, "fps": p.fps, "source": p.source,
            "num_classes": dict(self.cfg.num_classes), "classifier": [f"heads.{h}" for h in self.head_names],
            "first_conv": "tokenizer", "label_names": dict(self.class_names or {}),
        }

    def save_pretrained(self, folder, **kwargs):
        """Write ``folder`` (``config.json`` + ``model.safetensors``, the Hugging Face layout; one
        ``.safetensors`` file when the name ends so) with the config, class names and
        preprocessing; ``tubevit.from_pretrained(folder)`` reads it back. See tubevit.io."""
        from tubevit.io import save_pretrained  # the file layer builds on the model, not the reverse

        return save_pretrained(self, folder, **kwargs)

    def param_groups_summary(self) -> dict[str, int]:
        """Parameter counts of the tubes, the backbone (blocks + final norm) and the readout."""
        count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
        return {
            "tubes": count(self.tokenizer),
            "backbone": count(self.blocks) + count(self.norm),
            "pool": count(self.pool),
            "heads": count(self.heads),
            "total": count(self),
        }


def _init_linear(m: nn.Module) -> None:
    # JAX ViT convention: xavier-uniform linear weights, zero biases (the heads are re-initialised
    # afterwards by DatasetHeads.reset_parameters).
    if isinstance(m, nn.Linear) and m.weight.device.type != "meta":
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
