"MLPVAE / MLPCVAE: the model protocol, config round trips through save_model/load_model, errors, and learning."
import json
import math
import pytest
import torch

from vae_notebooks.core import VAEOutput, set_seed
from vae_notebooks.models.mlp import MLPVAE, MLPCVAE, mlp_stack


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("output", ["linear", "softplus", "relu", "sigmoid"])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_mlpvae_protocol(output, batchnorm):
    set_seed(0)
    m = MLPVAE(8, 3, hidden_dims=(16, 8), dropout=0.2, batchnorm=batchnorm, output=output, posterior_logvar_min=-4.)
    x = torch.randn(6, 2, 4)
    out = m(x)
    assert isinstance(out, VAEOutput) and out.check() is out
    assert out.recon.shape == x.shape and out.mu.shape == (6, 3) and out.z.shape == (6, 3)
    out.recon.sum().backward()                                              # gradients reach the encoder
    assert m.encoder[0].weight.grad is not None and m.encoder[0].weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        mu, logvar = m.encode(x)
        assert (logvar >= -4.).all()
        assert torch.equal(m(x, sample=False).z, mu)
        torch.testing.assert_close(m(x, sample=False).recon, m.decode(mu).reshape(x.shape))
        z = torch.randn(6, 3)
        assert torch.equal(m(x, z=z).z, z)
        r = m.decode(torch.randn(200, 3) * 4)
        if output in ("softplus", "relu"): assert (r >= 0).all()
        if output == "sigmoid": assert ((r >= 0) & (r <= 1)).all()


def test_mlpcvae_protocol_and_condition_use():
    set_seed(0)
    m = MLPCVAE(6, 2, 3, hidden_dims=(12,)).eval()
    x, c = torch.randn(5, 6), torch.randn(5, 2)
    out = m(x, c)
    assert out.recon.shape == (5, 6) and out.mu.shape == (5, 3)
    with torch.no_grad():
        z = torch.zeros(5, 3)
        assert not torch.allclose(m(x, c, z=z).recon, m(x, c + 1, z=z).recon)    # the decoder sees c
        assert not torch.allclose(m.encode(x, c)[0], m.encode(x, c + 1)[0])      # the encoder sees c
        torch.testing.assert_close(m(x, c, z=z).recon, m.decode(z, c))
    assert MLPCVAE(4, 1, 2)(torch.randn(3, 4), torch.randn(3)).recon.shape == (3, 4)


def test_shape_errors_are_clear():
    m = MLPVAE(8, 3)
    with pytest.raises(ValueError, match="expects input_dim=8"): m(torch.randn(4, 9))
    with pytest.raises(ValueError, match=r"\[B, 8\]"): m(torch.randn(8))
    with pytest.raises(ValueError, match=r"z must have shape \[B, 3\]"): m.decode(torch.randn(4, 2))
    c = MLPCVAE(8, 2, 3)
    with pytest.raises(ValueError, match=r"condition c must have shape \[B, 2\]"): c(torch.randn(4, 8), torch.randn(4, 3))
    with pytest.raises(ValueError, match="3 rows but the batch has 4"): c(torch.randn(4, 8), torch.randn(3, 2))
    with pytest.raises(ValueError, match="output must be one of"): MLPVAE(8, 3, output="exp")
    with pytest.raises(ValueError, match="activation must be one of"): MLPVAE(8, 3, activation="swish")
    with pytest.raises(ValueError, match="dropout must be in"): MLPVAE(8, 3, dropout=1.0)
    with pytest.raises(ValueError, match="cond_dim must be positive"): MLPCVAE(8, 0, 3)


def test_mlp_stack_layers():
    s = mlp_stack(4, (6, 5), dropout=0.1, batchnorm=True, activation="gelu")
    assert [type(l).__name__ for l in s] == ["Linear", "BatchNorm1d", "GELU", "Dropout"] * 2
    assert len(mlp_stack(4, ())) == 0


@pytest.mark.parametrize("cls,args", [(MLPVAE, dict(input_dim=7, latent_dim=2)), (MLPCVAE, dict(input_dim=7, cond_dim=3, latent_dim=2))])
def test_config_is_json_and_rebuilds(cls, args, tmp_path):
    m = cls(**args, hidden_dims=(9, 5), batchnorm=True, output="softplus", posterior_logvar_min=-5.).eval()
    cfg = json.loads(json.dumps(m.config))                                    # survives JSON
    assert cfg["hidden_dims"] == [9, 5] and cfg["output"] == "softplus"
    m2 = cls(**cfg).eval(); m2.load_state_dict(m.state_dict())
    xb = (torch.randn(4, 7),) if cls is MLPVAE else (torch.randn(4, 7), torch.randn(4, 3))
    with torch.no_grad(): torch.testing.assert_close(m2(*xb, sample=False).recon, m(*xb, sample=False).recon)
    from vae_notebooks.saving import save_model, load_model                    # a broken import must fail, not skip
    save_model(m, tmp_path / "m")
    m3 = load_model(tmp_path / "m").eval()
    assert type(m3) is cls and m3.config == m.config
    with torch.no_grad(): torch.testing.assert_close(m3(*xb, sample=False).recon, m(*xb, sample=False).recon)


def test_cvae_learns_what_vae_cannot():
    "x = A s + B c + noise: with 2 latents the CVAE reconstructs x, a VAE with 2 latents cannot (it needs 5)."
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(12, 2, generator=g), torch.randn(12, 3, generator=g)
    s, c = torch.randn(1024, 2, generator=g), torch.randn(1024, 3, generator=g)
    x = s @ A.T + c @ B.T + 0.05 * torch.randn(1024, 12, generator=g)

    def fit(model, *inputs, steps=250):
        set_seed(0); opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(steps):
            idx = torch.randint(0, 1024, (128,))
            out = model(*[t[idx] for t in inputs])
            kl = 0.5 * (out.mu**2 + out.logvar.exp() - 1 - out.logvar).sum(1)
            loss = (((out.recon - x[idx])**2).sum(1) / (2 * 0.05**2) + kl).mean()
            opt.zero_grad(); loss.backward(); opt.step()
        return model.eval()

    cvae = fit(MLPCVAE(12, 3, 2, hidden_dims=(32,)), x, c)
    vae = fit(MLPVAE(12, 2, hidden_dims=(32,)), x)
    with torch.no_grad():
        mse_c = ((cvae(x, c, sample=False).recon - x)**2).mean().item()
        mse_v = ((vae(x, sample=False).recon - x)**2).mean().item()
    var = x.var(0).mean().item()
    print(f"CVAE {mse_c:.4f}  VAE {mse_v:.4f}  var {var:.3f}")
    assert mse_c < 0.05 * var, (mse_c, var)
    assert mse_c < 0.3 * mse_v, (mse_c, mse_v)
