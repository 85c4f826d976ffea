"""Benchmark: torch CPU training speed under different OpenMP thread settings, on an idle or a loaded machine.

Each setting runs in a fresh process (the OpenMP settings are read when torch is imported): a 32^3 MRI VAE
(batch 4, forward + backward + Adam step) for at least `--seconds` and 3 steps; prints steps/s per setting
and writes them to `--out` (JSON). `--busy N` adds N busy-loop processes for the second round, to load the
machine as other jobs would. Usage: `python tools/bench_threads.py [--busy 2] [--seconds 8] [--out FILE]`.
This is the measurement behind nbs/60a_runtime.ipynb; it is not run by `make test`."""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = r'''
import os, sys, time, json
if os.environ.get("BENCH_IMPORT_RUNTIME"): import vae_notebooks.runtime   # what the CLI does first
import torch
from vae_notebooks.mri.models import BaselineVAE
torch.manual_seed(0)
m = BaselineVAE(img_size=32, z_dim=32, base_channels=8)
opt = torch.optim.Adam(m.parameters(), 1e-3)
x = torch.randn(4, 4, 32, 32, 32)
def step():
    out = m(x); r = out["recon"] if isinstance(out, dict) else out[0]
    loss = ((r - x)**2).mean(); opt.zero_grad(); loss.backward(); opt.step()
step()
t0 = time.time(); n = 0
while n < 3 or time.time() - t0 < float(os.environ["BENCH_SECONDS"]): step(); n += 1
print(json.dumps({"steps": n, "threads": torch.get_num_threads(), "steps_per_s": n/(time.time()-t0),
                  "policy": os.environ.get("OMP_WAIT_POLICY")}))
'''
CONFIGS = {
    "2 threads, default wait policy (spin)": {},
    "1 thread (OMP_NUM_THREADS=1)": {"OMP_NUM_THREADS": "1"},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "2 threads, import vae_notebooks.runtime first": {"BENCH_IMPORT_RUNTIME": "1"},
    "2 threads, GOMP_SPINCOUNT=10000 (short spin)": {"GOMP_SPINCOUNT": "10000"},
    "2 threads, GOMP_SPINCOUNT=100000": {"GOMP_SPINCOUNT": "100000"},
}

def run(env_extra, seconds):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "BENCH_IMPORT_RUNTIME", "GOMP_SPINCOUNT")}
    env.update(env_extra, BENCH_SECONDS=str(seconds), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
    if r.returncode: sys.exit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=0, help="busy-loop processes for a second, loaded round (0: one round only)")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--only", action="append", help="run only settings whose name contains this text")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    res = []
    for busy in sorted({0, a.busy}):
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(1 if busy else 0)
            for name, env in CONFIGS.items():
                if a.only and not any(o in name for o in a.only): continue
                r = run(env, a.seconds); r.update(setting=name, busy_loops=busy, load_1min=round(os.getloadavg()[0], 1))
                res.append(r)
                print(f"busy loops {busy}  load {r['load_1min']:5.1f}  {name:46s} {r['steps_per_s']:.3f} steps/s", flush=True)
        finally:
            for p in procs: p.kill(); p.wait()
    if a.out: Path(a.out).write_text(json.dumps(res, indent=1))

if __name__ == "__main__":
    main()
