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
    # the run ends with its summary: where the folder is and how to open the report, after the last epoch line
    tail = r.stdout[r.stdout.rindex("== media"):]
    assert f"run folder: {out.resolve()}" in tail and "papermill nbs/train_media.ipynb" in tail, r.stdout[-2000:]
    if (out/"summary.json").exists():   # a family that writes summary.json (the engine's finish_run) shows its headline
        s = json.loads((out/"summary.json").read_text())
        assert s.get("headline") is None or s["headline"] in tail
        assert not (out/"RUN_INCOMPLETE").exists()

def test_cli_help_lists_each_family_parameters():
    "`FAMILY --help` shows every key of that family's DEFAULTS with its default and its comment."
    from vae_notebooks.train import family_entry
    r = _cli("abr", "--help")
    assert r.returncode == 0, r.stderr
    defaults, _ = family_entry("abr")
    lines = r.stdout.splitlines()
    for k, v in defaults.items():
        assert any(l.split()[:2] == [k, repr(v).split()[0]] for l in lines if l.startswith("  ")), k
    out_line = next(l for l in lines if l.split()[:1] == ["out_dir"])
    assert "run folder" in out_line                   # the comment beside out_dir= in DEFAULTS
    assert "parameters of 'media'" in _cli("media", "-h").stdout
    assert "parameters of" not in _cli("--help").stdout  # generic help names no family's parameters

def test_cli_out_dir_that_is_a_file_fails_before_any_work(tmp_path, data_env):
    taken = tmp_path/"taken"; taken.write_text("not a folder")
    data = tmp_path/"data"
    # MRI builds its data cache before the engine's start_run: the command line must refuse first
    r = _cli("mri", "--set", "img_size=16", "--set", "n_subjects=4", "--set", f"out_dir={taken}",
             env=dict(data_env, VAE_NOTEBOOKS_DATA=str(data)))
    assert r.returncode == 2 and f"out_dir {taken} exists and is not a folder" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not data.exists() or not any(data.rglob("*"))   # no data cache was built

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

def test_makefile_exports_passive_openmp(tmp_path):
    "Every make target runs with OMP_WAIT_POLICY=PASSIVE (nbs/60a_runtime.ipynb), unless the user set a value."
    import os, shutil
    if shutil.which("make") is None: pytest.skip("make not installed")
    probe = tmp_path/"probe.mk"
    probe.write_text(f"include {ROOT/'Makefile'}\nprobe-omp:\n\t@echo $$OMP_WAIT_POLICY\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    r = subprocess.run(["make", "-s", "-f", str(probe), "probe-omp"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.stdout.strip() == "PASSIVE", r.stdout + r.stderr
    r = subprocess.run(["make", "-s", "-f", str(probe), "probe-omp"], cwd=ROOT, capture_output=True, text=True, env=dict(env, OMP_WAIT_POLICY="ACTIVE"))
    assert r.stdout.strip() == "ACTIVE"
