"""Engine checks that can fail: gradient clipping takes effect, the gradient scaler survives a checkpoint, load_model
refuses classes outside the registry (the prefix bypass included), run folders are checked before work and marked
until finished, and the best epoch's weights are what a run keeps."""
import json, os, warnings
from pathlib import Path
import pytest
import torch
from fastai.callback.core import Callback

from vae_notebooks.core import set_seed
from vae_notebooks.learner import vae_dataloaders, vae_learner, save_model, load_model, start_run, finish_run
from vae_notebooks.losses import VAELoss
from vae_notebooks.models.mlp import MLPVAE


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _dls(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)*3
    ds = [(r, r) for r in x]
    return vae_dataloaders(ds[:96], ds[96:], bs=16, device="cpu", seed=0)


class GradNorms(Callback):
    "The total gradient norm that the optimizer step sees (after the callbacks of before_step, e.g. clipping)."
    order = 50
    def before_fit(self): self.norms = []
    def before_step(self):
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.learn.model.parameters() if p.grad is not None]))))


@pytest.mark.parametrize("clip", [None, 0.05])
def test_gradient_clipping_takes_effect(clip):
    set_seed(0)
    rec = GradNorms()
    learn = vae_learner(_dls(), MLPVAE(6, 2, hidden_dims=(16,)), VAELoss(), grad_clip=clip, cbs=[rec], progress=False)
    learn.fit(2)
    assert len(rec.norms) == 12
    if clip is None: assert min(rec.norms) > 0.5           # the raw gradients of this loss are large ...
    else: assert max(rec.norms) <= clip*(1 + 1e-4)          # ... and every step sees them clipped to the limit


def test_grad_scaler_state_is_checkpointed(tmp_path):
    "fp16 resume: the scaler's scale and growth tracker come back (a CPU GradScaler stands in for MixedPrecision's CUDA one)."
    set_seed(0)
    learn = vae_learner(_dls(), MLPVAE(6, 2, hidden_dims=(16,)), VAELoss(), progress=False, checkpoint=tmp_path/"ck")
    learn.scaler = torch.amp.GradScaler("cpu", init_scale=512., growth_interval=7)
    p = torch.nn.Parameter(torch.ones(2)); opt = torch.optim.SGD([p], lr=0.1)
    learn.scaler.scale((p*float("inf")).sum()).backward(); learn.scaler.step(opt); learn.scaler.update()   # an overflow halves it
    assert learn.scaler.get_scale() == 256.
    learn.fit(1)
    meta = json.loads((tmp_path/"ck"/"trainer.json").read_text())
    assert "grad_scaler" in meta
    fresh = vae_learner(_dls(), MLPVAE(6, 2, hidden_dims=(16,)), VAELoss(), progress=False)
    fresh.scaler = torch.amp.GradScaler("cpu", init_scale=1.)
    fresh.fit(2, start_epoch=fresh.resume(tmp_path/"ck"))
    assert fresh.scaler.get_scale() == 256. and fresh.scaler.state_dict()["growth_interval"] == 7


def test_load_model_refuses_classes_outside_the_registry(tmp_path):
    m = MLPVAE(6, 2, hidden_dims=(8,))
    save_model(m, tmp_path/"ok")
    assert type(load_model(tmp_path/"ok")) is MLPVAE
    for cls, cfg in (("vae_notebooks.learner:torch.nn.Linear", dict(in_features=2, out_features=2)),   # the prefix bypass
                     ("vae_notebooks.learner:VAELearner", {}), ("os:system", {}), ("builtins:eval", {})):
        d = tmp_path/cls.replace(":", "_")
        d.mkdir()
        meta = json.loads((tmp_path/"ok"/"model.json").read_text()); meta.update({"class": cls, "config": cfg})
        (d/"model.json").write_text(json.dumps(meta)); (d/"model.safetensors").write_bytes((tmp_path/"ok"/"model.safetensors").read_bytes())
        with pytest.raises(ValueError, match=f"{d/'model.json'}: refusing to load model class '{cls}'"): load_model(d)


def test_every_family_model_class_is_registered():
    "Each model class a family saves with save_model must be loadable: it is in the registry and resolves."
    from vae_notebooks.saving import MODEL_CLASSES, _resolve_class, class_path
    for name in ("MLPVAE", "MLPCVAE", "BaselineVAE", "VAESBD", "Exp3VAE", "LatentODE", "CVAE", "TransformerCVAE",
                 "ConditionalMediaVAE", "ConvVAE1d"):
        (path,) = [p for p in MODEL_CLASSES if p.endswith(f":{name}")]
        assert class_path(_resolve_class(path, "test")) == path


def test_run_folder_checks_and_markers(tmp_path):
    (tmp_path/"file").write_text("x")
    with pytest.raises(NotADirectoryError, match=f"out_dir {tmp_path/'file'} exists and is not a folder"): start_run(tmp_path/"file", {})
    assert (tmp_path/"file").read_text() == "x"
    with pytest.raises(OSError, match=f"out_dir {tmp_path/'file'/'run'} cannot be created"): start_run(tmp_path/"file"/"run", {})
    run = start_run(tmp_path/"run", dict(lr=0.1))
    assert (run/"RUN_INCOMPLETE").exists() and not (run/"summary.json").exists()
    finish_run(run, dict(family="toy", verdict=None, verdict_reasons=[], best_epoch=0, headline="h", comparison=[], report=[]))
    assert not (run/"RUN_INCOMPLETE").exists()
    s = json.loads((run/"summary.json").read_text())
    assert s["family"] == "toy" and "finished_at" in s
    if os.geteuid() != 0:   # root writes anywhere
        ro = tmp_path/"ro"; ro.mkdir(); ro.chmod(0o500)
        with pytest.raises(PermissionError, match=str(ro)): start_run(ro, {})


def test_fit_ends_with_the_best_epochs_weights(tmp_path):
    "A learning rate that blows the run up after a good start: the model after fit is the best epoch's, saved and in memory."
    set_seed(0)
    class LrJump(Callback):
        def before_epoch(self):
            if self.epoch == 3: self.learn.opt.set_hyper("lr", 0.5)
    learn = vae_learner(_dls(), MLPVAE(6, 2, hidden_dims=(16,)), VAELoss(), lr=1e-2, progress=False, save_best=tmp_path/"best",
                        csv_path=tmp_path/"metrics.csv", cbs=[LrJump()])
    with warnings.catch_warnings(): warnings.simplefilter("ignore"); learn.fit(6)
    import pandas as pd
    h = pd.read_csv(tmp_path/"metrics.csv")
    best = int(h.valid_objective.idxmin())
    assert best < 5 and h.valid_objective.iloc[-1] > h.valid_objective.min()   # the last epoch is not the best
    assert (learn.best_epoch, learn.best_value) == (best, pytest.approx(h.valid_objective.min()))
    saved = load_model(tmp_path/"best")
    for k, v in saved.state_dict().items(): assert torch.equal(learn.model.state_dict()[k], v), k
    assert json.loads((tmp_path/"best"/"model.json").read_text())["extra"]["epoch"] == best
