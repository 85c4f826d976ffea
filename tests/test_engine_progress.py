"""Progress bars and the executed-report header: under papermill no progress bars and no `TqdmWarning: IProgress not
found` (its cause: `tqdm.auto`, imported by Accelerate through `fastai.distributed`, now imported only for DDP)."""
import json, os, subprocess, sys, textwrap
from pathlib import Path
import pytest

SCRIPT = textwrap.dedent('''
    import sys, torch
    from vae_notebooks.learner import vae_dataloaders, vae_learner, watched
    from vae_notebooks.losses import VAELoss
    from vae_notebooks.models.mlp import MLPVAE
    from fastai.callback.progress import ProgressCallback
    x = torch.randn(64, 6); ds = [(r, r) for r in x]
    learn = vae_learner(vae_dataloaders(ds[:48], ds[48:], bs=16, device="cpu"), MLPVAE(6, 2, hidden_dims=(8,)), VAELoss())
    with learn.distrib_ctx(): learn.fit(1)   # one process: no Accelerate import
    print("WATCHED", watched(), "BARS", any(isinstance(cb, ProgressCallback) for cb in learn.cbs),
          "TQDM_AUTO", "tqdm.auto" in sys.modules, "ACCELERATE", "accelerate" in sys.modules)
''')


def test_no_bars_and_no_tqdm_warning_under_papermill(tmp_path):
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SCRIPT)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    src, out = tmp_path/"in.ipynb", tmp_path/"out.ipynb"
    nbformat.write(nb, src)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "VAE_NOTEBOOKS_PROGRESS")}
    env["OMP_NUM_THREADS"] = "1"
    r = subprocess.run([str(Path(sys.executable).parent/"papermill"), str(src), str(out), "-k", "python3"],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    outputs = json.dumps(nbformat.read(out, as_version=4).cells[0].outputs)
    assert "WATCHED False BARS False TQDM_AUTO False ACCELERATE False" in outputs, outputs[-2000:]
    assert "TqdmWarning" not in outputs and "IProgress" not in outputs and "<progress" not in outputs


def test_bars_follow_the_environment_and_the_terminal(monkeypatch):
    from vae_notebooks.learner import watched, _started_by_batch_runner
    monkeypatch.delenv("CI", raising=False); monkeypatch.delenv("VAE_NOTEBOOKS_PROGRESS", raising=False)
    class Tty:
        def __init__(self, tty): self.tty = tty
        def isatty(self): return self.tty
    monkeypatch.setattr(sys, "stdout", Tty(False)); assert watched() is False      # a pipe or a log file: nobody watches
    monkeypatch.setattr(sys, "stdout", Tty(True)); assert watched() is True        # a terminal
    monkeypatch.setenv("CI", "true"); assert watched() is False                     # CI, even on a pseudo-terminal
    monkeypatch.setenv("VAE_NOTEBOOKS_PROGRESS", "1"); assert watched() is True     # the explicit setting wins
    monkeypatch.setenv("VAE_NOTEBOOKS_PROGRESS", "0"); monkeypatch.delenv("CI"); assert watched() is False
    assert _started_by_batch_runner(["python -m papermill a.ipynb b.ipynb"]) and not _started_by_batch_runner(["jupyter-lab"])


def test_without_bars_a_plain_process_logs_one_compact_line_per_epoch(capsys):
    import torch
    from vae_notebooks.learner import vae_dataloaders, vae_learner
    from vae_notebooks.losses import VAELoss
    from vae_notebooks.models.mlp import MLPVAE
    x = torch.randn(64, 6); ds = [(r, r) for r in x]
    learn = vae_learner(vae_dataloaders(ds[:48], ds[48:], bs=16, device="cpu"), MLPVAE(6, 2, hidden_dims=(8,)), VAELoss(), progress=False)
    learn.fit(2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 0: train_loss ") and "valid_objective" in lines[1], lines
    assert "[" not in "".join(lines)     # not fastai's raw list of floats
