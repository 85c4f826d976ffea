"Tumour growth: the latent ODE's edge cases (irregular visits, one visit, before the first visit), the Gompertz closed form, and a papermill run of nbs/train_growth.ipynb on a tiny cohort."
import json, math
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch

from vae_notebooks.mri.ode import (SubjectTrajectory, LatentODE, gompertz_log_volume, gompertz_volume, fit_latent_ode,
                                   fit_subject_offsets, forecast, synthetic_latent_trajectories, pad_trajectories)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fitted():
    "A latent ODE fitted on simulated trajectories (irregular times, 2-6 visits per subject)."
    torch.manual_seed(0)
    trajs, truth = synthetic_latent_trajectories(n_subjects=12, latent_dim=3, seed=3)
    ode, _ = fit_latent_ode(trajs[:10], hidden=8, epochs=2, steps_per_epoch=6, lr=3e-2, seed=0)
    return ode, trajs, truth


def test_gompertz_closed_form_solves_the_ode():
    t = np.linspace(0, 4, 401)
    V = gompertz_volume(t, 2.0, 40.0, 0.7)
    dV = np.gradient(V, t)
    np.testing.assert_allclose(dV[2:-2], (0.7 * V * np.log(40.0 / V))[2:-2], rtol=2e-3)
    assert V[0] == pytest.approx(2.0) and gompertz_volume(100., 2.0, 40.0, 0.7) == pytest.approx(40.0)
    # the synthetic cohort's generator uses the same law and argument order
    from vae_notebooks.mri.synth import gompertz_volume as synth_gompertz
    np.testing.assert_allclose(synth_gompertz(t, 2.0, 40.0, 0.7), V, rtol=1e-10)


def test_solver_matches_closed_form_on_irregular_grids():
    torch.manual_seed(1)
    ode = LatentODE(latent_dim=3, hidden=8, n_subjects=2, time_scale=1.7, alpha_per_year=0.6, z_K=3.5, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        ode.func.subject_delta.weight.copy_(torch.tensor([[0.4, -0.3], [-0.2, 0.5]]))
        ode.func.residual[-1].weight.normal_(0, 0.3)
    z0 = torch.tensor([[0.5, 1.0, -1.0], [1.5, -0.5, 0.3]])
    t0 = torch.tensor([0.0, 0.37])
    times = torch.tensor([[0.05, 0.9, 3.3, 7.0], [0.0, 0.4, 0.41, 2.2]])   # irregular, one before its t0
    sol = ode.solve(z0, times, t0, subject=torch.arange(2)).detach()
    alpha, K = ode.gompertz_params(torch.arange(2))
    closed = gompertz_log_volume(times, z0[:, :1], torch.log(K.detach())[:, None], alpha.detach()[:, None], t0[:, None])
    torch.testing.assert_close(sol[..., 0], closed, atol=1e-4, rtol=1e-4)
    # each subject is solved on its own times: solving one alone gives the same answer
    alone = ode.solve(z0[1:], times[1:], t0[1:], subject=torch.tensor([1])).detach()
    torch.testing.assert_close(alone, sol[1:], atol=1e-4, rtol=1e-4)


def test_padding_does_not_change_fit_or_forecast(fitted):
    "Padded visits (subjects with fewer visits than the longest) must not change the loss, its gradients, the offsets or a solve."
    from vae_notebooks.mri.ode import LatentODEBatch, LatentODELoss
    ode, trajs, _ = fitted
    trajs = trajs[:10]                                                        # the subjects with embeddings
    counts = [t.n_visits for t in trajs]
    assert len(set(counts)) > 1
    b = pad_trajectories(trajs)
    assert b["mask"].sum(1).tolist() == counts
    pad = ~b["mask"]
    assert pad.any()
    junk_mu, junk_t = b["mu"].clone(), b["times"].clone()
    junk_mu[pad] = 50.0 * torch.randn(int(pad.sum()), junk_mu.shape[-1])     # garbage in every padded slot
    junk_t[pad] = junk_t[pad] + 3.0                                           # padded times far past the last visit
    model, loss = LatentODEBatch(ode), LatentODELoss(prior_weight=1e-2)
    subj = torch.arange(len(trajs))
    def loss_and_grads(times, mu):
        ode.zero_grad()
        total = loss(model(subj, times, b["mask"], mu[:, 0]), mu, b["mask"])
        total.backward()
        return total.detach(), [p.grad.clone() for p in ode.parameters() if p.grad is not None]
    l0, g0 = loss_and_grads(b["times"], b["mu"])
    l1, g1 = loss_and_grads(junk_t, junk_mu)
    torch.testing.assert_close(l1, l0, atol=1e-4, rtol=1e-4)
    for a, c in zip(g0, g1): torch.testing.assert_close(c, a, atol=1e-4, rtol=1e-4)
    # the per-subject MAP offsets ignore padded slots too
    d0 = fit_subject_offsets(ode, b["times"], b["mu"][..., 0], b["mask"])
    d1 = fit_subject_offsets(ode, junk_t, junk_mu[..., 0], b["mask"])
    torch.testing.assert_close(d1, d0, atol=1e-4, rtol=1e-4)
    # a subject solved inside the padded batch gives what it gives alone, at its real visits
    # (tight tolerances: an adaptive solver picks its steps for the whole batch, so the fitted 1e-3 differs by ~1e-3)
    i = counts.index(min(counts))
    tol = ode.rtol, ode.atol
    ode.rtol, ode.atol = 1e-7, 1e-8
    try:
        batch = model(subj, junk_t, b["mask"], b["mu"][:, 0])["pred"][i, :counts[i]].detach()
        alone = model(subj[i:i + 1], trajs[i].times[None], torch.ones(1, counts[i], dtype=torch.bool), trajs[i].mu[:1])["pred"][0].detach()
    finally: ode.rtol, ode.atol = tol
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="strictly increasing"):
        SubjectTrajectory("bad", [0.0, 1.0, 0.5], torch.zeros(3, 3))


def test_forecast_from_any_prefix(fitted):
    ode, trajs, _ = fitted
    s = max(trajs[10:], key=lambda t: t.n_visits)
    for n in range(2, s.n_visits):
        fc = forecast(ode, s.prefix(n), s.times[n:], n_samples=8)
        assert fc.volume_ml.shape == (s.n_visits - n,) and fc.z.shape == (s.n_visits - n, 3)
        assert (fc.volume_lo <= fc.volume_ml).all() and (fc.volume_ml <= fc.volume_hi).all()
        assert fc.fallback is None


def test_forecast_before_first_visit_is_refused(fitted):
    ode, trajs, _ = fitted
    s = trajs[0]
    with pytest.raises(ValueError, match="before the first visit"):
        forecast(ode, s, [float(s.times[0]) - 0.01])


def test_one_visit_subject_uses_the_cohort_fallback(fitted):
    ode, trajs, _ = fitted
    s = trajs[0].prefix(1)
    fc = forecast(ode, s, [float(s.times[0]) + 1.0], n_samples=64)
    assert fc.fallback == "cohort" and fc.n_observed == 1
    cohort_alpha = float(ode.gompertz_params()[0].detach())
    assert fc.alpha_per_year == pytest.approx(cohort_alpha, rel=0.2)
    assert fc.volume_hi > fc.volume_lo
    with pytest.raises(ValueError, match="forecasting needs >= 2"):
        forecast(ode, s, [1.0], min_visits=2)
    with pytest.raises(ValueError, match="at least 2 visits"):
        fit_subject_offsets(ode, s.times, s.mu[:, 0][None])


def _write_tiny_cohort(root: Path, n_subjects=5, size=24, spacing=8.0, seed=0):
    "A BraTS-layout longitudinal cohort of tiny NIfTI volumes with a growing spherical lesion and a ground_truth.csv (exact `true_volume_ml`; the coarse -seg is the measurement)."
    import nibabel as nib
    rng = np.random.default_rng(seed)
    ax = (np.arange(size) - (size - 1) / 2) * spacing
    X, Y, Z = np.meshgrid(ax, ax, ax, indexing="ij")
    head = (X / 80) ** 2 + (Y / 90) ** 2 + (Z / 75) ** 2 <= 1
    affine = np.diag([spacing, spacing, spacing, 1.0]); affine[:3, 3] = -(size - 1) / 2 * spacing
    rows = []
    for i in range(n_subjects):
        n_visits = [3, 2, 4, 3, 4][i % 5]
        alpha, K, v0 = rng.uniform(0.4, 0.9), rng.uniform(60, 120), rng.uniform(5, 20)
        c = rng.uniform(-25, 25, 3)
        times = np.r_[0.0, np.cumsum(rng.uniform(0.4, 1.2, n_visits - 1))]
        for k, t in enumerate(times):
            V = gompertz_volume(t, v0, K, alpha)
            r = (3 * V * 1000 / (4 * math.pi)) ** (1 / 3)
            lesion = ((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 <= r ** 2) & head
            folder = f"TIN{i:03d}-{k:02d}"; (root/folder).mkdir(parents=True)
            for ch, (h, l) in enumerate([(300, 500), (280, 60), (200, 250), (150, 120)]):
                img = head * h + lesion * l + rng.normal(0, 5, head.shape) * head
                nib.save(nib.Nifti1Image(img.astype(np.float32), affine), root/folder/f"{folder}-{['t1c', 't1n', 't2f', 't2w'][ch]}.nii.gz")
            nib.save(nib.Nifti1Image((lesion * 3).astype(np.uint8), affine), root/folder/f"{folder}-seg.nii.gz")
            cen = np.argwhere(lesion).mean(0) * spacing + affine[:3, 3]
            rows.append(dict(folder=folder, subject=f"TIN{i:03d}", timepoint=k, time_years=t, true_volume_ml=V,
                             lesion_volume_ml=lesion.sum() * spacing ** 3 / 1000, centroid_x=cen[0], centroid_y=cen[1],
                             centroid_z=cen[2], gompertz_alpha=alpha, gompertz_K_ml=K, gompertz_V0_ml=v0))
    pd.DataFrame(rows).to_csv(root/"ground_truth.csv", index=False)
    return root


TINY = dict(n_subjects=8, img_size=16, val_frac=0.25, calib_frac=0.35, vae_epochs=1, vae_bs=4, ode_epochs=1,
            ode_steps_per_epoch=3, ode_hidden=8, n_samples=8, n_boot=200, size_check=[], num_threads=1)


def test_train_growth_rejects_unknown_keys(tmp_path):
    from vae_notebooks.mri.growth import train_growth
    with pytest.raises(ValueError, match="unknown key 'n_subject'"):
        train_growth(n_subject=3, out_dir=str(tmp_path/"run"))
    assert not (tmp_path/"run").exists()


def _seg_volume_ml(path):
    import nibabel as nib
    img = nib.load(str(path))
    return float((np.asarray(img.dataobj) > 0).sum() * abs(np.linalg.det(img.affine[:3, :3])) / 1000)


def test_papermill_train_growth(tmp_path):
    papermill = pytest.importorskip("papermill")
    cohort = _write_tiny_cohort(tmp_path/"cohort", n_subjects=8)
    out_dir = tmp_path/"run"
    params = dict(TINY, data_dir=str(cohort), out_dir=str(out_dir))
    papermill.execute_notebook(str(ROOT/"nbs"/"train_growth.ipynb"), str(tmp_path/"out.ipynb"), parameters=params,
                               kernel_name="python3", cwd=str(ROOT/"nbs"), progress_bar=False)
    comp = pd.read_csv(out_dir/"forecast_comparison.csv")
    keys = set(zip(comp.setting, comp.horizon, comp.method))
    assert keys == {(s, h, m) for s in ("images", "segmentations") for h in (1, 2)
                    for m in ("latent_ode", "gompertz", "linear_log_volume", "no_growth")} and len(comp) == 16
    ode_rows = comp[comp.method == "latent_ode"]
    assert ode_rows.coverage_scaled.notna().all() and comp[comp.method == "no_growth"].coverage_native.isna().all()
    # baselines read the -seg files, never the ground truth; scoring uses the exact volumes of the ground truth
    gt = pd.read_csv(cohort/"ground_truth.csv")
    out = pd.read_csv(out_dir/"forecast_outcomes.csv")
    ng = out[(out.setting == "segmentations") & (out.method == "no_growth") & (out.horizon == 1)]
    assert len(ng) >= 1
    for r in ng.itertuples():
        g = gt[gt.subject == r.subject].sort_values("time_years").reset_index(drop=True)
        last_obs = g.folder[r.n_observed - 1]
        measured = _seg_volume_ml(cohort/last_obs/f"{last_obs}-seg.nii.gz")
        assert abs(measured / g.true_volume_ml[r.n_observed - 1] - 1) > 1e-3      # the measurement is not the truth here
        assert r.log_pred == pytest.approx(math.log(measured), abs=1e-4)
        assert r.log_ref == pytest.approx(math.log(g.true_volume_ml[r.n_observed]), abs=1e-6)
    img = out[(out.setting == "images") & (out.method == "no_growth") & (out.horizon == 1)].set_index("subject")
    assert not np.allclose(img.log_pred.to_numpy(), ng.set_index("subject").log_pred[img.index].to_numpy(), atol=1e-3)
    # the words are computed from the numbers: each sentence names the method with the lowest mean error
    summary = json.loads((out_dir/"summary.json").read_text())
    assert summary["family"] == "growth" and summary["headline"]
    words = {"images": "From images alone", "segmentations": "With segmentations"}
    for (setting, h), d in comp.groupby(["setting", "horizon"]):
        best = d.set_index("method").rel_error_mean.idxmin()
        sentence = next(x for x in summary["verdict_reasons"] if x.startswith(f"{words[setting]}, last {h} visit"))
        assert f"best is {best} " in sentence, (sentence, best)
    for f in ("config.json", "metrics.csv", "model.safetensors", "model.json", "ode_images/model.json", "ode_segmentations/model.json",
              "paired_differences.csv", "decomposition.csv", "figures/trajectories.png"):
        assert (out_dir/f).exists(), f
    assert not (out_dir/"RUN_INCOMPLETE").exists()
    assert json.loads((out_dir/"config.json").read_text())["params"]["data_dir"] == str(cohort)
    from vae_notebooks.learner import load_model
    ode = load_model(out_dir/"ode_images")
    assert isinstance(ode, LatentODE) and float(ode.obs_noise) > 0
    vae = load_model(out_dir)
    mu, logvar = vae.encode(torch.zeros(1, 4, 16, 16, 16))
    assert mu.shape == (1, 12)


def _split(visits, n_test, n_calib):
    subs = sorted(visits.subject.unique())
    visits["split"] = visits.subject.map({s: "test" if i < n_test else "calib" if i < n_test + n_calib else "fit" for i, s in enumerate(subs)})
    return visits


ODE_FAST = dict(hidden=8, epochs=2, steps_per_epoch=8, lr=2e-2, n_samples=24, n_boot=200)


def test_calibrated_band_coverage_on_simulated_cohort():
    "On a simulated cohort (read-out error 0.15, 5 % segmentation CV), the conformal-scaled 90% band of the latent ODE covers 80-95 % of 100 held-out truths."
    from vae_notebooks.mri.growth import simulate_growth_cohort, compare_forecasts
    visits, mu = simulate_growth_cohort(300, readout_noise=0.15, seed=6)
    res = compare_forecasts(_split(visits, 100, 100), mu, 0, (1.0, 2.3), settings=("images",), horizons=(1,), **ODE_FAST)
    s = res["summary"].set_index("method").loc["latent_ode"]
    assert s.n_calib == 100 and s.n_outcomes == 100
    assert 0.80 <= s.coverage_scaled <= 0.95, s.coverage_scaled
    assert s.verdict_scaled == "calibrated"
    assert 0.80 <= s.coverage_conformal <= 0.95, s.coverage_conformal     # the horizon-scaled conformal band too


def test_latent_ode_beats_no_growth_on_simulated_cohort():
    "Mostly growing lesions read with a small error: the latent ODE must beat no growth by a margin, at both horizons, and know the classes better."
    from vae_notebooks.mri.growth import simulate_growth_cohort, compare_forecasts
    visits, mu = simulate_growth_cohort(60, readout_noise=0.1, class_mix={"growing": 0.8, "stable": 0.2}, seed=3)
    res = compare_forecasts(_split(visits, 20, 10), mu, 0, (1.0, 2.3), settings=("images",), horizons=(1, 2), **ODE_FAST)
    s = res["summary"].set_index(["horizon", "method"])
    for h in (1, 2):
        assert s.rel_error_mean[h, "latent_ode"] < 0.75 * s.rel_error_mean[h, "no_growth"], s.rel_error_mean[h]
        assert s.class_accuracy[h, "latent_ode"] > s.class_accuracy[h, "no_growth"] + 0.2
    p = res["paired"].set_index(["horizon", "baseline"])
    assert p.diff_hi[2, "no_growth"] < 0                       # two visits ahead the paired interval excludes no difference


def test_ensemble_forecast_spreads_samples(fitted):
    ode, trajs, _ = fitted
    other, _ = fit_latent_ode(trajs[:10], hidden=8, epochs=1, steps_per_epoch=3, lr=3e-2, seed=1)
    s = trajs[11]
    fc = forecast(ode, s, [float(s.times[-1]) + 0.5], n_samples=10, ensemble=[other])
    assert fc.z_samples.shape[0] == 10 and torch.isfinite(fc.volume_ml).all()
    with pytest.raises(TypeError, match="LatentODE"):
        forecast(ode, s, [float(s.times[-1]) + 0.5], ensemble=["not a model"])


def test_exp3_dataset_partial_labels(tmp_path):
    from vae_notebooks.mri.data import build_cache
    from vae_notebooks.mri.exp3 import Exp3Dataset, LatentPartition
    cohort = _write_tiny_cohort(tmp_path/"cohort", n_subjects=4)
    cache = build_cache(cohort, img_size=16, val_frac=0.25, seed=0)
    part = LatentPartition(z_dim=10, n_shape=2)
    ds = Exp3Dataset(cache, part, "all", labelled_frac=0.5, seed=0)
    labelled = cache.subjects.subject[ds.mask[:, 0].numpy() == 1].unique()
    assert len(labelled) == 2                      # half of the subjects, with all their visits
    assert (ds.mask[:, 0] == ds.mask[:, 1]).all()
    x, y, vol, loc, mask = ds[0]
    assert x.shape == (4, 16, 16, 16) and vol.shape == (1,) and loc.shape == (3,) and mask.shape == (2,)
    assert torch.isfinite(ds.vol).all() and torch.isfinite(ds.loc).all()
    full = Exp3Dataset(cache, part, "all")
    gt = cache.subjects.lesion_volume_ml.to_numpy(float)
    np.testing.assert_allclose(part.log_volume(torch.cat([full.vol, torch.zeros(len(full), 9)], 1)).numpy(), np.log(gt), rtol=1e-5)
    with pytest.raises(ValueError, match="labelled_frac"):
        Exp3Dataset(cache, part, "train", labelled_frac=1.5)
