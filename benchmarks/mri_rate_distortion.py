"""Rate-distortion sweep of the MRI VAE's KL weight: for each effective beta, train the default recipe (exp1) at a small
size and record the validation KL (nats, the rate) and the masked validation MSE (the distortion), beside the mean
template, PCA (k = z_dim) and zeros on the same volumes. Writes benchmarks/results/mri_rate_distortion.csv, which the
"Which KL weight?" page plots.

    OMP_NUM_THREADS=1 python benchmarks/mri_rate_distortion.py                 # 16³, 7 values, about 10-20 CPU minutes
    python benchmarks/mri_rate_distortion.py --img-size 32 --epochs 20 --betas 0.1 0.66 3

beta_max keeps its meaning (the weight of the KL with reduction="mean"); the effective weight against the
unit-variance ELBO is beta_eff = N * beta_max / 2 with N = 4 * img_size**3 values per volume.
"""
from __future__ import annotations
import argparse, json, os, tempfile, time
from pathlib import Path
import pandas as pd
import torch

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--img-size", type=int, default=16)
    p.add_argument("--z-dim", type=int, default=16)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--n-subjects", type=int, default=96)
    p.add_argument("--betas", type=float, nargs="+", default=[0.01, 0.066, 0.3, 0.66, 2.0, 6.6, 30.0], help="effective KL weights")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).parent/"results"/"mri_rate_distortion.csv"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from vae_notebooks.mri.train import train_mri
    N = 4 * args.img_size**3
    rows, runs = [], Path(tempfile.mkdtemp(prefix="mri_rd_"))
    for beta_eff in args.betas:
        beta_max = 2 * beta_eff / N
        t0 = time.time()
        res = train_mri(out_dir=str(runs/f"b{beta_eff:g}"), img_size=args.img_size, z_dim=args.z_dim, epochs=args.epochs,
                        n_subjects=args.n_subjects, timepoints=[1, 2], beta_max=beta_max, progress=False, num_threads=args.threads)
        ev = pd.DataFrame(res["evaluation"]).set_index("method")
        d = res["diagnostics"]
        rows.append(dict(beta_eff=beta_eff, beta_max=beta_max, img_size=args.img_size, z_dim=args.z_dim, epochs=args.epochs,
                         kl_nats=d["valid_kl_raw"], au_count=d["au_count"], mu_var_mean=d["mu_var_mean"], z0_ratio=d["z0_ratio"],
                         vae_mse=ev.mse["vae"], vae_z0_mse=ev.mse["vae_z0"], mean_template_mse=ev.mse["mean_template"],
                         pca_mse=ev.mse["pca"], zeros_mse=ev.mse["zeros"], vae_ssim=ev.ssim_mean["vae"],
                         verdict=res["verdict"], n_valid=res["n_valid"], n_valid_subjects=res["n_valid_subjects"],
                         seconds=round(time.time() - t0, 1)))
        print(json.dumps(rows[-1]), flush=True)
        out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp"); pd.DataFrame(rows).to_csv(tmp, index=False); os.replace(tmp, out)  # atomic, after every run
    print(pd.DataFrame(rows).round(4).to_string())

if __name__ == "__main__": main()
