#!/usr/bin/env bash
# MRI on one GPU in under 10 minutes: speed, memory and a few epochs of the 128³ recipe, all written under $OUT.
#
#   bash benchmarks/gpu_mri.sh              # on the GPU machine (H100/H200, Python 3.12 + torch/CUDA)
#   bash benchmarks/gpu_mri.sh --dry-run    # the same steps and code paths on the CPU at 16³, tiny model (a few minutes)
#
# Before a GPU session, on the development machine (project root): `bash ../shared/tools/device-wheels.sh`
# downloads into .whl/ the wheels the GPU image lacks (fastai, papermill, nibabel, nilearn, ...); carry `.whl`
# with the command. This script installs them into /tmp/site when .whl/ holds wheels, else it uses .venv/ or
# python3 as they are.
#
# Steps (each under `timeout`, cut to what is left of $BUDGET seconds; a failed step does not stop the next):
#   env      nvidia-smi, torch/CUDA versions                                          -> env.txt
#   eager    benchmarks/mri.py at 128³: batch 1/2/4, fp32 vs bf16, engine vs plain loop, channels_last_3d;
#            plus the loader (float16 memory-mapped cache, 0 vs 4 workers, with/without the float16 transfer)
#            and the engine fed by it at batch 2                                      -> mri_cuda_128.json
#   train    papermill nbs/train_mri.ipynb with configs/mri_exp1_baseline.yaml (the 128³ recipe) for 3 epochs
#            on 16 synthetic subjects                                                 -> train_128/, train_mri_128.ipynb
#   compile  benchmarks/mri.py at 128³, batch 2, bf16: eager vs torch.compile          -> mri_cuda_128_compile.json
#   nocl     benchmarks/mri.py at 128³, batch 2, bf16 without channels_last_3d        -> mri_cuda_128_nocl.json
#   summary  one table of every JSON above + the training run's summary               -> summary.md
# Afterwards copy $OUT/mri_cuda_*.json into benchmarks/results/: the benchmarks page reads the newest of them.
set -uo pipefail
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu_mri.sh [--dry-run]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."                      # the repository root
OUT=${OUT:-runs/gpu_mri$([ $DRY = 1 ] && echo _dry)}
BUDGET=${BUDGET:-560}                        # seconds for everything (the device tool allows 600 a command)
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
T0=$SECONDS
: > "$OUT/steps.tsv"

if compgen -G ".whl/*.whl" > /dev/null; then  # the GPU image: install the missing wheels (../shared/tools/device-wheels.sh)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD; PY=python3
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; export PYTHONPATH=$PWD
else PY=python3; export PYTHONPATH=$PWD; fi
export MPLBACKEND=Agg PYTHONUNBUFFERED=1 PY OUT
export VAE_NOTEBOOKS_DATA=${VAE_NOTEBOOKS_DATA:-/tmp/vae_notebooks_data}  # cohorts and caches: not under $OUT (it is copied back)

if [ $DRY = 1 ]; then
  DEV=cpu; SIZE=16; BS="1 2"; STEPS=2; WARM=1; WORKERS="0 2"; LSUBJ=4
  MODEL=(--z-dim 8 --base-channels 4 --threads 1 --cpu-paths --compile-backend aot_eager)  # bf16 autocast and channels_last_3d on the CPU too; compile without code generation (inductor on 2 CPU cores: 10 min)
  TRAIN=(-p img_size 16 -p z_dim 8 -p base_channels 4 -p epochs 2 -p n_subjects 6 -p num_workers 2 -p n_eval 4
         -p n_baseline_train 16 -p device cpu -p num_threads 1)
  export OMP_NUM_THREADS=1
else
  DEV=cuda; SIZE=128; BS="1 2 4"; STEPS=20; WARM=3; WORKERS="0 4"; LSUBJ=8
  MODEL=()
  TRAIN=(-p epochs 3 -p n_subjects 16 -p num_workers 4 -p n_eval 8 -p n_baseline_train 64)
fi
BENCH=($PY benchmarks/mri.py --device $DEV --sizes $SIZE --steps $STEPS --warmup $WARM "${MODEL[@]}")

step() {  # step NAME SECONDS COMMAND...: run with a timeout, log to $OUT/NAME.log, record "name rc seconds"
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - (SECONDS - T0)))
  if (( left < 15 )); then echo "== $name: skipped (budget spent)"; printf '%s\tskipped\t0\n' "$name" >> "$OUT/steps.tsv"; return; fi
  (( limit > left )) && limit=$left
  echo "== $name (limit ${limit}s): $*"
  local s=$SECONDS
  if declare -F "$1" > /dev/null; then  # a function of this script: `timeout` runs programs, so through bash
    timeout --kill-after=10 "$limit" bash -c "$(declare -f "$1"); $1" > "$OUT/$name.log" 2>&1
  else timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1; fi
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - s))" >> "$OUT/steps.tsv"
  tail -n 30 "$OUT/$name.log"; echo "== $name: rc=$rc in $((SECONDS - s)) s"
}

env_info() {
  { date -u; uptime; nproc; free -g | head -2; nvidia-smi 2>&1 | head -20
    $PY -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'); print('bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported())"
    $PY -c "import fastai, nibabel, nilearn, papermill, vae_notebooks; print('fastai', fastai.__version__, 'nibabel', nibabel.__version__, 'papermill', papermill.__version__)"
    command -v gcc || echo "no gcc (torch.compile's inductor/triton needs a C compiler)"; } 2>&1
}

summary() {
  $PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
import pandas as pd
out = Path(sys.argv[1]); lines = [f"# MRI GPU script: {out}", ""]
lines += ["steps (name, rc, seconds):", "```", (out/"steps.tsv").read_text().strip(), "```", ""]
for f in sorted(out.glob("mri_*.json")):
    js = json.loads(f.read_text()); r = pd.DataFrame(js["results"])
    lines += [f"## {f.name}: {js['device_name']}, torch {js['torch']}, load {js.get('loadavg_start')}", ""]
    for kind, part in r.groupby(r["loop"] == "loader"):
        cols = [c for c in ["loop", "data", "img_size", "batch_size", "precision", "compiled", "channels_last", "num_workers",
                            "half_transfer", "ms_per_step", "volumes_per_s", "ms_per_volume", "first_batch_ms", "peak_mem_mb", "error"] if c in part]
        lines += ["```", part[cols].dropna(axis=1, how="all").round(2).to_string(index=False), "```", ""]
for s in sorted(out.glob("train_*/summary.json")):
    js = json.loads(s.read_text())
    lines += [f"## {s.parent.name}", "", f"verdict: {js.get('verdict')}; {js.get('headline')}",
              f"data {js.get('data_seconds', 0):.0f} s, training {js.get('train_seconds', 0):.0f} s "
              f"({js.get('train_volumes_per_s', 0):.2f} volumes/s over {js.get('epochs')} epochs, {js.get('n_train')} training volumes), "
              f"evaluation {js.get('eval_seconds', 0):.0f} s; best epoch {js.get('best_epoch')}", ""]
gm = out/"gpu_memory.csv"
if gm.exists() and len(gm.read_text().splitlines()) > 1:
    m = pd.read_csv(gm, skipinitialspace=True); col = [c for c in m.columns if "memory.used" in c][0]
    peak = pd.to_numeric(m[col].astype(str).str.split().str[0], errors="coerce").max()  # "1234 MiB"
    lines += [f"GPU memory in use during training (nvidia-smi every 2 s): peak {peak:.0f} MiB", ""]
(out/"summary.md").write_text("\n".join(lines)); print("\n".join(lines))
EOF
}

step env 60 env_info
step eager 200 "${BENCH[@]}" --batch-sizes $BS --precisions fp32 bf16 --loader --workers $WORKERS --loader-subjects $LSUBJ \
  --loader-batch-sizes 2 --out "$OUT/mri_${DEV}_${SIZE}.json"
command -v nvidia-smi > /dev/null && { nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 2000 > "$OUT/gpu_memory.csv" 2>&1 & SMI=$!; }
step train 220 $PY -m papermill nbs/train_mri.ipynb "$OUT/train_mri_${SIZE}.ipynb" -k python3 -f configs/mri_exp1_baseline.yaml \
  -p out_dir "$OUT/train_${SIZE}" -p resume False "${TRAIN[@]}"
[ -n "${SMI:-}" ] && kill "$SMI" 2> /dev/null
step compile 150 "${BENCH[@]}" --batch-sizes 2 --precisions bf16 --compile --out "$OUT/mri_${DEV}_${SIZE}_compile.json"
step nocl 60 "${BENCH[@]}" --batch-sizes 2 --precisions bf16 --no-channels-last --out "$OUT/mri_${DEV}_${SIZE}_nocl.json"
step summary 30 summary
echo "total $((SECONDS - T0)) s; results in $OUT"
! grep -qvP '\t0\t' "$OUT/steps.tsv"  # the exit status: 0 when every step passed
