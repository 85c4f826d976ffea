"""ABR Transformer quality runs: `train_abr` on the same split and seed with chosen overrides, then a diagnosis of
conditional generation (does the decoder follow the requested intensity, or z?). Writes the run folder and prints
one JSON line. The results of the runs behind the defaults are collected in benchmarks/results/abr_transformer_quality.json.

    python benchmarks/abr_quality.py runs/abr_q/p8_cp_cq '{"patch_size": 8}'                 # the defaults
    python benchmarks/abr_quality.py runs/abr_q/p4 '{"patch_size": 4, "prior": "standard", "condition_queries": false}'
    python benchmarks/abr_quality.py --diagnose runs/abr_q/p4                                # diagnosis of a finished run only

Setup: 4,000 simulated recordings, bs 32, lr 1e-3, beta 0 -> 0.005 over 5 epochs, 8 epochs, no early stopping, one thread.
"""
import os, sys, json
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np, torch
from vae_notebooks.learner import load_model
from vae_notebooks.abr.data import ABRData, WAVEFORM_COLS, time_axis_ms, default_abr_data
from vae_notebooks.abr.train import (train_abr, predict_from_waveform, latency_intensity_slope, GENERATION_PICKER, observation_noise,
                                     _wave_array)
from vae_notebooks.abr.peaks import pick_peaks

SETUP = dict(n_recordings=4000, epochs=8, bs=32, lr=1e-3, beta_warmup_epochs=5, patience=0, n_generate=1000, progress=False, num_threads=1)


@torch.no_grad()
def diagnose(run:str) -> dict:
    "Picked wave V latency-intensity slopes (ms/10 dB) of waveforms decoded from chosen latents, test split."
    cfg = json.load(open(f"{run}/config.json"))["params"]; model = load_model(run).eval()
    data = ABRData(default_abr_data(cfg["n_recordings"], cfg["sim_seed"], root=cfg["data_root"]), cfg["valid_frac"], cfg["test_frac"], cfg["split_seed"])
    t, fr, nz = data.tensors("test"), data.frame("test"), data.normalizer
    noise, rng = observation_noise(model, data, "valid"), np.random.default_rng(0)
    def slope(recon, intensity):
        w = nz.inverse(wave=recon.numpy())[list(WAVEFORM_COLS)].to_numpy() + noise[rng.integers(0, len(noise), len(recon))]
        return round(latency_intensity_slope(intensity, pick_peaks(w, time_axis_ms(), **GENERATION_PICKER).latency_V.to_numpy()), 3)
    out = predict_from_waveform(model, t); mu, inten, st = out["mu"], fr.intensity.to_numpy(), t["static"]
    X = np.column_stack([np.ones(len(mu)), mu.numpy()]); coef = np.linalg.lstsq(X, inten, rcond=None)[0]
    perm = np.random.default_rng(1).permutation(len(st)); shuffled = st.clone(); shuffled[:, 1] = st[perm, 1]   # column 1: intensity
    same = mu.clone()
    for lv in np.unique(inten): idx = np.where(inten == lv)[0]; same[idx] = mu[np.random.default_rng(2).permutation(idx)]
    z0 = torch.randn(len(st), model.latent_dim, generator=torch.Generator().manual_seed(0))
    rec_shuf = model.decode(mu, shuffled)["recon"]
    return dict(real=round(latency_intensity_slope(inten, pick_peaks(_wave_array(fr), time_axis_ms(), **GENERATION_PICKER).latency_V.to_numpy()), 3),
                r2_intensity_from_mu=round(float(1 - np.var(inten - X @ coef)/np.var(inten)), 3),
                prior_samples=slope(model.decode(z0, st)["recon"], inten), reconstructions=slope(model.decode(mu, st)["recon"], inten),
                shuffled_intensity_vs_given=slope(rec_shuf, inten[perm]), shuffled_intensity_vs_own=slope(rec_shuf, inten),
                z_from_same_level_posterior=slope(model.decode(same, st)["recon"], inten))


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1] == "--diagnose": print(json.dumps(diagnose(sys.argv[2]))); sys.exit()
    run, overrides = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    r = train_abr(SETUP | overrides, out_dir=run)
    print(json.dumps({k: r[k] for k in ("headline", "verdict", "best_epoch", "generation", "generation_real_vs_real", "offgrid_generation",
                                        "test_predict_from_waveform")} | dict(diagnosis=diagnose(r["out_dir"])), default=str))
