"""MRI data (issue 4): bad input, cache atomicity and keying, RAS reorientation, z-scoring, splits,
and determinism of the synthetic cohort. Runs in well under a minute of CPU."""
import json, os, shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

import vae_notebooks.mri.data as mdata
from vae_notebooks.mri.data import (CHANNELS, MRICache, MRIDataError, MRIVolumeDataset, build_cache, read_subject,
                                    synthetic_cohort)

N = 24  # phantom grid (voxels per axis)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0]); AFFINE[:3, 3] = -2.0 * (N - 1) / 2  # RAS, centred on the origin


def phantom(seed=0):
    "Four channels [4,N,N,N] of a skull-stripped ellipsoidal 'head' (zero background) with an inner structure."
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(N) - (N - 1) / 2] * 3, indexing="ij"))
    r = np.sqrt(((g / np.array([9.0, 10.0, 8.0])[:, None, None, None]) ** 2).sum(0))
    head, inner = r <= 1.0, r <= 0.5
    vols = np.zeros((4, N, N, N), np.float32)
    for c, (a, b) in enumerate([(300, 500), (310, 450), (280, 200), (200, 600)]):
        vols[c][head] = a + rng.normal(0, 15, head.sum())
        vols[c][inner] = b + rng.normal(0, 15, inner.sum())
    seg = np.zeros((N, N, N), np.uint8); seg[(r <= 0.3)] = 3
    return vols, seg, head


def write_folder(root, name, vols=None, seg=None, affine=AFFINE, ext=".nii.gz", seed=0):
    if vols is None: vols, seg, _ = phantom(seed)
    d = Path(root) / name; d.mkdir(parents=True, exist_ok=True)
    for ch, v in zip(CHANNELS, vols): nib.save(nib.Nifti1Image(np.asarray(v), affine), d / f"{name}-{ch}{ext}")
    if seg is not None: nib.save(nib.Nifti1Image(seg, affine), d / f"{name}-seg{ext}")
    return d


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path / "data_root"))


# ---------------------------------------------------------------- bad input: a clear error naming subject and file
def _break(d, name, how):
    vols, seg, _ = phantom()
    f = lambda ch: d / f"{name}-{ch}.nii.gz"
    if how == "missing": f("t2f").unlink()
    elif how == "truncated":
        raw = f("t1n").read_bytes(); f("t1n").write_bytes(raw[: len(raw) // 2])
    elif how == "not_gzip": f("t1n").write_bytes(b"this is not a NIfTI file at all" * 10)
    elif how == "nan":
        v = vols[3].copy(); v[5, 6, 7] = np.nan; nib.save(nib.Nifti1Image(v, AFFINE), f("t2w"))
    elif how == "inf":
        v = vols[3].copy(); v[5, 6, 7] = np.inf; v[1, 1, 1] = -np.inf; nib.save(nib.Nifti1Image(v, AFFINE), f("t2w"))
    elif how == "shape": nib.save(nib.Nifti1Image(vols[2][:-2], AFFINE), f("t2f"))
    elif how == "affine":
        a = AFFINE.copy(); a[1, 3] += 4.0; nib.save(nib.Nifti1Image(vols[2], a), f("t2f"))
    elif how == "4d": nib.save(nib.Nifti1Image(np.stack([vols[1]] * 3, -1), AFFINE), f("t1n"))
    elif how == "2d": nib.save(nib.Nifti1Image(vols[1][:, :, 0], AFFINE), f("t1n"))
    elif how == "blank":
        for ch in CHANNELS: nib.save(nib.Nifti1Image(np.zeros((N, N, N), np.float32), AFFINE), f(ch))
    elif how == "seg_shape": nib.save(nib.Nifti1Image(seg[:-1], AFFINE), d / f"{name}-seg.nii.gz")


BAD = {"missing": ("t2f", "missing modality 't2f'"), "truncated": ("t1n", "truncated or corrupt"),
       "not_gzip": ("t1n", "truncated or corrupt"), "nan": ("t2w", "NaN/Inf"), "inf": ("t2w", "2 NaN/Inf voxel"),
       "shape": ("t2f", "has shape"), "affine": ("t2f", "different affine"), "4d": ("t1n", "expected a 3-D volume"),
       "2d": ("t1n", "expected a 3-D volume"), "seg_shape": ("seg", "segmentation shape")}


@pytest.mark.parametrize("how", list(BAD))
def test_bad_input_names_subject_and_file(tmp_path, how):
    name = f"BAD-{how}"
    d = write_folder(tmp_path / "raw", name); _break(d, name, how)
    ch, msg = BAD[how]
    with pytest.raises(MRIDataError) as e: read_subject(d)
    text = str(e.value)
    assert f"subject {name}" in text and msg in text and f"{name}-{ch}" in text, text
    assert e.value.folder == name


def test_blank_scan_is_bad(tmp_path):
    d = write_folder(tmp_path / "raw", "BLANK-00"); _break(d, "BLANK-00", "blank")
    with pytest.raises(MRIDataError, match="BLANK-00"): build_cache(tmp_path / "raw", img_size=16, spacing=3.0)


def test_uncompressed_nii_and_4d_singleton_are_fine(tmp_path):
    vols, seg, _ = phantom()
    write_folder(tmp_path / "raw", "PLAIN-00", vols, seg, ext=".nii")
    v, a, s = read_subject(tmp_path / "raw" / "PLAIN-00")
    np.testing.assert_array_equal(v, vols); np.testing.assert_array_equal(s, seg)
    d = write_folder(tmp_path / "raw", "SINGLE-00")
    nib.save(nib.Nifti1Image(vols[0][..., None], AFFINE), d / "SINGLE-00-t1c.nii.gz")
    np.testing.assert_array_equal(read_subject(d)[0], vols)


def test_bad_folder_in_data_set_raise_or_skip_and_keep_cache(tmp_path):
    raw = tmp_path / "raw"
    for i in range(3): write_folder(raw, f"GOOD{i}-00", seed=i)
    c = build_cache(raw, img_size=16, spacing=3.0)
    records = {f: (c.path / "volumes" / f"{f}.json").stat().st_mtime_ns for f in c.folders()}
    d = write_folder(raw, "HBAD-00"); _break(d, "HBAD-00", "truncated")   # sorts after GOOD*, before ZNEW
    write_folder(raw, "ZNEW-00", seed=7)
    with pytest.raises(MRIDataError, match=r"HBAD-00.*HBAD-00-t1n"): build_cache(raw, img_size=16, spacing=3.0)
    for f, t in records.items():  # nothing already cached was lost or rewritten
        assert (c.path / "volumes" / f"{f}.json").stat().st_mtime_ns == t
        assert np.isfinite(c.load(f)).all()
    with pytest.warns(UserWarning, match="skipped 1 bad folder"):
        c2 = build_cache(raw, img_size=16, spacing=3.0, skip_bad=True)
    assert c2.folders() == ["GOOD0-00", "GOOD1-00", "GOOD2-00", "ZNEW-00"]
    assert [b[0] for b in c2.bad] == ["HBAD-00"] and "HBAD-00-t1n" in c2.bad[0][1]
    assert pd.read_csv(c2.path / "bad.csv").folder.tolist() == ["HBAD-00"]
    for f, t in records.items(): assert (c.path / "volumes" / f"{f}.json").stat().st_mtime_ns == t
    # reopen from disk
    c3 = MRICache.open(c2.path)
    assert c3.folders() == c2.folders() and len(c3.bad) == 1


# ---------------------------------------------------------------- cache: keyed by parameters, atomic, incremental
def test_cache_keying_and_reuse(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    for i in range(2): write_folder(raw, f"S{i}-00", seed=i)
    a = build_cache(raw, img_size=16, spacing=3.0)
    assert a.path.parent == tmp_path / "data_root" / "mri_cache"
    assert build_cache(raw, img_size=20, spacing=3.0).path != a.path
    assert build_cache(raw, img_size=16, spacing=3.0, dtype="float32").path != a.path
    assert build_cache(raw, img_size=16, spacing=2.5).path != a.path
    assert build_cache(raw, img_size=16, spacing=3.0, val_frac=0.5, seed=3).path == a.path  # splits do not change volumes
    assert np.load(a.path / "volumes" / "S0-00.npy").dtype == np.float16
    params = json.loads((a.path / "params.json").read_text())
    assert params["img_size"] == 16 and params["dtype"] == "float16"
    # a second call preprocesses nothing
    monkeypatch.setattr(mdata, "preprocess_subject", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-decoded")))
    b = build_cache(raw, img_size=16, spacing=3.0)
    pd.testing.assert_frame_equal(a.subjects, b.subjects)
    # a changed source file is re-processed (and only that one)
    monkeypatch.undo(); monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path / "data_root"))
    calls = []
    real = mdata.preprocess_subject
    monkeypatch.setattr(mdata, "preprocess_subject", lambda folder, *a, **k: calls.append(Path(folder).name) or real(folder, *a, **k))
    vols, seg, _ = phantom(5); vols[0] *= 2
    write_folder(raw, "S1-00", vols, seg)
    build_cache(raw, img_size=16, spacing=3.0)
    assert calls == ["S1-00"]
    # explicit cache_dir
    c = build_cache(raw, img_size=16, spacing=3.0, cache_dir=tmp_path / "elsewhere")
    assert c.path.parent == tmp_path / "elsewhere"


def test_cache_write_is_atomic_after_a_crash(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    for i in range(3): write_folder(raw, f"S{i}-00", seed=i)
    real_save = np.save
    state = {"n": 0}
    def flaky_save(f, arr, *a, **k):
        state["n"] += 1
        if state["n"] == 4:  # S1-00's volume (after S0-00's volume, mask and seg): write half the bytes, then die
            f.write(b"\x93NUMPY partial"); raise KeyboardInterrupt("power cut")
        return real_save(f, arr, *a, **k)
    monkeypatch.setattr(np, "save", flaky_save)
    with pytest.raises(KeyboardInterrupt): build_cache(raw, img_size=16, spacing=3.0)
    monkeypatch.setattr(np, "save", real_save)
    vol_dir = next((tmp_path / "data_root" / "mri_cache").iterdir()) / "volumes"
    names = sorted(p.name for p in vol_dir.iterdir())
    assert names == ["S0-00.json", "S0-00.mask.npy", "S0-00.npy", "S0-00.seg.npy"], names  # no half file, no temp file
    t0 = (vol_dir / "S0-00.json").stat().st_mtime_ns
    c = build_cache(raw, img_size=16, spacing=3.0)
    assert c.folders() == ["S0-00", "S1-00", "S2-00"]
    assert (vol_dir / "S0-00.json").stat().st_mtime_ns == t0  # the finished one was kept, not redone
    assert all(np.isfinite(c.load(f)).all() for f in c.folders())


# ---------------------------------------------------------------- RAS reorientation
def test_flipped_affine_reads_identical(tmp_path):
    vols, seg, _ = phantom()
    write_folder(tmp_path / "raw", "RAS-00", vols, seg)
    # the same head stored L-R and I-S flipped (LAI), with the affine compensating: same world coordinates
    flip = np.diag([-1.0, 1.0, -1.0, 1.0]); flip[0, 3] = flip[2, 3] = N - 1
    write_folder(tmp_path / "raw", "LAI-00", vols[:, ::-1, :, ::-1].copy(), seg[::-1, :, ::-1].copy(), AFFINE @ flip)
    # and permuted axes (stored as A,S,R voxel order)
    perm = np.eye(4)[[1, 2, 0, 3]].T  # voxel (i,j,k) of the stored array is voxel (k,i,j) of the RAS one
    write_folder(tmp_path / "raw", "ASR-00", vols.transpose(0, 2, 3, 1).copy(), seg.transpose(1, 2, 0).copy(), AFFINE @ perm)
    assert nib.aff2axcodes(AFFINE @ flip) == ("L", "A", "I") and nib.aff2axcodes(AFFINE @ perm) == ("A", "S", "R")
    ref = read_subject(tmp_path / "raw" / "RAS-00")
    for name in ("LAI-00", "ASR-00"):
        v, a, s = read_subject(tmp_path / "raw" / name)
        np.testing.assert_array_equal(v, ref[0]); np.testing.assert_allclose(a, ref[1]); np.testing.assert_array_equal(s, ref[2])
        assert nib.aff2axcodes(a) == ("R", "A", "S")
    c = build_cache(tmp_path / "raw", img_size=20, spacing=3.0, dtype="float32")
    np.testing.assert_allclose(c.load("LAI-00"), c.load("RAS-00"), atol=1e-5)
    np.testing.assert_allclose(c.load("ASR-00"), c.load("RAS-00"), atol=1e-5)


# ---------------------------------------------------------------- z-score inside the head mask
def test_zscore_inside_head_mask(tmp_path):
    vols, seg, head = phantom()
    write_folder(tmp_path / "raw", "Z-00", vols, seg)
    # same grid as the source (24 voxels of 2 mm, centred): the resampling is the identity
    c = build_cache(tmp_path / "raw", img_size=N, spacing=2.0, dtype="float32")
    x = c.load("Z-00")
    for ch in range(4):
        v = vols[ch][head]
        np.testing.assert_allclose(x[ch][head], (v - v.mean()) / v.std(), atol=1e-4)
    assert (x[:, ~head] == 0).all()
    np.testing.assert_allclose(x[:, head].mean(1), 0, atol=1e-5); np.testing.assert_allclose(x[:, head].std(1), 1, atol=1e-4)
    # the statistics are the head's: scaling and shifting a channel inside the head leaves x unchanged
    vols2 = vols.copy(); vols2[2][head] = vols2[2][head] * 3 + 100
    write_folder(tmp_path / "raw2", "Z-00", vols2, seg)
    x2 = build_cache(tmp_path / "raw2", img_size=N, spacing=2.0, dtype="float32").load("Z-00")
    np.testing.assert_allclose(x2, x, atol=1e-4)


def test_head_mask_with_noisy_background():
    vols, _, head = phantom()
    rng = np.random.default_rng(1)
    noisy = vols + np.abs(rng.normal(0, 20, vols.shape)).astype(np.float32)  # Rayleigh-like floor everywhere
    m = mdata.head_mask(noisy)
    assert (m == head).mean() > 0.98 and m[head].mean() > 0.98


# ---------------------------------------------------------------- splits, dataset
def test_splits_by_subject_and_dataset(tmp_path):
    raw = tmp_path / "raw"
    for s in range(6):
        for t in range(1 + s % 3): write_folder(raw, f"BraTS-MEN-{s:05d}-{t:03d}", seed=10 * s + t)
    c = build_cache(raw, img_size=16, spacing=3.0, val_frac=0.34)
    subj = c.subjects
    assert subj.subject.nunique() == 6 and (subj.groupby("subject").split.nunique() == 1).all()
    assert subj.drop_duplicates("subject").split.value_counts()["valid"] == 2
    assert set(subj.timepoint) == {0, 1, 2}
    assert (c.path / "subjects.csv").exists() and pd.read_csv(c.path / "subjects.csv").split.tolist() == subj.split.tolist()
    other = build_cache(raw, img_size=16, spacing=3.0, val_frac=0.34, seed=1).subjects
    assert (other.split != subj.split).any()  # the seed moves the split
    tr, va = MRIVolumeDataset(c, "train"), MRIVolumeDataset(c, "valid")
    assert len(tr) + len(va) == len(c) and len(MRIVolumeDataset(c, "all")) == len(c)
    assert va.table.folder.tolist() == va.folders and set(va.table.split) == {"valid"}
    rec = c.record(va.folders[0])
    assert np.array(rec["affine"]).shape == (4, 4) and abs(rec["affine"][0][0] - 3.0) < 1e-9 and len(rec["mean"]) == 4
    x, y = tr[0]
    assert x.shape == (4, 16, 16, 16) and x.dtype == torch.float32 and torch.equal(x, y)
    x, y, s = MRIVolumeDataset(c, "valid", with_seg=True)[0]
    assert s.shape == (16, 16, 16) and s.dtype == torch.long and set(s.unique().tolist()) <= {0, 3}
    with pytest.raises(ValueError, match="split"): MRIVolumeDataset(c, "test")
    with pytest.raises(KeyError, match="nope"): c.load("nope")


# ---------------------------------------------------------------- the synthetic cohort
def test_synthetic_cohort_deterministic_and_cached(tmp_path):
    a = synthetic_cohort(tmp_path / "a", n_subjects=1, seed=3)
    b = synthetic_cohort(tmp_path / "b", n_subjects=1, seed=3)
    gt_a, gt_b = pd.read_csv(a / "ground_truth.csv"), pd.read_csv(b / "ground_truth.csv")
    pd.testing.assert_frame_equal(gt_a, gt_b)
    assert 3 <= len(gt_a) <= 6 and list(gt_a.folder) == [f"SYN000-{t:02d}" for t in range(len(gt_a))]
    for f in gt_a.folder:
        for m in (*CHANNELS, "seg"):
            pa, pb = a / f / f"{f}-{m}.nii.gz", b / f / f"{f}-{m}.nii.gz"
            np.testing.assert_array_equal(np.asarray(nib.load(pa).dataobj), np.asarray(nib.load(pb).dataobj))
    # exact volumes follow the Gompertz curve; time is increasing; the lesion is where the ground truth says
    assert (np.diff(gt_a.time_years) > 0).all() and gt_a.growth_class.nunique() == 1
    np.testing.assert_allclose(gt_a.lesion_volume_ml, gt_a.gompertz_volume_ml, atol=0.0041)
    V = gt_a.gompertz_K_ml * np.exp(np.log(gt_a.gompertz_V0_ml / gt_a.gompertz_K_ml) * np.exp(-gt_a.gompertz_alpha * gt_a.time_years))
    np.testing.assert_allclose(gt_a.gompertz_volume_ml, V, rtol=1e-9)
    row = gt_a.iloc[-1]
    img = nib.as_closest_canonical(nib.load(a / row.folder / f"{row.folder}-seg.nii.gz"))
    seg = np.asarray(img.dataobj)
    centroid = img.affine @ np.r_[np.argwhere(seg == 3).mean(0), 1]
    np.testing.assert_allclose(centroid[:3], row[["centroid_x", "centroid_y", "centroid_z"]].astype(float), atol=2.0)
    # the -seg file is a noisy measurement: its volume is the table's seg_volume_ml, not the exact lesion volume
    np.testing.assert_allclose((seg == 3).sum() * 8e-3, row.seg_volume_ml)
    rel = gt_a.seg_volume_ml / gt_a.lesion_volume_ml - 1
    assert (rel != 0).all() and rel.abs().max() < 0.35
    # skull-stripped: exactly 0 outside an intracranial mask
    vol0, _, _ = read_subject(a / row.folder)
    assert (vol0 == 0).all(0).mean() > 0.3 and 1300 < (vol0 > 0).any(0).sum() * 8e-3 < 2400
    # the lesion enhances: brighter on t1c than on t1n relative to white-matter-ish brain
    vol, _, _ = read_subject(a / row.folder)
    les, head = seg == 3, mdata.head_mask(vol)
    assert head[les].all() and 0.2 < head.mean() < 0.8
    assert vol[0][les].mean() / np.median(vol[0][head]) > 1.5 * vol[1][les].mean() / np.median(vol[1][head])
    # another seed differs; the cached default location is reused without regenerating
    c = synthetic_cohort(tmp_path / "c", n_subjects=1, seed=4)
    assert not pd.read_csv(c / "ground_truth.csv")[["gompertz_K_ml"]].equals(gt_a[["gompertz_K_ml"]])
    t = (a / "ground_truth.csv").stat().st_mtime_ns
    assert synthetic_cohort(tmp_path / "a", n_subjects=1, seed=3) == a and (a / "ground_truth.csv").stat().st_mtime_ns == t
    with pytest.raises(FileExistsError, match="different cohort"): synthetic_cohort(tmp_path / "a", n_subjects=1, seed=5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind
    # through the reader and the cache: all timepoints of the subject in one split, ground truth attached
    cache = build_cache(a, img_size=16)
    assert cache.subjects.subject.unique().tolist() == ["SYN000"] and cache.subjects.split.nunique() == 1
    np.testing.assert_allclose(cache.subjects.seg_core_ml, gt_a.seg_volume_ml, atol=1e-6)  # read from the -seg files
    for _, r in cache.subjects.iterrows():  # centroid in the cube + the cube's centre = the scanner centroid
        centre = np.array(cache.record(r.folder)["affine"]) @ np.r_[[7.5] * 3, 1]
        np.testing.assert_allclose(centre[:3] + r[["seg_centroid_x", "seg_centroid_y", "seg_centroid_z"]].astype(float),
                                   r[["centroid_x", "centroid_y", "centroid_z"]].astype(float), atol=2.0)  # mm: noisy seg vs true lesion


def test_fov_crop_is_reported(tmp_path):
    write_folder(tmp_path / "raw", "BIG-00")
    c = build_cache(tmp_path / "raw", img_size=16, spacing=3.0)
    assert c.subjects.head_in_fov.iloc[0] == 1.0
    with pytest.warns(UserWarning, match="crops more than 3% of the head"):
        c = build_cache(tmp_path / "raw", img_size=8, spacing=3.0)  # a 24 mm cube on a 40 mm head
    assert c.subjects.head_in_fov.iloc[0] < 0.9


def test_mri_dataloaders(tmp_path):
    from vae_notebooks.mri.data import mri_dataloaders
    raw = tmp_path / "raw"
    for s in range(4): write_folder(raw, f"S{s}-00", seed=s)
    dls = mri_dataloaders(raw, bs=2, img_size=16, spacing=3.0, val_frac=0.25, device="cpu")
    xb, yb = dls.one_batch()
    assert xb.shape == (2, 4, 16, 16, 16) and xb.dtype == torch.float32 and torch.equal(xb, yb)
    assert len(dls.train.dataset) == 3 and len(dls.valid.dataset) == 1
    with pytest.raises(TypeError, match="n_subjects"):
        mri_dataloaders(build_cache(raw, img_size=16, spacing=3.0), n_subjects=3)


def test_parallel_build_matches_serial(tmp_path):
    raw = tmp_path / "raw"
    for i in range(3): write_folder(raw, f"P{i}-00", seed=i)
    d = write_folder(raw, "PBAD-00"); _break(d, "PBAD-00", "nan")
    with pytest.raises(MRIDataError, match="PBAD-00-t2w"):  # the worker's error crosses the process boundary intact
        build_cache(raw, img_size=12, spacing=4.0, num_workers=2, cache_dir=tmp_path / "par")
    with pytest.warns(UserWarning, match="PBAD-00"):
        par = build_cache(raw, img_size=12, spacing=4.0, num_workers=2, skip_bad=True, cache_dir=tmp_path / "par")
    with pytest.warns(UserWarning, match="PBAD-00"):
        ser = build_cache(raw, img_size=12, spacing=4.0, skip_bad=True, cache_dir=tmp_path / "ser")
    assert par.folders() == ser.folders() == ["P0-00", "P1-00", "P2-00"] and par.bad == ser.bad
    for f in par.folders(): np.testing.assert_array_equal(par.load(f), ser.load(f))
    pd.testing.assert_frame_equal(par.subjects, ser.subjects)


def test_cohort_write_is_atomic(tmp_path, monkeypatch):
    import vae_notebooks.mri.synth as synth
    def crash(tmp, anat, index, seed, *args):
        (Path(tmp) / "SYN000-00").mkdir(); (Path(tmp) / "SYN000-00" / "SYN000-00-t1c.nii.gz").write_bytes(b"half")
        raise KeyboardInterrupt("power cut")
    monkeypatch.setattr(synth, "_write_subject", crash)
    monkeypatch.setattr(synth, "mni_anatomy", lambda resolution=2: {})
    with pytest.raises(KeyboardInterrupt): synthetic_cohort(tmp_path / "cohort", n_subjects=1)
    assert list(tmp_path.iterdir()) == []  # neither the cohort nor a temporary folder
    with pytest.raises(KeyboardInterrupt): synthetic_cohort(n_subjects=1)  # the default location under data_root()
    assert list((tmp_path / "data_root" / "mri_synthetic").iterdir()) == []
    (tmp_path / "notacohort").mkdir(); (tmp_path / "notacohort" / "x.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a synthetic cohort"): synthetic_cohort(tmp_path / "notacohort")


@pytest.mark.parametrize("keep", [0, 200, 0.5])
def test_truncated_uncompressed_nii(tmp_path, keep):
    d = write_folder(tmp_path / "raw", "CUT-00", ext=".nii")
    p = d / "CUT-00-t2w.nii"; raw = p.read_bytes()
    p.write_bytes(raw[: int(keep * len(raw)) if isinstance(keep, float) else keep])
    with pytest.raises(MRIDataError, match=r"subject CUT-00: cannot read the file.*CUT-00-t2w\.nii"): read_subject(d)


# ---------------------------------------------------------------- the loader: workers, memory map, float16 transfer
def _batches(dl, epochs=2):
    "Every batch of `epochs` passes over `dl`, as lists of tensors."
    return [[t.clone() for t in b] for _ in range(epochs) for b in dl]


def test_loader_workers_same_batches_and_small_pickle(tmp_path):
    import pickle
    from vae_notebooks.mri.data import mri_dataloaders
    raw = tmp_path / "raw"
    for s in range(7): write_folder(raw, f"W{s}-00", seed=s)
    cache = build_cache(raw, img_size=16, spacing=3.0, val_frac=0.45)  # float16 on disk; 4 train, 3 valid
    assert isinstance(cache.load(cache.folders()[0], mmap=True), np.memmap)
    runs = {}
    for workers in (0, 2):
        for half in (True, False):
            dls = mri_dataloaders(cache, bs=2, num_workers=workers, half=half, device="cpu", seed=3)
            runs[workers, half] = (_batches(dls.train), _batches(dls.valid, 1))
            assert dls.train.dataset.dtype == (torch.float16 if half else torch.float32)
    ref_train, ref_valid = runs[0, False]
    assert len(ref_train) == 4 and len(ref_valid) == 2  # 2 batches of 2 per epoch, 2 epochs; valid 2 + 1
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(ref_train[:2], ref_train[2:]))  # the epochs are shuffled differently
    for key, (tr, va) in runs.items():  # same order and the same values, bit for bit, float32 batches
        assert len(tr) == len(ref_train) and len(va) == len(ref_valid), key
        for a, b in zip(tr + va, ref_train + ref_valid):
            assert a[0].dtype == torch.float32 and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), key
    # a worker gets the data set's path and table, not the volumes
    ds = dls.train.dataset
    vol_bytes = sum((cache.path / "volumes" / f"{f}.npy").stat().st_size for f in ds.folders)
    assert len(pickle.dumps(ds)) < 0.25 * vol_bytes, (len(pickle.dumps(ds)), vol_bytes)
    # with segmentations: the images arrive as float32, the labels stay int64
    xb, yb, sb = mri_dataloaders(cache, bs=2, half=True, with_seg=True, device="cpu", seed=3).one_batch()
    assert xb.dtype == yb.dtype == torch.float32 and sb.dtype == torch.int64 and sb.shape == (2, 16, 16, 16)
    # the float16 items are the cache's values exactly
    half = MRIVolumeDataset(cache, "train", dtype=torch.float16)
    for i in range(len(half)):
        x = half[i][0]
        assert x.dtype == torch.float16 and np.array_equal(x.numpy(), np.load(cache.path / "volumes" / f"{half.folders[i]}.npy"))
