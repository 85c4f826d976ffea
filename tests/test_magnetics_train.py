"The magnetics entry point: config validation, the YAML config, a papermill run of the training notebook, real-data ingestion."
from pathlib import Path
import json
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(n_train=4, n_calib=3, n_test_per_kind=1, n_test_clean=1, n_test_outage=1, epochs=2, models=["conv"], baselines=["zscore", "pca"])


def test_config_validation(tmp_path):
    from vae_notebooks.magnetics.train import DEFAULTS, train_magnetics
    with pytest.raises(ValueError, match="'epoch'"): train_magnetics(epoch=3)
    with pytest.raises(TypeError, match="'n_train'"): train_magnetics(n_train="many")
    with pytest.raises(ValueError, match="unknown baseline 'knn'"): train_magnetics(baselines=["knn"], out_dir=str(tmp_path/"x"))
    with pytest.raises(ValueError, match="unknown modifier"): train_magnetics(models=["conv+lstm"], out_dir=str(tmp_path/"x"))
    with pytest.raises(ValueError, match="modes must be"): train_magnetics(modes=["online"], out_dir=str(tmp_path/"x"))
    with pytest.raises(ValueError, match="calibration must be"): train_magnetics(calibration="pooled", out_dir=str(tmp_path/"x"))
    assert not (tmp_path/"x").exists()  # rejected before anything is written
    assert DEFAULTS["progress"] is None


def test_yaml_config_has_exactly_the_defaults_keys():
    import yaml
    from vae_notebooks.magnetics.train import DEFAULTS
    from vae_notebooks.train import run_training
    cfg = yaml.safe_load((ROOT/"configs"/"magnetics_default.yaml").read_text())
    assert set(cfg) == set(DEFAULTS)
    resolved = run_training("magnetics", ROOT/"configs"/"magnetics_default.yaml", dry_run=True)
    assert resolved["n_train"] == cfg["n_train"] and resolved["models"] == cfg["models"] and resolved["modes"] == ["centred", "causal"]


def test_papermill_run_of_train_magnetics(tmp_path, monkeypatch):
    import papermill
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out_dir = tmp_path/"run"
    papermill.execute_notebook(str(ROOT/"nbs"/"train_magnetics.ipynb"), str(tmp_path/"out.ipynb"),
                               parameters=dict(out_dir=str(out_dir), **TINY), kernel_name="python3", cwd=str(tmp_path),
                               progress_bar=False)
    # the simulated data set was written where VAE_NOTEBOOKS_DATA points, and nowhere else: the test fails without it
    events_files = list((tmp_path/"data").rglob("events.csv"))
    assert len(events_files) == 1
    for f in ("config.json", "metrics.csv", "model.safetensors", "model.json", "detector.json", "evaluation.csv",
              "per_kind.csv", "shots.csv", "data_quality.csv", "data_quality_check.csv", "attribution.csv", "summary.json"):
        assert (out_dir/f).exists(), f
    assert not (out_dir/"RUN_INCOMPLETE").exists()  # finish_run ran
    for f in ("timelines.png", "attribution.png", "latent_pca.png", "learning_curve.png"):
        assert (out_dir/"figures"/f).stat().st_size > 1000, f
    table = pd.read_csv(out_dir/"evaluation.csv")
    assert [(d, m) for d, m in zip(table.detector, table["mode"])] == [(d, m) for d in ("vae_conv", "zscore", "pca") for m in ("centred", "causal")]
    # every labelled test event is counted in centred mode (all lie in the flat-top); causal mode may drop events in its lead-in
    ev = pd.read_csv(events_files[0]); n_events = int(((ev.split == "test") & ev.kind.notna()).sum())
    assert (table[table["mode"] == "centred"].events == n_events).all()
    assert (table.events_found <= table.events).all() and (table[table["mode"] == "causal"].events <= n_events).all()
    summary = json.loads((out_dir/"summary.json").read_text())
    assert summary["family"] == "magnetics" and "vae_conv" in summary["headline"] and summary["best_epoch"] in (0, 1)
    assert {r["detector"] for r in summary["comparison"]} == {"vae_conv", "zscore", "pca"}
    assert [r["found"] for r in summary["data_quality_check"]] == [True, True]  # injected outage and missing channel reported
    shots = pd.read_csv(out_dir/"shots.csv")
    assert len(shots) == 7 + 1 and {"anomaly_rate_causal", "alarms_centred", "top_channels", "data_quality"} <= set(shots.columns)
    metrics = pd.read_csv(out_dir/"metrics.csv")
    assert len(metrics) == 2 and "valid_loss" in metrics.columns
    cfg = json.loads((out_dir/"config.json").read_text())
    assert cfg["params"]["n_train"] == 4


def _write_split(d, seed, n, prefix, fmt="csv", **kw):
    from vae_notebooks.magnetics.data import simulate_shots, write_shot
    shots = simulate_shots(n, seed=seed, n_steps=600, prefix=prefix, **kw)
    for s in shots: write_shot(s, d/f"{s.name}.{fmt}")
    return shots


def test_unlabelled_csv_folder(tmp_path):
    "Real-data path: a folder of CSV shots without labels runs end to end (the metrics that need labels are NaN)."
    import torch
    from vae_notebooks.magnetics.train import train_magnetics
    torch.set_num_threads(1)
    d = tmp_path/"shots"; d.mkdir()
    for split, seed, n in (("train", 1, 3), ("calib", 2, 2), ("test", 3, 2)): _write_split(d, seed, n, f"{split}_")
    res = train_magnetics(data_dir=str(d), out_dir=str(tmp_path/"run"), models=["conv"], baselines=["zscore"], epochs=1, patience=None)
    assert res["n_train"] == 3 and res["n_test"] == 2 and res["n_dq_test"] == 0
    assert np.isnan(res["evaluation"][0]["roc_auc"]) and res["per_kind"] == []
    for f in d.glob("calib_*"): f.unlink()  # calibration shots are optional for the percentile threshold...
    res = train_magnetics(data_dir=str(d), out_dir=str(tmp_path/"run2"), models=["conv"], baselines=[], epochs=1, patience=None,
                          threshold="percentile")
    assert res["n_calib"] == 0
    with pytest.raises(ValueError, match="needs calibration shots"):  # ...but not for the conformal one
        train_magnetics(data_dir=str(d), out_dir=str(tmp_path/"run3"), models=["conv"], baselines=[], epochs=1, patience=None)
    for f in d.glob("test_*"): f.unlink()
    with pytest.raises(ValueError, match=r"no shot files matching 'test_\*'"):
        train_magnetics(data_dir=str(d), out_dir=str(tmp_path/"run4"), models=["conv"], baselines=[], epochs=1)


def test_real_shots_with_other_names_rates_and_missing_channels(tmp_path):
    "Upper-case names and another plasma-current name, a test shot lacking a channel, a test shot at 2 kHz."
    import h5py, torch
    from vae_notebooks.magnetics.data import Shot, simulate_shot
    from vae_notebooks.magnetics.train import train_magnetics
    torch.set_num_threads(1)
    d = tmp_path/"shots"; d.mkdir()
    rename = lambda c: "ROGOWSKI" if c == "ip" else c.upper()
    def h5(s, path, drop=(), rate=1000):
        t = s.time[0] + np.arange(int(round((s.time[-1] - s.time[0])*rate)) + 1)/rate
        with h5py.File(path, "w") as f:
            f["Time"] = t
            for c, col in zip(s.channels, s.data.T):
                if c not in drop: f[f"magnetics/{rename(c)}"] = np.interp(t, s.time, col)
    for i in range(3): h5(simulate_shot(10 + i, n_steps=600), d/f"train_{i}.h5")
    for i in range(2): h5(simulate_shot(20 + i, n_steps=600), d/f"calib_{i}.h5")
    h5(simulate_shot(30, n_steps=600, anomaly="spikes"), d/"test_0.h5", drop=("flux_loop_in",))
    kw = dict(data_dir=str(d), models=["conv"], baselines=["zscore"], epochs=1, patience=None, ip_channel="rogowski")
    with pytest.warns(UserWarning, match=r"\['FLUX_LOOP_IN'\] are absent"):
        res = train_magnetics(out_dir=str(tmp_path/"run"), **kw)
    dq = pd.read_csv(tmp_path/"run"/"data_quality.csv")
    assert ((dq.kind == "missing_channel") & (dq.channel == "FLUX_LOOP_IN")).sum() == 1
    with pytest.raises(KeyError, match="no plasma-current channel \\(ip_channel\\) 'ip'"):
        train_magnetics(out_dir=str(tmp_path/"run1"), **dict(kw, ip_channel="ip"))
    h5(simulate_shot(31, n_steps=600), d/"test_1.h5", rate=2000)
    with pytest.raises(ValueError, match="shot 'test_1': sampled at 2000 Hz, the detector was trained at 1000 Hz"):
        train_magnetics(out_dir=str(tmp_path/"run2"), **kw)
    res = train_magnetics(out_dir=str(tmp_path/"run3"), sample_rate="resample", **kw)
    assert res["n_test"] == 2
