"Bad inputs and invariants of the magnetics data layer (no training; a few seconds)."
import json
import numpy as np
import pandas as pd
import pytest
from vae_notebooks.magnetics.data import (Shot, read_shot, read_shots, write_shot, flat_top, interpolate_gaps, ChannelNormalizer,
                                          sliding_windows, shot_windows, simulate_shot, simulated_dataset, ANOMALY_KINDS)


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
    assert shots[0].events == s.events and (shots[0].labels == s.labels).all()
    other = Shot(s.data[:, :3], s.channels[:3], s.time, name="c")
    write_shot(other, tmp_path/"c.npz")
    with pytest.raises(ValueError, match=r"c\.npz: channels .* differ"): read_shots(tmp_path)
    with pytest.raises(ValueError, match="no shot files"): read_shots(tmp_path, "zzz*")


def test_hdf5_needs_h5py(tmp_path):
    try: import h5py  # noqa: F401
    except ImportError:
        (tmp_path/"s.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
        with pytest.raises(ImportError, match=r"s\.h5: reading HDF5 needs h5py"): read_shot(tmp_path/"s.h5")
        return
    h5py = __import__("h5py")
    with h5py.File(tmp_path/"s.h5", "w") as f:
        f["time"] = np.arange(4.); f["ip"] = np.ones(4); f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"s\.h5: ragged channels"): read_shot(tmp_path/"s.h5")


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
    w, starts, missing = shot_windows(flat_top(test), norm, 100, 50)
    assert w.shape[1:] == (test.C, 100) and starts[-1] + 100 == flat_top(test).T and not missing.any()
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
