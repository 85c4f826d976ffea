"The media command line: --help for every command, clear errors, and a tiny end-to-end run (init, ingest, embed, build, train, generate)."
import subprocess, sys, os
import pandas as pd
import pytest
from vae_notebooks.media.cli import main

COMMANDS = ["init", "ingest", "embed", "build", "train", "generate"]

def test_help_via_python_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vae_notebooks.media", "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for c in COMMANDS: assert c in r.stdout

@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as e: main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"python -m vae_notebooks.media {command}" in out and len(out.splitlines()) > 3

def test_tiny_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data")); monkeypatch.chdir(tmp_path)
    db = tmp_path/"data"/"media"/"media.db"
    def run(*argv):
        rc = main(list(argv)); out = capsys.readouterr(); return rc, out.out + out.err
    assert run("init")[0] == 0 and db.exists()
    (tmp_path/"mine.fasta").write_text(">chr\n" + "ACGGTCCA" * 40 + "\n")
    rc, out = run("ingest", "--fasta", str(tmp_path/"mine.fasta"), "--genome-id", "mine", "--organism-type", "bacteria", "--traits", '{"halophile": true}')
    assert rc == 0 and "inserted" in out
    assert "unchanged" in run("ingest", "--fasta", str(tmp_path/"mine.fasta"), "--genome-id", "mine", "--organism-type", "bacteria")[1]
    rc, out = run("ingest", "--fasta", str(tmp_path/"mine.fasta"), "--genome-id", "x'; DROP TABLE genomes;--", "--organism-type", "bacteria")
    assert rc == 2 and "invalid genome_id" in out
    (tmp_path/"bad.fasta").write_text("hello\n")
    rc, out = run("ingest", "--fasta", str(tmp_path/"bad.fasta"), "--genome-id", "bad", "--organism-type", "fungi")
    assert rc == 2 and "bad.fasta: line 1" in out
    pd.DataFrame(dict(medium=["Z"], ingredient=["NaCl"], amount=[1], unit=["pinch"])).to_csv(tmp_path/"r.csv", index=False)
    rc, out = run("ingest", "--recipes", str(tmp_path/"r.csv")); assert rc == 2 and "unknown unit 'pinch'" in out
    assert run("ingest", "--simulate", "--n-organisms", "24", "--genome-length", "1200")[0] == 0
    rc, out = run("embed", "--method", "stats"); assert rc == 0 and "25 genome(s)" in out
    rc, out = run("build", "--method", "stats", "--out-dir", str(tmp_path/"ds")); assert rc == 0 and (tmp_path/"ds"/"metadata.parquet").exists()
    (tmp_path/"cfg.yaml").write_text(f"out_dir: {tmp_path/'run'}\nepochs: 2\nsimulate: false\nembedding_method: stats\nn_components: 0\n")
    rc, out = run("train", "-f", str(tmp_path/"cfg.yaml")); assert rc == 0, out
    assert (tmp_path/"run"/"model.safetensors").exists() and (tmp_path/"run"/"metrics.csv").exists()
    rc, out = run("train", "--set", "epochz=2"); assert rc == 2 and "unknown key 'epochz'" in out
    rc, out = run("generate", "--run", str(tmp_path/"run"), "--genome-id", "mine", "--n-samples", "4", "--out", str(tmp_path/"gen.csv"))
    assert rc == 0 and "medium proposed for mine" in out
    table = pd.read_csv(tmp_path/"gen.csv", index_col=0)
    assert (table.median_g_per_l >= 0).all() and len(table) > 20
    rc, out = run("generate", "--run", str(tmp_path/"run"), "--fasta", str(tmp_path/"mine.fasta"), "--n-samples", "2")
    assert rc == 0
    assert not list(tmp_path.glob("*.db"))
