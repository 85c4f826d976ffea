"ABR evaluation that cannot peek: marks hidden vs given, baselines, generation judged on waveforms, the picker's rules."
import numpy as np
import pandas as pd
import pytest
import torch

from vae_notebooks.abr.data import simulate_abr, ABRData, WAVEFORM_COLS, time_axis_ms
from vae_notebooks.abr.models import CVAE, TransformerCVAE, linear_peak_baseline
from vae_notebooks.abr.peaks import pick_peaks
from vae_notebooks.abr.train import (predict_from_waveform, reconstruct_with_marks, compare_generation, generate_abr,
                                     peak_comparison, _headline, latency_intensity_slope)


@pytest.fixture(scope="module")
def data():
    return ABRData(simulate_abr(600, seed=2), seed=0)


def _junk_marks(t):
    return {**t, "peaks": t["peaks"] + 5.0*t["mask"]}   # change every observed mark


@pytest.mark.parametrize("make", [lambda: TransformerCVAE(dim_feedforward=64, patch_size=8), lambda: CVAE(joint_generation=True)],
                         ids=["transformer", "joint"])
def test_predict_from_waveform_never_sees_the_marks(data, make):
    torch.manual_seed(0); model = make()
    t = data.tensors("test")
    a, b = predict_from_waveform(model, t), predict_from_waveform(model, _junk_marks(t))
    assert torch.equal(a["peaks"], b["peaks"]) and torch.equal(a["recon"], b["recon"])
    # ...whereas the reconstruction with marks does read them (so the two evaluations differ)
    c, d = reconstruct_with_marks(model, t), reconstruct_with_marks(model, _junk_marks(t))
    assert not torch.equal(c["peaks"], d["peaks"])


def test_linear_baseline_uses_only_its_features(data):
    tr, te = data.frame("train"), data.frame("test")
    a = linear_peak_baseline(tr, te)
    b = linear_peak_baseline(tr, te.assign(age=te.age + 50, rate=te.rate + 20, **{c: 0.0 for c in WAVEFORM_COLS}))
    pd.testing.assert_frame_equal(a, b)
    mae = (a.latency_V - te.latency_V).abs().mean()
    assert mae < 0.6*(te.latency_V - tr.latency_V.mean()).abs().mean()   # it does carry the latency-intensity function


def test_comparison_rows_and_headline_can_say_no(data):
    torch.manual_seed(0); model = CVAE(hidden_dims=(32, 16))   # untrained: must lose
    comp = peak_comparison(model, data, "test", name="CVAE")
    assert comp.method.tolist()[:2] == ["CVAE predict_from_waveform (marks hidden)", "CVAE reconstruct_with_marks (marks given: not a prediction)"]
    head = _headline("CVAE", comp)
    assert "does not beat" in head and "is better" in head
    better = comp.copy(); better.loc[0, "latency_V_mae"] = 0.001
    assert _headline("CVAE", better).endswith("CVAE is better")


def test_generation_statistics_read_waveforms_not_labels(data):
    real = data.frame("test")
    # labels that lie (peak columns shifted) do not change the waveform statistics ...
    liar = data.frame("valid").assign(latency_V=lambda d: d.latency_V + 3.0)
    a, b = compare_generation(real, data.frame("valid")), compare_generation(real, liar)
    assert a == b
    # ... while delayed waveforms do
    late = data.frame("valid"); late[list(WAVEFORM_COLS)] = np.roll(late[list(WAVEFORM_COLS)].to_numpy(), 10, axis=1)
    assert compare_generation(real, late)["ks_latency_V"] > 1.5*a["ks_latency_V"]
    # a conditional generator copies the conditions: nothing about them is reported
    assert "tv_hearing_loss" not in a and "tv_hearing_loss" in compare_generation(real, liar, conditional=False)


def test_joint_generation_keeps_continuous_intensities(data):
    torch.manual_seed(0)
    gen = generate_abr(CVAE(joint_generation=True), data, n=200, seed=0)
    assert (gen.intensity % 10 != 0).mean() > 0.9   # no forced 10 dB grid


def test_slope_sign_and_units():
    lv = np.repeat([20., 40, 60, 80], 5)
    assert latency_intensity_slope(lv, 8.0 - 0.035*lv) == pytest.approx(0.35)
    assert np.isnan(latency_intensity_slope(np.full(5, 60.0), np.arange(5.0)))


def test_picker_finds_known_latencies():
    t = time_axis_ms()
    y = sum(a*np.exp(-0.5*((t - l)/0.2)**2) - 0.5*a*np.exp(-0.5*((t - l - 0.6)/0.2)**2) for l, a in ((1.7, 0.3), (3.8, 0.25), (5.9, 0.5)))
    p = pick_peaks(y[None], t)
    np.testing.assert_allclose(p[["latency_I", "latency_III", "latency_V"]].to_numpy()[0], [1.7, 3.8, 5.9], atol=0.06)
    # a wave I in the III window (a low-level recording: I at 3.3 ms, V at 7.3 ms) is not taken for wave III
    y2 = sum(a*np.exp(-0.5*((t - l)/0.2)**2) - 0.5*a*np.exp(-0.5*((t - l - 0.6)/0.2)**2) for l, a in ((3.3, 0.3), (7.3, 0.5)))
    p2 = pick_peaks(y2[None], t)
    assert p2.latency_I[0] == pytest.approx(3.3, abs=0.06) and np.isnan(p2.latency_III[0])


def test_joint_conditional_figure_draws_every_level(data):
    "Generated intensities are continuous: the figure picks recordings within ±5 dB of each level (it once drew nothing)."
    import matplotlib; matplotlib.use("Agg")
    from vae_notebooks.abr.train import plot_conditional_samples
    torch.manual_seed(0)
    fig = plot_conditional_samples(CVAE(joint_generation=True), data, levels=(60, 50), n_per=1)   # untrained: intensities near the mean
    assert len(fig.axes[0].lines) == 2
