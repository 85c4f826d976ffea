"Checks of vae_notebooks.diagnostics: the collapse verdict on hand-made rows and on real healthy and collapsed runs."
import math
import warnings
import pandas as pd
import pytest
import torch

from vae_notebooks.diagnostics import collapse_verdict, diagnostics_table, history_frame, Z0_RATIO_MAX

HEALTHY = dict(au_count=8, au_frac=1.0, valid_kl_raw=2.8, mu_var_mean=0.45, recon_mean_mse=0.017,
               recon_z0_mse=0.068, recon_gap=0.009, z0_ratio=0.25)
COLLAPSED = dict(au_count=0, au_frac=0.0, valid_kl_raw=1e-4, mu_var_mean=1e-5, recon_mean_mse=0.061,
                 recon_z0_mse=0.061, recon_gap=-1e-5, z0_ratio=1.0)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_clear_cases():
    assert collapse_verdict(HEALTHY) == ("healthy", [])
    v, why = collapse_verdict(COLLAPSED)
    assert v == "collapsed" and len(why) == 5
    assert any("z0_ratio=1" in r for r in why)
    t = diagnostics_table(HEALTHY)
    assert t.ok.tolist() == [True]*5 and t.column.tolist() == ["au_count", "valid_kl_raw", "mu_var_mean", "z0_ratio", "recon_gap"]


def test_rules():
    assert collapse_verdict({**HEALTHY, "au_count": 0})[0] == "collapsed"          # no active unit decides alone
    v, why = collapse_verdict({**HEALTHY, "z0_ratio": Z0_RATIO_MAX + 0.01, "recon_gap": 0.0})
    assert v == "healthy" and len(why) == 2                                         # two failures: warnings
    assert collapse_verdict({**HEALTHY, "z0_ratio": 0.99, "recon_gap": 0.0, "mu_var_mean": 0.001})[0] == "collapsed"
    # the gap is relative to the MSE: 0.2 % (what a collapsed decoder shows) fails, 10 % passes
    assert diagnostics_table({**COLLAPSED, "recon_gap": 0.002*0.061}).ok[4] == False
    assert diagnostics_table({**COLLAPSED, "recon_gap": 0.1*0.061}).ok[4] == True
    # free bits: KL at the floor (0.5 nats x 8 dims) fails the KL check
    v, why = collapse_verdict({**HEALTHY, "valid_kl_raw": 4.0}, free_bits=0.5)
    assert v == "healthy" and len(why) == 1 and "floor 4" in why[0]
    assert collapse_verdict({**HEALTHY, "valid_kl_raw": 5.0}, free_bits=0.5) == ("healthy", [])


def test_inputs():
    s = pd.Series({k: v for k, v in HEALTHY.items() if k != "valid_kl_raw"} | {"kl_raw": 2.8})
    assert collapse_verdict(s) == ("healthy", [])
    assert "floor 1.6" in diagnostics_table({**COLLAPSED, "kl_per_dim": [0.0]*16}, free_bits=0.1)["healthy if"][1]
    v, why = collapse_verdict({**HEALTHY, "z0_ratio": math.nan})
    assert v == "healthy" and why == ["z=0 ablation MSE(mu)/MSE(0): z0_ratio not measured"]
    with pytest.raises(ValueError, match="latent_dim"): collapse_verdict(COLLAPSED, free_bits=0.1)
    with pytest.raises(ValueError, match="au_count"): collapse_verdict({"valid_kl_raw": 1.0})
    with pytest.raises(ValueError, match="mu_var_mean"): collapse_verdict({**HEALTHY, "mu_var_mean": "x"})
    with pytest.raises(TypeError, match="mapping"): collapse_verdict(3)


def test_verdict_on_real_runs(tmp_path):
    "A mean-reduction VAE on the toy sprites: beta=0.005 keeps the latent, beta=1 (beta_eff=128) collapses it."
    from vae_notebooks.core import set_seed
    from vae_notebooks.learner import vae_dataloaders, vae_learner
    from vae_notebooks.losses import VAELoss
    from vae_notebooks.models.mlp import MLPVAE
    from vae_notebooks.toy import factor_dataset
    dls = vae_dataloaders(factor_dataset(1024, seed=0, noise=0.05), factor_dataset(256, seed=1, noise=0.05),
                          bs=128, device="cpu", seed=0)
    verdicts = {}
    for beta in (0.005, 1.0):
        set_seed(0)
        learn = vae_learner(dls, MLPVAE(256, 8, hidden_dims=(128,)), VAELoss(reduction="mean", beta=beta), lr=3e-3,
                            progress=False, csv_path=tmp_path/f"b{beta}"/"metrics.csv")
        with warnings.catch_warnings(), learn.no_logging():
            warnings.simplefilter("ignore"); learn.fit(6)
        h = history_frame(learn)
        assert len(h) == 6 and {"valid_kl_raw", "au_count", "z0_ratio"} <= set(h.columns)
        csv_row = pd.read_csv(tmp_path/f"b{beta}"/"metrics.csv").iloc[-1]
        verdicts[beta] = collapse_verdict(h.iloc[-1]), collapse_verdict(csv_row)
        assert verdicts[beta][0][0] == verdicts[beta][1][0]
    assert verdicts[0.005][0][0] == "healthy", verdicts
    assert verdicts[1.0][0][0] == "collapsed", verdicts
