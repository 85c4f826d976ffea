"ABR family: loader bad inputs, sampling shapes, masked peaks never change the loss, save/load, a papermill run."
import json
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch

from vae_notebooks.abr.data import (simulate_abr, load_abr, ABRData, ABRDataset, split_patients, PEAK_COLS, WAVEFORM_COLS,
                                    STATIC_COLS)
from vae_notebooks.abr.models import CVAE, TransformerCVAE, ABRLoss

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def df():
    return simulate_abr(300, seed=0)


def _export(df, n_samples=None, rename=None):
    "A clinical-style export: canonical static/peak columns (optionally renamed), waveform columns '1'..'N' (20 kHz from onset)."
    w = df[list(WAVEFORM_COLS)].to_numpy()
    if n_samples is not None: w = w[:, :n_samples]
    head = df.iloc[:, :12].rename(columns=rename or {})
    return pd.concat([head, pd.DataFrame(w, columns=[str(i + 1) for i in range(w.shape[1])])], axis=1)

AXIS = dict(sampling_rate_hz=20000, prestim_ms=0.0)   # the time axis a numbered export must declare


# ---------------------------------------------------------------- loader: bad inputs
@pytest.mark.parametrize("col", ["age", "rate", "hearing_loss"])
def test_missing_column_is_named(df, tmp_path, col):
    p = tmp_path/"abr.csv"; _export(df).drop(columns=[col]).to_csv(p, index=False)
    with pytest.raises(KeyError) as e: load_abr(p, **AXIS)
    assert col in str(e.value) and "abr.csv" in str(e.value)


def test_column_map_fixes_other_naming(df, tmp_path):
    p = tmp_path/"abr.xlsx"; _export(df.iloc[:30], rename={"latency_V": "V Latency", "intensity": "Intensity"}).to_excel(p, index=False)
    with pytest.raises(KeyError, match="intensity"): load_abr(p, **AXIS)
    out = load_abr(p, column_map={"V Latency": "latency_V", "Intensity": "intensity"}, **AXIS)
    assert out.shape == (30, 12 + 200)
    np.testing.assert_allclose(out.latency_V.to_numpy(), df.latency_V.iloc[:30].to_numpy())


@pytest.mark.parametrize("col", ["latency_I", "amplitude_V"])
def test_all_nan_peak_column_warns(df, col):
    with pytest.warns(UserWarning, match=col): out = load_abr(_export(df).assign(**{col: np.nan}), **AXIS)
    assert out[col].isna().all()


def test_wrong_waveform_length(df, tmp_path):
    p = tmp_path/"short.csv"; _export(df, n_samples=150).to_csv(p, index=False)
    with pytest.raises(ValueError, match=r"0 to 7.45 ms after onset, the model needs 0 to 9.95 ms"): load_abr(p, **AXIS)
    with pytest.raises(ValueError, match="min_samples"): load_abr(_export(df, n_samples=20), **AXIS)
    # a 400-sample export at 40 kHz over the same 10 ms gives 200 samples
    w = np.repeat(df[list(WAVEFORM_COLS)].to_numpy(), 2, axis=1)
    dense = pd.concat([df.iloc[:, :12], pd.DataFrame(w, columns=[str(i + 1) for i in range(400)])], axis=1)
    assert load_abr(dense, sampling_rate_hz=40000, prestim_ms=0)[list(WAVEFORM_COLS)].shape == (300, 200)
    with pytest.raises(ValueError, match=r"\[300, 400\].*\[300, 200\]"): load_abr(dense, sampling_rate_hz=40000, prestim_ms=0, resample=False)


def test_bad_values_are_named(df):
    with pytest.raises(ValueError, match="mild"): load_abr(_export(df).assign(hearing_loss="mild"), **AXIS)
    bad = _export(df); bad["12"] = bad["12"].astype(object); bad.loc[7, "12"] = "oops"
    with pytest.raises(ValueError, match=r"rows \[7\]"): load_abr(bad, **AXIS)
    with pytest.raises(FileNotFoundError, match="nope.csv"): load_abr("nope.csv")
    with pytest.raises(ValueError, match="no recording has fmp"): load_abr(_export(df), min_fmp=50.0 + df.fmp.max(), **AXIS)


def test_quality_filter_and_schema(df):
    out = load_abr(_export(df), min_fmp=3.1, **AXIS)
    assert len(out) == int((df.fmp >= 3.1).sum()) and list(out.columns[1:5]) == list(STATIC_COLS)


# ---------------------------------------------------------------- splits, normalisation, augmentation
def test_patient_splits_do_not_leak(df):
    data = ABRData(df, valid_frac=0.2, test_frac=0.2, seed=1)
    per_patient = pd.DataFrame({"p": data.df.patient_id, "s": data.split}).groupby("p").s.nunique()
    assert per_patient.max() == 1 and set(data.split) == {"train", "valid", "test"}
    # the normaliser only saw training recordings
    tr = data.df[data.split == "train"]
    assert data.normalizer.stats["latency_V_mean"] == pytest.approx(tr.latency_V.mean())
    with pytest.raises(ValueError, match="training split only"): ABRDataset(data, "test", augment=True)


# ---------------------------------------------------------------- models
def _batch(B=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, 200, generator=g), torch.randn(B, 8, generator=g), torch.randn(B, 6, generator=g),
            (torch.rand(B, 6, generator=g) > 0.4).float())


def test_sampling_shapes():
    torch.manual_seed(0)
    joint, legacy, tr = CVAE(joint_generation=True), CVAE(), TransformerCVAE(dim_feedforward=64)
    s = joint.sample(9)
    assert (s["recon"].shape, s["static"].shape, s["peaks"].shape, s["presence"].shape) == ((9, 200), (9, 8), (9, 6), (9, 3))
    s = legacy.sample(torch.randn(4, 8), 3)
    assert (s["recon"].shape, s["static"].shape, s["peaks"].shape) == ((12, 200), (12, 8), (12, 6))
    assert legacy.sample(torch.randn(8), 5)["recon"].shape == (5, 200)
    assert tr.sample(torch.randn(2, 8), 4)["recon"].shape == (8, 200)
    with pytest.raises(ValueError, match="legacy"): legacy.sample(3)
    with pytest.raises(ValueError, match="joint-generation"): joint.sample(torch.randn(2, 8), 3)
    # switching modes keeps what was learnt: joint -> legacy decodes identically whatever the condition
    z = torch.randn(3, 32)
    with torch.no_grad():
        as_legacy = joint.eval().with_mode(False).eval()
        torch.testing.assert_close(as_legacy.decode(z, torch.randn(3, 8))["recon"], joint.decode(z)["recon"])
        assert as_legacy.sample(torch.randn(8), 2)["recon"].shape == (2, 200)


@pytest.mark.parametrize("make", [lambda: CVAE(), lambda: CVAE(joint_generation=True), lambda: TransformerCVAE(dim_feedforward=64)],
                         ids=["cvae", "joint", "transformer"])
def test_masked_entries_never_change_the_loss(make):
    torch.manual_seed(0); model = make().eval()   # eval: no dropout, so runs are comparable
    loss = ABRLoss(beta=0.1, static_weight=1.0, peak_weight=0.8)
    w, s, p, m = _batch()
    def run(peaks):
        model.zero_grad(); torch.manual_seed(1)
        total, comps = loss(model(w, s, peaks, m), w, s, peaks, m); total.backward()
        return total.detach(), {k: v.detach() for k, v in comps.items()}, [q.grad.clone() for q in model.parameters() if q.grad is not None]
    ref = run(p)
    for junk in (float("nan"), 1e6, -3.0):
        got = run(torch.where(m.bool(), p, torch.full_like(p, junk)))
        assert torch.equal(got[0], ref[0]) and all(torch.equal(got[1][k], ref[1][k]) for k in ref[1])
        assert len(got[2]) == len(ref[2]) and all(torch.equal(a, b) for a, b in zip(got[2], ref[2]))
    # an observed entry does change it
    assert not torch.equal(run(p + m)[0], ref[0])


def test_loss_protocol_components():
    model = CVAE(joint_generation=True); w, s, p, m = _batch()
    total, comps = ABRLoss(beta=0.5)(model(w, s, p, m), w, s, p, m)
    assert {"loss", "kl_raw", "beta", "recon", "signal", "static", "peaks", "presence"} <= set(comps)
    assert comps["loss"] is total and total.ndim == 0 and float(comps["beta"]) == 0.5


def test_save_load_roundtrip(tmp_path):
    from vae_notebooks.learner import save_model, load_model
    for i, model in enumerate([CVAE(joint_generation=True, hidden_dims=(32, 16)), TransformerCVAE(dim_feedforward=64, patch_size=8)]):
        model.eval(); save_model(model, tmp_path/str(i)); back = load_model(tmp_path/str(i)).eval()
        b = _batch()
        with torch.no_grad(): torch.testing.assert_close(back(*b, sample=False)["recon"], model(*b, sample=False)["recon"])


def test_conditional_prior_config_save_load_and_sampling(tmp_path):
    "The transformer's prior reaches the model from a config, survives save/load, and sampling draws z from p(z | static)."
    from vae_notebooks.learner import save_model, load_model
    from vae_notebooks.abr.train import DEFAULTS, build_abr_model
    small = dict(DEFAULTS, dim_feedforward=64); torch.manual_seed(0)
    assert not hasattr(build_abr_model(dict(small, prior="standard")), "prior_net")
    model = build_abr_model(dict(small, prior="conditional")).eval()
    with torch.no_grad():
        for p in model.prior_net[-1].parameters(): p.normal_(0, 0.3)   # a trained-looking prior
    static = torch.randn(2, 8)
    m, lv = model.prior_params(static)
    s = model.sample(static, 4000, generator=torch.Generator().manual_seed(0))
    z = m.repeat_interleave(4000, 0) + torch.exp(0.5*lv).repeat_interleave(4000, 0)*s["z"]   # what decode sees
    tol = 5*torch.exp(0.5*lv).max().item()/4000**0.5
    torch.testing.assert_close(z.view(2, 4000, -1).mean(1), m, atol=tol, rtol=0)              # E[z | static] = prior mean
    assert (m[0] - m[1]).abs().max() > 3*tol
    for i, mdl in enumerate([model, build_abr_model(dict(small, prior="standard", condition_queries=False))]):
        save_model(mdl.eval(), tmp_path/str(i)); back = load_model(tmp_path/str(i)).eval()
        assert back.prior == mdl.prior and back.condition_queries == mdl.condition_queries
        b = _batch()
        with torch.no_grad(): torch.testing.assert_close(back(*b, sample=False)["recon"], mdl(*b, sample=False)["recon"])


# ---------------------------------------------------------------- entry point and notebook
def test_train_abr_rejects_bad_keys(tmp_path):
    from vae_notebooks.abr.train import train_abr, DEFAULTS
    with pytest.raises(ValueError, match="epochz"): train_abr(epochz=1, out_dir=str(tmp_path))
    with pytest.raises(TypeError, match="epochs"): train_abr(epochs="many", out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="CVAE mode"): train_abr(model="transformer", joint_generation=True, out_dir=str(tmp_path/"x"))


def test_notebook_parameters_match_defaults():
    from vae_notebooks.abr.train import DEFAULTS
    nb = json.loads((ROOT/"nbs"/"train_abr.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    ns = {}; exec("".join(cell["source"]), ns)
    assert {k: ns[k] for k in DEFAULTS} == DEFAULTS and set(k for k in ns if not k.startswith("__")) == set(DEFAULTS)


def test_papermill_train_abr(tmp_path, monkeypatch):
    import papermill as pm
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path/"run"
    pm.execute_notebook(str(ROOT/"nbs"/"train_abr.ipynb"), str(tmp_path/"out.ipynb"), kernel_name="python3", cwd=str(tmp_path),
                        parameters=dict(out_dir=str(out), model="cvae", joint_generation=True, n_recordings=400, epochs=1,
                                        n_generate=200, num_threads=1), progress_bar=False)
    summary = json.loads((out/"summary.json").read_text())
    assert summary["joint_generation"] and summary["epochs_run"] == 1
    for f in ("config.json", "metrics.csv", "model.safetensors", "model.json", "normalizer.json"): assert (out/f).exists(), f
    assert {"generation.png", "conditional_samples.png", "interpolation.png", "reconstructions.png", "learning_curves.png"} == \
           {p.name for p in (out/"figures").glob("*.png")}
    assert (tmp_path/"data"/"abr").is_dir() and np.isfinite(summary["test_predict_from_waveform"]["recon_corr"])
    assert summary["family"] == "abr" and summary["best_epoch"] == 0 and "headline" in summary and not (out/"RUN_INCOMPLETE").exists()
