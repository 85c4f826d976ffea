"""Engine overhead: the same MLP VAE and data trained (a) with `vae_learner` and all its callbacks and
(b) with a plain PyTorch loop. Prints samples/s for both and their ratio; saves benchmarks/results/engine_<device>.json.

    python benchmarks/engine.py                      # CPU, batch 256
    python benchmarks/engine.py --device cuda        # GPU, when there is one
    python benchmarks/engine.py --epochs 3 --repeats 5 --threads 2   # default: 1 thread

Both arms do the same work per epoch: a shuffled pass over the training set with an Adam step per batch of
256, then a pass over the validation set computing the loss. Arm (a) additionally runs every engine
callback: loss-component logging (train and valid), the beta schedule, free bits, the DIP warm-up, the
post-validation diagnostics (active units, KL per dimension, the two collapse probes), gradient clipping,
early stopping, the NaN guard, CSV logging, best-model saving and per-epoch resumable checkpoints.
The arms alternate and the best of `--repeats` timings of each is kept (the machine may be shared).
"""
from __future__ import annotations
import argparse, json, os, platform, tempfile, time
from pathlib import Path
import torch
from vae_notebooks.core import set_seed, default_device
from vae_notebooks.losses import VAELoss
from vae_notebooks.schedules import linear_warmup
from vae_notebooks.models.mlp import MLPVAE
from vae_notebooks.learner import vae_dataloaders, vae_learner

INPUT_DIM, LATENT_DIM, HIDDEN = 64, 8, (256, 128)


class PairDataset(torch.utils.data.Dataset):
    "Items (x, x) from a [N, D] tensor: the data set layout every VAE in the package uses."
    def __init__(self, x): self.x = x
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return self.x[i], self.x[i]


def make_data(n_train, n_valid, seed=0):
    g = torch.Generator().manual_seed(seed)
    factors = torch.rand(n_train + n_valid, LATENT_DIM, generator=g)
    mix = torch.randn(LATENT_DIM, INPUT_DIM, generator=g)
    x = torch.tanh(factors @ mix) + 0.05*torch.randn(n_train + n_valid, INPUT_DIM, generator=g)
    return PairDataset(x[:n_train]), PairDataset(x[n_train:])


def model_and_loss():
    return MLPVAE(INPUT_DIM, LATENT_DIM, hidden_dims=HIDDEN), VAELoss(beta=1.0, free_bits=0.05, lambda_od=0., lambda_d=0.)


def run_fastai(train_ds, valid_ds, bs, epochs, device, out_dir, progress=False):
    set_seed(0)
    model, loss = model_and_loss()
    dls = vae_dataloaders(train_ds, valid_ds, bs=bs, device=device, seed=0)
    learn = vae_learner(dls, model, loss, beta_schedule=lambda t: linear_warmup(t, 1), free_bits=0.05,
                        dip=dict(lambda_od=1., lambda_d=1., lambda_start_epoch=0, lambda_cov_annealing_epochs=1),
                        grad_clip=10., patience=100, csv_path=out_dir/"metrics.csv", save_best=out_dir/"best",
                        checkpoint=out_dir/"ckpt", progress=progress, lr=1e-3)
    learn.fit(1)                                           # warm-up (allocations, first-call costs)
    learn.create_opt()
    with learn.no_logging():
        t, c = time.perf_counter(), time.process_time(); learn.fit(epochs)
        dt, dc = time.perf_counter() - t, time.process_time() - c
    return dt, dc, learn


def run_plain(train_ds, valid_ds, bs, epochs, device):
    set_seed(0)
    model, loss = model_and_loss()
    model.to(device)
    loss.lambda_od = loss.lambda_d = 1.0                   # same loss terms as arm (a) once warmed up
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=bs, shuffle=True, drop_last=True)
    valid_dl = torch.utils.data.DataLoader(valid_ds, batch_size=bs)

    def epoch():
        model.train()
        for x, y in train_dl:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            total, _ = loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.)
            opt.step()
        model.eval()
        tot = torch.zeros((), device=device)
        with torch.no_grad():
            for x, y in valid_dl:
                x, y = x.to(device), y.to(device)
                tot += loss(model(x), y)[0]*len(x)
        return (tot/len(valid_ds)).item()

    epoch()                                                # warm-up
    if device.type == "cuda": torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    for _ in range(epochs): last = epoch()
    if device.type == "cuda": torch.cuda.synchronize()
    return time.perf_counter() - t, time.process_time() - c, last


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--bs", type=int, default=256)
    p.add_argument("--n-train", type=int, default=16384)
    p.add_argument("--n-valid", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default); 1 keeps a shared machine's timings stable")
    p.add_argument("--out", default=None, help="JSON results path (default benchmarks/results/engine_<device>.json)")
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    device = default_device(a.device)
    train_ds, valid_ds = make_data(a.n_train, a.n_valid)
    tf, tp, cf, cp = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            dt, dc, learn = run_fastai(train_ds, valid_ds, a.bs, a.epochs, device, Path(tmp)/f"run{r}"); tf.append(dt); cf.append(dc)
            dt, dc, _ = run_plain(train_ds, valid_ds, a.bs, a.epochs, device); tp.append(dt); cp.append(dc)
            print(f"repeat {r}: vae_learner {tf[-1]:.2f} s wall / {cf[-1]:.2f} s CPU, plain loop {tp[-1]:.2f} s wall / {cp[-1]:.2f} s CPU")
        names = list(learn.recorder.metric_names)
    n = (a.n_train//a.bs)*a.bs*a.epochs
    # on a GPU the wall clock is what counts; on a (possibly shared) CPU with one thread, process CPU time is the
    # stable measure (it does not count time spent waiting for a core); both are reported
    cpu_based = device.type == "cpu"
    sps_f, sps_p = (n/min(cf), n/min(cp)) if cpu_based else (n/min(tf), n/min(tp))
    wall_f, wall_p = n/min(tf), n/min(tp)
    # the arms alternate, so each repeat is a pair run seconds apart: the median of the per-pair ratios is the
    # statistic least disturbed by a noisy machine (best-of-N favours whichever arm got the luckiest moment)
    pairs = [p_/f_ for f_, p_ in zip(cf if cpu_based else tf, cp if cpu_based else tp)]
    median_ratio = sorted(pairs)[len(pairs)//2] if len(pairs) % 2 else sum(sorted(pairs)[len(pairs)//2 - 1:len(pairs)//2 + 1])/2
    res = dict(device=str(device), device_name=torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
               torch_threads=torch.get_num_threads(), batch_size=a.bs, n_train=a.n_train, n_valid=a.n_valid, epochs=a.epochs,
               repeats=a.repeats, model=f"MLPVAE({INPUT_DIM}, {LATENT_DIM}, hidden_dims={HIDDEN})",
               timing="process CPU time (1 thread)" if cpu_based else "wall clock",
               samples_per_s_vae_learner=round(sps_f, 1), samples_per_s_plain=round(sps_p, 1),
               ratio_vae_learner_over_plain=round(sps_f/sps_p, 4), overhead_pct=round(100*(1 - sps_f/sps_p), 2),
               paired_ratios=[round(r, 4) for r in pairs], median_paired_ratio=round(median_ratio, 4),
               median_paired_overhead_pct=round(100*(1 - median_ratio), 2),
               wall_samples_per_s_vae_learner=round(wall_f, 1), wall_samples_per_s_plain=round(wall_p, 1),
               wall_ratio=round(wall_f/wall_p, 4),
               wall_times_vae_learner_s=[round(t, 3) for t in tf], wall_times_plain_s=[round(t, 3) for t in tp],
               cpu_times_vae_learner_s=[round(t, 3) for t in cf], cpu_times_plain_s=[round(t, 3) for t in cp],
               load_average=list(os.getloadavg()),
               logged_columns=names, torch_version=torch.__version__, date=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(f"[{res['timing']}, best of {a.repeats}]\nvae_learner + all callbacks: {sps_f:,.0f} samples/s\nplain PyTorch loop:          {sps_p:,.0f} samples/s\n"
          f"ratio: {sps_f/sps_p:.3f} (overhead {100*(1 - sps_f/sps_p):.1f}%; target: within 15% at batch 256 on CPU)\n"
          f"median of the {len(pairs)} paired ratios: {median_ratio:.3f} (overhead {100*(1 - median_ratio):.1f}%)\n"
          f"wall clock: {wall_f:,.0f} vs {wall_p:,.0f} samples/s, ratio {wall_f/wall_p:.3f} (load average {os.getloadavg()[0]:.1f})")
    out = Path(a.out) if a.out else Path(__file__).parent/"results"/f"engine_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
