"""What a model sees and costs on one input: per-tube grids, tokens, parameters, FLOPs, and a
picture of where each tube's kernels sit (behind ``tubevit inspect``).

Models are built on the meta device, so even ``tubevit_huge`` is inspected without memory.
FLOPs follow one convention: 2 x multiply-adds of one forward on one view (see model/flops.py).
"""

from __future__ import annotations

import torch

from tubevit.model.flops import count_flops
from tubevit.factory import create_model
from tubevit.model.presets import preset_config
from tubevit.model.tubes import TubeLayout, resolve_tube_scale, scaled_tube_set, tube_centres

FLOPS_CONVENTION = "FLOPs = 2 x multiply-adds, one forward of one view, counted by torch FlopCounterMode with the math attention backend"


def parse_size(size) -> tuple[int, int]:
    """``224`` or ``"224"`` -> (224, 224); ``"160x224"`` -> (H=160, W=224)."""
    if isinstance(size, (tuple, list)):
        h, w = size
        return int(h), int(w)
    text = str(size).lower()
    if "x" in text:
        h, w = text.split("x", 1)
        return int(h), int(w)
    return int(text), int(text)


def _tube_rows(layout: TubeLayout) -> list[dict]:
    rows = []
    for spec, grid, count in zip(layout.specs, layout.grids, layout.counts):
        centres = tube_centres(spec, layout.input_thw)
        lo = [min(c[a] for c in centres) for a in range(3)]
        hi = [max(c[a] for c in centres) for a in range(3)]
        rows.append({
            "name": spec.name, "kernel": list(spec.kernel), "stride": list(spec.stride), "offset": list(spec.offset),
            "s2d": list(spec.s2d), "effective_kernel": list(spec.effective_kernel), "grid": list(grid),
            "tokens": count, "centre_min": lo, "centre_max": hi,
        })
    return rows


def inspect_model(model: str = "tubevit_base", *, frames: int = 32, size=224, tubes=None, tokenizer=None,
                  num_classes: int = 400, dense: bool = True, plot: str | None = None, tube_scale="auto") -> dict:
    """Tokens, parameters and GFLOPs of a preset on a ``frames x size`` clip (frames=0: an image);
    with ``plot``, also draw the tubes' kernels to that PNG. ``tube_scale`` as in training
    (``auto``: a named set scaled from 224 px to the frame size, the shorter side if not square)."""
    h, w = parse_size(size)
    base = preset_config(model, **({"tubes": tubes} if tubes is not None else {}))
    scaled = scaled_tube_set(base.tubes, tube_scale, min(h, w), kernels=base.tube_scale_kernels)
    net = create_model(model, num_classes=num_classes, tubes=scaled, tokenizer=tokenizer, device="meta",
                       tube_scale=1.0)
    shape = (h, w) if frames == 0 else (frames, h, w)
    net.tokenizer.check_input(torch.empty((1, net.cfg.in_chans, *shape), device="meta"))  # clear error if too small
    layout = net.token_layout(shape)
    params = net.param_groups_summary()
    flops = count_flops(net, (net.cfg.in_chans, *shape))
    report = {
        "model": model, "tubes_set": base.tubes if isinstance(base.tubes, str) else "custom",
        "tube_scale": resolve_tube_scale(tube_scale, base.tubes, min(h, w)),
        "tokenizer": net.cfg.tokenizer, "input": list(layout.input_thw), "width": net.cfg.width, "depth": net.cfg.depth,
        "tokens": layout.total, "tubes": _tube_rows(layout),
        "params": params["total"], "params_tubes": params["tubes"], "params_backbone": params["backbone"],
        "params_pool": params["pool"], "params_heads": params["heads"],
        "gflops": flops / 1e9, "flops_convention": FLOPS_CONVENTION,
    }
    if plot:
        plot_tubes(layout, plot, title=f"{model} ({report['tokenizer']}): {layout.total} tokens on "
                                       f"{'x'.join(map(str, layout.input_thw))}")
    if dense and frames >= 2:
        # The comparison point: a ViViT-style dense 2x16x16 tubelet ViT with the same blocks.
        dnet = create_model(model, num_classes=num_classes, tubes="dense", tokenizer="multi", device="meta")
        report["dense_tokens"] = dnet.token_layout(shape).total
        report["dense_gflops"] = count_flops(dnet, (dnet.cfg.in_chans, *shape)) / 1e9
    return report


def format_report(r: dict) -> str:
    lines = [f"{r['model']}  tokenizer={r['tokenizer']}  tubes={r['tubes_set']}  tube_scale={r['tube_scale']:.4g}  input T x H x W = "
             f"{'x'.join(map(str, r['input']))}  width={r['width']} depth={r['depth']}", ""]
    head = f"{'tube':<16}{'kernel':>10}{'stride':>12}{'offset':>10}{'s2d':>8}{'grid':>10}{'tokens':>8}   centres t / y / x"
    lines.append(head)
    for i, t in enumerate(r["tubes"]):
        fmt = lambda v: "x".join(map(str, v))  # noqa: E731
        cen = " / ".join(f"{lo:g}..{hi:g}" for lo, hi in zip(t["centre_min"], t["centre_max"]))
        lines.append(f"{(t['name'] or f'tube{i}'):<16}{fmt(t['kernel']):>10}{fmt(t['stride']):>12}{fmt(t['offset']):>10}"
                     f"{fmt(t['s2d']):>8}{fmt(t['grid']):>10}{t['tokens']:>8}   {cen}")
    lines += ["", f"tokens: {r['tokens']}",
              f"parameters: {r['params'] / 1e6:.2f}M (tubes {r['params_tubes'] / 1e6:.2f}M, backbone "
              f"{r['params_backbone'] / 1e6:.2f}M, attention pool {r['params_pool'] / 1e6:.2f}M, heads "
              f"{r['params_heads'] / 1e6:.2f}M)",
              f"GFLOPs per view: {r['gflops']:.2f}  ({r['flops_convention']})"]
    if "dense_tokens" in r:
        lines.append(f"dense 2x16x16 tubelet ViT, same size: {r['dense_tokens']} tokens, {r['dense_gflops']:.2f} GFLOPs "
                     f"({r['dense_tokens'] / r['tokens']:.1f}x the tokens, {r['dense_gflops'] / r['gflops']:.1f}x the FLOPs)")
    return "\n".join(lines)


def plot_tubes(layout: TubeLayout, path: str, title: str = "") -> None:
    """Draw where each tube's kernels sit, one row per tube: time x width (every kernel along t and
    x, for one row of y) and height x width (the kernel footprints of one time slot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    T, H, W = layout.input_thw
    n = len(layout.specs)
    colours = plt.get_cmap("tab10").colors
    tw_width = min(9.0, 2.0 + 0.12 * T)
    fig, axes = plt.subplots(n, 2, figsize=(tw_width + 3.2, 2.6 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [tw_width, 3.0]})
    for i, (spec, grid, count) in enumerate(zip(layout.specs, layout.grids, layout.counts)):
        c = colours[i % len(colours)]
        kt, kh, kw = spec.effective_kernel
        ax_tw, ax_hw = axes[i]
        for it in range(grid[0]):
            for iw in range(grid[2]):
                xy = (spec.offset[0] + it * spec.stride[0], spec.offset[2] + iw * spec.stride[2])
                ax_tw.add_patch(Rectangle(xy, kt, kw, color=c, alpha=0.18, lw=0))
                ax_tw.add_patch(Rectangle(xy, kt, kw, fill=False, color=c, lw=0.9))
        for ih in range(grid[1]):
            for iw in range(grid[2]):
                xy = (spec.offset[2] + iw * spec.stride[2], spec.offset[1] + ih * spec.stride[1])
                ax_hw.add_patch(Rectangle(xy, kw, kh, color=c, alpha=0.18, lw=0))
                ax_hw.add_patch(Rectangle(xy, kw, kh, fill=False, color=c, lw=0.9))
        label = (f"{spec.name or f'tube{i}'}  kernel {'x'.join(map(str, spec.kernel))}  stride "
                 f"{'x'.join(map(str, spec.stride))}  offset {'x'.join(map(str, spec.offset))}"
                 + (f"  s2d {'x'.join(map(str, spec.s2d))}" if spec.s2d_factor > 1 else "")
                 + f"  -> {'x'.join(map(str, grid))} = {count} tokens")
        ax_tw.set_title(label, fontsize=9, loc="left")
        ax_tw.set_xlim(0, T)
        ax_tw.set_ylim(W, 0)
        ax_tw.set_ylabel("x (px)")
        ax_hw.set_xlim(0, W)
        ax_hw.set_ylim(H, 0)
        ax_hw.set_aspect("equal")
        ax_hw.set_ylabel("y (px)", fontsize=8)
        ax_hw.tick_params(labelsize=7)
    axes[-1][0].set_xlabel("frame (t)")
    axes[-1][1].set_xlabel("x (px)")
    fig.suptitle(title or f"{layout.total} tokens on a {T}x{H}x{W} clip")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
