"`python -m vae_notebooks.train FAMILY --help` describes every parameter of the growth, media and magnetics families by its own comment."
import os, subprocess, sys
from collections import Counter
import pytest

FAMILIES = ("growth", "media", "magnetics")  # MRI and ABR have their own owners and tests


@pytest.mark.parametrize("family", FAMILIES)
def test_every_key_has_its_own_description(family):
    "No key is undocumented, and none borrows a group heading or a comment shared with its neighbours on one line."
    from vae_notebooks.train import family_parameters
    params = family_parameters(family)
    missing = [k for k, _, d in params if not d]
    assert not missing, f"{family}: DEFAULTS keys without a '# comment': {missing}"
    shared = {d: [k for k, _, dk in params if dk == d] for d, n in Counter(d for _, _, d in params).items() if n > 1}
    assert not shared, f"{family}: keys sharing one description (give each its own comment): {shared}"


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_help_has_no_missing_description(family):
    "The real command line: every DEFAULTS key is listed, none as '(no description ...)'."
    from vae_notebooks.train import family_entry
    defaults, _ = family_entry(family)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "vae_notebooks.train", family, "--help"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    assert f"parameters of {family!r}" in out
    assert "(no description" not in out, [l for l in out.splitlines() if "(no description" in l]
    listed = {l.split()[0] for l in out.split(f"parameters of {family!r}", 1)[1].splitlines()[2:] if l.startswith("  ") and not l.startswith("   ")}
    assert set(defaults) <= listed, sorted(set(defaults) - listed)
