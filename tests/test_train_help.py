"""The growth, media and magnetics entry points: `python -m vae_notebooks.train FAMILY --help` describes every parameter by
its own comment, and each train function sets torch's threads through `vae_notebooks.runtime.use_safe_threads`."""
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


class _Stop(Exception): pass

@pytest.mark.parametrize("family,expected", [("growth", 3), ("media", 3), ("magnetics", None)])
def test_train_sets_threads_through_use_safe_threads(family, expected, tmp_path, monkeypatch):
    "Each train function hands the config's `num_threads` (magnetics: no key, so None = decide) to `use_safe_threads` before training."
    import importlib
    from vae_notebooks.train import FAMILIES
    mod = importlib.import_module(FAMILIES[family][0])
    calls = []
    def fake(num_threads=None, verbose=True): calls.append(num_threads); raise _Stop
    monkeypatch.setattr(mod, "use_safe_threads", fake)
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data"))
    kw = dict(num_threads=3) if expected is not None else {}
    with pytest.raises(_Stop): getattr(mod, FAMILIES[family][1])(out_dir=str(tmp_path/"run"), **kw)
    assert calls == [expected]


def test_use_safe_threads_picks_one_thread_on_a_busy_machine(monkeypatch):
    "The contract the families rely on: 0/None with spinning threads on a busy machine gives 1 thread; a count is kept."
    import torch, warnings
    import vae_notebooks.runtime as rt
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(rt, "machine_load", lambda: (10.0, 2)); monkeypatch.setattr(rt, "OPENMP_WAIT_POLICY", None)
        torch.set_num_threads(2)
        with pytest.warns(UserWarning, match="Using 1 thread"): assert rt.use_safe_threads(0) == 1
        assert rt.use_safe_threads(2) == 2
    finally: torch.set_num_threads(before)


def test_no_family_has_an_undocumented_key():
    "Every family (MRI and ABR too): each DEFAULTS key has a description in `--help`, its own or its group heading's."
    from vae_notebooks.train import FAMILIES, family_parameters
    missing = {f: [k for k, _, d in family_parameters(f) if not d] for f in FAMILIES}
    assert not any(missing.values()), {f: m for f, m in missing.items() if m}
