"Checks of vae_notebooks.metrics against independent computations (scikit-image, scikit-learn, closed forms)."
import math
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from vae_notebooks.metrics import (active_units, latent_activity, ssim3d, psnr, discretize, mutual_info_matrix, mig,
                                   dci, dci_scores, iwae_log_likelihood, anomaly_auc)
from vae_notebooks.models.mlp import MLPVAE

skm = pytest.importorskip("skimage.metrics")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _volume(shape, seed):
    v = gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.5)
    return (v - v.min()) / (v.max() - v.min())


def _sk_ssim(a, b, data_range):
    return skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range)


# --- SSIM / PSNR -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["noise", "blur", "scale_offset", "heavy_noise"])
def test_ssim3d_matches_skimage(kind):
    rng = np.random.default_rng(1)
    ref = np.stack([_volume((13, 17, 15), s) for s in range(2)])        # odd, unequal sizes on purpose
    test = {"noise": ref + rng.normal(0, .05, ref.shape), "blur": gaussian_filter(ref, (0, 1, 1, 1)),
            "scale_offset": 0.6 * ref + 0.2, "heavy_noise": ref + rng.normal(0, .5, ref.shape)}[kind]
    x = torch.tensor(np.stack([test, test[::-1]], 1), dtype=torch.float32)   # [B=2, C=2, D, H, W]
    y = torch.tensor(np.stack([ref, ref[::-1]], 1), dtype=torch.float32)
    ours = ssim3d(x, y, data_range=1.0)
    assert ours.shape == (2, 2)
    for b in range(2):
        for c in range(2):
            expected = _sk_ssim(x[b, c].double().numpy(), y[b, c].double().numpy(), 1.0)
            assert abs(ours[b, c].item() - expected) < 0.01, (kind, b, c, ours[b, c].item(), expected)
            assert abs(ours[b, c].item() - expected) < 1e-4      # in practice it agrees far more closely


def test_ssim3d_default_range_offset_and_identity():
    ref = _volume((12, 12, 12), 0)
    y = torch.tensor(ref, dtype=torch.float32)[None, None] * 300 + 2000          # raw-intensity-like offset
    x = y + 10 * torch.randn_like(y)
    rng_y = float(y.max() - y.min())
    expected = _sk_ssim(x[0, 0].double().numpy(), y[0, 0].double().numpy(), rng_y)
    assert abs(ssim3d(x, y).item() - expected) < 0.01                            # default data_range = range of y
    assert ssim3d(y, y).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim3d(x, y).item() < 1.0


def test_ssim3d_and_psnr_shape_errors():
    x = torch.rand(2, 1, 12, 12, 12)
    with pytest.raises(ValueError, match="must have the same shape"): ssim3d(x, x[:1])
    with pytest.raises(ValueError, match=r"\[B, C, D, H, W\]"): ssim3d(x[0], x[0])
    with pytest.raises(ValueError, match="win_size=11"): ssim3d(x[..., :10], x[..., :10])
    with pytest.raises(ValueError, match=r"y\[1, 0\] is constant"): ssim3d(x, torch.cat([x[:1], torch.ones_like(x[:1])]))
    with pytest.raises(ValueError, match=r"\[B, C\]"): ssim3d(x, x, data_range=torch.ones(3))
    with pytest.raises(TypeError, match="torch tensors"): ssim3d(x.numpy(), x.numpy())
    with pytest.raises(ValueError, match="must have the same shape"): psnr(x, x[:, :, 1:])


def test_psnr_matches_skimage_and_formula():
    y = torch.rand(2, 3, 8, 9, 10)
    x = y + 0.1 * torch.randn_like(y)
    ours = psnr(x, y, data_range=1.0)
    assert ours.shape == (2, 3)
    for b in range(2):
        for c in range(3):
            sk = skm.peak_signal_noise_ratio(y[b, c].double().numpy(), x[b, c].double().numpy(), data_range=1.0)
            assert ours[b, c].item() == pytest.approx(sk, abs=1e-3)
    mse = ((x - y)**2).flatten(2).mean(-1)
    rng = y.flatten(2).amax(-1) - y.flatten(2).amin(-1)
    torch.testing.assert_close(psnr(x, y), 10 * torch.log10(rng**2 / mse))
    assert torch.isinf(psnr(y, y)).all()


# --- active units ----------------------------------------------------------------------------------------------

def test_active_units_threshold_is_strict():
    mu = torch.tensor([[1., .125, .5], [-1., -.125, -.5]]).repeat(10, 1)     # variances 1, 1/64, 1/4 (exact)
    assert active_units(mu) == 3
    assert active_units(mu, threshold=1/64) == 2                              # 1/64 is not > 1/64
    assert active_units(mu, threshold=1/4) == 1
    assert active_units(mu, threshold=1.0) == 0
    assert active_units(mu.numpy(), threshold=0.1) == 2                       # NumPy works too
    torch.testing.assert_close(latent_activity(mu), torch.tensor([1., 1/64, 1/4], dtype=torch.float64))


def test_active_units_detects_collapsed_dims():
    g = torch.Generator().manual_seed(0)
    mu = torch.cat([torch.randn(500, 3, generator=g), 1e-3 * torch.randn(500, 2, generator=g) + 0.7], 1)
    assert active_units(mu) == 3


def test_active_units_shape_errors():
    with pytest.raises(ValueError, match=r"\[N, D\]"): active_units(torch.zeros(5))
    with pytest.raises(ValueError, match="at least 2 samples"): active_units(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="NaN"): active_units(torch.tensor([[0., float("nan")], [1., 1.]]))


# --- MIG -------------------------------------------------------------------------------------------------------

def _factors(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 4, n), rng.integers(0, 10, n), rng.integers(0, 2, n)], 1), rng


def test_mig_copy_is_one_and_random_is_zero():
    f, rng = _factors()
    copy = f + rng.normal(0, .01, f.shape)
    assert mig(copy, f) == pytest.approx(1.0, abs=0.01)
    assert mig(np.c_[copy, rng.normal(size=(len(f), 3))], f) == pytest.approx(1.0, abs=0.02)   # extra noise dims
    assert mig(rng.normal(size=(len(f), 5)), f) == pytest.approx(0.0, abs=0.02)
    assert mig(torch.tensor(copy), torch.tensor(f)) == pytest.approx(mig(copy, f))              # tensors accepted


def test_mig_edge_cases():
    f, rng = _factors()
    copy = f + rng.normal(0, .01, f.shape)
    # a factor captured equally by two latents has no gap
    score, gaps = mig(np.c_[copy, copy[:, 0] * 2 + 3], f, per_factor=True)
    assert gaps[0] == pytest.approx(0.0, abs=1e-9) and gaps[1] == pytest.approx(1.0, abs=0.01)
    # a single latent: the runner-up is taken as 0, so MIG = mean_k I(z; v_k) / H(v_k)
    one = mig(copy[:, :1], f, per_factor=True)[1]
    assert one[0] == pytest.approx(1.0, abs=0.01) and one[1] == pytest.approx(0.0, abs=0.02)
    # a constant latent carries no information
    assert mig(np.c_[copy, np.full(len(f), 3.0)], f) == pytest.approx(mig(copy, f))
    # invariant to monotone rescaling of a latent (equal-width bins move with it)
    assert mig(copy * np.array([5., -2., 0.1]) + 7, f) == pytest.approx(mig(copy, f))
    # a 1-D factor vector is one factor
    assert mig(copy[:, 1:2], f[:, 1]) == pytest.approx(1.0, abs=0.01)


def test_mig_errors():
    f, rng = _factors(200)
    z = rng.normal(size=(200, 3))
    with pytest.raises(ValueError, match="constant"): mig(z, np.c_[f, np.ones(200, int)])
    with pytest.raises(ValueError, match="discretize"): mig(z, f + 0.3)
    with pytest.raises(ValueError, match="same number of samples"): mig(z[:50], f)
    with pytest.raises(ValueError, match=r"\[N, D\]"): mig(z[:, 0], f)
    with pytest.raises(ValueError, match="NaN"): mig(np.where(z > 2, np.nan, z), f)


def _mi_bits_reference(a, b):
    "MI from explicit probability tables (a different route from metrics' contingency code), nats."
    ua, ia = np.unique(a, return_inverse=True); ub, ib = np.unique(b, return_inverse=True)
    total = 0.0
    for i in range(len(ua)):
        for j in range(len(ub)):
            pij = np.mean((ia == i) & (ib == j))
            if pij > 0: total += pij * math.log(pij / (np.mean(ia == i) * np.mean(ib == j)))
    return total


def test_mig_against_independent_computation():
    from sklearn.metrics import mutual_info_score
    f, rng = _factors(1500, seed=3)
    z = np.c_[f[:, 0] + rng.normal(0, .3, len(f)), f[:, 1] + 0.5 * f[:, 0] + rng.normal(0, 1., len(f)), rng.normal(size=len(f))]
    m = mutual_info_matrix(z, f)
    zb = discretize(z)
    assert zb.min() == 0 and zb.max() == 19
    for j in range(3):
        # equal-width bins exactly as np.histogram draws them
        edges = np.histogram(z[:, j], 20)[1]
        assert np.array_equal(np.digitize(z[:, j], edges[:-1]) - 1, zb[:, j])
        for k in range(3):
            assert m[j, k] == pytest.approx(mutual_info_score(f[:, k], zb[:, j]), abs=1e-10)
            assert m[j, k] == pytest.approx(_mi_bits_reference(zb[:, j], f[:, k]), abs=1e-10)
    H = np.array([mutual_info_score(f[:, k], f[:, k]) for k in range(3)])
    top = np.sort(m, 0)[::-1]
    assert mig(z, f) == pytest.approx(np.mean((top[0] - top[1]) / H), abs=1e-12)


# --- DCI -------------------------------------------------------------------------------------------------------

def test_dci_scores_closed_forms():
    assert dci_scores(np.eye(4)[[1, 3, 0, 2]]) == pytest.approx((1.0, 1.0))
    assert dci_scores(np.ones((3, 3))) == pytest.approx((0.0, 0.0), abs=1e-9)
    R = np.array([[1., 1.], [0., 0.]])       # one latent for both factors: complete, not disentangled
    assert dci_scores(R) == pytest.approx((0.0, 1.0), abs=1e-9)
    # a general matrix against the definitions written out by hand (base-2 entropies for K = D = 2)
    R = np.array([[0.5, 0.0], [0.5, 1.0]])
    rho = R.sum(1) / R.sum()
    P = R / R.sum(1, keepdims=True)
    Hk = lambda p: -sum(v * math.log(v, 2) for v in p if v > 0)
    D = sum(r * (1 - Hk(p)) for r, p in zip(rho, P))
    Pc = R / R.sum(0, keepdims=True)
    C = np.mean([1 - Hk(Pc[:, k]) for k in range(2)])
    assert dci_scores(R) == pytest.approx((D, C), abs=1e-9)


def test_dci_end_to_end_fast():
    f, rng = _factors(400, seed=1)
    good = dci(f + rng.normal(0, .05, f.shape), f, n_estimators=20)
    bad = dci(rng.normal(size=(400, 3)), f, n_estimators=20)
    assert good["disentanglement"] > 0.9 and good["completeness"] > 0.9 and good["informativeness"] > 0.95
    assert bad["disentanglement"] < 0.3 and bad["informativeness"] < 0.6
    assert good["importance"].shape == (3, 3)
    lasso = dci(f + rng.normal(0, .05, f.shape), f, method="lasso")
    assert lasso["disentanglement"] > 0.9 and lasso["informativeness"] > 0.9
    with pytest.raises(ValueError, match="method must be"): dci(f * 1., f, method="forest")


# --- IWAE ------------------------------------------------------------------------------------------------------

def _linear_gaussian(seed=0, d_x=5, d_z=2, s=0.4, n=50):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d_x, d_z, generator=g, dtype=torch.float64))
    W = Q * torch.tensor([1.5, 0.8], dtype=torch.float64)             # orthogonal columns: diagonal exact posterior
    b = torch.randn(d_x, generator=g, dtype=torch.float64)
    x = torch.randn(n, d_z, generator=g, dtype=torch.float64) @ W.T + b + s * torch.randn(n, d_x, generator=g, dtype=torch.float64)
    cov = W @ W.T + s**2 * torch.eye(d_x, dtype=torch.float64)
    exact = torch.distributions.MultivariateNormal(b, cov).log_prob(x)
    Minv = torch.linalg.inv(W.T @ W + s**2 * torch.eye(d_z, dtype=torch.float64))
    encode = lambda x: ((x - b) @ W @ Minv.T, torch.log(s**2 * torch.diagonal(Minv)).expand(len(x), d_z))
    decode = lambda z: z @ W.T + b
    return x, exact, encode, decode, math.log(s**2)


def test_iwae_exact_posterior_gives_exact_likelihood():
    x, exact, enc, dec, lv = _linear_gaussian()
    for k in (1, 7, 50):
        torch.testing.assert_close(iwae_log_likelihood(x=x, k=k, encode=enc, decode=dec, obs_logvar=lv, chunk=16), exact)


def test_iwae_bound_tightens_with_k():
    x, exact, enc, dec, lv = _linear_gaussian(seed=1)
    poor = lambda x: (lambda m, v: (0.5 * m, v + 1.0))(*enc(x))
    torch.manual_seed(0)
    b = {k: iwae_log_likelihood(x=x, k=k, encode=poor, decode=dec, obs_logvar=lv).mean().item() for k in (1, 20, 2000)}
    assert b[1] < b[20] < b[2000] <= exact.mean().item() + 0.01
    assert b[2000] == pytest.approx(exact.mean().item(), abs=0.03)


def test_iwae_custom_loglik_and_model():
    x, exact, enc, dec, lv = _linear_gaussian()
    s2 = math.exp(lv)
    gauss = lambda x, mean: torch.distributions.Normal(mean, math.sqrt(s2)).log_prob(x).sum(1)
    torch.testing.assert_close(iwae_log_likelihood(x=x, k=3, encode=enc, decode=dec, log_px_z=gauss), exact)
    model = MLPVAE(5, 2, hidden_dims=(8,)).train()
    ll = iwae_log_likelihood(model, x.float(), k=4)
    assert ll.shape == (50,) and torch.isfinite(ll).all() and model.training
    with pytest.raises(ValueError, match="encode/decode"): iwae_log_likelihood(None, x, k=2)
    with pytest.raises(ValueError, match="k must be"): iwae_log_likelihood(model, x.float(), k=0)
    with pytest.raises(ValueError, match="expected two"): iwae_log_likelihood(x=x, k=2, encode=lambda x: (x[:, :2], x[:3, :2]), decode=dec)


# --- anomaly AUCs ----------------------------------------------------------------------------------------------

def test_anomaly_auc():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(int)
    s = rng.normal(size=400) + y
    r = anomaly_auc(s, y)
    pos, neg = s[y == 1], s[y == 0]
    assert r["roc_auc"] == pytest.approx((pos[:, None] > neg[None]).mean(), abs=1e-12)
    # average precision by its definition: mean precision at each positive, ranked by score
    order = np.argsort(-s); hits = y[order]
    prec_at = np.cumsum(hits) / np.arange(1, len(y) + 1)
    assert r["pr_auc"] == pytest.approx(prec_at[hits == 1].mean(), abs=1e-12)
    assert anomaly_auc(torch.tensor(-s), torch.tensor(y))["roc_auc"] == pytest.approx(1 - r["roc_auc"])
    with pytest.raises(ValueError, match="only one class"): anomaly_auc(s, np.ones(400))
    with pytest.raises(ValueError, match="0/1"): anomaly_auc(s, y * 2)
    with pytest.raises(ValueError, match=r"must both be \[N\]"): anomaly_auc(s[:, None], y)


def test_baselines_match_an_independent_computation():
    "Training mean = per-feature mean of x_train; PCA = projection on the top-k right singular vectors of centred x_train."
    from vae_notebooks.metrics import baseline_reconstructions, baseline_scores
    rng = np.random.default_rng(1)
    x = rng.normal(size=(260, 4)) @ rng.normal(size=(4, 10)) + 0.2*rng.normal(size=(260, 10)) + 1.5
    xt, xv = x[:200], x[200:]
    rec = baseline_reconstructions(xt, xv, n_components=4)
    mu = xt.mean(0); _, _, vt = np.linalg.svd(xt - mu, full_matrices=False)
    np.testing.assert_allclose(rec["mean"], np.broadcast_to(mu, xv.shape), rtol=1e-5)
    np.testing.assert_allclose(rec["pca"], mu + (xv - mu) @ vt[:4].T @ vt[:4], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(rec["zeros"], 0)
    sc = baseline_scores(xt, xv, 4).set_index("method").mse
    np.testing.assert_allclose(sc.values, [np.mean(xv**2), np.mean((xv - mu)**2), np.mean((xv - rec["pca"])**2)], rtol=1e-5)
    assert sc["pca"] < 0.1 < sc["mean"] < sc["zeros"]
