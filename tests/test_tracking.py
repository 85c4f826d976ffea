"""Optional tracking: TensorBoard events equal the Recorder's values; W&B offline run writes locally."""
from pathlib import Path
import pytest
from vae_notebooks.core import set_seed
from vae_notebooks.losses import VAELoss
from vae_notebooks.learner import vae_dataloaders, vae_learner
from vae_notebooks.models.mlp import MLPVAE
from vae_notebooks.toy import factor_dataset
from vae_notebooks.tracking import tracking_callbacks

def _fit(cbs, epochs=3):
    set_seed(0)
    dls = vae_dataloaders(factor_dataset(256, seed=0), factor_dataset(64, seed=1), bs=64, device="cpu", seed=0)
    learn = vae_learner(dls, MLPVAE(256, 4, hidden_dims=(32,)), VAELoss(reduction="sum"), progress=False, cbs=cbs)
    with learn.no_logging(): learn.fit(epochs)
    return learn

def test_tensorboard_events_match_recorder(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    learn = _fit(tracking_callbacks(tmp_path, tensorboard=True))
    ea = EventAccumulator(str(tmp_path/"tensorboard")); ea.Reload()
    names = learn.recorder.metric_names[1:]
    for col in ("valid_loss", "valid_kl_raw", "au_count"):
        logged = [e.value for e in ea.Scalars(f"epoch/{col}")]
        assert logged == pytest.approx([float(v[names.index(col)]) for v in learn.recorder.values], rel=1e-5)

def test_missing_extra_is_a_clear_error(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__
    def fake(name, *a, **k):
        if name.startswith("wandb"): raise ImportError("no wandb")
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install 'vae_notebooks\[tracking\]'"): _fit(tracking_callbacks(tmp_path, wandb=True), epochs=1)

def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    _fit(tracking_callbacks(tmp_path, wandb=True), epochs=2)
    assert list((tmp_path/"wandb").rglob("offline-run-*")), "no offline W&B run written"

def test_cli_track_flag_writes_tensorboard_events(tmp_path):
    "`python -m vae_notebooks.train media --track tensorboard` logs beside metrics.csv through vae_learner."
    pytest.importorskip("tensorboard")
    import os, subprocess, sys
    out = tmp_path/"run"
    env = dict(os.environ, VAE_NOTEBOOKS_DATA=str(tmp_path/"data"), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "vae_notebooks.train", "media", "-f", "configs/media_tiny.yaml", "--set", "epochs=2",
                        "--set", f"out_dir={out}", "--track", "tensorboard"], cwd=Path(__file__).resolve().parent.parent,
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert list((out/"tensorboard").glob("events.out.tfevents.*")), sorted(p.name for p in out.iterdir())
