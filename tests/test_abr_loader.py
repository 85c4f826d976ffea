"ABR loader: every bad input of issue 15 gets an error naming what is wrong (row and column, or the option to set); declared, it loads."
from pathlib import Path
import numpy as np
import pandas as pd
import pytest

from vae_notebooks.abr.data import (simulate_abr, load_abr, WAVEFORM_COLS, LATENCY_COLS, AMPLITUDE_COLS, PEAK_COLS, DT_MS)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small():
    return simulate_abr(40, seed=0)


def _at(df, col, row, value):
    out = df.copy(); out[col] = out[col].astype(object) if isinstance(value, str) else out[col]; out.loc[row, col] = value
    return out


BAD = {  # case -> (make the frame, error type, text the error must contain)
    "age -5": (lambda d: _at(d, "age", 3, -5.0), ValueError, "column 'age', row 3: -5 is outside 0-120 years"),
    "intensity 380": (lambda d: _at(d, "intensity", 5, 380.0), ValueError, "column 'intensity', row 5: 380 is outside"),
    "rate 0": (lambda d: _at(d, "rate", 0, 0.0), ValueError, "column 'rate', row 0: 0 is outside"),
    "latency 50 ms": (lambda d: _at(d, "latency_V", 7, 50.0), ValueError, "column 'latency_V', row 7: 50 is outside 0.5-10 ms"),
    "latencies in s": (lambda d: d.assign(**{c: d[c]/1000 for c in LATENCY_COLS}), ValueError, "latency_unit='ms', 's' or 'samples'"),
    "latencies in samples": (lambda d: d.assign(**{c: (d[c]/DT_MS).round() for c in LATENCY_COLS}), ValueError, "cannot infer the unit of 'latency_I'"),
    "amplitudes in nV": (lambda d: d.assign(**{c: d[c]*1000 for c in AMPLITUDE_COLS}), ValueError, "amplitude_unit="),
    "waveforms in volts": (lambda d: d.assign(**{c: d[c]*1e-6 for c in WAVEFORM_COLS}), ValueError, "declare waveform_unit (it looks like 'V')"),
    "waveforms in nV": (lambda d: d.assign(**{c: d[c]*1e3 for c in WAVEFORM_COLS}), ValueError, "it looks like 'nV'"),
    "0 = not marked, undeclared": (lambda d: _at(d.fillna({"latency_I": 0.0}), "latency_I", 0, 0.0), ValueError, "pass zero_means_missing=True"),
    "mixed hearing loss": (lambda d: _at(d, "hearing_loss", 2, "mixed"), ValueError, "unknown hearing_loss value(s) ['mixed'] (rows [2])"),
    "numbered export without time axis": (lambda d: d.rename(columns={c: str(i + 1) for i, c in enumerate(WAVEFORM_COLS)}), ValueError,
                                          "no time axis: pass sampling_rate_hz"),
    "no latency column": (lambda d: d.drop(columns=list(LATENCY_COLS)), KeyError, "no latency column"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_error_text(small, case):
    make, err, text = BAD[case]
    with pytest.raises(err) as e: load_abr(make(small))
    assert text in str(e.value), str(e.value)


def test_file_rows_are_spreadsheet_rows(small, tmp_path):
    "In a file, the row named is the one a spreadsheet shows (header = row 1)."
    p = tmp_path/"abr.csv"; _at(small, "age", 3, -5.0).to_csv(p, index=False)
    with pytest.raises(ValueError, match=r"abr.csv: column 'age', row 5: -5"): load_abr(p)


def test_declared_units_load(small):
    s = load_abr(small.assign(**{c: small[c]/1000 for c in LATENCY_COLS}), latency_unit="s")
    np.testing.assert_allclose(s.latency_V, small.latency_V)
    smp = load_abr(small.assign(**{c: (small[c]/DT_MS).round() for c in LATENCY_COLS}), latency_unit="samples")
    assert np.nanmax(np.abs(smp.latency_V - small.latency_V)) <= DT_MS/2 + 1e-9
    np.testing.assert_allclose(load_abr(small.assign(**{c: small[c]*1000 for c in AMPLITUDE_COLS}), amplitude_unit="nV").amplitude_V, small.amplitude_V)
    np.testing.assert_allclose(load_abr(small.assign(**{c: small[c]*1e-6 for c in WAVEFORM_COLS}), waveform_unit="V").w100, small.w100, rtol=1e-5)
    z = load_abr(small.fillna(0.0), zero_means_missing=True)
    assert z[list(PEAK_COLS)].isna().sum().tolist() == small[list(PEAK_COLS)].isna().sum().tolist()
    assert set(load_abr(small.assign(hearing_loss="MIXED"), hearing_loss_map={"mixed": "conductive"}).hearing_loss) == {"conductive"}
    with pytest.raises(ValueError, match="not classes"): load_abr(small, hearing_loss_map={"mixed": "mild"})


def test_time_axis_declared_keeps_latencies(small):
    "The measured failure: a 240-sample, 12 ms export (20 kHz, 2 ms baseline) must not move wave V."
    w = np.concatenate([np.zeros((len(small), 40)), small[list(WAVEFORM_COLS)].to_numpy()], 1)
    exp = pd.concat([small.iloc[:, :12], pd.DataFrame(w, columns=[str(i + 1) for i in range(240)])], axis=1)
    with pytest.raises(ValueError, match="prestim_ms"): load_abr(exp, source_window_ms=12.0)
    back = load_abr(exp, source_window_ms=12.0, prestim_ms=2.0)
    np.testing.assert_allclose(back[list(WAVEFORM_COLS)].to_numpy(), small[list(WAVEFORM_COLS)].to_numpy(), atol=1e-6)
    shifted = load_abr(exp, source_window_ms=12.0, prestim_ms=0.0)   # the wrong baseline does move it: the option matters
    assert not np.allclose(shifted[list(WAVEFORM_COLS)].to_numpy(), small[list(WAVEFORM_COLS)].to_numpy(), atol=1e-3)


def test_wave_v_only_trains_the_normaliser(small):
    from vae_notebooks.abr.data import ABRData
    cols = ["latency_I", "latency_III", "amplitude_I", "amplitude_III", "amplitude_V"]
    with pytest.warns(UserWarning, match="latency_I"): v_only = load_abr(small.drop(columns=cols))
    data = ABRData(pd.concat([v_only]*3, ignore_index=True).assign(patient_id=lambda d: d.patient_id + d.index.astype(str)))
    t = data.tensors("train")
    assert t["mask"][:, 0].sum() == 0 and t["mask"][:, 2].sum() > 0 and np.isfinite(t["peaks"].numpy()).all()


def test_template_loads():
    out = load_abr(ROOT/"nbs"/"abr_template.csv")
    assert out.shape == (3, 212) and out.latency_V.notna().all()


def test_latency_in_samples_counts_from_the_first_sample(small):
    "Sample indices of an export with a 1 ms baseline (20 samples at 20 kHz) are 20 samples later than the latency after onset."
    w = np.concatenate([np.zeros((len(small), 20)), small[list(WAVEFORM_COLS)].to_numpy()], 1)
    exp = pd.concat([small.iloc[:, :12].assign(**{c: (small[c]/DT_MS).round() + 20 for c in LATENCY_COLS}),
                     pd.DataFrame(w, columns=[str(i + 1) for i in range(220)])], axis=1)
    back = load_abr(exp, sampling_rate_hz=20000, prestim_ms=1.0, latency_unit="samples")
    assert np.nanmax(np.abs(back.latency_V - small.latency_V)) <= DT_MS/2 + 1e-9


def test_loader_options_reach_train_abr_config(small, tmp_path):
    "Every load_abr option is a train_abr config key, and abr_frame passes them through (papermill -p / CLI --set reach them)."
    from vae_notebooks.abr.train import DEFAULTS, LOADER_OPTIONS, abr_frame
    from vae_notebooks.core import resolve_config
    assert set(LOADER_OPTIONS) <= set(DEFAULTS) and {"source_window_ms", "waveform_cols", "sheet_name", "hearing_loss_map"} <= set(LOADER_OPTIONS)
    w = np.concatenate([np.zeros((len(small), 20)), small[list(WAVEFORM_COLS)].to_numpy()], 1)
    p = tmp_path/"export.csv"
    pd.concat([small.iloc[:, :12].assign(hearing_loss="Mixed"), pd.DataFrame(w, columns=[str(i + 1) for i in range(220)])], axis=1).to_csv(p, index=False)
    cfg = resolve_config(DEFAULTS, dict(data_path=str(p)), source="test")
    with pytest.raises(ValueError, match="no time axis"): abr_frame(cfg)
    cfg = resolve_config(DEFAULTS, dict(data_path=str(p), sampling_rate_hz=20000.0, prestim_ms=1.0, hearing_loss_map={"mixed": "conductive"}), source="test")
    out = abr_frame(cfg)
    np.testing.assert_allclose(out[list(WAVEFORM_COLS)].to_numpy(), small[list(WAVEFORM_COLS)].to_numpy(), atol=1e-6)
    assert set(out.hearing_loss) == {"conductive"}
