"""The GPU speed paths of the MRI family, exercised on the CPU with tiny models so that a GPU run does not meet
them for the first time: bf16 autocast, channels_last_3d and torch.compile (forward, backward, loss, evaluation)."""
import pytest, torch
from vae_notebooks.core import set_seed
from vae_notebooks.losses import VAELoss
from vae_notebooks.mri.models import build_model
from vae_notebooks.mri.train import vae_outputs, reconstruct, masked_scores

CFG = dict(img_size=16, z_dim=6, base_channels=4, output_template=True)

def _model(sbd=False):
    set_seed(0)
    m = build_model(dict(CFG, use_sbd=sbd))
    m.set_template(torch.randn(4, 16, 16, 16) * 0.1)
    torch.nn.init.normal_(m.decoder.body[-1].weight, std=0.05)  # a non-trivial decoder output
    return m

def _step(model, x, autocast_dtype=None):
    "One forward + loss + backward; returns (loss, recon, gradient of the first encoder conv)."
    model.zero_grad()
    with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        out = model(x, sample=False)
        loss, comps = VAELoss(beta=1e-3, free_bits=0.1)(out, x)
    loss.backward()
    return loss.detach(), out["recon"].detach(), next(model.encoder.parameters()).grad.clone()

@pytest.mark.parametrize("sbd", [False, True])
def test_bf16_autocast_on_cpu(sbd):
    x = torch.randn(2, 4, 16, 16, 16)
    m = _model(sbd)
    l32, r32, g32 = _step(m, x)
    l16, r16, g16 = _step(m, x, torch.bfloat16)
    assert r16.dtype == torch.float32 and l16.dtype == torch.float32  # the model hands float32 to the loss under autocast
    assert torch.isfinite(g16).all() and g16.abs().sum() > 0
    torch.testing.assert_close(l16, l32, rtol=0.05, atol=0.05)       # bf16 has 8 bits of mantissa: close, not equal
    assert (r16 - r32).abs().mean() < 0.05 * r32.abs().mean() + 1e-3
    # the evaluation path under autocast: reconstructions and masked scores in float32
    out = vae_outputs(m, x, bs=2, autocast_dtype=torch.bfloat16)
    assert out["recon"].dtype == torch.float32 and out["mu"].dtype == torch.float32
    s = masked_scores(out["recon"], x, torch.ones(2, 16, 16, 16, dtype=torch.bool))
    assert torch.isfinite(s["ssim"]).all() and torch.isfinite(s["psnr"]).all()
    torch.testing.assert_close(reconstruct(m, x, autocast_dtype=torch.bfloat16), out["recon"])

@pytest.mark.parametrize("sbd", [False, True])
def test_channels_last_3d_same_numbers(sbd):
    x = torch.randn(2, 4, 16, 16, 16)
    a, b = _model(sbd), _model(sbd).channels_last()
    assert b.encoder.head.weight.is_contiguous(memory_format=torch.channels_last_3d) or b.encoder.head.weight.dim() != 5
    la, ra, ga = _step(a, x)
    lb, rb, gb = _step(b, x)
    torch.testing.assert_close(lb, la, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rb, ra, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gb.contiguous(), ga.contiguous(), rtol=1e-3, atol=1e-4)

def test_torch_compile_on_cpu_matches_eager():
    import torch._dynamo
    torch._dynamo.reset()
    x = torch.randn(2, 4, 16, 16, 16)
    eager = _model()
    compiled_src = _model()
    compiled = torch.compile(compiled_src, backend="aot_eager")  # traces forward and backward like inductor does, no C++ toolchain needed
    le, re_, ge = _step(eager, x)
    compiled_src.zero_grad()
    out = compiled(x, sample=False)
    loss, _ = VAELoss(beta=1e-3, free_bits=0.1)(out, x)
    loss.backward()
    torch.testing.assert_close(loss.detach(), le, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["recon"].detach(), re_, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(next(compiled_src.encoder.parameters()).grad, ge, rtol=1e-3, atol=1e-4)
    # the evaluation helpers accept the compiled module's original
    assert vae_outputs(compiled._orig_mod, x)["recon"].shape == x.shape
