"""The NaN guard under DDP: 2 CPU processes (gloo) launched with torchrun.

Each rank runs `worker()`; rank 1 alone produces (a) one NaN loss, (b) one finite loss with NaN gradients,
(c) NaN losses from some step on. Both ranks must skip the same steps, keep identical replicas, never step a
NaN gradient into the weights, and in (c) stop together with a clear error (no hang until the process-group
timeout) leaving a readable checkpoint. The pytest function checks the JSON each rank writes.
"""
import json, os, subprocess, sys, time, warnings
from pathlib import Path
import pytest
import torch


class RankFault:
    "VAELoss, except on rank `rank`: training calls in `nan_calls` give a NaN loss, in `nangrad_calls` a finite loss with NaN gradients."
    def __init__(self, rank, nan_calls=(), nangrad_calls=(), nan_from=None):
        from vae_notebooks.losses import VAELoss
        self.inner, self.rank, self.calls = VAELoss(), rank, 0
        self.nan_calls, self.nangrad_calls, self.nan_from = set(nan_calls), set(nangrad_calls), nan_from
    def __call__(self, out, x):
        import torch.distributed as dist
        total, comps = self.inner(out, x)
        if not torch.is_grad_enabled(): return total, comps          # validation
        self.calls += 1
        if dist.get_rank() != self.rank: return total, comps
        if self.calls in self.nan_calls or (self.nan_from is not None and self.calls >= self.nan_from):
            total = total*float("nan")
        if self.calls in self.nangrad_calls:
            total = total + 0.*torch.sqrt((out["mu"] - out["mu"].detach()).abs()).sum()
        return total, comps


def worker(out_dir):
    import torch.distributed as dist
    from fastai.callback.core import Callback
    from vae_notebooks.core import set_seed
    from vae_notebooks.learner import vae_dataloaders, vae_learner
    from vae_notebooks.callbacks import read_checkpoint
    from vae_notebooks.models.mlp import MLPVAE
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    g = torch.Generator().manual_seed(0)
    f = torch.rand(192, 2, generator=g)
    data = torch.cat([f, f.sin(), f**2], 1)
    ds = [(d, d) for d in data]

    class Snap(Callback):
        "Parameters at the start of every training batch."
        order = 1
        def before_fit(self): self.snaps = []
        def before_batch(self):
            if self.training: self.snaps.append(torch.cat([p.detach().flatten() for p in self.learn.model.parameters()]).clone())

    def run(loss, epochs, **kw):
        set_seed(0)
        dls = vae_dataloaders(ds[:128], ds[128:], bs=16, device="cpu", seed=0)   # 4 training steps per epoch and rank
        snap = Snap()
        learn = vae_learner(dls, MLPVAE(6, 2, hidden_dims=(16,)), loss, progress=False, lr=3e-3, cbs=[snap], **kw)
        err = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                with learn.distrib_ctx(sync_bn=False): learn.fit(epochs)
            except FloatingPointError as e: err = str(e)
        params = torch.cat([p.detach().flatten() for p in learn.model.parameters()])
        return learn, snap.snaps, params, err

    res = dict(rank=rank)
    # (a) one NaN loss on rank 1 (its 3rd training step): both ranks skip that step and go on
    learn, snaps, params, err = run(RankFault(1, nan_calls={3}), 2)
    res["a"] = dict(skips=learn.nan_skips, err=err, steps=len(snaps), params=params.tolist(),
                    step3_unchanged=bool(torch.equal(snaps[2], snaps[3])), finite=bool(torch.isfinite(params).all()))
    # (b) a finite loss with NaN gradients on rank 1 (its 2nd step): not stepped into the weights on either rank
    learn, snaps, params, err = run(RankFault(1, nangrad_calls={2}), 1)
    res["b"] = dict(skips=learn.nan_skips, err=err, step2_unchanged=bool(torch.equal(snaps[1], snaps[2])),
                    step1_changed=not torch.equal(snaps[0], snaps[1]), params=params.tolist(),
                    finite=bool(torch.isfinite(params).all()))
    # (c) NaN on rank 1 from its 6th step on: after 3 consecutive skips both ranks stop with an error at the same step
    t = time.time()
    learn, snaps, params, err = run(RankFault(1, nan_from=6), 4, nan_max_skips=3, checkpoint=Path(out_dir)/"ck")
    res["c"] = dict(skips=learn.nan_skips, err=err, stop=learn.nan_stop and {k: learn.nan_stop[k] for k in ("epoch", "iter", "ranks")},
                    seconds=time.time() - t, finite=bool(torch.isfinite(params).all()), params=params.tolist())
    if rank == 0:
        tensors, meta = read_checkpoint(Path(out_dir)/"ck")
        res["c"]["checkpoint_epochs_done"] = meta["epochs_done"]
        res["c"]["checkpoint_finite"] = all(bool(torch.isfinite(v).all()) for k, v in tensors.items() if k.startswith("model."))
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(res))
    dist.barrier()
    dist.destroy_process_group()


def test_nan_guard_acts_on_all_ranks(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VAE_NOTEBOOKS_DATA": str(tmp_path/"data"), "VAE_NOTEBOOKS_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__, str(tmp_path)]
    t = time.time()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    wall = time.time() - t
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = [json.loads((tmp_path/f"rank{i}.json").read_text()) for i in range(2)]
    print(f"DDP NaN-guard test: {wall:.1f} s wall for 3 scenarios on 2 gloo ranks; scenario (c) stopped after "
          f"{res[0]['c']['seconds']:.2f} s on rank 0")
    for rr in res:
        # (a) one skipped step on both ranks, training went on, the skipped step left the weights alone
        assert rr["a"]["skips"] == 1 and rr["a"]["err"] is None and rr["a"]["steps"] == 8 and rr["a"]["finite"]
        assert rr["a"]["step3_unchanged"]
        # (b) the finite loss with NaN gradients was not stepped in; the step before it was
        assert rr["b"]["skips"] == 1 and rr["b"]["step2_unchanged"] and rr["b"]["step1_changed"] and rr["b"]["finite"]
        # (c) both ranks stop at the same step with the error, naming rank 1
        assert rr["c"]["skips"] == 3 and "3 consecutive training steps" in rr["c"]["err"], rr["c"]
        assert rr["c"]["stop"] == {"epoch": 1, "iter": 3, "ranks": [1]} and rr["c"]["finite"]
    for k in ("a", "b", "c"):
        assert res[0][k]["params"] == res[1][k]["params"], k          # the replicas stayed identical
    # the last good checkpoint (epoch 0, written before the faults) is readable and finite
    assert res[0]["c"]["checkpoint_epochs_done"] == 1 and res[0]["c"]["checkpoint_finite"]


if __name__ == "__main__":
    worker(sys.argv[1])
