"""`python -m vae_notebooks.train mri` under `torchrun --nproc_per_node 2` on the CPU (gloo): DDP training, one run folder."""
import json, os, subprocess, sys
from pathlib import Path
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from test_mri_train import write_cohort  # a tiny hand-written NIfTI cohort: no synthesis cost

TINY = dict(img_size=16, z_dim=8, base_channels=4, epochs=2, batch_size=2, val_frac=0.34, n_eval=2, num_threads=1, device="cpu")

def test_torchrun_two_ranks_write_one_run(tmp_path):
    cohort = write_cohort(tmp_path/"cohort")  # 3 subjects x 2 timepoints: 4 training volumes, 2 validation volumes
    cfg = tmp_path/"tiny.yaml"
    cfg.write_text("".join(f"{k}: {v}\n" for k, v in dict(TINY, data_dir=cohort).items()))
    out = tmp_path/"runs"/"ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "VAE_NOTEBOOKS_DATA": str(tmp_path/"data")}
    env.pop("WORLD_SIZE", None); env.pop("RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vae_notebooks.train", "mri", "-f", str(cfg), "--set", f"out_dir={out}"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # exactly one run folder, and nothing else written anywhere under tmp_path (the cwd): no stray runs/, models/, logs
    assert list((tmp_path/"runs").iterdir()) == [out]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort", "data", "runs", "tiny.yaml"]
    for f in ("config.json", "metrics.csv", "model.safetensors", "model.json", "evaluation.csv", "summary.json"):
        assert (out/f).is_file(), f
    assert not list(out.glob("*.tmp*")) and not list(out.glob("rank*"))
    info = json.loads((out/"config.json").read_text())
    assert info["world_size"] == 2 and info["params"]["out_dir"] == str(out)
    m = pd.read_csv(out/"metrics.csv")
    assert list(m.epoch) == [0, 1] and m.train_loss.notna().all() and m.valid_loss.notna().all()
    summary = json.loads((out/"summary.json").read_text())
    # each rank took half the steps: 4 training volumes / batch 2 / 2 ranks = 1 step per epoch (2 in one process)
    assert summary["world_size"] == 2 and summary["steps_per_rank"] == 2
    # the epoch lines are printed once (rank 0), not once per rank
    assert r.stdout.count("epoch 1:") == 1, r.stdout[-2000:]

def test_torchrun_family_without_ddp_trains_once(tmp_path):
    "A family that does not train with DDP yet (growth) runs on rank 0 alone under torchrun: one run folder, written once."
    out = tmp_path/"runs"/"growth"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "VAE_NOTEBOOKS_DATA": str(tmp_path/"data")}
    env.pop("WORLD_SIZE", None); env.pop("RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vae_notebooks.train", "growth",
           "--set", "vae_epochs=1", "--set", "ode_epochs=1", "--set", "ode_steps_per_epoch=2", "--set", "n_samples=4", "--set", f"out_dir={out}"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stderr.count("does not train with DDP yet") == 1
    assert list((tmp_path/"runs").iterdir()) == [out]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "runs"]
    assert json.loads((out/"config.json").read_text())["world_size"] == 1
    assert len(pd.read_csv(out/"metrics.csv")) == 1 and (out/"model.safetensors").is_file()

def _torchrun_family(tmp_path, family, overrides, config=None):
    "Run `python -m vae_notebooks.train FAMILY` on 2 CPU ranks (gloo) in `tmp_path`; returns (process, run folder)."
    out = tmp_path/"runs"/family
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "VAE_NOTEBOOKS_DATA": str(tmp_path/"data")}
    env.pop("WORLD_SIZE", None); env.pop("RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vae_notebooks.train", family]
    if config: cmd += ["-f", str(config)]
    for k, v in dict(overrides, out_dir=out).items(): cmd += ["--set", f"{k}={v}"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "does not train with DDP yet" not in r.stderr
    # exactly one run folder; nothing else written under the cwd but the data cache
    assert list((tmp_path/"runs").iterdir()) == [out]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "runs"]
    assert not list(out.rglob("*.tmp*")) and not list(out.glob("rank*"))
    info = json.loads((out/"config.json").read_text())
    assert info["world_size"] == 2 and info["params"]["out_dir"] == str(out)
    return r, out

def test_torchrun_abr_two_ranks(tmp_path):
    r, out = _torchrun_family(tmp_path, "abr", dict(model="cvae", n_recordings=200, epochs=2, n_generate=100, device="cpu", hidden_dims="[32,16]", latent_dim=4))
    for f in ("metrics.csv", "model.safetensors", "model.json", "normalizer.json", "summary.json"): assert (out/f).is_file(), f
    m = pd.read_csv(out/"metrics.csv")
    assert list(m.epoch) == [0, 1] and m.train_loss.notna().all() and m.valid_loss.notna().all()
    summary = json.loads((out/"summary.json").read_text())
    # 139 training recordings, batch 64, full batches only: 2 steps per epoch in one process, 1 on each of 2 ranks
    assert summary["splits"]["train"] == 139 and summary["world_size"] == 2 and summary["steps_per_rank"] == 2

def test_torchrun_media_two_ranks_with_curriculum(tmp_path):
    "The curriculum grows the training set per phase; under DDP each rank iterates its share of the current phase."
    root = Path(__file__).resolve().parents[1]
    r, out = _torchrun_family(tmp_path, "media", dict(epochs=4, device="cpu", curriculum="true"), config=root/"configs"/"media_tiny.yaml")
    for f in ("metrics.csv", "model.safetensors", "model.json", "summary.json", "curriculum.csv"): assert (out/f).is_file(), f
    assert len(pd.read_csv(out/"metrics.csv")) == 4
    summary = json.loads((out/"summary.json").read_text())
    n = [row["n_train"] for row in summary["curriculum"]]
    assert n == sorted(n) and len(n) == 4 and n[-1] == summary["sizes"]["train"]
    # per phase, each rank takes ceil(ceil(n/2)/bs) steps of bs=32 (its share; a last batch of one is dropped)
    share = [-(-k//2) for k in n]
    expected = sum(s//32 + (s % 32 > 1) if s > 32 else 1 for s in share)
    assert summary["world_size"] == 2 and summary["steps_per_rank"] == expected

def test_torchrun_magnetics_two_ranks(tmp_path):
    "The VAE detector trains with DDP; rank 0 alone fits the baselines, sets the threshold and evaluates."
    tiny = dict(n_train=6, n_calib=2, n_test_per_kind=1, n_test_clean=1, models="[conv]", baselines="[zscore]", epochs=2, device="cpu")
    r, out = _torchrun_family(tmp_path, "magnetics", tiny)
    for f in ("metrics.csv", "model.safetensors", "model.json", "detector.json", "evaluation.csv", "summary.json"): assert (out/f).is_file(), f
    assert len(pd.read_csv(out/"metrics.csv")) == 2
    assert sorted(set(pd.read_csv(out/"evaluation.csv").detector)) == ["vae_conv", "zscore"]  # one row per detector and scoring mode
    summary = json.loads((out/"summary.json").read_text())
    # the 5 training shots' windows make 4 batches of 64 per epoch in one process (8 steps in 2 epochs), 2 on each of 2 ranks
    assert summary["world_size"] == 2 and summary["steps_per_rank"] == [4]
