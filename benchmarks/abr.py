"""ABR speed benchmark: one training epoch over 16k simulated recordings, for the CVAE and the Transformer CVAE,
through the engine (`vae_learner`) and through a plain PyTorch loop (the baseline), in the same process.

    python benchmarks/abr.py                      # CPU, both models, bs 32, writes benchmarks/results/abr_cpu.json
    python benchmarks/abr.py --device cuda        # -> abr_cuda.json
    python benchmarks/abr.py --quick              # 2k recordings, to check the script

Reference: the 520k-parameter transformer CVAE was reported at 1.7 min/epoch on an Apple M1 CPU (bs 32, 16k recordings).
"""
import argparse, json, os, platform, time
from pathlib import Path
import numpy as np
import torch

from vae_notebooks.core import set_seed, default_device, atomic_write_json
from vae_notebooks.abr.data import simulate_abr, ABRData, ABRDataset
from vae_notebooks.abr.models import CVAE, TransformerCVAE, ABRLoss
from vae_notebooks.abr.train import beta_schedule, StepLR
from vae_notebooks.learner import vae_dataloaders, vae_learner

KEYS = ("wave", "static", "peaks", "mask")
MODELS = {
    "cvae": lambda: CVAE(),
    "cvae_joint": lambda: CVAE(joint_generation=True),
    "transformer_p4": lambda: TransformerCVAE(patch_size=4),   # the default: 50 waveform tokens
    "transformer_p1": lambda: TransformerCVAE(patch_size=1),   # one token per sample (200 tokens), like the reported model
    "transformer_fast": lambda: TransformerCVAE(patch_size=8, dim_feedforward=256),   # 25 tokens, lean FFN (~0.27M params)
}


def plain_epoch(model, t, bs, device, lr=1e-4, clip=1.0, beta=0.001, max_steps=None):
    "The baseline: tensors on the device, a random permutation, forward / loss / backward / clip / Adam step."
    opt = torch.optim.Adam(model.parameters(), lr=lr); loss = ABRLoss(beta=beta, peak_weight=0.8)
    t = {k: v.to(device) for k, v in t.items()}; n = len(t["wave"])
    perm = torch.randperm(n, device=device); steps = 0
    model.train(); sync(device); t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, n - bs + 1, bs):
        idx = perm[i:i + bs]; b = [t[k][idx] for k in KEYS]
        total, _ = loss(model(*b), *b)
        opt.zero_grad(set_to_none=True); total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip); opt.step()
        steps += 1
        if max_steps and steps >= max_steps: break
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, steps


def engine_epoch(model, data, bs, device, augment, diagnostics):
    "One epoch through vae_learner (KL warm-up, grad clip, StepLR, loss-component logging, diagnostics on a small valid set)."
    dls = vae_dataloaders(ABRDataset(data, "train", augment=augment), ABRDataset(data, "valid"), bs=bs, n_inp=4, device=device, seed=0)
    learn = vae_learner(dls, model, ABRLoss(beta=0.0, peak_weight=0.8), beta_schedule=beta_schedule(0.005, 60), lr=1e-4,
                        grad_clip=1.0, patience=15, progress=False, diagnostics=diagnostics, amp="auto",
                        cbs=[StepLR(30, 0.5)])
    learn.logger = lambda *a, **k: None
    sync(device); t0, c0 = time.perf_counter(), time.process_time()
    learn.fit(1, 1e-4)
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, len(dls.train)


def sync(device):
    if torch.device(device).type == "cuda": torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=16000)
    ap.add_argument("--n-valid", type=int, default=512)
    ap.add_argument("--bs", type=int, nargs="+", default=[32])
    ap.add_argument("--models", nargs="+", default=["cvae", "transformer_p4", "transformer_p1"], choices=list(MODELS))
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--max-steps", type=int, default=0, help="plain loop only: stop after this many steps and extrapolate (0: full epoch)")
    ap.add_argument("--skip-engine", nargs="*", default=[], help="models to time with the plain loop only")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.quick: a.n_train, a.n_valid = 2000, 256
    if a.threads: torch.set_num_threads(a.threads)
    device = default_device(a.device); set_seed(0)
    t0 = time.perf_counter()
    df = simulate_abr(a.n_train + a.n_valid, seed=0)
    split = np.array(["train"]*a.n_train + ["valid"]*a.n_valid)
    data = ABRData(df, split=split)
    sim_s = time.perf_counter() - t0
    print(f"device {device}, torch threads {torch.get_num_threads()}, {a.n_train} train recordings (simulated in {sim_s:.1f} s), "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for name in a.models:
        for bs in a.bs:
            set_seed(0); model = MODELS[name]().to(device); n_params = sum(p.numel() for p in model.parameters())
            secs, cpu, steps = plain_epoch(model, data.tensors("train"), bs, device, max_steps=a.max_steps or None)
            full = a.n_train//bs
            plain_s, plain_cpu = secs*full/steps, cpu*full/steps
            row = dict(model=name, params=n_params, bs=bs, steps_per_epoch=full, plain_epoch_s=round(plain_s, 2),
                       plain_epoch_cpu_s=round(plain_cpu, 2), plain_extrapolated=steps < full, load_avg=round(os.getloadavg()[0], 1))
            if name not in a.skip_engine:
                set_seed(0); model = MODELS[name]().to(device)
                eng_s, eng_cpu, eng_steps = engine_epoch(model, data, bs, device, augment=True, diagnostics=True)
                row.update(engine_epoch_s=round(eng_s, 2), engine_epoch_cpu_s=round(eng_cpu, 2),
                           engine_overhead_cpu=round(eng_cpu/plain_cpu, 2), load_avg_after=round(os.getloadavg()[0], 1))
            row["speedup_vs_reported_m1_wall"] = round(102.0/row.get("engine_epoch_s", plain_s), 2) if name.startswith("transformer") else None
            rows.append(row); print(json.dumps(row), flush=True)
    res = dict(benchmark="abr one epoch", device=str(device), device_name=torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine(),
               torch=torch.__version__, threads=torch.get_num_threads(), cpu_count=os.cpu_count(), n_train=a.n_train, n_valid=a.n_valid,
               note="engine epoch includes the validation pass over n_valid recordings with diagnostics; plain loop is training only. "
                    "The machine is shared: see load_avg per row; *_cpu_s is the process CPU time (all threads), less sensitive to sharing.",
               reported_m1_transformer_epoch_s=102.0, results=rows)
    out = Path(a.out) if a.out else Path(__file__).parent/"results"/f"abr_{device.type}{'_quick' if a.quick else ''}.json"
    atomic_write_json(out, res); print(f"wrote {out}")


if __name__ == "__main__": main()
