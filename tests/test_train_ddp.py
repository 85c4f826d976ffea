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
    "A family that does not train with DDP yet runs on rank 0 alone under torchrun: one run folder, written once."
    out = tmp_path/"runs"/"media"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "VAE_NOTEBOOKS_DATA": str(tmp_path/"data")}
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vae_notebooks.train", "media", "-f", str(root/"configs"/"media_tiny.yaml"), "--set", "epochs=1", "--set", f"out_dir={out}"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stderr.count("does not train with DDP yet") == 1
    assert list((tmp_path/"runs").iterdir()) == [out]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "runs"]
    assert json.loads((out/"config.json").read_text())["world_size"] == 1
    assert len(pd.read_csv(out/"metrics.csv")) == 1 and (out/"model.safetensors").is_file()
