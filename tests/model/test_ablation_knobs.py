"""Table 7 ablation knobs: position-embedding variants (7a) and evaluation at reduced strides (7d)."""

from __future__ import annotations

import pytest
import torch

from tubevit.model.pos_embed import reference_embedding
from tubevit.model.tubes import TubeLayout, get_tube_set, reduce_strides
from tubevit.factory import create_model

SMALL = dict(num_classes=3, depth=1, width=12, num_heads=2, mlp_dim=24)


def _model(**kw):
    torch.manual_seed(0)
    return create_model("tubevit_tiny", **SMALL, **kw)


def test_position_variants_add_what_they_claim():
    x = torch.randn(2, 3, 32, 64, 64)
    ours, grid, none, learned = (_model(pos_embed=p) for p in ("sincos_centres", "sincos_grid", "none", "learned"))
    tokens = ours.tokenizer(x)  # the same weights in every variant (same seed, same tubes)
    assert torch.equal(none.embed(x), tokens)  # none: no position at all
    lay = TubeLayout((32, 64, 64), ours.tokenizer.specs)
    # ours: the sin-cos of each tube's centre in input pixels; the grid variant: of the token's index
    # in its own tube's grid (without stride and offset), so tube 1's token (0, 0, 1) and tube 3's
    # token (0, 0, 1) get the same position although they sit at different pixels.
    pos_ours = (ours.embed(x) - tokens)[0]
    pos_grid = (grid.embed(x) - tokens)[0]
    n1 = lay.counts[0] + lay.counts[1]
    t, y, xx = lay.centres()[n1 + 1]
    assert torch.allclose(pos_ours[n1 + 1], torch.tensor(reference_embedding(t, y, xx, 12)), atol=1e-5)
    assert torch.allclose(pos_grid[n1 + 1], torch.tensor(reference_embedding(0, 0, 1, 12)), atol=1e-5)
    assert torch.allclose(pos_grid[1], pos_grid[n1 + 1], atol=1e-6)
    assert not torch.allclose(pos_ours[1], pos_ours[n1 + 1], atol=1e-3)
    # learned: parameters that get a gradient, indexed by the integer centre
    assert {n for n, _ in learned.named_parameters() if n.startswith("pos_learned")} == \
        {"pos_learned.t", "pos_learned.y", "pos_learned.x"}
    learned(x).sum().backward()
    assert learned.pos_learned.y.grad.abs().sum() > 0
    assert "pos_learned.y" in learned.no_weight_decay()
    with pytest.raises(ValueError, match="unknown pos_embed"):
        _model(pos_embed="rope")


def test_eval_at_reduced_strides_gives_more_tokens_with_the_same_weights():
    x = torch.randn(1, 3, 32, 64, 64)
    trained = _model()
    dense = _model(eval_stride_scale=0.5)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), dense.state_dict().values()))
    n_train = trained.embed(x).shape[1]
    assert dense.embed(x).shape[1] == n_train == 44  # training mode: the configured strides
    dense.eval()
    expected = TubeLayout((32, 64, 64), tuple(reduce_strides(s, 0.5) for s in get_tube_set("paper"))).total
    assert dense.embed(x).shape[1] == expected > 2 * n_train
    assert dense(x).shape == (1, 3)
    dense.train()
    assert dense.embed(x).shape[1] == n_train  # back to the training geometry (and its cached table)
    # strides stay multiples of the space-to-depth factors; kernels and offsets are untouched
    for s in dense.tokenizer.eval_specs:
        assert all(st % f == 0 for st, f in zip(s.stride, s.s2d))
    assert [s.kernel for s in dense.tokenizer.eval_specs] == [s.kernel for s in get_tube_set("paper")]


def test_heads_keep_their_own_init_after_the_model_wide_xavier_init():
    import math

    torch.manual_seed(0)
    m = create_model("tubevit_tiny", num_classes={"video": 10, "image": 5}, tube_scale=64 / 224)
    for name in ("video", "image"):
        w, b = m.heads[name].weight, m.heads[name].bias
        assert 0.015 < w.std().item() < 0.025 and torch.count_nonzero(b) == 0  # trunc-normal 0.02, not xavier
    fc1 = m.blocks[0].mlp.fc1.weight  # the rest keeps xavier-uniform: bound sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6 / (192 + 768))
    assert fc1.abs().max() <= bound and fc1.abs().max() > 0.95 * bound
    # so the loss at init is ln K (the old xavier head gave ~2.6 for K = 10 and 8x the gradient norm)
    x, y = torch.randn(8, 3, 32, 64, 64), torch.randint(0, 10, (8,))
    loss = torch.nn.functional.cross_entropy(m(x, head="video"), y).item()
    assert abs(loss - math.log(10)) < 0.12
    torch.nn.init.xavier_uniform_(m.heads["video"].weight)  # what the model-wide init used to leave there
    assert torch.nn.functional.cross_entropy(m(x, head="video"), y).item() > math.log(10) + 0.2
