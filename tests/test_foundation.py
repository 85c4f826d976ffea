"""Foundation checks that do not fit a notebook: the layer rules, the install contract and the maths edge cases."""
import ast, re, subprocess, sys, tomllib
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT/"vae_notebooks"
DOMAINS = ("mri", "abr", "media", "magnetics")

def _imports(py: Path):
    "Module names a file imports, with relative imports resolved against the package."
    tree, mod = ast.parse(py.read_text()), ".".join(py.relative_to(ROOT).with_suffix("").parts)
    pkg_parts = mod.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import): yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level: base = pkg_parts[:len(pkg_parts) - node.level + 1]; yield ".".join(base + ([node.module] if node.module else []))
            else: yield node.module

def test_math_layer_never_imports_fastai():
    code = ("import sys, vae_notebooks.core, vae_notebooks.losses, vae_notebooks.schedules\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastai', 'torchvision'))\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    for py in [PKG/"core.py", PKG/"losses.py", PKG/"schedules.py", *(PKG/"models").glob("*.py")]:
        if py.exists(): assert not [m for m in _imports(py) if m and m.split(".")[0] == "fastai"], py

def test_saving_is_fastai_free_and_the_engine_modules_do_not_import_each_other():
    "Model files and run folders need no training engine; callbacks and learner import `saving`, never each other."
    code = ("import sys, vae_notebooks.saving\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'fastai' or m == 'vae_notebooks.callbacks')\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    assert not [m for m in _imports(PKG/"saving.py") if m and m.split(".")[0] == "fastai"]
    assert "vae_notebooks.learner" not in set(_imports(PKG/"callbacks.py"))
    assert "vae_notebooks.callbacks" in set(_imports(PKG/"learner.py"))
    src = (PKG/"callbacks.py").read_text()
    assert "vae_notebooks.learner" not in src and "from .learner" not in src   # no lazy import either

def test_nothing_imports_torchvision_or_fastai_vision():
    for py in PKG.rglob("*.py"):
        for m in _imports(py):
            assert not (m and (m.startswith("torchvision") or m.startswith("fastai.vision"))), f"{py} imports {m}"

def test_domains_never_import_each_other():
    for d in DOMAINS:
        for py in (PKG/d).glob("*.py") if (PKG/d).exists() else []:
            for m in _imports(py):
                others = [o for o in DOMAINS if o != d and m and m.startswith(f"vae_notebooks.{o}")]
                assert not others, f"{py} imports {m}"

def test_pyproject_and_constraints():
    cfg = tomllib.loads((ROOT/"pyproject.toml").read_text())
    nb = cfg["tool"]["nbdev"]
    assert nb["lib_path"] == "vae_notebooks" and nb["tst_flags"] == "notest slow gpu"
    assert nb["allowed_cell_metadata_keys"] == ["tags"]
    pins = (ROOT/"constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", pins, re.M) and re.search(r"^torchvision==0\.28\.0$", pins, re.M)
    mk = (ROOT/"Makefile").read_text()
    assert "-c constraints.txt" in mk
    assert (ROOT/".ci"/"run").read_text().strip().endswith("make test")

def test_training_notebooks_keep_parameters_tag():
    import json
    for nb in (ROOT/"nbs").glob("train_*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{nb.name} needs exactly one cell tagged 'parameters'"

def test_losses_edge_cases():
    from vae_notebooks.losses import kl_free_bits, gaussian_kl, dip_vae_penalty, masked_mse
    from vae_notebooks.schedules import cyclical_beta, linear_warmup
    kl = gaussian_kl(torch.randn(5, 4), torch.randn(5, 4))
    assert torch.allclose(kl_free_bits(kl, 0.0), kl.sum(1).mean())          # free_bits=0 is plain KL
    assert torch.isfinite(dip_vae_penalty(torch.randn(1, 6), torch.randn(1, 6), 10, 5))  # batch of one
    assert masked_mse(torch.ones(3), torch.full((3,), float("nan")), torch.zeros(3)).item() == 0.0  # empty mask
    assert cyclical_beta(0.5, 1, n_cycles=1) == 1.0 and cyclical_beta(2.0, 1) == 1.0  # n_cycles=1, beyond the end
    assert cyclical_beta(0.6, 1, 5) == 0.0                                    # a cycle boundary that 0.6 misses in binary
    assert linear_warmup(10, 5, delay=2) == 1.0

def test_dip_penalty_stays_float32_under_bf16_autocast():
    "bf16 inputs under bf16 autocast: the covariance and the penalty are computed in float32 (the guard), so they equal the"
    "float32 computation on the same (bf16-rounded) values; without the guard the matmul runs in bf16 (~1e-2 relative error)."
    from vae_notebooks.losses import dip_vae_penalty, dip_covariance
    g = torch.Generator().manual_seed(0)
    mu, lv = torch.randn(64, 8, generator=g).bfloat16(), (torch.randn(64, 8, generator=g)*0.1).bfloat16()
    ref_cov = dip_covariance(mu.float(), lv.float())
    ref = dip_vae_penalty(mu.float(), lv.float(), 10, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cov = dip_covariance(mu, lv)
        got = dip_vae_penalty(mu, lv, 10, 5)
    assert cov.dtype == torch.float32 and got.dtype == torch.float32
    torch.testing.assert_close(cov, ref_cov, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
