"Checks of vae_notebooks.diagnostics: the three verdicts on hand-made rows and on trained models that must not be called healthy."
import math
import warnings
import pandas as pd
import pytest
import torch

from vae_notebooks.diagnostics import collapse_verdict, diagnostics_table, history_frame, Z0_RATIO_MAX, au_threshold, kl_threshold

HEALTHY = dict(au_count=8, au_frac=1.0, valid_kl_raw=2.8, mu_var_mean=0.45, recon_mean_mse=0.017,
               recon_z0_mse=0.068, recon_gap=0.009, z0_ratio=0.25)
COLLAPSED = dict(au_count=0, au_frac=0.0, valid_kl_raw=1e-4, mu_var_mean=1e-5, recon_mean_mse=0.061,
                 recon_z0_mse=0.061, recon_gap=-1e-5, z0_ratio=1.0)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_thresholds_scale_with_latent_size():
    assert (au_threshold(128), kl_threshold(128)) == (10, 10.0)        # the MRI recipe's table at z_dim = 128
    assert au_threshold(64) == 5 and kl_threshold(32) == 2.5            # linear in D
    assert kl_threshold(8, free_bits=0.5) == pytest.approx(4.5)         # above the free-bits floor
    row = {**HEALTHY, "au_count": 10, "au_frac": 10/128, "valid_kl_raw": 50.0}
    assert collapse_verdict(row)[0] == "collapsed"                      # 10 of 128 units is not > 10
    assert collapse_verdict({**row, "au_count": 11, "au_frac": 11/128})[0] == "healthy"


def test_verdict_on_rows():
    assert collapse_verdict(HEALTHY) == ("healthy", [])
    v, why = collapse_verdict(COLLAPSED)
    assert v == "collapsed" and why[0] == "collapsed: no active unit" and len(why) == 6
    t = diagnostics_table(HEALTHY)
    assert t.ok.tolist() == [True]*5 and list(t.columns) == ["diagnostic", "column", "value", "healthy if", "ok"]
    # the decoder hardly uses z: template, whatever the latent statistics
    assert collapse_verdict({**HEALTHY, "z0_ratio": Z0_RATIO_MAX + 0.01})[0] == "template"
    assert collapse_verdict({**HEALTHY, "z0_ratio": 0.92})[0] == "template"    # the first version's "healthy" report
    assert collapse_verdict({**HEALTHY, "recon_gap": 0.0})[0] == "template"
    # no better than the training mean: template
    assert collapse_verdict(HEALTHY, baseline_mse=0.018)[0] == "template"
    assert collapse_verdict(HEALTHY, baseline_mse=0.030)[0] == "healthy"
    # latent checks fail, decoder checks pass: partial collapse
    assert collapse_verdict({**HEALTHY, "mu_var_mean": 0.05})[0] == "collapsed"
    assert diagnostics_table({**COLLAPSED, "recon_gap": 0.002*0.061}).ok[4] == False
    assert diagnostics_table({**COLLAPSED, "recon_gap": 0.1*0.061}).ok[4] == True
    v, why = collapse_verdict({**HEALTHY, "valid_kl_raw": 4.0}, free_bits=0.5)  # floor 1.1*0.5*8 + 0.1 = 4.5
    assert v == "collapsed" and "at the floor" in why[0]
    assert collapse_verdict({**HEALTHY, "valid_kl_raw": 5.0}, free_bits=0.5) == ("healthy", [])
    s = pd.Series({k: v for k, v in HEALTHY.items() if k != "valid_kl_raw"} | {"kl_raw": 2.8})
    assert collapse_verdict(s) == ("healthy", [])
    v, why = collapse_verdict({**HEALTHY, "z0_ratio": math.nan})
    assert v == "healthy" and why == ["z=0 ablation MSE(mu)/MSE(0): z0_ratio not measured"]
    with pytest.raises(ValueError, match="latent_dim"): collapse_verdict({k: v for k, v in HEALTHY.items() if k != "au_frac"})
    with pytest.raises(ValueError, match="au_count"): collapse_verdict({"valid_kl_raw": 1.0})
    with pytest.raises(ValueError, match="mu_var_mean"): collapse_verdict({**HEALTHY, "mu_var_mean": "x"})
    with pytest.raises(TypeError, match="mapping"): collapse_verdict(3)


def test_verdict_on_trained_models(tmp_path):
    """Three trained MLP VAEs on the toy sprites (8-d latent): beta=0.005 keeps the latent (healthy); beta=1 (with
    mean reduction, an effective beta of 256) collapses it; the healthy encoder with a decoder that ignores z is a
    template. Each verdict is checked with the training-mean baseline of `metrics.baseline_scores` too."""
    from vae_notebooks.core import set_seed
    from vae_notebooks.learner import vae_dataloaders, vae_learner
    from vae_notebooks.losses import VAELoss
    from vae_notebooks.metrics import baseline_scores
    from vae_notebooks.models.mlp import MLPVAE
    from vae_notebooks.toy import factor_dataset
    train, valid = factor_dataset(1024, seed=0, noise=0.05), factor_dataset(256, seed=1, noise=0.05)
    dls = vae_dataloaders(train, valid, bs=128, device="cpu", seed=0)
    xt = torch.stack([train[i][0] for i in range(len(train))]); xv = torch.stack([valid[i][0] for i in range(len(valid))])
    base = baseline_scores(xt, xv, n_components=8).set_index("method").mse
    rows, learners = {}, {}
    for name, beta in (("healthy", 0.005), ("collapsed", 1.0)):
        set_seed(0)
        learn = vae_learner(dls, MLPVAE(256, 8, hidden_dims=(128,)), VAELoss(reduction="mean", beta=beta), lr=3e-3,
                            progress=False, csv_path=tmp_path/name/"metrics.csv")
        with warnings.catch_warnings(), learn.no_logging():
            warnings.simplefilter("ignore"); learn.fit(6)
        h = history_frame(learn)
        assert len(h) == 6 and {"valid_kl_raw", "au_count", "z0_ratio", "logvar_mean", "z_std", "valid_objective"} <= set(h.columns)
        csv_row = pd.read_csv(tmp_path/name/"metrics.csv").iloc[-1]
        assert collapse_verdict(csv_row, baseline_mse=base["mean"]) == collapse_verdict(h.iloc[-1], baseline_mse=base["mean"])
        rows[name], learners[name] = h.iloc[-1], learn

    class ZBlind(MLPVAE):
        "The healthy model's weights, with a decoder that ignores z (always decodes z = 0)."
        def decode(self, z): return super().decode(torch.zeros_like(z))
    blind = ZBlind(256, 8, hidden_dims=(128,)); blind.load_state_dict(learners["healthy"].model.state_dict())
    learn = vae_learner(dls, blind, VAELoss(reduction="mean", beta=0.005), lr=0., progress=False)
    with warnings.catch_warnings(), learn.no_logging():
        warnings.simplefilter("ignore"); learn.fit(1)
    rows["template"] = history_frame(learn).iloc[-1]
    # one definition of an active unit: the engine's columns equal `metrics.active_units` / `latent_activity` (population variance)
    from vae_notebooks.metrics import active_units, latent_activity
    with torch.no_grad(): mu = learn.model.eval().encode(xv)[0]
    assert rows["template"]["au_count"] == active_units(mu)
    assert float(rows["template"]["mu_var_mean"]) == pytest.approx(float(latent_activity(mu).mean()), rel=1e-5)

    verdicts = {n: collapse_verdict(r, baseline_mse=base["mean"]) for n, r in rows.items()}
    for n, r in rows.items():
        print(n, verdicts[n][0], {k: round(float(r[k]), 4) for k in ("au_count", "valid_kl_raw", "mu_var_mean", "z0_ratio",
              "recon_gap", "recon_mean_mse", "logvar_mean", "z_std")}, "mean-template MSE", round(float(base["mean"]), 4),
              "PCA(8) MSE", round(float(base["pca"]), 4))
    assert verdicts["healthy"][0] == "healthy", verdicts["healthy"]
    assert verdicts["collapsed"][0] == "collapsed", verdicts["collapsed"]
    assert verdicts["template"][0] == "template", verdicts["template"]
    # the template's encoder is the healthy one (its latent statistics pass): only the decoder checks fail
    assert rows["template"]["au_count"] == rows["healthy"]["au_count"] and rows["template"]["z0_ratio"] > 0.99
    # posterior = prior: log-variance ~0, sampled z ~ N(0, 1)
    assert abs(rows["collapsed"]["logvar_mean"]) < 0.1 and abs(rows["collapsed"]["z_std"] - 1) < 0.1
