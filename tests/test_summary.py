"""model_summary on each family's model (small sizes): totals, the ABR transformer's size, the Mermaid diagram."""
import re
import pytest, torch
from vae_notebooks.summary import model_summary
from vae_notebooks.mri.models import BaselineVAE, VAESBD
from vae_notebooks.mri.ode import LatentODE, LatentODEBatch
from vae_notebooks.abr.models import CVAE, TransformerCVAE
from vae_notebooks.media.models import ConditionalMediaVAE
from vae_notebooks.magnetics.detector import build_model as magnetics_model

torch.set_num_threads(1)
B = 2

def _abr_inputs(with_peaks):
    x = [torch.randn(B, 200), torch.randn(B, 8)]
    return x + [torch.randn(B, 6), torch.ones(B, 6)] if with_peaks else x

# name -> (model factory, model_summary kwargs factory)
CASES = {
    "mri_baseline": (lambda: BaselineVAE(img_size=16, z_dim=8, base_channels=4, max_channels=8), lambda: dict(input_shape=(B, 4, 16, 16, 16), depth=2)),
    "mri_sbd": (lambda: VAESBD(img_size=16, z_dim=8, base_channels=4, max_channels=8), lambda: dict(input_shape=(B, 4, 16, 16, 16), depth=3)),
    "growth_ode": (lambda: LatentODEBatch(LatentODE(6, hidden=8, n_subjects=B)),
                   lambda: dict(inputs=[torch.arange(B), torch.tensor([[0.0, 0.5, 1.0]]).repeat(B, 1), torch.ones(B, 3), torch.randn(B, 6)], depth=3)),
    "abr_cvae": (lambda: CVAE(latent_dim=4, hidden_dims=(32, 16)), lambda: dict(inputs=_abr_inputs(False))),
    "abr_cvae_joint": (lambda: CVAE(latent_dim=4, hidden_dims=(32, 16), joint_generation=True), lambda: dict(inputs=_abr_inputs(True), depth=2)),
    "abr_transformer": (lambda: TransformerCVAE(d_model=16, n_heads=2, n_layers=1, dim_feedforward=32, latent_dim=4),
                        lambda: dict(inputs=_abr_inputs(False), peaks=torch.randn(B, 6), mask=torch.ones(B, 6), depth=2)),
    "media": (lambda: ConditionalMediaVAE(6, 5, latent_dim=2, hidden_dims=(8, 4)), lambda: dict(inputs=[torch.rand(B, 6), torch.randn(B, 5)])),
    "magnetics_conv": (lambda: magnetics_model("conv", n_channels=3, window=16, latent_dim=2, hidden=(4, 8)), lambda: dict(input_shape=(B, 3, 16), depth=2)),
    "magnetics_mlp": (lambda: magnetics_model("mlp", n_channels=3, window=16, latent_dim=2, hidden=(8, 4)), lambda: dict(input_shape=(B, 3, 16))),
}

@pytest.mark.parametrize("name", list(CASES))
def test_summary_each_family(name):
    make, kwargs = CASES[name]
    torch.manual_seed(0)
    model = make()
    s = model_summary(model, **kwargs())
    n = sum(p.numel() for p in model.parameters())
    assert s.total_params == n and s.trainable_params == n
    # every parameter is in exactly one block or listed as held directly by the model
    assert int(s.table.params.sum()) + sum(s.direct_params.values()) == n
    assert (s.table.output != "not called").all(), s.table
    assert s.saved_bytes > 0 and s.activation_bytes > 0
    m = s.mermaid()
    assert m.startswith("flowchart")
    nodes = re.findall(r"^  (b\d+)\[", m, re.M)
    assert nodes == [f"b{i}" for i in range(len(s.table))]          # one node per block, in order
    assert len(re.findall(r"-->", m)) == len(s.table)                 # input -> b0 -> ... -> last
    md = s._repr_markdown_()
    assert "```mermaid\nflowchart" in md and md.count("\n| ") == len(s.table) + 1

def test_transformer_default_size():
    model = TransformerCVAE()
    B = 2
    s = model_summary(model, inputs=_abr_inputs(False), peaks=torch.randn(B, 6), mask=torch.ones(B, 6), depth=2)
    assert 0.4e6 < s.total_params < 0.7e6
    assert s.total_params == sum(p.numel() for p in model.parameters())
    blocks = list(s.table.block)   # both layers of the encoder and of the decoder appear as blocks (whatever their inner names)
    for part in ("encoder", "decoder"):
        assert {b.split(".")[1] for b in blocks if b.startswith(part + ".")} >= {"0", "1"} or \
               {b.split(".")[2] for b in blocks if b.startswith(part + ".layers.")} >= {"0", "1"}, (part, blocks)
    assert int(s.table.params.sum()) + sum(s.direct_params.values()) == s.total_params
    assert {"pos", "queries"} <= set(s.direct_params)

def test_meta_device_matches_real():
    "The 128³ numbers of the gallery come from the meta device: it must count what real tensors count."
    kw = dict(img_size=16, z_dim=8, base_channels=4, max_channels=8)
    torch.manual_seed(0)
    real = model_summary(BaselineVAE(**kw), (B, 4, 16, 16, 16), depth=2)
    with torch.device("meta"): meta = model_summary(BaselineVAE(**kw), (B, 4, 16, 16, 16), depth=2)
    assert real.saved_bytes == meta.saved_bytes and real.activation_bytes == meta.activation_bytes
    assert list(real.table.params) == list(meta.table.params)

def test_saved_bytes_scale_with_batch():
    "Activations grow linearly with the batch; parameters do not."
    with torch.device("meta"):
        model = BaselineVAE(img_size=32, z_dim=16, base_channels=8)
        s1, s2 = (model_summary(model, (b, 4, 32, 32, 32), depth=2) for b in (1, 2))
    assert s1.total_params == s2.total_params
    assert 1.9 < s2.activation_bytes / s1.activation_bytes <= 2.0
    assert 1.5 < s2.saved_bytes / s1.saved_bytes <= 2.0

def test_bad_call():
    with pytest.raises(ValueError, match="input_shape"): model_summary(CVAE())
    with pytest.raises(ValueError, match="static"): model_summary(CVAE(), inputs=[torch.randn(B, 200), torch.randn(B, 3)])
