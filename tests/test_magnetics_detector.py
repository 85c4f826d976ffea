"The VAE anomaly detector: calibrated false-alarm rate on fresh normal shots, dead-channel ranking, save/load."
import numpy as np
import pytest
import torch
from vae_notebooks.magnetics.data import simulate_shot, simulate_shots, flat_top
from vae_notebooks.magnetics.detector import (VAEAnomalyDetector, save_detector, load_detector, rank_channels,
                                              analyze_shots, conformal_threshold)


@pytest.fixture(scope="module")
def det():
    torch.set_num_threads(1)
    train = [flat_top(s) for s in simulate_shots(14, seed=11)]
    return VAEAnomalyDetector(epochs=8, patience=3, bs=64, seed=0).fit(train)


def test_conformal_false_alarm_rate_holds_on_fresh_normal_shots(det):
    calib = [flat_top(s) for s in simulate_shots(20, seed=12)]
    fresh = [flat_top(s) for s in simulate_shots(20, seed=13)]
    alpha = 0.05
    det.calibrate(calib, alpha=alpha)
    scores = np.concatenate(det.decision_function(fresh))
    far = (scores > det.threshold_).mean()
    # the conformal bound (plus sampling slack for 20 correlated shots), and not vacuous
    assert far <= alpha + 0.03, far
    assert far >= 0.005, far
    # the shot-level variant bounds the share of clean shots with any alarm
    det.calibrate(calib, alpha=0.2, level="shot")
    any_alarm = np.mean([(s > det.threshold_).any() for s in det.decision_function(fresh)])
    assert any_alarm <= 0.2 + 0.2, any_alarm


def test_injected_dead_channel_is_ranked_first(det):
    det.calibrate([flat_top(s) for s in simulate_shots(6, seed=14)], alpha=0.05)
    for i, ch in enumerate(("mirnov_090", "flux_loop_out")):
        shot = flat_top(simulate_shot(500 + i, anomaly="dead", channel=ch))
        for method in ("error", "gradient"):
            assert rank_channels(det, [shot], method).channel[0] == ch, (ch, method)
        tab = analyze_shots(det, [shot])
        assert tab.top_channel[0] == ch and tab.anomaly_rate[0] > 0.1


def test_scores_shapes_save_load(det, tmp_path):
    shot = flat_top(simulate_shot(600, anomaly="mode_lock"))
    s = det.decision_function(shot)
    assert s.shape == (shot.T,) and np.isfinite(s).all()
    assert len(det.decision_function([shot, shot])) == 2
    np.testing.assert_allclose(det.decision_function(shot.data), s, rtol=1e-5)  # a bare [T, C] array
    assert set(np.unique(det.predict(shot))) <= {0, 1}
    assert s[shot.step_labels].mean() > s[~shot.step_labels].mean()
    det2 = load_detector(save_detector(det, tmp_path/"det"))
    np.testing.assert_allclose(det2.decision_function(shot), s, rtol=1e-4)
    assert det2.threshold_ == det.threshold_
    with pytest.raises(ValueError, match=r"\[T, C\]"): det.decision_function(np.zeros(5))


def test_mlp_variant_and_conformal_edge_cases():
    torch.set_num_threads(1)
    train = [flat_top(s) for s in simulate_shots(4, seed=21)]
    d = VAEAnomalyDetector(model="mlp", epochs=2, patience=None, train_stride=50).fit(train)
    assert d.logvar_channel_ is not None and d.logvar_channel_.shape == (train[0].C,)
    assert d.decision_function(train[0]).shape == (train[0].T,)
    with pytest.raises(RuntimeError, match="not fitted"): VAEAnomalyDetector().decision_function(train[0])
    with pytest.raises(ValueError, match="model must be"): VAEAnomalyDetector(model="rnn").fit(train)
    assert conformal_threshold(np.arange(1, 20), 0.1) == 18
