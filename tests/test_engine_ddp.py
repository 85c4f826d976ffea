"""DDP checks for the engine: 2 CPU processes, gloo backend, launched with torchrun.

The pytest function launches this very file with `python -m torch.distributed.run --standalone --nproc_per_node=2`;
each rank runs `worker()` and writes its results as JSON, which the test then compares.
"""
import json, os, subprocess, sys
from pathlib import Path
import pytest
import torch


def _full_batch(seed=0, sizes=(3, 5), in_dim=4, latent=3):
    "A linear encoder and a batch of len sum(sizes), the same on every rank."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), in_dim, generator=g)
    enc = torch.nn.Linear(in_dim, 2*latent)
    with torch.no_grad():
        enc.weight.copy_(torch.randn(enc.weight.shape, generator=g)); enc.bias.copy_(torch.randn(enc.bias.shape, generator=g))
    return x, enc


def worker(out_dir):
    import torch.distributed as dist
    from vae_notebooks.callbacks import gather_with_grad, gather_mu_logvar
    from vae_notebooks.losses import dip_vae_penalty, VAELoss
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    res = dict(rank=rank, world=world)

    # 1. the gathered penalty (unequal shards: 3 and 5 rows) equals the full-batch penalty, and so does its gradient
    sizes = (3, 5)
    x, enc = _full_batch(sizes=sizes)
    start = sum(sizes[:rank]); xl = x[start:start + sizes[rank]]
    ddp_enc = torch.nn.parallel.DistributedDataParallel(enc)
    mu, logvar = ddp_enc(xl).chunk(2, dim=1)
    mu_all, lv_all = gather_mu_logvar(mu, logvar)
    res["gathered_rows"] = int(mu_all.shape[0])
    pen = dip_vae_penalty(mu_all, lv_all, lambda_od=2.0, lambda_d=0.5)
    pen.backward()
    res["penalty_gathered"] = pen.item()
    res["grad_gathered"] = [p.grad.flatten().tolist() for p in enc.parameters()]
    # the same on one process, full batch
    x1, enc1 = _full_batch(sizes=sizes)
    mu1, lv1 = enc1(x1).chunk(2, dim=1)
    pen1 = dip_vae_penalty(mu1, lv1, lambda_od=2.0, lambda_d=0.5)
    pen1.backward()
    res["penalty_single"] = pen1.item()
    res["grad_single"] = [p.grad.flatten().tolist() for p in enc1.parameters()]
    # the local-shard-only penalty differs (that is why we gather)
    res["penalty_local"] = dip_vae_penalty(mu.detach(), logvar.detach(), 2.0, 0.5).item()

    # 2. a short DDP fit through fastai's distrib_ctx (Accelerate), with the DIP penalty on
    from vae_notebooks.core import set_seed
    from vae_notebooks.learner import vae_dataloaders, vae_learner
    from vae_notebooks.models.mlp import MLPVAE
    set_seed(0)
    g = torch.Generator().manual_seed(0)
    f = torch.rand(128, 2, generator=g)
    data = torch.cat([f, f.sin(), f**2], 1)
    ds = [(d, d) for d in data]
    dls = vae_dataloaders(ds[:96], ds[96:], bs=16, device="cpu", seed=0)
    learn = vae_learner(dls, MLPVAE(6, 2, hidden_dims=(16,)), VAELoss(), progress=False, lr=3e-3,
                        dip=dict(lambda_od=5., lambda_d=1.), diagnostics=True)
    with learn.distrib_ctx(sync_bn=False):
        learn.fit(2)
    res["fit_names"] = list(learn.recorder.metric_names)
    res["fit_values"] = [[v if isinstance(v, (int, float)) else str(v) for v in row] for row in learn.recorder.values]
    res["gather_hook_set"] = learn.loss_func.loss.gather is gather_mu_logvar
    res["params"] = torch.cat([p.detach().flatten() for p in learn.model.parameters()]).tolist()
    res["n_train_batches"] = learn.train_iter // 2  # training batches per epoch on this rank
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(res))
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_gloo_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VAE_NOTEBOOKS_DATA": str(tmp_path/"data"), "VAE_NOTEBOOKS_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__, str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = [json.loads((tmp_path/f"rank{i}.json").read_text()) for i in range(2)]
    for rr in res:
        assert rr["world"] == 2 and rr["gathered_rows"] == 8
        # the all-gathered penalty is the full-batch penalty ...
        assert rr["penalty_gathered"] == pytest.approx(rr["penalty_single"], rel=1e-5)
        # ... and after DDP averages the gradients, so is its gradient
        for a, b in zip(rr["grad_gathered"], rr["grad_single"]):
            assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-5)
    assert res[0]["penalty_local"] != pytest.approx(res[0]["penalty_single"], rel=1e-3)
    # the DDP fit ran on both ranks, on half the batches each, with the gather hook, and kept the replicas equal
    for rr in res:
        assert rr["gather_hook_set"]
        assert len(rr["fit_values"]) == 2
        row = dict(zip(rr["fit_names"][1:], rr["fit_values"][-1]))
        assert all(isinstance(row[k], float) and row[k] == row[k] for k in ("train_loss", "valid_loss", "train_recon", "valid_cov_penalty"))
        assert row["train_cov_penalty"] > 0
    assert res[0]["n_train_batches"] == res[1]["n_train_batches"] == 3   # 96 samples / 16 per batch / 2 ranks
    assert torch.allclose(torch.tensor(res[0]["params"]), torch.tensor(res[1]["params"]))
    # metrics reduced across ranks: both ranks log the same component means
    v0, v1 = res[0]["fit_values"][-1], res[1]["fit_values"][-1]
    names = res[0]["fit_names"][1:]
    for k in ("train_recon", "valid_recon", "valid_kl_raw", "au_count", "recon_mean_mse"):
        i = names.index(k)
        assert v0[i] == pytest.approx(v1[i], rel=1e-6), k


if __name__ == "__main__":
    worker(sys.argv[1])
