"""MRI VAE training speed and memory: the engine (`vae_learner`) vs a plain PyTorch loop, in one run.

For each volume size, batch size (1, 2, 4) and precision (fp32, bf16 autocast; plus torch.compile with
--compile) it trains the MRI model for a few steps on random 4-channel volumes and reports training
volumes/s, ms/step and peak memory (CUDA: torch.cuda.max_memory_allocated; CPU: the process's peak RSS,
which only grows). Results are printed and saved to benchmarks/results/mri_<device>.json.

    python benchmarks/mri.py                        # CUDA: 128³; CPU: 32³ and 64³
    python benchmarks/mri.py --sizes 128 --compile  # add torch.compile rows
    python benchmarks/mri.py --device cpu --sizes 32 64 --threads 1
    python benchmarks/mri.py --device cpu --sizes 64 --batch-sizes 2 --threads 1 --loader --out benchmarks/results/mri_cpu_loader.json

With --loader it also feeds the engine from a real float16 cache of the synthetic cohort through `mri_dataloaders`
(memory-mapped, float16 items converted per batch on the device) with `--workers` DataLoader workers each
(default 0 and 2), and times the loader alone (no model: volumes/s and the time to the first batch of an
epoch, which includes starting the workers), with and without the float16 transfer. The JSON records the load
average before and after and, per row, the CPU time of the training thread (`volumes_per_cpu_s`: what contention
from other processes does not inflate; it leaves out what DataLoader workers do). On a shared machine use
--repeats (interleaved) and compare medians of rows of one run, not runs.
"""
from __future__ import annotations
import argparse, functools, json, math, os, platform, resource, time, traceback
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

def _channels_last(args, device):
    "channels_last_3d: on CUDA unless --no-channels-last; on the CPU only with --cpu-paths."
    return bool(args.channels_last and (device.type == "cuda" or args.cpu_paths))

def make_model(size, args, device, channels_last):
    set_seed(0)
    model = build_model(dict(img_size=size, z_dim=args.z_dim, base_channels=args.base_channels, use_sbd=args.sbd)).to(device)
    if channels_last: model.channels_last()
    return model

def plain_loop(size, bs, precision, compiled, args, device):
    "The baseline: a bare PyTorch training loop over the same data, model, loss and optimizer."
    model = make_model(size, args, device, _channels_last(args, device))
    step_model = torch.compile(model) if compiled else model
    loss_fn, opt = VAELoss(recon="mse", reduction="mean", free_bits=0.1), torch.optim.Adam(model.parameters(), lr=1e-4)
    dl = torch.utils.data.DataLoader(RandomVolumes(bs*(args.steps + args.warmup), size), batch_size=bs, shuffle=True,
                                     pin_memory=device.type == "cuda", drop_last=True)
    if args.cpu_paths and device.type == "cpu": dtype = torch.bfloat16 if precision == "bf16" else None  # --cpu-paths: bf16 autocast on the CPU too
    else: dtype = resolve_precision("bf16" if precision == "bf16" else "fp32", device)  # as the engine does
    times = []
    for xb, yb in dl:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = step_model(xb)
            loss, _ = loss_fn(out, yb)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        _sync(device); times.append((time.perf_counter(), time.thread_time()))
    return times, model

def engine_loop(size, bs, precision, compiled, args, device, dls=None):
    "The same training through `vae_learner` (fastai Learner + VAE callbacks), timed per batch; `dls`: another data source."
    from fastai.callback.core import Callback
    from vae_notebooks.learner import vae_dataloaders, vae_learner
    class Timer(Callback):
        order = 99
        def before_fit(self): self.times = []
        def after_batch(self):
            if self.training: _sync(device); self.times.append((time.perf_counter(), time.thread_time()))
    model = make_model(size, args, device, _channels_last(args, device))
    if dls is None:
        dls = vae_dataloaders(RandomVolumes(bs*(args.steps + args.warmup), size), None, bs=bs, device=device, seed=0, drop_last=True)
    timer = Timer()
    learn = vae_learner(dls, model, VAELoss(recon="mse", reduction="mean"), free_bits=0.1, lr=1e-4, diagnostics=False,
                        amp="bf16" if precision == "bf16" else "fp32", compile=compiled, progress=False, cbs=[timer])
    learn.logger = lambda *a: None
    learn.fit(1, 1e-4)
    return timer.times, model

def bench(loop, size, bs, precision, compiled, args, device, dls=None, **extra):
    _peak_reset(device)
    t0 = (time.perf_counter(), time.thread_time())
    if loop == "plain": times, model = plain_loop(size, bs, precision, compiled, args, device)
    else: times, model = engine_loop(size, bs, precision, compiled, args, device, dls)
    steps = len(times) - args.warmup
    first = times[args.warmup - 1] if args.warmup else t0
    dt, cpu = times[-1][0] - first[0], times[-1][1] - first[1]  # wall seconds; CPU seconds of this (the training) thread
    rec = dict(loop=loop, img_size=size, batch_size=bs, precision=precision, compiled=compiled,
               channels_last=_channels_last(args, device), steps=steps,
               ms_per_step=1000*dt/steps, volumes_per_s=steps*bs/dt, cpu_ms_per_step=1000*cpu/steps, volumes_per_cpu_s=steps*bs/cpu,
               peak_mem_mb=_peak_mb(device),
               n_params=sum(p.numel() for p in model.parameters()), model=type(model).__name__, **extra)
    del model
    return rec

def loader_cache(size, args):
    "A float16 cache of the synthetic cohort at `size`³, with at least `bs * (steps + warmup)` training volumes."
    from vae_notebooks.mri.data import default_mri_cache
    cache = default_mri_cache(img_size=size, n_subjects=args.loader_subjects, resolution=4, timepoints=(2, 3), dtype="float16")
    return cache

def loader_dls(cache, bs, workers, half, device, n_train=None):
    "`mri_dataloaders` over `cache`, the training split cut to `n_train` volumes (one timed epoch)."
    from vae_notebooks.mri.data import mri_dataloaders
    dls = mri_dataloaders(cache, bs=bs, num_workers=workers, half=half, device=device, seed=0, drop_last=True)
    if n_train is not None:  # one epoch of n_train volumes: the training folders, repeated if there are fewer
        ds = dls.train.dataset
        ds.folders = (ds.folders * math.ceil(n_train / len(ds.folders)))[:n_train]; dls.train.n = n_train
        dls.valid.dataset.folders = dls.valid.dataset.folders[:bs]; dls.valid.n = len(dls.valid.dataset.folders)  # one short validation
    return dls

def bench_loader(cache, size, bs, workers, half, device, epochs=5):
    "The loader alone: volumes/s over `epochs` passes (worker start-up included) and the mean time to an epoch's first batch."
    dls = loader_dls(cache, bs, workers, half, device)
    first, n, t0 = [], 0, time.perf_counter()
    for _ in range(epochs):
        te = time.perf_counter()
        for i, (xb, yb) in enumerate(dls.train):
            if i == 0: _sync(device); first.append(time.perf_counter() - te)
            assert xb.dtype == torch.float32
            n += len(xb)
    _sync(device); dt = time.perf_counter() - t0
    return dict(loop="loader", img_size=size, batch_size=bs, num_workers=workers, half_transfer=half, epochs=epochs,
                volumes=n, volumes_per_s=n/dt, ms_per_volume=1000*dt/n, first_batch_ms=1000*sum(first)/len(first))

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
    ap.add_argument("--loader", action="store_true", help="also train from a float16 cache through mri_dataloaders and time the loader alone")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers of the --loader rows")
    ap.add_argument("--loader-subjects", type=int, default=8, help="synthetic subjects of the --loader cache (2-3 scans each)")
    ap.add_argument("--loader-batch-sizes", type=int, nargs="+", default=None, help="batch sizes of the engine-from-cache rows (default: --batch-sizes)")
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend of both loops (aot_eager: no code generation)")
    ap.add_argument("--cpu-paths", action="store_true", help="on the CPU, take the GPU paths anyway: bf16 autocast (plain loop) and channels_last_3d")
    ap.add_argument("--repeats", type=int, default=1, help="repeat the training rows, interleaved (a shared machine: take medians)")
    ap.add_argument("--out", default=None, help="JSON output (default: benchmarks/results/mri_<device>.json)")
    args = ap.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    if args.compile_backend != "inductor":  # the engine calls torch.compile(model): give it the backend too
        torch.compile = functools.partial(torch.compile, backend=args.compile_backend)
    device = default_device(args.device)
    cuda = device.type == "cuda"
    if cuda: torch.backends.cudnn.benchmark = True
    args.sizes = args.sizes or ([128] if cuda else [32, 64])
    args.precisions = args.precisions or (["fp32", "bf16"] if cuda else ["fp32"])
    args.steps = args.steps or (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    compiled_opts = [False, True] if args.compile else [False]
    info = dict(date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), device=str(device), device_name=torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
                torch=torch.__version__, threads=torch.get_num_threads(), z_dim=args.z_dim, base_channels=args.base_channels,
                sbd=args.sbd, steps=args.steps, warmup=args.warmup, loadavg_start=list(os.getloadavg()),
                compile_backend=args.compile_backend, cpu_paths=args.cpu_paths,
                memory_note="CUDA: torch.cuda.max_memory_allocated per setting" if cuda else "CPU: process peak RSS so far (monotonic)")
    print(json.dumps(info))
    results = []
    caches = {size: loader_cache(size, args) for size in args.sizes} if args.loader else {}
    if args.loader:
        print(f"{'loader':7s} {'size':>4s} {'bs':>2s} {'work':>4s} {'half':5s} {'ms/vol':>8s} {'vol/s':>8s} {'1st batch ms':>12s}")
        for size in args.sizes:
            for bs in args.loader_batch_sizes or args.batch_sizes:
                for workers in args.workers:
                    for half in (False, True):
                        r = bench_loader(caches[size], size, bs, workers, half, device); results.append(r)
                        print(f"{'loader':7s} {size:4d} {bs:2d} {workers:4d} {str(half):5s} {r['ms_per_volume']:8.1f} {r['volumes_per_s']:8.1f} {r['first_batch_ms']:12.1f}", flush=True)
    hdr = f"{'loop':7s} {'size':>4s} {'bs':>2s} {'prec':5s} {'comp':5s} {'ms/step':>9s} {'vol/s':>8s} {'peak MB':>9s} {'vol/cpu-s':>9s}"
    print(hdr)
    for repeat, size in ((k, size) for k in range(args.repeats) for size in args.sizes):
        for bs in args.batch_sizes:
            for precision in args.precisions:
                for compiled in compiled_opts:
                    for loop in ("plain", "engine"):
                        try: r = bench(loop, size, bs, precision, compiled, args, device)
                        except Exception as e:  # an OOM or a failed compile is a result: record it and go on
                            if cuda: torch.cuda.empty_cache()
                            traceback.print_exc()
                            kind = "OOM" if isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) else type(e).__name__
                            r = dict(loop=loop, img_size=size, batch_size=bs, precision=precision, compiled=compiled, repeat=repeat, error=f"{kind}: {e}".splitlines()[0][:300])
                            print(r, flush=True); results.append(r); continue
                        r["repeat"] = repeat; results.append(r)
                        print(f"{loop:7s} {size:4d} {bs:2d} {precision:5s} {str(compiled):5s} {r['ms_per_step']:9.1f} {r['volumes_per_s']:8.2f} {r['peak_mem_mb']:9.0f} {r['volumes_per_cpu_s']:8.2f}", flush=True)
                for workers in (args.workers if args.loader and bs in (args.loader_batch_sizes or args.batch_sizes) else []):  # the engine fed by the cache's loader
                    try:
                        dls = loader_dls(caches[size], bs, workers, True, device, bs*(args.steps + args.warmup))
                        r = bench("engine", size, bs, precision, False, args, device, dls, data="cache", num_workers=workers, half_transfer=True, repeat=repeat)
                    except Exception as e:
                        traceback.print_exc()
                        r = dict(loop="engine", data="cache", num_workers=workers, repeat=repeat, img_size=size, batch_size=bs, precision=precision,
                                 compiled=False, error=f"{type(e).__name__}: {e}".splitlines()[0][:300])
                        print(r, flush=True); results.append(r); continue
                    results.append(r)
                    print(f"{'engine':7s} {size:4d} {bs:2d} {precision:5s} {'cache':5s} {r['ms_per_step']:9.1f} {r['volumes_per_s']:8.2f} {r['peak_mem_mb']:9.0f} {r['volumes_per_cpu_s']:8.2f}  (float16 cache, {workers} workers)", flush=True)
    out = Path(args.out or Path(__file__).parent/"results"/f"mri_{device.type}.json")
    info["loadavg_end"] = list(os.getloadavg())
    print(f"load average: start {info['loadavg_start']}, end {info['loadavg_end']}")
    atomic_write_json(out, dict(info, results=results))
    print(f"saved {out}")
    return results

if __name__ == "__main__":
    res = main()
    raise SystemExit(1 if any("error" in r and not r["error"].startswith("OOM") for r in res) else 0)
