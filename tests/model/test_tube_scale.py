"""Size-aware tube sets (model.tube_scale): counts, rounding, centres, the exact 2D tube."""

from __future__ import annotations

import math

import pytest
import torch

from tubevit.model.tubes import (TubeLayout, TubeSpec, get_tube_set, resolve_tube_scale, scale_tube,
                                 scaled_tube_set, tube_centres)
from tubevit.factory import create_model


def _layout(tubes, t, s):
    return TubeLayout((t, s, s), get_tube_set(tubes))


def test_auto_at_224_is_the_paper_set_itself():
    assert scaled_tube_set("paper", "auto", 224) == "paper"  # the name, not a list: nothing changes
    assert _layout(scaled_tube_set("paper", "auto", 224), 32, 224).total == 539
    a, b = create_model("tubevit_base", device="meta"), create_model("tubevit_base", device="meta", tube_scale=1.0)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())


def test_counts_at_64_px():
    # Strides 32 -> 9 (tubes 1, 3), 32 -> 10 for tube 2 (even: its x2 spatial space-to-depth),
    # offsets 8 -> 2 and 16 -> 5; the 2D tube is kept: 4x4 tokens.
    lay = _layout(scaled_tube_set("paper", "auto", 64), 32, 64)
    assert lay.counts == (2 * 7 * 7, 3 * 6 * 6, 2 * 6 * 6, 1 * 4 * 4) and lay.total == 294
    assert _layout("paper", 32, 64).total == 44  # unscaled: what the old default gave


def test_rounding_rule_closed_form():
    f = 64 / 224
    s1, s2, s3, s4 = (TubeSpec.from_dict(d) for d in scaled_tube_set("paper", "auto", 64))
    assert s1.stride == (16, 9, 9) and s1.offset == (0, 0, 0)        # 9.14 -> 9; time untouched
    assert s2.stride == (6, 10, 10) and s2.offset == (4, 2, 2)       # 9.14 / 2 = 4.57 -> 5 -> 10; 2.29 -> 2
    assert s3.stride == (16, 9, 9) and s3.offset == (0, 5, 5)        # 4.57 -> 5
    assert s1.kernel == (8, 8, 8) and s2.kernel == (16, 4, 4)        # kernels kept by default
    assert s4 == get_tube_set("paper")[3]
    # half rounds up (not to even): 5 * 0.5 = 2.5 -> 3; strides never fall below the s2d factor
    t = scale_tube(TubeSpec((4, 4, 4), (8, 8, 8), (0, 5, 5), s2d=(1, 2, 2)), 0.1)
    assert t.offset == (0, 1, 1) and t.stride == (8, 2, 2)
    assert scale_tube(TubeSpec((4, 4, 4), (8, 8, 8), (0, 5, 5)), 0.5).offset == (0, 3, 3)
    assert math.isclose(resolve_tube_scale("auto", "paper", 64), f)


@pytest.mark.parametrize("factor", [0.1, 0.2857, 0.33, 0.5, 0.77, 1.3, 2.0])
def test_every_factor_keeps_s2d_divisibility_and_the_2d_tube(factor):
    for name in ("paper", "two_tube", "charades"):
        for orig, new in zip(get_tube_set(name), get_tube_set(scaled_tube_set(name, factor))):
            if orig.is_2d:
                assert new == orig
                continue
            assert all(s % f == 0 and s >= f for s, f in zip(new.stride, new.s2d))
            assert new.stride[0] == orig.stride[0] and new.offset[0] == orig.offset[0] and new.kernel == orig.kernel
            assert all(abs(n - o * factor) <= f for n, o, f in zip(new.stride[1:], orig.stride[1:], new.s2d[1:]))


def test_centres_follow_the_scaled_geometry():
    # With the kernels scaled too and an exact factor, every pixel centre maps as c' = f (c + 1/2) - 1/2.
    spec = TubeSpec((4, 12, 12), (16, 32, 32), (0, 16, 16))
    half = scale_tube(spec, 0.5, kernels=True)
    assert half.kernel == (4, 6, 6) and half.stride == (16, 16, 16) and half.offset == (0, 8, 8)
    big, small = tube_centres(spec, (32, 224, 224)), tube_centres(half, (32, 112, 112))
    assert len(big) == len(small) == 2 * 7 * 7
    for (t, y, x), (t2, y2, x2) in zip(big, small):
        assert t2 == t and y2 == 0.5 * (y + 0.5) - 0.5 and x2 == 0.5 * (x + 0.5) - 0.5


def test_bad_scale_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="auto' or a positive number"):
        resolve_tube_scale("big", "paper", 64)
    with pytest.raises(ValueError, match="positive"):
        resolve_tube_scale(0, "paper", 64)


def test_numeric_scale_in_the_model_and_auto_is_identity_without_a_size():
    m = create_model("tubevit_tiny", tube_scale=64 / 224, num_classes=3)
    assert m.token_layout((32, 64, 64)).total == 294
    assert create_model("tubevit_tiny", num_classes=3).token_layout((32, 64, 64)).total == 44
    assert m(torch.randn(1, 3, 32, 64, 64)).shape == (1, 3)


def test_inspect_cli_shows_the_scaled_set(capsys):
    import json

    from tubevit.cli import main

    assert main(["inspect", "--model", "tubevit_tiny", "--size", "64", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["tokens"] == 294 and math.isclose(r["tube_scale"], 64 / 224)
    assert [t["stride"] for t in r["tubes"]][1] == [6, 10, 10]
    assert main(["inspect", "--model", "tubevit_tiny", "--size", "64", "--tube-scale", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == 44
