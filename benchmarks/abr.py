"""ABR speed benchmark: the Transformer CVAE's training step, its layers before (the seed's `nn.TransformerEncoderLayer`
stacks with dropout inside the 768-wide feed-forward and a causal decoder, 4-sample tokens), the previous version
(`TransformerBlock`: fused `F.scaled_dot_product_attention`, dropout on the residual branches only, 4-sample tokens)
and the default now (the same blocks on 8-sample tokens, conditional prior), a plain PyTorch loop against the engine
(`vae_learner`), and the quality of the designs after the same training steps, all in one process.

    # the epoch-time check (about 4 minutes on an idle 2-core machine): 1 and 2 threads, 2 one-thread DDP ranks, engine vs plain
    python benchmarks/abr.py --threads 1 2 --steps 30 --repeats 2 --engine-steps 500 --engine-threads 2 --ddp 2 --quality-steps 0
    python benchmarks/abr.py                       # 1 and 2 threads + quality, writes benchmarks/results/abr_cpu_transformer.json
    python benchmarks/abr.py --threads 2 --quick    # to check the script

The machine may be shared: every speed is also given as a ratio to a plain loop (or to the seed's layers) timed in
the same run, interleaved, best of `--repeats`; `*_cpu_ms` is process CPU time (all threads). An epoch is 16,000
recordings at batch 32 (500 steps), extrapolated from the per-step time of `--steps` timed batches (the JSON states
both); the engine-vs-plain comparison runs whole (shorter) epochs of `--engine-steps` batches through both.
"""
import argparse, json, os, platform, sys, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # on a shared CPU, spinning OpenMP threads made 2-thread steps ~10x slower
from pathlib import Path
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from vae_notebooks.core import set_seed, default_device, atomic_write_json, reparameterize
from vae_notebooks.abr.data import simulate_abr, ABRData, ABRDataset
from vae_notebooks.abr.models import TransformerCVAE, ABRLoss, _observed
from vae_notebooks.abr.train import beta_schedule, StepLR
from vae_notebooks.learner import vae_dataloaders, vae_learner

KEYS = ("wave", "static", "peaks", "mask")
EPOCH_STEPS = 16000//32


SEED_TOKENS = dict(patch_size=4, prior="standard", condition_queries=False)   # the seed's tokens, prior and decoder queries

class SeedTransformerCVAE(TransformerCVAE):
    "The seed's layers, for timing and quality comparison: PyTorch's transformer layers, FF dropout, causal decoder mask."
    def __init__(self, dropout=0.1, **kw):
        super().__init__(dropout=dropout, **{**SEED_TOKENS, **kw})
        layer = lambda cls: cls(self.d_model, 4, self.config["dim_feedforward"], dropout, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer(nn.TransformerEncoderLayer), self.config["n_layers"], enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(layer(nn.TransformerDecoderLayer), self.config["n_layers"])
        self.register_buffer("causal_mask", nn.Transformer.generate_square_subsequent_mask(self.n_tokens), persistent=False)

    def encode(self, wave, static, peaks=None, mask=None):
        B = wave.shape[0]
        if self.training and peaks is not None: mask = mask*(torch.rand(B, 1) >= self.feature_dropout).to(mask)
        tok_wave = self.wave_embed(wave.view(B, self.n_tokens, self.patch_size)) + self.pos + self.type_embed[2]
        parts = [self.cls.expand(B, -1, -1), self.static_embed(static)[:, None] + self.type_embed[0]]
        if peaks is not None:
            feat = _observed(peaks, mask)[..., None]*self.feat_weight + self.feat_bias
            parts.append(torch.where(mask.bool()[..., None], feat, self.mask_embed.expand(B, -1, -1)) + self.type_embed[1])
        h = self.enc_norm(self.encoder(torch.cat(parts + [tok_wave], 1)))
        h = torch.cat([h[:, 0], h[:, 1]], 1)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z, static):
        B = z.shape[0]; s = self.dec_static_embed(static)
        memory = torch.cat([self.z_to_memory(z).view(B, self.n_memory, self.d_model), s[:, None]], 1)
        h = self.decoder(self.queries.expand(B, -1, -1), memory, tgt_mask=self.causal_mask, tgt_is_causal=True)
        out = {"recon": self.to_wave(self.dec_norm(h)).reshape(B, self.n_samples)}
        p = self.peak_head(torch.cat([z, s], 1)); out["peaks"], out["presence"] = p[:, :self.n_peaks], p[:, self.n_peaks:]
        return out


MODELS = {"seed_layers": lambda: SeedTransformerCVAE(),                       # the seed
          "new_layers_patch4": lambda: TransformerCVAE(**SEED_TOKENS),          # the previous version: new blocks, seed's tokens and prior
          "default": lambda: TransformerCVAE()}                                 # now: 8-sample tokens, conditional prior


def plain_steps(model, t, n_steps, bs=32, seed=0, warmup=3, rank=0, world=1):
    "The baseline loop: a random permutation, forward / loss / backward / clip / Adam. Returns (wall s, cpu s) of the timed steps."
    g = torch.Generator().manual_seed(seed); opt = torch.optim.Adam(model.parameters(), lr=1e-4); loss = ABRLoss(beta=0.001, peak_weight=0.8)
    n = len(t["wave"]); perm = torch.randperm(n, generator=g); model.train()
    for i in range(warmup + n_steps):
        if i == warmup: t0, c0 = time.perf_counter(), time.process_time()
        start = ((i*world + rank)*bs) % (n - bs)   # data parallel: rank r takes every world-th batch of the permutation
        idx = perm[start:start + bs]; b = [t[k][idx] for k in KEYS]
        total, _ = loss(model(*b), *b)
        opt.zero_grad(set_to_none=True); total.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    return time.perf_counter() - t0, time.process_time() - c0


@torch.no_grad()
def plain_valid(model, t, bs=256):
    model.eval(); loss = ABRLoss(beta=0.001, peak_weight=0.8)
    for i in range(0, len(t["wave"]), bs):
        b = [t[k][i:i + bs] for k in KEYS]; loss(model(*b), *b)


def engine_vs_plain(data, n_steps, repeats, augment=False):
    "One epoch of `n_steps` steps through vae_learner (with its validation pass) against the plain loop + the same validation pass."
    rows = []
    for r in range(repeats):
        set_seed(r); model = TransformerCVAE()
        t0, c0 = time.perf_counter(), time.process_time()
        plain_steps(model, data.tensors("train"), n_steps, warmup=0); plain_valid(model, data.tensors("valid"))
        plain = (time.perf_counter() - t0, time.process_time() - c0)
        eng = {}
        for diag in (True, False):   # the engine as shipped (collapse probes on) and its framework alone (probes off)
            set_seed(r); model = TransformerCVAE()
            dls = vae_dataloaders(ABRDataset(data, "train", augment=augment), ABRDataset(data, "valid"), bs=32, n_inp=4, device="cpu", seed=r)
            learn = vae_learner(dls, model, ABRLoss(beta=0.0, peak_weight=0.8), beta_schedule=beta_schedule(0.005, 60), lr=1e-4,
                                grad_clip=1.0, patience=15, progress=False, diagnostics=diag, amp=False, cbs=[StepLR(30, 0.5)])
            learn.logger = lambda *a, **k: None
            t0, c0 = time.perf_counter(), time.process_time(); learn.fit(1, 1e-4)
            eng[diag] = (time.perf_counter() - t0, time.process_time() - c0)
        rows.append(dict(plain_s=plain[0], plain_cpu_s=plain[1], engine_s=eng[True][0], engine_cpu_s=eng[True][1],
                         engine_nodiag_s=eng[False][0], engine_nodiag_cpu_s=eng[False][1], steps=len(dls.train)))
    best = lambda k: min(r[k] for r in rows)
    return dict(steps_per_epoch=rows[0]["steps"], augment=augment, n_valid=len(data.tensors("valid")["wave"]), repeats=repeats,
                plain_s=round(best("plain_s"), 2), engine_s=round(best("engine_s"), 2),
                plain_cpu_s=round(best("plain_cpu_s"), 2), engine_cpu_s=round(best("engine_cpu_s"), 2),
                engine_over_plain_wall=round(best("engine_s")/best("plain_s"), 3),
                engine_over_plain_cpu=round(best("engine_cpu_s")/best("plain_cpu_s"), 3),
                engine_nodiag_s=round(best("engine_nodiag_s"), 2), engine_nodiag_cpu_s=round(best("engine_nodiag_cpu_s"), 2),
                engine_nodiag_over_plain_wall=round(best("engine_nodiag_s")/best("plain_s"), 3),
                engine_nodiag_over_plain_cpu=round(best("engine_nodiag_cpu_s")/best("plain_cpu_s"), 3))


@torch.no_grad()
def quality(model, data):
    "Validation waveform MSE and wave V latency MAE (ms) with every clinical input masked, z = mu."
    model.eval(); t = data.tensors("valid")
    out = model(t["wave"], t["static"], torch.zeros_like(t["peaks"]), torch.zeros_like(t["mask"]), sample=False)
    s = data.normalizer.stats; m = t["mask"][:, 2].bool()
    mae = ((out["peaks"][:, 2] - t["peaks"][:, 2]).abs()[m].mean()*s["latency_V_std"]).item()
    return dict(valid_wave_mse=round(F.mse_loss(out["recon"], t["wave"]).item(), 4), valid_latency_V_mae_ms_marks_hidden=round(mae, 4))


def _ddp_worker(rank, world, port, n_steps, engine_steps, repeats, out_path):
    "One rank of the data-parallel measurement: 1 thread, gloo, batch 32/world per rank (a global batch of 32)."
    from torch.nn.parallel import DistributedDataParallel as DDP
    from vae_notebooks.learner import distributed
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1); bs = 32//world
    n_train = max(engine_steps*32, 3200); df = simulate_abr(n_train + 512, seed=0)
    data = ABRData(df, split=np.array(["train"]*n_train + ["valid"]*512)); t, v = data.tensors("train"), data.tensors("valid")
    half = {k: x[rank::world] for k, x in v.items()}   # each rank validates its share, as the engine's sharded loader does
    gather = lambda x: [float(y) for y in _all_gather(x, world)]
    res = dict(world_size=world, threads_per_rank=1, batch_per_rank=bs, global_batch=bs*world, steps=[], engine=[])
    with distributed(device="cpu"):
        for r in range(repeats):
            set_seed(0); model = DDP(TransformerCVAE()); torch.distributed.barrier()
            w, c = plain_steps(model, t, n_steps, bs=bs, seed=r, rank=rank, world=world)
            res["steps"].append(dict(step_ms=1000*w/n_steps, cpu_ms_all_ranks=1000*sum(gather(c))/n_steps))
        for r in range(repeats if engine_steps else 0):
            set_seed(r); model = DDP(TransformerCVAE()); torch.distributed.barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            plain_steps(model, t, engine_steps, bs=bs, seed=r, warmup=0, rank=rank, world=world); plain_valid(model.module, half)
            torch.distributed.barrier(); plain = (time.perf_counter() - t0, sum(gather(time.process_time() - c0)))
            set_seed(r); model = TransformerCVAE()
            sub = ABRData(df.iloc[:engine_steps*32 + 512].reset_index(drop=True), split=np.array(["train"]*(engine_steps*32) + ["valid"]*512))
            dls = vae_dataloaders(ABRDataset(sub, "train"), ABRDataset(sub, "valid"), bs=bs, n_inp=4, device="cpu", seed=r)
            learn = vae_learner(dls, model, ABRLoss(beta=0.0, peak_weight=0.8), beta_schedule=beta_schedule(0.005, 60), lr=1e-4,
                                grad_clip=1.0, patience=15, progress=False, diagnostics=True, amp=False, cbs=[StepLR(30, 0.5)])
            learn.logger = lambda *a, **k: None
            torch.distributed.barrier(); t0, c0 = time.perf_counter(), time.process_time()
            with learn.distrib_ctx(sync_bn=False): learn.fit(1, 1e-4)
            torch.distributed.barrier(); eng = (time.perf_counter() - t0, sum(gather(time.process_time() - c0)))
            res["engine"].append(dict(plain_s=plain[0], plain_cpu_s=plain[1], engine_s=eng[0], engine_cpu_s=eng[1], steps_per_rank=int(getattr(learn, "train_iter", 0))))
    if rank == 0: atomic_write_json(out_path, res)


def _all_gather(x:float, world:int):
    out = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
    torch.distributed.all_gather(out, torch.tensor([x], dtype=torch.float64)); return [o.item() for o in out]


def data_parallel(world, n_steps, engine_steps, repeats):
    "Data-parallel training over `world` processes of one thread each (DDP, gloo): plain loop steps, and engine vs plain epochs."
    import socket, tempfile, torch.multiprocessing as mp
    with socket.socket() as sk: sk.bind(("127.0.0.1", 0)); port = sk.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)/"ddp.json"; mp.spawn(_ddp_worker, args=(world, port, n_steps, engine_steps, repeats, str(out)), nprocs=world)
        res = json.loads(out.read_text())
    best = lambda rows, k: min(r[k] for r in rows)
    st = res.pop("steps"); eng = res.pop("engine")
    res.update(step_ms=round(best(st, "step_ms"), 1), step_cpu_ms_all_ranks=round(best(st, "cpu_ms_all_ranks"), 1),
               epoch_s_extrapolated=round(best(st, "step_ms")*EPOCH_STEPS/1000, 1), timed_steps=n_steps)
    if eng:
        res["engine_vs_plain"] = dict(steps_per_rank=eng[0]["steps_per_rank"], repeats=repeats, plain_s=round(best(eng, "plain_s"), 2), engine_s=round(best(eng, "engine_s"), 2),
                                      plain_cpu_s=round(best(eng, "plain_cpu_s"), 2), engine_cpu_s=round(best(eng, "engine_cpu_s"), 2),
                                      engine_over_plain_wall=round(best(eng, "engine_s")/best(eng, "plain_s"), 3),
                                      engine_over_plain_cpu=round(best(eng, "engine_cpu_s")/best(eng, "plain_cpu_s"), 3))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=20, help="timed training batches per design and repeat (an epoch of 500 is extrapolated from them)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repetitions (best kept)")
    ap.add_argument("--engine-steps", type=int, default=60, help="steps of the engine-vs-plain epoch (0: skip)")
    ap.add_argument("--quality-steps", type=int, default=300, help="training steps before the quality comparison (0: skip)")
    ap.add_argument("--engine-augment", action="store_true", help="engine epoch with the training augmentation (the plain loop has none)")
    ap.add_argument("--engine-threads", type=int, nargs="*", default=None, help="thread counts of the engine-vs-plain epoch (default: every --threads)")
    ap.add_argument("--ddp", type=int, default=0, help="also train data-parallel over this many 1-thread processes (DDP, gloo; global batch 32)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.quick: a.steps, a.repeats, a.engine_steps, a.quality_steps = 5, 1, 10, 20
    n_train = max(a.engine_steps*32, 3200); set_seed(0)
    df = simulate_abr(n_train + 512, seed=0)
    data = ABRData(df, split=np.array(["train"]*n_train + ["valid"]*512))
    res = dict(benchmark="abr transformer step", omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), device="cpu", device_name=platform.processor() or platform.machine(), torch=torch.__version__,
               cpu_count=os.cpu_count(), load_avg_start=round(os.getloadavg()[0], 1), epoch_steps=EPOCH_STEPS, batch_size=32,
               timed_steps=a.steps, repeats=a.repeats, command=" ".join(["python benchmarks/abr.py"] + sys.argv[1:]), speed={}, engine={}, quality={})
    for th in a.threads:
        torch.set_num_threads(th); per = {k: [] for k in MODELS}
        for r in range(a.repeats):
            for name, make in MODELS.items():
                set_seed(0); wall, cpu = plain_steps(make(), data.tensors("train"), a.steps, seed=r)
                per[name].append((wall/a.steps, cpu/a.steps))
        best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in per.items()}
        res["speed"][f"{th}_threads"] = {k: dict(step_ms=round(1000*w, 1), step_cpu_ms=round(1000*c, 1), epoch_s_extrapolated=round(w*EPOCH_STEPS, 1),
                                                 ratio_to_seed_wall=round(w/best["seed_layers"][0], 3), ratio_to_seed_cpu=round(c/best["seed_layers"][1], 3),
                                                 timed_steps=a.steps)
                                         for k, (w, c) in best.items()}
        res["speed"][f"{th}_threads"]["load_avg"] = round(os.getloadavg()[0], 1)
        print(th, "threads:", json.dumps(res["speed"][f"{th}_threads"]), flush=True)
        if a.engine_steps and (a.engine_threads is None or th in a.engine_threads):
            sub = ABRData(df.iloc[:a.engine_steps*32 + 512].reset_index(drop=True), split=np.array(["train"]*(a.engine_steps*32) + ["valid"]*512))
            res["engine"][f"{th}_threads"] = engine_vs_plain(sub, a.engine_steps, a.repeats, a.engine_augment); print(" engine:", json.dumps(res["engine"][f"{th}_threads"]), flush=True)
    if a.quality_steps:
        torch.set_num_threads(min(a.threads))
        for name, make in MODELS.items():
            set_seed(0); model = make(); plain_steps(model, data.tensors("train"), a.quality_steps, seed=0, warmup=0)
            res["quality"][name] = quality(model, data); print(" quality", name, res["quality"][name], flush=True)
        res["quality"]["steps"] = a.quality_steps
    if a.ddp > 1:
        res["ddp"] = data_parallel(a.ddp, a.steps, a.engine_steps, a.repeats); res["ddp"]["load_avg"] = round(os.getloadavg()[0], 1)
        print(" ddp:", json.dumps(res["ddp"]), flush=True)
    res["load_avg_end"] = round(os.getloadavg()[0], 1)
    res["note"] = ("speed: plain-loop training steps (bs 32) per design, best of the interleaved repeats; epoch = 500 steps extrapolated from timed_steps. "
                   "engine: one epoch of engine_steps steps through vae_learner (no augmentation unless --engine-augment, KL warm-up, clipping, StepLR, diagnostics, "
                   "its validation pass; engine_nodiag_*: the same with the collapse probes off, i.e. the framework alone) vs the plain loop + a plain validation pass over the same recordings. ddp: the default model trained "
                   "data-parallel by --ddp one-thread processes (gloo, batch 32/ranks per rank, a global batch of 32; the way train_abr runs "
                   "under torchrun), plain DDP loop steps and engine-vs-plain epochs of engine_steps steps per rank. quality: the same seed and "
                   "steps for each design, scored on 512 held-out recordings with the clinical inputs masked.")
    out = Path(a.out) if a.out else Path(__file__).parent/"results"/f"abr_cpu_transformer{'_quick' if a.quick else ''}.json"
    atomic_write_json(out, res); print(f"wrote {out}")


if __name__ == "__main__": main()
