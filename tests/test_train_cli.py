"""The console entry point `python -m vae_notebooks.train`: a tiny real run, and bad configs rejected by name."""
import json, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vae_notebooks.train", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)

@pytest.fixture
def data_env(tmp_path, monkeypatch):
    import os
    env = dict(os.environ, VAE_NOTEBOOKS_DATA=str(tmp_path/"data"), OMP_NUM_THREADS="1")
    return env

def test_cli_trains_media_from_yaml(tmp_path, data_env):
    out = tmp_path/"run"
    r = _cli("media", "-f", "configs/media_tiny.yaml", "--set", "epochs=2", "--set", f"out_dir={out}", env=data_env)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = json.loads((out/"config.json").read_text())
    assert cfg["params"]["epochs"] == 2 and cfg["params"]["out_dir"] == str(out)
    assert cfg["torch_version"] and cfg["vae_notebooks_version"]
    import pandas as pd
    m = pd.read_csv(out/"metrics.csv")
    assert len(m) == 2 and {"train_loss", "valid_loss"} <= set(m.columns)
    assert (out/"model.safetensors").exists() and (out/"model.json").exists()

def test_cli_rejects_unknown_key_and_bad_type(tmp_path):
    bad = tmp_path/"bad.yaml"; bad.write_text("epochs: 2\nlearning_rate: 0.1\n")
    r = _cli("media", "-f", str(bad))
    assert r.returncode == 2 and "unknown key 'learning_rate'" in r.stderr and str(bad) in r.stderr
    r = _cli("media", "--set", "epochs=many")
    assert r.returncode == 2 and "key 'epochs' expects int" in r.stderr
    r = _cli("media", "-f", str(tmp_path/"missing.yaml"))
    assert r.returncode == 2 and "does not exist" in r.stderr

@pytest.mark.parametrize("family", ["mri", "growth", "abr", "media", "magnetics"])
def test_every_family_config_resolves(family):
    "Every YAML in configs/ for a family is accepted by that family's DEFAULTS (the same file papermill takes)."
    from vae_notebooks.train import run_training, family_entry
    defaults, _ = family_entry(family)
    prefix = {"mri": "mri_", "growth": "growth_", "abr": "abr_", "media": "media_", "magnetics": "magnetics_"}[family]
    files = sorted((ROOT/"configs").glob(f"{prefix}*.yaml"))
    assert files, f"no configs/{prefix}*.yaml"
    import yaml
    for f in files:
        cfg = run_training(family, f, dry_run=True)   # raises on an unknown key or a wrong type
        for k, v in (yaml.safe_load(f.read_text()) or {}).items():
            assert cfg[k] == v, f"{f.name}: {k}={v!r} became {cfg[k]!r}"
