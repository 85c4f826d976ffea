"""Fail if the generated files are out of date: re-run `nbdev-export`, `nbdev-clean`, the README and the
sidebar generators, and report every file whose content they changed (works in a clean clone and in a dirty
working tree alike, because it compares contents before and after rather than asking git)."""
import hashlib, subprocess, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
bin_ = Path(sys.executable).parent

def snapshot():
    files = [*root.glob("vae_notebooks/**/*.py"), *root.glob("nbs/*.ipynb"), root/"README.md", root/"nbs"/"sidebar.yml"]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.exists() and "__pycache__" not in p.parts}

before = snapshot()
for cmd in ([str(bin_/"nbdev-export")], [str(bin_/"nbdev-clean")],
            [sys.executable, str(root/"tools"/"sidebar.py")], [sys.executable, str(root/"tools"/"readme.py")]):
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if r.returncode: sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
after = snapshot()
changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
if changed:
    print("These files were out of sync with the notebooks (now regenerated; review and commit them):")
    for k in changed: print(f"  {k}")
    sys.exit(1)
print(f"check_sync: nbdev-export, nbdev-clean, README and sidebar change nothing ({len(after)} files checked)")
