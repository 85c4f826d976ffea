"The magnetics entry point: config validation, the YAML config, and a papermill run of the training notebook."
from pathlib import Path
import json
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(n_train=4, n_calib=2, n_test_per_kind=1, n_test_clean=1, epochs=2, models=["conv"], baselines=["zscore", "pca"])


def test_config_validation(tmp_path):
    from vae_notebooks.magnetics.train import DEFAULTS, train_magnetics
    with pytest.raises(ValueError, match="'epoch'"): train_magnetics(epoch=3)
    with pytest.raises(TypeError, match="'n_train'"): train_magnetics(n_train="many")
    with pytest.raises(ValueError, match="unknown baseline 'knn'"): train_magnetics(baselines=["knn"], out_dir=str(tmp_path/"x"))
    assert not (tmp_path/"x").exists()  # rejected before anything is written


def test_yaml_config_has_exactly_the_defaults_keys():
    import yaml
    from vae_notebooks.magnetics.train import DEFAULTS
    from vae_notebooks.train import run_training
    cfg = yaml.safe_load((ROOT/"configs"/"magnetics_default.yaml").read_text())
    assert set(cfg) == set(DEFAULTS)
    resolved = run_training("magnetics", ROOT/"configs"/"magnetics_default.yaml", dry_run=True)
    assert resolved["n_train"] == cfg["n_train"] and resolved["models"] == ["conv", "mlp"]


def test_papermill_run_of_train_magnetics(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out_dir = tmp_path/"run"
    papermill.execute_notebook(str(ROOT/"nbs"/"train_magnetics.ipynb"), str(tmp_path/"out.ipynb"),
                               parameters=dict(out_dir=str(out_dir), **TINY), kernel_name="python3", cwd=str(tmp_path),
                               progress_bar=False)
    for f in ("config.json", "metrics.csv", "model.safetensors", "model.json", "detector.json", "evaluation.csv",
              "per_kind.csv", "shots.csv", "channels.csv", "summary.json"):
        assert (out_dir/f).exists(), f
    for f in ("shot.png", "attribution.png", "latent_pca.png", "learning_curve.png"):
        assert (out_dir/"figures"/f).exists(), f
    table = pd.read_csv(out_dir/"evaluation.csv")
    assert list(table.detector) == ["vae_conv", "zscore", "pca"]
    assert table.roc_auc.between(0, 1).all()
    metrics = pd.read_csv(out_dir/"metrics.csv")
    assert len(metrics) == 2 and "valid_loss" in metrics.columns
    cfg = json.loads((out_dir/"config.json").read_text())
    assert cfg["params"]["n_train"] == 4
    assert not (tmp_path/"data").exists() or any((tmp_path/"data").rglob("events.csv"))


def test_unlabelled_csv_folder(tmp_path, monkeypatch):
    "Real-data path: a folder of CSV shots without labels runs end to end (the metrics that need labels are NaN)."
    import numpy as np, torch
    from vae_notebooks.magnetics.data import simulate_shots, write_shot
    from vae_notebooks.magnetics.train import train_magnetics
    torch.set_num_threads(1)
    d = tmp_path/"shots"
    for split, seed, n in (("train", 1, 3), ("calib", 2, 1), ("test", 3, 2)):
        for s in simulate_shots(n, seed=seed, n_steps=600, prefix=f"{split}_"): write_shot(s, d/f"{s.name}.csv")
    res = train_magnetics(data_dir=str(d), out_dir=str(tmp_path/"run"), models=["conv"], baselines=["zscore"], epochs=1, patience=None)
    assert res["n_train"] == 3 and res["n_test"] == 2
    assert np.isnan(res["evaluation"][0]["roc_auc"]) and res["per_kind"] == []
    for f in d.glob("calib_*"): f.unlink()  # calibration shots are optional for the percentile threshold...
    res = train_magnetics(data_dir=str(d), out_dir=str(tmp_path/"run2"), models=["conv"], baselines=[], epochs=1, patience=None,
                          threshold="percentile")
    assert res["n_calib"] == 0
    with pytest.raises(ValueError, match="needs calibration shots"):  # ...but not for the conformal one
        train_magnetics(data_dir=str(d), out_dir=str(tmp_path/"run3"), models=["conv"], baselines=[], epochs=1, patience=None)
    for f in d.glob("test_*"): f.unlink()
    with pytest.raises(ValueError, match=r"no shot files .* matching 'test_\*'"):
        train_magnetics(data_dir=str(d), out_dir=str(tmp_path/"run4"), models=["conv"], baselines=[], epochs=1)
