"""bf16 against fp32: the inference and training paths of tubevit.model.precision, on CPU and GPU."""

import copy

import pytest
import torch
import torch.nn.functional as F

import tubevit
from tubevit.model import precision as precision_mod
from tubevit.model.precision import autocast, cast_for_inference, compute_dtype, grad_scaler, resolve_precision
from tubevit.model.vit import attention


def _rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def _tiny(**kw):
    torch.manual_seed(0)
    return tubevit.create_model("tubevit_tiny", num_classes=10, depth=4, **kw)


def test_compute_dtype_and_scaler():
    assert compute_dtype("bf16") == torch.bfloat16 and compute_dtype("fp32") == torch.float32
    with pytest.raises(ValueError, match="unknown precision"):
        compute_dtype("fp8")
    assert not grad_scaler("cpu", "bf16").is_enabled()


@pytest.mark.parametrize("flags, expected", [({"avx512f", "avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16"),
                                             ({"avx512f", "avx2"}, "fp32"), (set(), "fp32")])
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(precision_mod, "_cpu_flags", lambda: flags)
    assert resolve_precision("auto", "cpu") == expected
    # A named precision is taken as asked, whatever the hardware.
    assert [resolve_precision(p, "cpu") for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    with pytest.raises(ValueError, match="auto"):
        resolve_precision("fp8", "cpu")


def test_cpu_flags_are_read_from_this_machine():
    flags = precision_mod._cpu_flags()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        assert flags == set()
        return
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), None)
    assert flags == (set(line.split(":", 1)[1].split()) if line else set())


def test_training_and_inference_record_the_resolved_precision(tmp_path, monkeypatch):
    from tubevit.evaluate.session import InferenceSession

    monkeypatch.setattr(precision_mod, "_cpu_flags", lambda: {"avx512_bf16"})
    model = _tiny()
    session = InferenceSession(model, device="cpu", precision="auto")
    assert session.precision == "bf16" and next(session.model.parameters()).dtype == torch.bfloat16
    monkeypatch.setattr(precision_mod, "_cpu_flags", lambda: set())
    assert InferenceSession(_tiny(), device="cpu", precision="auto").precision == "fp32"


@pytest.mark.parametrize("tokenizer", ["s2d", "interpolated"])
def test_bf16_inference_logits_match_fp32(tokenizer):
    model = _tiny(tokenizer=tokenizer).eval()
    x = torch.randn(2, 3, 32, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        fast = cast_for_inference(copy.deepcopy(model), "bf16")
        assert all(p.dtype == torch.bfloat16 for p in fast.parameters())
        with autocast("cpu", "bf16"):
            out = fast(x)
        image = torch.randn(2, 3, 64, 64)
        ref_img = model(image)
        with autocast("cpu", "bf16"):
            out_img = fast(image)
    assert out.dtype == torch.bfloat16
    assert _rel(out, ref) < 2e-2 and _rel(out_img, ref_img) < 2e-2


def test_bf16_training_gradients_match_fp32():
    model = _tiny().train()
    x, y = torch.randn(2, 3, 32, 64, 64), torch.tensor([1, 7])
    grads = {}
    for precision in ("fp32", "bf16"):
        model.zero_grad(set_to_none=True)
        with autocast("cpu", precision):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        grads[precision] = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert _rel(grads["bf16"], grads["fp32"]) < 5e-2


@pytest.mark.parametrize("n", [197, 539, 2100])
def test_cpu_bf16_attention_path_matches_sdpa(n):
    # below 2048 tokens bf16 on CPU takes the explicit two-matmul form, above it SDPA
    q, k, v = (torch.randn(1, 2, n, 32, dtype=torch.bfloat16) for _ in range(3))
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    assert _rel(attention(q, k, v), ref) < 1e-2
    q32, k32, v32 = (t.float().requires_grad_() for t in (q, k, v))
    qb, kb, vb = (t.detach().bfloat16().requires_grad_() for t in (q32, k32, v32))
    F.scaled_dot_product_attention(q32, k32, v32).sum().backward()
    attention(qb, kb, vb).sum().backward()
    for a, b in ((qb, q32), (kb, k32), (vb, v32)):
        assert _rel(a.grad, b.grad) < 3e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_parity_flash_and_no_host_sync():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = _tiny().cuda().eval()
    x = torch.randn(4, 3, 32, 112, 112, device="cuda")
    with torch.inference_mode():
        ref = model(x)
        fast = cast_for_inference(copy.deepcopy(model), "bf16")
        with autocast("cuda", "bf16"):
            out = fast(x)
        # the blocks' attention (q, k, v as Attention.forward slices them) runs on the flash kernel
        qkv = torch.randn(4, 539, 3, 12, 64, device="cuda", dtype=torch.bfloat16).permute(2, 0, 3, 1, 4)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            flash = attention(*qkv)
        exact = F.scaled_dot_product_attention(*(t.double() for t in qkv))
    assert _rel(out, ref) < 2e-2 and _rel(flash, exact) < 1e-2
    # a bf16 training step with fused AdamW reads nothing back to the host
    train = _tiny().cuda().train()
    opt = torch.optim.AdamW(train.parameters(), lr=1e-4, fused=True)
    y = torch.randint(0, 10, (4,), device="cuda")

    def step():
        with autocast("cuda", "bf16"):
            loss = F.cross_entropy(train(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # builds the position table and the optimizer state
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


def test_emulated_bf16_on_cpu_is_warned_once_where_it_is_chosen(monkeypatch, capsys):
    """bf16 asked for on a CPU without bf16 instructions runs ~10x slower than fp32: a one-line
    warning that names the fix, from the helper, and printed by inference sessions; none where
    the CPU has the instructions, for fp32, or for auto (which picks fp32 there)."""
    import tubevit.model.precision as precision
    from tubevit.evaluate.session import InferenceSession

    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    msg = precision.emulation_warning("bf16", "cpu")
    assert msg.startswith("warning:") and "--precision auto" in msg and "\n" not in msg
    assert precision.emulation_warning("fp32", "cpu") is None
    assert precision.emulation_warning(precision.resolve_precision("auto", "cpu"), "cpu") is None
    model = tubevit.create_model("tubevit_tiny", num_classes=3, depth=1)
    InferenceSession(model, device="cpu", precision="bf16")
    assert msg in capsys.readouterr().err
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert precision.emulation_warning("bf16", "cpu") is None
    InferenceSession(model, device="cpu", precision="bf16")
    assert "emulated" not in capsys.readouterr().err
