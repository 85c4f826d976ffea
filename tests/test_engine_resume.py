"""Crash recovery: a run SIGKILLed after epoch k and resumed in a new process ends with the metrics of an uninterrupted run.

Each run is a fresh `python tests/test_engine_resume.py ...` process, as a real restart would be.
"""
import json, os, signal, subprocess, sys
from pathlib import Path
import pytest

EPOCHS, KILL_AFTER = 4, 2   # killed once epoch index 1 (the 2nd epoch) is done and checkpointed


def run(out_dir, mode):
    import torch
    from fastai.callback.core import Callback
    from vae_notebooks.core import set_seed
    from vae_notebooks.losses import VAELoss
    from vae_notebooks.schedules import cyclical_beta
    from vae_notebooks.models.mlp import MLPVAE
    from vae_notebooks.learner import vae_dataloaders, vae_learner
    torch.set_num_threads(1)
    out = Path(out_dir)
    set_seed(0 if mode != "resume" else 999)   # a resumed run must take every random state from the checkpoint
    g = torch.Generator().manual_seed(0)
    f = torch.rand(320, 3, generator=g)
    x = torch.cat([f, f.sin(), f**2, f.prod(1, keepdim=True)], 1)
    ds = [(xi, xi) for xi in x]
    dls = vae_dataloaders(ds[:256], ds[256:], bs=32, device="cpu", seed=0 if mode != "resume" else 999)
    learn = vae_learner(dls, MLPVAE(10, 3, hidden_dims=(32,), dropout=0.1), VAELoss(),
                        beta_schedule=lambda t: cyclical_beta(t, EPOCHS, 2), free_bits=0.05,
                        dip=dict(lambda_od=1., lambda_d=1., lambda_start_epoch=1, lambda_cov_annealing_epochs=2),
                        patience=20, csv_path=out/"metrics.csv", save_best=out/"best", checkpoint=out/"ckpt",
                        progress=False, lr=3e-3)

    class Kill(Callback):
        order = 100  # after SaveCheckpoint
        def after_epoch(self):
            if self.epoch + 1 == KILL_AFTER: os.kill(os.getpid(), signal.SIGKILL)

    start = learn.resume(out/"ckpt") if mode == "resume" else 0
    learn.fit_one_cycle(EPOCHS, 3e-3, start_epoch=start, cbs=[Kill()] if mode == "kill" else None)
    values = [[v for v in row[:-1]] for row in learn.recorder.values]   # drop the time column
    (out/"final.json").write_text(json.dumps(dict(names=list(learn.recorder.metric_names), values=values,
                                                  params=[p.detach().flatten().tolist() for p in learn.model.parameters()])))


def _launch(out_dir, mode):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VAE_NOTEBOOKS_DEVICE": "cpu"}
    return subprocess.run([sys.executable, __file__, str(out_dir), mode], env=env, capture_output=True, text=True, timeout=240)


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path):
    full, crashed = tmp_path/"full", tmp_path/"crashed"
    r = _launch(full, "full")
    assert r.returncode == 0, r.stderr[-3000:]
    r = _launch(crashed, "kill")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-3000:])
    assert not (crashed/"final.json").exists()
    assert json.loads((crashed/"ckpt"/"trainer.json").read_text())["epochs_done"] == KILL_AFTER
    r = _launch(crashed, "resume")
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (json.loads((d/"final.json").read_text()) for d in (full, crashed))
    assert a["names"] == b["names"]
    assert len(b["values"]) == EPOCHS            # the history before the crash was restored
    for ra, rb in zip(a["values"], b["values"]):
        assert ra == pytest.approx(rb, rel=1e-6, abs=1e-7)
    for pa, pb in zip(a["params"], b["params"]):
        assert pa == pytest.approx(pb, rel=1e-6, abs=1e-7)
    # metrics.csv of the crashed run was continued, not truncated, and matches (time column aside)
    ca, cb = ((d/"metrics.csv").read_text().splitlines() for d in (full, crashed))
    assert len(ca) == len(cb) == EPOCHS + 1
    strip = lambda line: line.rsplit(",", 1)[0]
    assert [strip(l) for l in ca] == [strip(l) for l in cb]
    # the best model written by save_best is the same file content in both runs
    assert (full/"best"/"model.safetensors").read_bytes() == (crashed/"best"/"model.safetensors").read_bytes()


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2])
