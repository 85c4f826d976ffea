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

def test_benchmark_script_gpu_paths_on_cpu(tmp_path, monkeypatch):
    """`benchmarks/mri.py` (run by `benchmarks/gpu_mri.sh`) takes every path of its GPU run here: bf16 autocast, channels_last_3d,
    torch.compile (aot_eager) in both loops, and the loader with 0 and 2 workers feeding the engine from a float16 cache."""
    import importlib.util, json
    from pathlib import Path
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data"))
    spec = importlib.util.spec_from_file_location("bench_mri", Path(__file__).parents[1]/"benchmarks"/"mri.py")
    bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
    compile_before = torch.compile
    try:
        res = bench.main(["--device", "cpu", "--sizes", "16", "--batch-sizes", "2", "--precisions", "fp32", "bf16", "--steps", "1",
                          "--warmup", "1", "--z-dim", "4", "--base-channels", "2", "--threads", "1", "--cpu-paths", "--compile",
                          "--compile-backend", "aot_eager", "--loader", "--workers", "0", "2", "--loader-subjects", "2",
                          "--out", str(tmp_path/"mri_test.json")])
    finally: torch.compile = compile_before  # main() gives torch.compile the backend for the engine
    assert not [r for r in res if "error" in r], [r for r in res if "error" in r]
    saved = json.loads((tmp_path/"mri_test.json").read_text())
    assert saved["results"] == json.loads(json.dumps(res)) and saved["date"] and len(saved["loadavg_end"]) == 3
    train = [r for r in res if r["loop"] != "loader"]
    got = {(r["loop"], r["precision"], r["compiled"], r.get("num_workers")) for r in train}
    want = {(loop, p, c, None) for loop in ("plain", "engine") for p in ("fp32", "bf16") for c in (False, True)}
    want |= {("engine", p, False, w) for p in ("fp32", "bf16") for w in (0, 2)}
    assert got == want and all(r["channels_last"] for r in train)
    loader = [r for r in res if r["loop"] == "loader"]
    assert {(r["num_workers"], r["half_transfer"]) for r in loader} == {(0, False), (0, True), (2, False), (2, True)}
    assert all(r["volumes"] > 0 and r["first_batch_ms"] > 0 for r in loader)
