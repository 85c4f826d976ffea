"""Rate-distortion sweep of the MRI VAE's KL weight: for each effective beta, train the default recipe (exp1, the make-train
model and cohort) for a few epochs and record the validation KL (nats, the rate) and the masked validation MSE (the
distortion), beside the mean template, PCA (k = z_dim) and zeros on the same volumes. Writes
benchmarks/results/mri_rate_distortion.csv, which the "Which KL weight?" page plots.

    OMP_NUM_THREADS=1 python benchmarks/mri_rate_distortion.py --epochs 20   # 32³, 5 values: about 10 quiet CPU minutes
    python benchmarks/mri_rate_distortion.py --img-size 16 --epochs 10 --n-res-blocks 1 --betas 0.01 0.66 6.6

Everything not given on the command line (z_dim, cohort size, scans per subject, model width, lr, ...) is the
make-train default (`vae_notebooks.mri.train.DEFAULTS`), and the CSV records the values used.
beta_max keeps its meaning (the weight of the KL with reduction="mean"); the effective weight against the
unit-variance ELBO is beta_eff = N * beta_max / 2 with N = 4 * img_size**3 values per volume.
"""
from __future__ import annotations
import argparse, json, os, tempfile, time
from pathlib import Path
import pandas as pd
import torch

def main(argv=None):
    from vae_notebooks.mri.train import DEFAULTS, train_mri
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--img-size", type=int, default=DEFAULTS["img_size"])
    p.add_argument("--z-dim", type=int, default=DEFAULTS["z_dim"])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--n-subjects", type=int, default=DEFAULTS["n_subjects"])
    p.add_argument("--timepoints", type=int, nargs=2, default=list(DEFAULTS["timepoints"]), help="fewest and most scans per subject")
    p.add_argument("--betas", type=float, nargs="+", default=[0.066, 0.66, 2.0, 6.6, 66.0], help="effective KL weights")
    p.add_argument("--n-res-blocks", type=int, default=DEFAULTS["n_res_blocks"], help="residual blocks per down/up stage")
    p.add_argument("--no-mirror", action="store_true", help="train without the left-right mirroring of the default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(Path(__file__).parent/"results"/"mri_rate_distortion.csv"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    N = 4 * args.img_size**3
    mirror_lr = bool(DEFAULTS["mirror_lr"]) and not args.no_mirror
    rows, runs = [], Path(tempfile.mkdtemp(prefix="mri_rd_"))
    for beta_eff in args.betas:
        beta_max = 2 * beta_eff / N
        t0 = time.time()
        res = train_mri(out_dir=str(runs/f"b{beta_eff:g}"), img_size=args.img_size, z_dim=args.z_dim, epochs=args.epochs,
                        n_subjects=args.n_subjects, timepoints=args.timepoints, beta_max=beta_max, progress=False,
                        mirror_lr=mirror_lr, n_res_blocks=args.n_res_blocks, num_threads=args.threads)
        ev = pd.DataFrame(res["evaluation"]).set_index("method")
        d = res["diagnostics"]
        rows.append(dict(beta_eff=beta_eff, beta_max=beta_max, img_size=args.img_size, z_dim=args.z_dim, epochs=args.epochs,
                         n_subjects=args.n_subjects, timepoints="-".join(map(str, args.timepoints)), mirror_lr=mirror_lr,
                         n_res_blocks=args.n_res_blocks,
                         kl_nats=d["valid_kl_raw"], au_count=d["au_count"], mu_var_mean=d["mu_var_mean"], z0_ratio=d["z0_ratio"],
                         logvar_mean=d["logvar_mean"], vae_mse=ev.mse["vae"], vae_z0_mse=ev.mse["vae_z0"],
                         mean_template_mse=ev.mse["mean_template"], pca_mse=ev.mse["pca"], zeros_mse=ev.mse["zeros"],
                         vae_ssim=ev.ssim_mean["vae"], verdict=res["verdict"], n_valid=res["n_valid"],
                         n_valid_subjects=res["n_valid_subjects"], seconds=round(time.time() - t0, 1)))
        print(json.dumps(rows[-1]), flush=True)
        out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp"); pd.DataFrame(rows).to_csv(tmp, index=False); os.replace(tmp, out)  # atomic, after every run
    print(pd.DataFrame(rows).round(4).to_string())

if __name__ == "__main__": main()
