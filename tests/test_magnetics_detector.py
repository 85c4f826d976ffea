"The VAE anomaly detector: the score's formula, missing data, causality, calibrated false alarms on fresh shots, options, save/load."
import math, warnings
import numpy as np
import pytest
import torch
from vae_notebooks.magnetics.data import Shot, simulate_shot, simulate_shots, flat_top, match_rate
from vae_notebooks.magnetics.detector import (VAEAnomalyDetector, save_detector, load_detector, rank_channels, analyze_shots,
                                              conformal_threshold, latent_pca_plot)


@pytest.fixture(scope="module")
def det():
    torch.set_num_threads(1)
    train = [flat_top(s) for s in simulate_shots(14, seed=11)]
    return VAEAnomalyDetector(epochs=8, patience=3, bs=64, seed=0, smooth=11).fit(train)


def _windows(det, shot):
    w, starts, _, obs = det._windows(det.prepare(shot))
    return w, obs


def test_score_is_gaussian_nll_plus_latent_distance_plus_kl(det):
    "The raw window score, recomputed by hand: removing the latent term or replacing the NLL by squared error breaks it."
    shot = flat_top(simulate_shot(601, anomaly="mode_lock"))
    w, obs = _windows(det, shot)
    x = torch.as_tensor(w)
    with torch.no_grad(): out = det.model_(x, sample=False)
    s2 = det.model_.running_logvar.exp()[None, :, None].double()
    resid2 = (x - out["recon"]).double().pow(2)
    nll = 0.5*(math.log(2*math.pi) + s2.log() + resid2/s2)
    latent = (out["mu"].double() - det.mu_normal_.double()).pow(2).sum(1)
    kl = 0.5*(out["mu"].double().pow(2) + out["logvar"].double().exp() - 1 - out["logvar"].double()).sum(1)
    expected = nll.sum(1) + ((det.alpha_*latent + det.kl_weight_*kl)/w.shape[2])[:, None]
    np.testing.assert_allclose(det._score_windows(w, obs), expected.numpy(), rtol=1e-4, atol=1e-3)
    assert det.alpha_ == pytest.approx(1/(2*det.tau2_))
    # the latent term is not negligible here: without it the scores move by more than the tolerance above
    assert (det.alpha_*latent/w.shape[2]).abs().max() > 0.01


def test_nll_weighs_channels_by_their_noise(det):
    "The same normalised offset costs more on a channel the decoder reconstructs tightly (plain squared error: equal)."
    shot = flat_top(simulate_shot(602))
    w, obs = _windows(det, shot)
    s2 = det.model_.running_logvar.exp().numpy()
    tight, loose = int(s2.argmin()), int(s2.argmax())
    assert s2[loose]/s2[tight] > 5
    base = det._score_windows(w, obs).sum()
    rises = []
    for c in (tight, loose):
        wp = w.copy(); wp[:, c, 40:60] += 0.5
        rises.append(det._score_windows(wp, obs).sum() - base)
    assert rises[0] > 3*rises[1], rises


def test_missing_samples_do_not_enter_the_likelihood(det):
    shot = flat_top(simulate_shot(603))
    w, obs = _windows(det, shot)
    obs = obs.copy(); obs[:, 6, :] = 0
    garbage = w.copy(); garbage[:, 6, :] = 50.0  # what sits under the mask does not matter to the likelihood
    from vae_notebooks.magnetics.detector import vae_window_scores
    a = vae_window_scores(det.model_, w, det.mu_normal_, observed=obs)
    b = vae_window_scores(det.model_, garbage, det.mu_normal_, observed=obs)
    assert (a["nll_pos"][:, 6] == 0).all() and (b["nll_pos"][:, 6] == 0).all()
    # a missing sample adds its channel's expected term on normal data
    sc = det._score_windows(w, obs)
    tm = vae_window_scores(det.model_, w, det.mu_normal_, observed=obs)
    expected = tm["nll_pos"].sum(1) + det.nll_ref_[6] + ((det.alpha_*tm["latent"] + det.kl_weight_*tm["kl"])/w.shape[2])[:, None]
    np.testing.assert_allclose(sc, expected, rtol=1e-4, atol=1e-3)
    t = vae_window_scores(det.model_, w, det.mu_normal_)
    # an absent channel: filling it with the model's own reconstruction keeps the other channels' terms near the intact ones
    zeroed = w.copy(); zeroed[:, 6, :] = 0
    others = [c for c in range(w.shape[1]) if c != 6]
    change = lambda it: np.abs(vae_window_scores(det.model_, zeroed, det.mu_normal_, observed=obs, impute_iters=it)["nll_pos"][:, others]
                               - t["nll_pos"][:, others]).sum((1, 2)).mean()
    assert change(3) < 0.7*change(0), (change(3), change(0))
    d = vae_window_scores(det.model_, zeroed, det.mu_normal_, observed=obs)  # the default imputes
    np.testing.assert_allclose(d["nll_pos"], vae_window_scores(det.model_, zeroed, det.mu_normal_, observed=obs, impute_iters=3)["nll_pos"])
    # an outage: no plasma alarm, one data-quality event naming channel and span
    det.calibrate([flat_top(s) for s in simulate_shots(10, seed=14)], alpha=0.1)
    gap = shot.data.copy(); gap[150:350, 6] = np.nan
    s_gap, s_int = det.decision_function(shot.with_data(gap)), det.decision_function(shot)
    assert (s_gap > det.threshold_).sum() <= (s_int > det.threshold_).sum()
    assert np.abs(s_gap - s_int)[150:350].mean() < 0.5*np.abs(s_int).mean() + 1
    assert [(e["kind"], e["channel"], e["start"], e["stop"]) for e in det.quality_events(shot.with_data(gap))] == [("outage", shot.channels[6], 150, 350)]
    nan_ch = shot.data.copy(); nan_ch[:, 3] = np.nan
    assert [(e["kind"], e["channel"]) for e in det.quality_events(shot.with_data(nan_ch))] == [("missing_channel", shot.channels[3])]


def test_causal_scores_do_not_depend_on_later_samples(det):
    shot = flat_top(simulate_shot(604))
    t = 350
    later = shot.data.copy(); later[t + 1:] = later[t + 1:]*3 + 2
    a, b = det.decision_function(shot, mode="causal"), det.decision_function(shot.with_data(later), mode="causal")
    np.testing.assert_array_equal(a[:t + 1], b[:t + 1])
    assert not np.allclose(a[t + 1:t + 5], b[t + 1:t + 5])
    assert np.isnan(a[:det.window - 1]).all() and np.isfinite(a[det.window - 1:]).all()
    # the same check catches look-ahead: the centred scores move before t
    c, d = det.decision_function(shot, mode="centred"), det.decision_function(shot.with_data(later), mode="centred")
    assert not np.allclose(c[t - 40:t + 1], d[t - 40:t + 1])


def test_shot_level_conformal_false_alarms_on_fresh_shots(det):
    "Calibrated on per-shot maxima, the share of fresh clean shots with an alarm is near the target; a per-step threshold is not."
    calib = [flat_top(s) for s in simulate_shots(20, seed=12)]
    fresh = [flat_top(s) for s in simulate_shots(30, seed=13)]
    alpha = 0.2
    det.calibrate(calib, alpha=alpha, level="shot", mode="centred")
    scores = det.decision_function(fresh, mode="centred")
    share = np.mean([(s > det.threshold_).any() for s in scores])
    # expected 1 - ceil(21*0.8)/21 = 0.19; two standard errors on 30 shots: 0.15
    assert 0 < share <= alpha + 0.15, share
    det.calibrate(calib, alpha=alpha, level="step", mode="centred")
    assert np.mean([(s > det.threshold_).any() for s in scores]) > 0.5  # the per-step guarantee says nothing about shots
    with pytest.raises(ValueError, match="level must be"): det.calibrate(calib, level="day")


def test_injected_dead_channel_is_ranked_first(det):
    det.calibrate([flat_top(s) for s in simulate_shots(6, seed=14)], alpha=0.2)
    for i, ch in enumerate(("mirnov_090", "flux_loop_out")):
        shot = flat_top(simulate_shot(500 + i, anomaly="dead", channel=ch))
        for method in ("error", "gradient"):
            assert rank_channels(det, [shot], method).channel[0] == ch, (ch, method)
        tab = analyze_shots(det, [shot])
        assert tab.top_channel[0] == ch and tab.anomaly_rate[0] > 0.1
        assert any(e["kind"] == "dead" and e["channel"] == ch for e in det.quality_events(shot))


def test_ingestion_rate_channels_and_save_load(det, tmp_path):
    shot = flat_top(simulate_shot(605, anomaly="mode_lock"))
    s = det.decision_function(shot)
    assert s.shape == (shot.T,) and len(det.decision_function([shot, shot])) == 2
    np.testing.assert_allclose(det.decision_function(shot.data), s, rtol=1e-5)  # a bare [T, C] array at the training rate
    assert s[shot.step_labels].mean() > s[~shot.step_labels].mean()
    upper = Shot(shot.data, [c.upper() for c in shot.channels], shot.time, "upper")
    np.testing.assert_allclose(det.decision_function(upper), s, rtol=1e-5)  # channel names matched ignoring case
    t2 = shot.time[0] + np.arange(2*shot.T - 1)*5e-4
    fast = Shot(np.stack([np.interp(t2, shot.time, c) for c in shot.data.T], 1), shot.channels, t2, "fast")
    with pytest.raises(ValueError, match="shot 'fast': sampled at 2000 Hz, the detector was trained at 1000 Hz"): det.decision_function(fast)
    det.sample_rate = "resample"
    assert det.decision_function(fast).shape == (shot.T,)
    det.sample_rate = "check"
    det.calibrate([flat_top(x) for x in simulate_shots(6, seed=14)], alpha=0.2, mode="causal")
    det2 = load_detector(save_detector(det, tmp_path/"det"))
    for mode in ("centred", "causal"):
        np.testing.assert_allclose(det2.decision_function(shot, mode=mode), det.decision_function(shot, mode=mode), rtol=1e-4)
    assert det2.thresholds_ == det.thresholds_ and det2.best_epoch_ == det.best_epoch_
    assert det2.quality_events(shot) == det.quality_events(shot)
    with pytest.raises(ValueError, match=r"\[T, C\]"): det.decision_function(np.zeros(5))
    with pytest.raises(ValueError, match="mode must be one of"): det.decision_function(shot, mode="online")
    ax = latent_pca_plot(det, [shot], [shot])  # no `ax`: makes its own figure
    assert ax.get_xlabel() == "PC1"


def test_best_weights_are_kept():
    "After early stopping the model holds the best epoch's weights: the same as a run stopped right after that epoch."
    torch.set_num_threads(1)
    train = [flat_top(s) for s in simulate_shots(6, seed=41)]
    kw = dict(epochs=8, patience=100, train_stride=50, lr=6e-3, bs=16, seed=3)  # a held-out share, no early stop
    full = VAEAnomalyDetector(**kw).fit(train)
    v = full.history_["valid_loss"].to_numpy()
    assert np.isfinite(v).all() and full.best_epoch_ == int(np.argmin(v))
    assert full.best_epoch_ < len(v) - 1  # this run went past its best epoch, so restoring matters here
    short = VAEAnomalyDetector(**dict(kw, epochs=full.best_epoch_ + 1)).fit(train)
    a, b = full.model_.state_dict(), short.model_.state_dict()
    for k in a:
        if k != "running_logvar": torch.testing.assert_close(a[k], b[k], msg=k)


def test_conditional_dropout_and_seed_score_options():
    torch.set_num_threads(1)
    train = [flat_top(s) for s in simulate_shots(5, seed=21)]
    d = VAEAnomalyDetector(model="conv", epochs=2, patience=None, train_stride=50, condition=["ip_flat", "campaign"], dropout=0.2,
                           score="recon_kl").fit(train)
    assert d.model_.cond_dim == 1 + len(d.cond_spec_["campaign"]["categories"])
    assert sum(isinstance(m, torch.nn.Dropout) for m in d.model_.modules()) == 4 and d.kl_weight_ == 0.1
    shot = train[0]
    w, starts, _, obs = d._windows(shot)
    c = d._cond(shot, len(w))
    from vae_notebooks.magnetics.detector import vae_window_scores
    t = vae_window_scores(d.model_, w, cond=c)
    np.testing.assert_allclose(d._score_windows(w, obs, c), t["resid2"].sum(1) + (0.1*t["kl"]/w.shape[2])[:, None], rtol=1e-5)
    # the condition changes the scores (the metadata is used)
    other = Shot(shot.data, shot.channels, shot.time, "other", meta=dict(shot.meta, ip_flat=shot.meta["ip_flat"] + 0.3))
    assert not np.allclose(d.decision_function(other), d.decision_function(shot))
    with pytest.raises(KeyError, match="shot 'bare': no metadata 'ip_flat'"):
        d.decision_function(Shot(shot.data, shot.channels, shot.time, "bare"))
    with pytest.raises(ValueError, match="campaign='Z' was not seen in training"):
        d.decision_function(Shot(shot.data, shot.channels, shot.time, "z", meta=dict(shot.meta, campaign="Z")))
    m = VAEAnomalyDetector(model="mlp", epochs=1, patience=None, train_stride=50, condition=["b_field"]).fit(train[:3])
    assert m.logvar_channel_.shape == (train[0].C,) and m.decision_function(train[0]).shape == (train[0].T,)
    with pytest.raises(RuntimeError, match="not fitted"): VAEAnomalyDetector().decision_function(train[0])
    with pytest.raises(ValueError, match="model must be"): VAEAnomalyDetector(model="rnn").fit(train)
    with pytest.raises(ValueError, match="score must be"): VAEAnomalyDetector(score="mse")
    assert conformal_threshold(np.arange(1, 20), 0.1) == 18
