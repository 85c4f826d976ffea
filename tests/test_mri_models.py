"Checks of the MRI models (`vae_notebooks.mri.models`) beyond the notebook: protocol, shapes, save/load, errors."
import pytest, torch
from vae_notebooks.core import set_seed
from vae_notebooks.mri.models import BaselineVAE, VAESBD, build_model, mri_model_sizes, soft_floor

torch.set_num_threads(1)
KW = dict(img_size=16, z_dim=6, base_channels=4)

@pytest.fixture(params=[False, True], ids=["baseline", "sbd"])
def model(request):
    set_seed(0)
    return build_model(dict(use_sbd=request.param, **KW))

def test_shapes_and_protocol(model):
    x = torch.randn(2, 4, 16, 16, 16)
    out = model(x)
    assert set(out) >= {"recon", "mu", "logvar", "z"}
    assert out.recon.shape == x.shape and out.recon.dtype == torch.float32
    assert out.mu.shape == out.logvar.shape == out.z.shape == (2, 6)
    assert (out.logvar >= model.config["posterior_logvar_min"]).all()
    m1, m2 = model(x, sample=False), model(x, sample=False)
    torch.testing.assert_close(m1.recon, m2.recon); torch.testing.assert_close(m1.z, m1.mu)
    z = torch.randn(2, 6)
    torch.testing.assert_close(model(x, z=z).recon, model.decode(z))
    mu, logvar = model.encode(x)
    torch.testing.assert_close(mu, m1.mu)

def test_every_parameter_gets_a_gradient(model):
    out = model(torch.randn(2, 4, 16, 16, 16))
    (out.recon.pow(2).mean() + out.mu.pow(2).mean() + out.logvar.mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing

def test_save_load_roundtrip(model, tmp_path):
    from vae_notebooks.learner import save_model, load_model
    save_model(model, tmp_path/"m")
    back = load_model(tmp_path/"m")
    assert type(back) is type(model) and back.config == model.config
    x = torch.randn(1, 4, 16, 16, 16)
    torch.testing.assert_close(back.eval()(x, sample=False).recon, model.eval()(x, sample=False).recon)

def test_channels_last_same_numbers(model):
    x = torch.randn(1, 4, 16, 16, 16)
    ref = model.eval()(x, sample=False).recon
    model.channels_last()
    assert model.encoder.features[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(model(x, sample=False).recon, ref, rtol=1e-4, atol=1e-4)

def test_sizes_scale_with_img_size():
    assert mri_model_sizes(128)["bottleneck_size"] == 8 and mri_model_sizes(128)["n_down"] == 4
    assert mri_model_sizes(64)["n_down"] == 3 and mri_model_sizes(16)["bottleneck_size"] == 4
    with torch.device("meta"):
        full = BaselineVAE()
        assert full.encoder.features(torch.empty(1, 4, 128, 128, 128)).shape[2:] == (8, 8, 8)
        assert full.z_dim == 128 and VAESBD().decoder.body[0].in_channels == 128 + 3
    small, big = BaselineVAE(**KW), BaselineVAE(img_size=32, z_dim=6, base_channels=4)
    assert small.n_params < big.n_params

def test_build_model_choice_and_extra_keys():
    assert type(build_model(dict(use_sbd=True, epochs=3, lr=1e-3, **KW))) is VAESBD
    assert type(build_model(dict(**KW))) is BaselineVAE

def test_bad_inputs_name_the_shape(model):
    with pytest.raises(ValueError, match=r"\[B, 4, 16, 16, 16\], got \(2, 3, 16, 16, 16\)"): model(torch.randn(2, 3, 16, 16, 16))
    with pytest.raises(ValueError, match=r"got \(2, 4, 8, 8, 8\)"): model(torch.randn(2, 4, 8, 8, 8))
    with pytest.raises(ValueError, match=r"\[B, 6\]"): model.decode(torch.randn(2, 5))
    with pytest.raises(ValueError, match="img_size=48"): build_model(dict(img_size=48))

def test_soft_floor():
    x = torch.tensor([-50., -6., 0., 30.])
    y = soft_floor(x, -6.)
    assert (y >= -6).all() and abs(y[-1] - 30) < 1e-5 and abs(y[0] + 6) < 1e-5
