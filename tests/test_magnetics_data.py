"Bad inputs and invariants of the magnetics data layer (no training; a few seconds)."
import json
import numpy as np
import pandas as pd
import pytest
from vae_notebooks.magnetics.data import (Shot, read_shot, read_shots, write_shot, flat_top, interpolate_gaps, ChannelNormalizer,
                                          sliding_windows, shot_windows, simulate_shot, simulate_shots, simulated_dataset, ANOMALY_KINDS,
                                          align_channels, match_rate)
from vae_notebooks.magnetics.quality import DataQualityChecker


def test_ragged_channels_name_the_file(tmp_path):
    (tmp_path/"s1.csv").write_text("time,ip,mirnov_000\n0,1,2\n1,3\n")
    with pytest.raises(ValueError, match=r"s1\.csv: ragged channels: line 3"): read_shot(tmp_path/"s1.csv")
    np.savez(tmp_path/"s2.npz", time=np.arange(5.), ip=np.zeros(5), mirnov_000=np.zeros(4))
    with pytest.raises(ValueError, match=r"s2\.npz: ragged channels"): read_shot(tmp_path/"s2.npz")


def test_wrong_dtypes_name_the_file(tmp_path):
    (tmp_path/"a.csv").write_text("time,ip\n0,1\n1,abc\n")
    with pytest.raises(TypeError, match=r"a\.csv: wrong dtype in column 'ip'"): read_shot(tmp_path/"a.csv")
    np.savez(tmp_path/"b.npz", data=np.array([[1, None]], dtype=object), channels=np.array(["ip", "x"]))
    with pytest.raises(TypeError, match=r"b\.npz: wrong dtype"): read_shot(tmp_path/"b.npz")
    np.savez(tmp_path/"c.npz", time=np.arange(3.), ip=np.array(["1", "2", "3"]))
    with pytest.raises(TypeError, match=r"c\.npz: wrong dtype for channel 'ip'"): read_shot(tmp_path/"c.npz")
    np.savez(tmp_path/"d.npz", data=np.zeros((3, 2), dtype=complex), channels=np.array(["ip", "x"]))
    with pytest.raises(TypeError, match=r"d\.npz: shot data must be numeric"): read_shot(tmp_path/"d.npz")


def test_empty_shots_name_the_file(tmp_path):
    (tmp_path/"e1.csv").write_text("time,ip\n")
    (tmp_path/"e2.csv").write_text("")
    np.savez(tmp_path/"e3.npz", data=np.zeros((0, 2)), channels=np.array(["ip", "x"]))
    np.savez(tmp_path/"e4.npz")
    for f in ("e1.csv", "e2.csv", "e3.npz", "e4.npz"):
        with pytest.raises(ValueError, match=f"{f}: empty shot"): read_shot(tmp_path/f)


def test_folder_reader_checks_channels_and_round_trips(tmp_path):
    s = simulate_shot(1, n_steps=400, anomaly="spikes")
    write_shot(s, tmp_path/"a.npz"); write_shot(s, tmp_path/"b.csv")
    shots = read_shots(tmp_path)
    assert [x.name for x in shots] == ["a", "b"]
    np.testing.assert_allclose(shots[1].data, s.data, rtol=1e-5, atol=1e-6)
    assert shots[0].events == s.events and (shots[0].labels == s.labels).all() and shots[0].meta == s.meta
    other = Shot(s.data[:, :3], s.channels[:3], s.time, name="c")
    write_shot(other, tmp_path/"c.npz")
    with pytest.raises(ValueError, match=r"c\.npz: channels .* differ"): read_shots(tmp_path)
    with pytest.raises(ValueError, match="no shot files"): read_shots(tmp_path, "zzz*")


def test_hdf5_flat_and_grouped_layouts(tmp_path):
    import h5py  # a dependency: no skip
    s = simulate_shot(2, n_steps=400)
    with h5py.File(tmp_path/"flat.h5", "w") as f:
        f["Time"] = s.time
        for c, col in zip(s.channels, s.data.T): f[c.upper()] = col
    with h5py.File(tmp_path/"grouped.hdf5", "w") as f:
        f["time"] = s.time
        for c, col in zip(s.channels, s.data.T): f[f"{'mirnov' if c.startswith('mirnov') else 'equilibrium'}/{c}"] = col
        for k, v in s.meta.items(): f.attrs[k] = v
    flat, grouped = read_shot(tmp_path/"flat.h5"), read_shot(tmp_path/"grouped.hdf5")
    assert "TIME" not in [c.upper() for c in flat.channels] and flat.C == s.C  # `Time` is the time base
    for r in (flat, grouped):
        a = align_channels(r, s.channels)
        np.testing.assert_allclose(a.data, s.data, rtol=1e-6); np.testing.assert_allclose(a.time, s.time)
    assert grouped.meta == s.meta
    with h5py.File(tmp_path/"s.h5", "w") as f:
        f["g/time"] = np.arange(4.); f["g/ip"] = np.ones(4); f["h/x"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"s\.h5: ragged channels"): read_shot(tmp_path/"s.h5")
    with h5py.File(tmp_path/"twice.h5", "w") as f: f["a/ip"] = np.ones(3); f["b/ip"] = np.ones(3)
    with pytest.raises(ValueError, match=r"twice\.h5: datasets \['ip'\] appear in several groups"): read_shot(tmp_path/"twice.h5")
    (tmp_path/"junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"0"*64)
    with pytest.raises(ValueError, match=r"junk\.h5: not a readable HDF5 file"): read_shot(tmp_path/"junk.h5")


def test_channel_roles_rates_and_absent_channels(tmp_path):
    (tmp_path/"a.csv").write_text("Time,IP,mirnov_000\n0,1,2\n0.001,3,4\n0.002,5,6\n")
    s = read_shot(tmp_path/"a.csv")
    assert s.channels == ("IP", "mirnov_000") and s.time.tolist() == [0, 0.001, 0.002]
    assert s.channel("ip").tolist() == [1, 3, 5]
    with pytest.raises(KeyError, match="no plasma-current channel \\(ip_channel\\) 'rogowski'"): flat_top(s, channel="rogowski")
    with pytest.raises(ValueError, match="several time columns"):
        (tmp_path/"b.csv").write_text("time,TIME,ip\n0,0,1\n"); read_shot(tmp_path/"b.csv")
    sim = simulate_shot(3, n_steps=400)
    t2 = np.arange(0, 0.4, 5e-4)
    fast = Shot(np.stack([np.interp(t2, sim.time, c) for c in sim.data.T], 1), sim.channels, t2, "fast")
    with pytest.raises(ValueError, match="shot 'fast': sampled at 2000 Hz, the detector was trained at 1000 Hz"): match_rate(fast, 1000)
    back = match_rate(fast, 1000, resample=True)
    assert back.T == 400 and np.abs(back.data[1:-1] - sim.data[1:-1]).max() < 0.05
    with pytest.warns(UserWarning, match=r"\['flux_loop_in'\] are absent"):
        part = align_channels(Shot(np.delete(sim.data, 2, 1), [c for c in sim.channels if c != "flux_loop_in"], sim.time, "part"), sim.channels)
    assert part.channels == sim.channels and np.isnan(part.data[:, 2]).all() and not np.isnan(np.delete(part.data, 2, 1)).any()


def test_data_quality_events():
    train = [flat_top(s) for s in simulate_shots(8, seed=31)]
    dq = DataQualityChecker().fit(train)
    assert sum(len(dq.events(flat_top(s))) for s in simulate_shots(8, seed=33)) == 0
    stuck = flat_top(simulate_shot(7, anomaly="stuck", channel="flux_loop_in")); e = stuck.events[0]
    ev = [x for x in dq.events(stuck) if x["channel"] == "flux_loop_in"]
    assert len(ev) == 1 and ev[0]["kind"] == "stuck" and abs(ev[0]["start"] - e["start"]) <= 2 and 0 <= ev[0]["stop"] - e["stop"] <= 10  # the trailing window ends the span a few steps late
    assert e["start"] < ev[0]["detected_at"] <= e["start"] + dq.flat_window + dq.min_span  # causal: raised after the flat stretch began
    dead = flat_top(simulate_shot(8, anomaly="dead", channel="mirnov_090"))
    assert [x["kind"] for x in dq.events(dead) if x["channel"] == "mirnov_090"] == ["dead"]
    short = dead.data.copy(); short[100:104, 4] = np.nan  # bridged by interpolation: not an event
    assert not [x for x in dq.events(dead.with_data(short)) if x["kind"] == "outage"]
    for k in ("mode_lock", "disruption"):  # a locked mode quiets all Mirnov coils at once: physics, not a sensor fault
        assert [x for x in dq.events(flat_top(simulate_shot(9, anomaly=k))) if x["kind"] in ("stuck", "dead")] == []
    q2 = DataQualityChecker.from_dict(json.loads(json.dumps(dq.to_dict())))
    assert q2.events(stuck) == dq.events(stuck)


def test_preprocessing():
    x = np.array([1., np.nan, 3., np.nan, np.nan, np.nan, np.nan, 8.])
    y = interpolate_gaps(x, limit=3)
    assert y[1] == 2 and np.isnan(y[3:7]).all()
    train = [simulate_shot(i, n_steps=600) for i in range(3)]
    norm = ChannelNormalizer().fit(train)
    test = simulate_shot(99, n_steps=600, anomaly="drift", channel="ip")
    z = norm.transform(test)
    # statistics come from the training shots only
    np.testing.assert_allclose(z.data, (test.data - norm.mean_)/norm.std_, rtol=1e-4, atol=1e-4)
    w, starts, missing, obs = shot_windows(flat_top(test), norm, 100, 50)
    assert w.shape[1:] == (test.C, 100) and starts[-1] + 100 == flat_top(test).T and not missing.any() and obs.all()
    gap = flat_top(test).data.copy(); gap[110:130, 2] = np.nan
    w, starts, missing, obs = shot_windows(flat_top(test).with_data(gap), norm, 100, 50)
    assert missing[110:130, 2].all() and missing.sum() == 20 and (w[obs == 0] == 0).all() and (obs == 0).sum() == 20*2  # two windows cover it
    with pytest.raises(ValueError, match="shorter than one window"): sliding_windows(np.zeros((50, 2)))


def test_simulator_labels_and_determinism():
    np.testing.assert_array_equal(simulate_shot(3).data, simulate_shot(3).data)
    for k in ANOMALY_KINDS:
        s = simulate_shot(4, anomaly=k)
        assert s.events and all(e["kind"] == k for e in s.events)
        for e in s.events:
            cols = [s.channels.index(c) for c in e["channels"]]
            assert s.labels[e["start"]:e["stop"]][:, cols].all()
        assert flat_top(s).T >= 100, k  # every kind leaves a usable flat-top
    d = simulate_shot(5, anomaly="dead", channel="flux_loop_out"); e = d.events[0]
    assert np.abs(d.channel("flux_loop_out")[e["start"]:e["stop"]]).max() < 0.02


def test_simulated_dataset_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path))
    f = simulated_dataset(n_train=2, n_calib=1, n_test_per_kind=1, n_test_clean=1, n_steps=400)
    assert f.is_relative_to(tmp_path)
    ev = pd.read_csv(f/"events.csv")
    assert set(ev.kind.dropna()) == set(ANOMALY_KINDS)
    mtime = (f/"events.csv").stat().st_mtime
    assert simulated_dataset(n_train=2, n_calib=1, n_test_per_kind=1, n_test_clean=1, n_steps=400) == f
    assert (f/"events.csv").stat().st_mtime == mtime
