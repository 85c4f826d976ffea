"""compare_runs / plot_runs on real run folders written by the engine, and model_summary totals."""
import json
import pandas as pd, pytest, torch
from vae_notebooks.core import set_seed
from vae_notebooks.losses import VAELoss
from vae_notebooks.learner import vae_dataloaders, vae_learner, start_run
from vae_notebooks.models.mlp import MLPVAE
from vae_notebooks.toy import factor_dataset
from vae_notebooks.experiments import compare_runs, plot_runs, find_runs

def _run(root, name, beta, epochs):
    out = start_run(root/name, dict(beta=beta, epochs=epochs, lr=3e-3))
    set_seed(0)
    dls = vae_dataloaders(factor_dataset(256, seed=0), factor_dataset(64, seed=1), bs=64, device="cpu", seed=0)
    learn = vae_learner(dls, MLPVAE(256, 4, hidden_dims=(32,)), VAELoss(reduction="sum", beta=beta), lr=3e-3,
                        csv_path=out/"metrics.csv", progress=False)
    with learn.no_logging(): learn.fit(epochs)
    return out

def test_compare_real_runs(tmp_path):
    a, b = _run(tmp_path, "a", 1.0, 2), _run(tmp_path, "b", 8.0, 3)
    df = compare_runs([a, b])
    assert list(df.columns[1:3]) == ["beta", "epochs"] and "lr" not in df.columns   # only what differed
    assert list(df.logged_epochs) == [len(pd.read_csv(tmp_path/r/"metrics.csv")) for r in df.run]
    m = {r: pd.read_csv(tmp_path/r/"metrics.csv") for r in "ab"}
    for _, row in df.iterrows():
        mm = m[row.run]
        assert row.logged_epochs == len(mm) == row.epochs
        assert row.best_valid_loss == pytest.approx(mm.valid_loss.min())
        assert row.final_valid_kl_raw == pytest.approx(mm.valid_kl_raw.iloc[-1])
    assert df.best_valid_loss.is_monotonic_increasing
    assert len(find_runs(str(tmp_path/"*"))) == 2
    fig = plot_runs(tmp_path, metrics=("valid_loss", "au_count"))
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2

def test_compare_runs_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run folder"): compare_runs(tmp_path/"none")
    d = tmp_path/"bad"; d.mkdir(); (d/"metrics.csv").write_bytes(b"\x00\x01\x02")
    (d/"config.json").write_text(json.dumps({"params": {}}))
    with pytest.raises(ValueError, match="metrics.csv"): compare_runs(d)
