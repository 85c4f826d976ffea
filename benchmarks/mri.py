"""MRI VAE training speed and memory: the engine (`vae_learner`) vs a plain PyTorch loop, in one run.

For each volume size, batch size (1, 2, 4) and precision (fp32, bf16 autocast; plus torch.compile with
--compile) it trains the MRI model for a few steps on random 4-channel volumes and reports training
volumes/s, ms/step and peak memory (CUDA: torch.cuda.max_memory_allocated; CPU: the process's peak RSS,
which only grows). Results are printed and saved to benchmarks/results/mri_<device>.json.

    python benchmarks/mri.py                        # CUDA: 128³; CPU: 32³ and 64³
    python benchmarks/mri.py --sizes 128 --compile  # add torch.compile rows
    python benchmarks/mri.py --device cpu --sizes 32 64 --threads 1
"""
from __future__ import annotations
import argparse, json, platform, resource, time
from pathlib import Path
import torch
from vae_notebooks.core import set_seed, default_device, resolve_precision, atomic_write_json
from vae_notebooks.losses import VAELoss
from vae_notebooks.mri.models import build_model

class RandomVolumes(torch.utils.data.Dataset):
    "`n` items `(x, x)` cycling over a small pool of random [4, S, S, S] volumes."
    def __init__(self, n, size, pool=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.n, self.pool = n, torch.randn(pool, 4, size, size, size, generator=g)
    def __len__(self): return self.n
    def __getitem__(self, i): x = self.pool[i % len(self.pool)]; return x, x

def _sync(device):
    if device.type == "cuda": torch.cuda.synchronize()

def _peak_reset(device):
    if device.type == "cuda": torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()

def _peak_mb(device):
    if device.type == "cuda": return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

def make_model(size, args, device, channels_last):
    set_seed(0)
    model = build_model(dict(img_size=size, z_dim=args.z_dim, base_channels=args.base_channels, use_sbd=args.sbd)).to(device)
    if channels_last: model.channels_last()
    return model

def plain_loop(size, bs, precision, compiled, args, device):
    "The baseline: a bare PyTorch training loop over the same data, model, loss and optimizer."
    model = make_model(size, args, device, args.channels_last and device.type == "cuda")
    step_model = torch.compile(model) if compiled else model
    loss_fn, opt = VAELoss(recon="mse", reduction="mean", free_bits=0.1), torch.optim.Adam(model.parameters(), lr=1e-4)
    dl = torch.utils.data.DataLoader(RandomVolumes(bs*(args.steps + args.warmup), size), batch_size=bs, shuffle=True,
                                     pin_memory=device.type == "cuda", drop_last=True)
    dtype = resolve_precision("bf16" if precision == "bf16" else "fp32", device)  # as the engine does
    times = []
    for xb, yb in dl:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = step_model(xb)
            loss, _ = loss_fn(out, yb)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        _sync(device); times.append(time.perf_counter())
    return times, model

def engine_loop(size, bs, precision, compiled, args, device):
    "The same training through `vae_learner` (fastai Learner + VAE callbacks), timed per batch."
    from fastai.callback.core import Callback
    from vae_notebooks.learner import vae_dataloaders, vae_learner
    class Timer(Callback):
        order = 99
        def before_fit(self): self.times = []
        def after_batch(self):
            if self.training: _sync(device); self.times.append(time.perf_counter())
    model = make_model(size, args, device, args.channels_last and device.type == "cuda")
    dls = vae_dataloaders(RandomVolumes(bs*(args.steps + args.warmup), size), None, bs=bs, device=device, seed=0, drop_last=True)
    timer = Timer()
    learn = vae_learner(dls, model, VAELoss(recon="mse", reduction="mean"), free_bits=0.1, lr=1e-4, diagnostics=False,
                        amp="bf16" if precision == "bf16" else "fp32", compile=compiled, progress=False, cbs=[timer])
    learn.logger = lambda *a: None
    learn.fit(1, 1e-4)
    return timer.times, model

def bench(loop, size, bs, precision, compiled, args, device):
    _peak_reset(device)
    t0 = time.perf_counter()
    times, model = (engine_loop if loop == "engine" else plain_loop)(size, bs, precision, compiled, args, device)
    steps = len(times) - args.warmup
    dt = times[-1] - times[args.warmup - 1] if args.warmup else times[-1] - t0
    rec = dict(loop=loop, img_size=size, batch_size=bs, precision=precision, compiled=compiled,
               channels_last=bool(args.channels_last and device.type == "cuda"), steps=steps,
               ms_per_step=1000*dt/steps, volumes_per_s=steps*bs/dt, peak_mem_mb=_peak_mb(device),
               n_params=sum(p.numel() for p in model.parameters()), model=type(model).__name__)
    del model
    return rec

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="volume edges (default: 128 on CUDA, 32 64 on CPU)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--precisions", nargs="+", default=None, help="fp32 and/or bf16 (default: both on CUDA, fp32 on CPU)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per setting (default: 20 CUDA, 3 CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (default: 3 CUDA, 1 CPU)")
    ap.add_argument("--z-dim", type=int, default=128)
    ap.add_argument("--base-channels", type=int, default=16)
    ap.add_argument("--sbd", action="store_true", help="the Spatial Broadcast Decoder model instead of the baseline")
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/mri_<device>.json)")
    args = ap.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    device = default_device(args.device)
    cuda = device.type == "cuda"
    if cuda: torch.backends.cudnn.benchmark = True
    args.sizes = args.sizes or ([128] if cuda else [32, 64])
    args.precisions = args.precisions or (["fp32", "bf16"] if cuda else ["fp32"])
    args.steps = args.steps or (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    compiled_opts = [False, True] if args.compile else [False]
    info = dict(device=str(device), device_name=torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
                torch=torch.__version__, threads=torch.get_num_threads(), z_dim=args.z_dim, base_channels=args.base_channels,
                sbd=args.sbd, steps=args.steps, warmup=args.warmup,
                memory_note="CUDA: torch.cuda.max_memory_allocated per setting" if cuda else "CPU: process peak RSS so far (monotonic)")
    print(json.dumps(info))
    results = []
    hdr = f"{'loop':7s} {'size':>4s} {'bs':>2s} {'prec':5s} {'comp':5s} {'ms/step':>9s} {'vol/s':>8s} {'peak MB':>9s}"
    print(hdr)
    for size in args.sizes:
        for bs in args.batch_sizes:
            for precision in args.precisions:
                for compiled in compiled_opts:
                    for loop in ("plain", "engine"):
                        try: r = bench(loop, size, bs, precision, compiled, args, device)
                        except torch.cuda.OutOfMemoryError if cuda else MemoryError as e:
                            r = dict(loop=loop, img_size=size, batch_size=bs, precision=precision, compiled=compiled, error=f"OOM: {e}".splitlines()[0])
                            print(r); results.append(r); continue
                        results.append(r)
                        print(f"{loop:7s} {size:4d} {bs:2d} {precision:5s} {str(compiled):5s} {r['ms_per_step']:9.1f} {r['volumes_per_s']:8.2f} {r['peak_mem_mb']:9.0f}", flush=True)
    out = Path(args.out or Path(__file__).parent/"results"/f"mri_{device.type}.json")
    atomic_write_json(out, dict(info, results=results))
    print(f"saved {out}")
    return results

if __name__ == "__main__": main()
