"The media command line: --help for every command, clear errors, and a tiny end-to-end run (init, ingest, embed, build, train, generate)."
import re, subprocess, sys, os
import pandas as pd
import pytest
from vae_notebooks.media.cli import main
from vae_notebooks.media.db import MediaDB

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
    rc, out = run("ingest", "--fasta", str(tmp_path/"mine.fasta"), "--genome-id", "abc\n", "--organism-type", "bacteria")
    assert rc == 2 and "invalid genome_id 'abc\\n'" in out
    (tmp_path/"bad.fasta").write_text("hello\n")
    rc, out = run("ingest", "--fasta", str(tmp_path/"bad.fasta"), "--genome-id", "bad", "--organism-type", "fungi")
    assert rc == 2 and "bad.fasta: line 1" in out
    pd.DataFrame(dict(medium=["Z"], ingredient=["NaCl"], amount=[1], unit=["pinch"])).to_csv(tmp_path/"r.csv", index=False)
    rc, out = run("ingest", "--recipes", str(tmp_path/"r.csv")); assert rc == 2 and "unknown unit 'pinch'" in out
    assert run("ingest", "--simulate", "--n-organisms", "24", "--genome-length", "1200")[0] == 0   # asked for explicitly
    rc, out = run("embed", "--method", "stats"); assert rc == 0 and "25 genome(s)" in out
    rc, out = run("build", "--method", "stats", "--out-dir", str(tmp_path/"ds")); assert rc == 0 and (tmp_path/"ds"/"metadata.parquet").exists()
    (tmp_path/"cfg.yaml").write_text(f"out_dir: {tmp_path/'run'}\nepochs: 2\nsimulate: false\nembedding_method: stats\nn_components: 0\n")
    rc, out = run("train", "-f", str(tmp_path/"cfg.yaml")); assert rc == 0, out
    assert (tmp_path/"run"/"model.safetensors").exists() and (tmp_path/"run"/"metrics.csv").exists() and '"headline"' in out
    rc, out = run("train", "--set", "epochz=2"); assert rc == 2 and "unknown key 'epochz'" in out
    rc, out = run("generate", "--run", str(tmp_path/"run"), "--genome-id", "mine", "--n-samples", "4", "--out", str(tmp_path/"gen.csv"))
    assert rc == 0 and "Proposed medium for mine" in out and "probability" in out
    table = pd.read_csv(tmp_path/"gen.csv")
    assert len(table) > 20 and {"ingredient", "g_per_l", "probability"} <= set(table.columns) and (table.g_per_l > 0).all()
    present = table[table.probability > 0.5]
    n = int(re.search(r"(\d+) ingredients", out.splitlines()[0]).group(1))
    assert n == len(present) and all(name in out for name in present.ingredient)     # the recipe: exactly the ingredients above 0.5
    rc, out = run("generate", "--run", str(tmp_path/"run"), "--fasta", str(tmp_path/"mine.fasta"), "--n-samples", "2")
    assert rc == 0
    assert not list(tmp_path.glob("*.db"))

def _cli(*argv, env, cwd):
    return subprocess.run([sys.executable, "-m", "vae_notebooks.media", *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)

def test_train_with_db_never_writes_simulated_data_into_it(tmp_path, monkeypatch, capsys):
    "`--db my.db train` on a lab's database trains on its data only: no simulated genome is added, and the error names my.db and the fix."
    env = dict(os.environ, VAE_NOTEBOOKS_DATA=str(tmp_path/"data"), OMP_NUM_THREADS="1")
    (tmp_path/"iso.fasta").write_text(">chr\n" + "ACGGTCCATT" * 40 + "\n")
    assert main(["--db", str(tmp_path/"my.db"), "ingest", "--fasta", str(tmp_path/"iso.fasta"), "--genome-id", "iso1", "--organism-type", "archaea"]) == 0
    r = _cli("--db", "my.db", "train", "--set", "epochs=1", "--set", "out_dir=run", env=env, cwd=tmp_path)
    assert r.returncode == 2 and "my.db: no positive growth observations" in r.stderr and "--db" in r.stderr and "ingest --growth" in r.stderr, r.stderr
    with MediaDB(tmp_path/"my.db") as db: assert db.query("SELECT genome_id FROM genomes").genome_id.tolist() == ["iso1"]
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data")); monkeypatch.chdir(tmp_path)
    assert main(["--db", "my.db", "train", "--set", "simulate=true", "--set", "epochs=1"]) == 2      # a config alone cannot do it
    assert "pass --simulate to confirm" in capsys.readouterr().err
    with MediaDB(tmp_path/"my.db") as db: assert db.count("genomes") == 1
    assert main(["--db", "my.db", "train", "--simulate", "--set", "epochs=1", "--set", "n_organisms=24", "--set", "genome_length=1200",
                 "--set", "out_dir=run"]) == 0                                                          # asked for: it simulates
    with MediaDB(tmp_path/"my.db") as db: assert db.count("genomes") == 25

def test_generate_errors_name_the_database_and_the_real_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data"))
    (tmp_path/"run").mkdir(); (tmp_path/"run"/"config.json").write_text('{"params": {"embedding_method": "kmer4", "db_path_resolved": null}}')
    from vae_notebooks.media.models import ConditionalMediaVAE
    ConditionalMediaVAE(5, 256, latent_dim=2, hidden_dims=(8, 4)).save(tmp_path/"run")
    with MediaDB(tmp_path/"lab.db") as db: pass
    rc = main(["--db", str(tmp_path/"lab.db"), "generate", "--run", str(tmp_path/"run"), "--genome-id", "ghost"])
    err = capsys.readouterr().err
    assert rc == 2 and f"genome 'ghost' is not in {(tmp_path/'lab.db').resolve()}" in err
    assert "python -m vae_notebooks.media --db" in err and "ingest --fasta FILE --genome-id ghost" in err and "compute_all_genome_embeddings" not in err
