"Media database: default location, idempotent ingestion, malformed FASTA, hostile ids, crash safety, units, migrations."
import gzip, json, os, re, sqlite3, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import vae_notebooks.media.db as mdb
from vae_notebooks.media.db import (MediaDB, default_db_path, store_genome_metadata, store_genome_growth_observation, store_medium,
                                    store_genome_embedding, load_genome_embeddings, import_media_recipes, media_matrix, to_g_per_l,
                                    schema_version, SCHEMA_VERSION, parse_fasta, import_growth_table)

FASTA = ">chr1 test\nACGTACGTGGCC\nNNACGT\n>plasmid\nGGGCCCAT\n"

@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data"))
    with MediaDB() as d: yield d

def _files(root):
    "FASTA files under root, with the content hash in the name replaced by <sha>."
    return sorted(re.sub(r"\.[0-9a-f]{16}\.fasta$", ".<sha>.fasta", p.relative_to(root).as_posix()) for p in Path(root).rglob("*.fasta"))

def test_default_location_is_under_data_root_not_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data")); monkeypatch.chdir(tmp_path)
    with MediaDB() as d: assert d.path == (tmp_path/"data"/"media"/"media.db").resolve()
    assert default_db_path(tmp_path/"other") == tmp_path/"other"/"media"/"media.db"
    assert not list(tmp_path.glob("*.db"))

def test_ingestion_is_idempotent(db):
    r1 = store_genome_metadata("g1", "bacteria", FASTA, name="one", db=db)
    f = db.root/r1["fasta_path"]
    before = (f.read_bytes(), f.stat().st_mtime_ns)
    rewrapped = ">chr1\nACGTAC\nGTGGCCNNACGT\n>plasmid\ngggcccat\n"   # same records, other wrapping and case
    r2 = store_genome_metadata("g1", "bacteria", rewrapped, name="one", db=db)
    assert (r1["status"], r2["status"]) == ("inserted", "unchanged")
    assert r1["sha256"] == r2["sha256"] and r1["length"] == 26 and r1["n_count"] == 2 and r1["n_records"] == 2
    assert (f.read_bytes(), f.stat().st_mtime_ns) == before
    assert db.count("genomes") == 1 and _files(db.root) == ["genomes/bacteria/g1.<sha>.fasta"]
    with pytest.raises(ValueError, match="replace=True"): store_genome_metadata("g1", "bacteria", ">c\nAAAAAAAAAA\n", db=db)
    store_genome_embedding("g1", "kmer4", np.ones(4), db=db)
    assert store_genome_metadata("g1", "archaea", ">c\nAAAAAAAAAA\n", replace=True, db=db)["status"] == "replaced"
    assert _files(db.root) == ["genomes/archaea/g1.<sha>.fasta"] and db.count("genome_embeddings") == 0  # stale embedding dropped

@pytest.mark.parametrize("text,msg", [("ACGT\n>a\nAC\n", "before the first '>'"), (">a\nACGQT\n", "invalid nucleotide characters ['Q']"),
                                      (">a\n>b\nAC\n", "record 'a'"), ("", "no FASTA records"), (">\nACGT\n", "empty FASTA header")])
def test_malformed_fasta_is_rejected_and_nothing_is_written(db, tmp_path, text, msg):
    p = tmp_path/"bad.fasta"; p.write_text(text)
    with pytest.raises(ValueError, match=None) as e: store_genome_metadata("bad1", "fungi", p, db=db)
    assert msg in str(e.value) and "bad.fasta" in str(e.value)
    assert db.count("genomes") == 0 and _files(db.root) == []

@pytest.mark.parametrize("gid", ["../../etc/passwd", "x'; DROP TABLE genomes;--", "/abs", "a/../../b", "..", "g\x00", "ok id"])
def test_hostile_ids_are_refused(db, gid):
    store_genome_metadata("good", "bacteria", FASTA, db=db); store_medium("m1", {"NaCl": 5}, db=db)
    with pytest.raises(ValueError, match="invalid genome_id"): store_genome_metadata(gid, "bacteria", FASTA, db=db)
    with pytest.raises(ValueError, match="invalid medium_id"): store_medium(gid, {"NaCl": 1}, db=db)
    with pytest.raises(ValueError, match="invalid"): store_genome_growth_observation(gid, "m1", True, db=db)
    tables = {r[0] for r in db.con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "genomes" in tables and db.count("genomes") == 1
    assert _files(db.root) == ["genomes/bacteria/good.<sha>.fasta"]
    assert not [p for p in db.root.parent.rglob("*") if p.name in ("passwd", "b")]

def test_sql_metacharacters_in_values_are_data_not_sql(db):
    name = "x'); DROP TABLE genomes;--"
    store_genome_metadata("g1", "fungi", FASTA, name=name, traits={"note": name}, db=db)
    assert db.query("SELECT name FROM genomes WHERE genome_id = ?", ("g1",)).name[0] == name

def test_crash_after_fasta_write_leaves_nothing(db, monkeypatch):
    orig = mdb._write_fasta
    def crash(path, text): orig(path, text); raise RuntimeError("power cut")
    monkeypatch.setattr(mdb, "_write_fasta", crash)
    with pytest.raises(RuntimeError, match="power cut"): store_genome_metadata("g1", "archaea", FASTA, db=db)
    assert db.count("genomes") == 0 and _files(db.root) == []
    assert not [p for p in db.root.rglob("*") if p.name.endswith(".tmp")]

def test_crash_while_replacing_keeps_the_old_genome(db, monkeypatch):
    store_genome_metadata("g1", "archaea", FASTA, db=db)
    old = next((db.root/"genomes/archaea").glob("g1.*.fasta")).read_text(); old_sha = db.query("SELECT sha256 FROM genomes").sha256[0]
    orig = mdb._write_fasta
    def crash(path, text): orig(path, text); raise KeyboardInterrupt
    monkeypatch.setattr(mdb, "_write_fasta", crash)
    with pytest.raises(KeyboardInterrupt): store_genome_metadata("g1", "archaea", ">c\nTTTTTTTTTT\n", replace=True, db=db)
    monkeypatch.setattr(mdb, "_write_fasta", orig)
    assert [p.read_text() for p in (db.root/"genomes/archaea").glob("g1.*.fasta")] == [old]
    assert db.query("SELECT sha256 FROM genomes").sha256.tolist() == [old_sha]

def test_crash_inside_the_transaction_before_the_file(db, monkeypatch):
    def crash(path, text): raise OSError("disk full")
    monkeypatch.setattr(mdb, "_write_fasta", crash)
    with pytest.raises(OSError, match="disk full"): store_genome_metadata("g1", "protists", FASTA, db=db)
    assert db.count("genomes") == 0 and _files(db.root) == []

def test_growth_observations(db):
    store_genome_metadata("g1", "bacteria", FASTA, db=db); store_medium("LB", {"Tryptone": 10, "NaCl": 10}, db=db)
    a = store_genome_growth_observation("g1", "LB", True, conditions={"ph": 7, "temperature_c": 37}, db=db)
    b = store_genome_growth_observation("g1", "LB", False, conditions={"temperature_c": 37, "ph": 7}, db=db)
    assert a == b and db.count("genome_growth") == 1 and db.query("SELECT growth FROM genome_growth").growth[0] == 0
    with pytest.raises(KeyError, match="medium_id 'nope'"): store_genome_growth_observation("g1", "nope", True, db=db)
    with pytest.raises(ValueError, match="score"): store_genome_growth_observation("g1", "LB", True, score=2.0, db=db)

def test_embeddings_are_arrays_not_pickles(db):
    store_genome_metadata("g1", "bacteria", FASTA, db=db)
    dense = np.arange(6, dtype=np.float32).reshape(2, 3); sparse = np.zeros(65536, np.float32); sparse[[1, 7, 65535]] = [.5, .25, .25]
    store_genome_embedding("g1", "dense", dense, db=db); store_genome_embedding("g1", "kmer8", sparse, db=db)
    row = db.con.execute("SELECT dtype, shape, layout, data FROM genome_embeddings WHERE method='dense'").fetchone()
    assert (row[0], json.loads(row[1]), row[2]) == ("float32", [2, 3], "dense") and bytes(row[3]) == dense.astype("<f4").tobytes()
    assert tuple(db.con.execute("SELECT layout, length(data) FROM genome_embeddings WHERE method='kmer8'").fetchone()) == ("coo", 24)
    np.testing.assert_array_equal(load_genome_embeddings("dense", db=db)[1][0], dense)
    np.testing.assert_array_equal(load_genome_embeddings("kmer8", db=db)[1][0], sparse)
    with pytest.raises(ValueError, match="NaN"): store_genome_embedding("g1", "bad", np.array([np.nan]), db=db)

@pytest.mark.parametrize("amount,unit,mm,expected", [(1, "g/L", None, 1.0), (250, "mg/L", None, 0.25), (20, "µg/L", None, 2e-5),
    (20, "μg/L", None, 2e-5), (20, "ug / l", None, 2e-5), (1.5, "g/100mL", None, 15.0), (2, "% w/v", None, 20.0), (2, "%w/v", None, 20.0),
    (10, "mM", 58.44, 0.5844), (1, "M", 180.16, 180.16), (100, "µM", 1355.37, 0.135537), (3, "G/L", None, 3.0)])
def test_units_normalise_to_g_per_l(amount, unit, mm, expected):
    assert to_g_per_l(amount, unit, mm) == pytest.approx(expected)

def test_unknown_units_and_bad_rows_write_nothing(db, tmp_path):
    good = pd.DataFrame(dict(medium=["M9", "M9"], ingredient=["Glucose", "NaCl"], amount=[0.4, 8.56], unit=["% w/v", "mM"], molar_mass=[180.16, 58.44]))
    import_media_recipes(good, db=db)
    assert media_matrix(["M9"], ["glucose", "nacl"], db=db).values[0] == pytest.approx([4.0, 0.50025], rel=1e-4)
    n = db.count("media_compositions")
    bad = tmp_path/"recipes.csv"
    pd.DataFrame(dict(medium=["A", "A", "B"], ingredient=["Glucose", "Agar", "NaCl"], amount=[1, 15, 5], unit=["g/L", "g/L", "cups"])).to_csv(bad, index=False)
    with pytest.raises(ValueError) as e: import_media_recipes(bad, db=db)
    assert "recipes.csv row 4" in str(e.value) and "'B'" in str(e.value) and "unknown unit 'cups'" in str(e.value) and "mg/L" in str(e.value)
    assert db.count("media_compositions") == n and db.count("media") == 1
    nomass = pd.DataFrame(dict(medium=["C"], ingredient=["Mystery salt"], amount=[5], unit=["mM"]))
    with pytest.raises(ValueError, match="no molar mass"): import_media_recipes(nomass, db=db)
    with pytest.raises(ValueError, match="missing column"): import_media_recipes(pd.DataFrame(dict(medium=["x"])), db=db)
    neg = pd.DataFrame(dict(medium=["D"], ingredient=["NaCl"], amount=[-1], unit=["g/L"]))
    with pytest.raises(ValueError, match=">= 0"): import_media_recipes(neg, db=db)

def test_migration_from_v1_and_future_refused(tmp_path):
    with MediaDB(tmp_path/"m.db", migrate_to=1) as d: assert schema_version(d.con) == 1
    with MediaDB(tmp_path/"m.db") as d:
        assert schema_version(d.con) == SCHEMA_VERSION
        assert d.query("SELECT version FROM schema_migrations").version.tolist() == list(range(1, SCHEMA_VERSION + 1))
    con = sqlite3.connect(tmp_path/"m.db"); con.execute("PRAGMA user_version = 999"); con.close()
    with pytest.raises(RuntimeError, match="newer"): MediaDB(tmp_path/"m.db")

def test_db_module_init_command(tmp_path):
    env = dict(os.environ, VAE_NOTEBOOKS_DATA=str(tmp_path/"data"))
    r = subprocess.run([sys.executable, "-m", "vae_notebooks.media.db", "init"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/"data"/"media"/"media.db").exists() and f"schema version {SCHEMA_VERSION}" in r.stdout
    assert not list(tmp_path.glob("*.db"))

# ---- hostile inputs of issue 17: each was measured wrong in the first version ----

def test_growth_no_is_false_and_a_bad_row_imports_nothing(db, tmp_path):
    store_genome_metadata("g1", "bacteria", FASTA, db=db); store_medium("m1", {"NaCl": 5}, db=db); store_medium("m2", {"NaCl": 9}, db=db)
    f = tmp_path/"growth.csv"
    f.write_text("genome_id,medium_id,growth,score,temperature_c\ng1,m1,no,,37\ng1,m2,YES,0.5,30\n")
    import_growth_table(f, db=db)
    got = db.query("SELECT medium_id, growth, score FROM genome_growth ORDER BY medium_id")
    assert got.growth.tolist() == [0, 1] and pd.isna(got.score[0]) and got.score[1] == 0.5   # blank score: not measured (NULL)
    f.write_text("genome_id,medium_id,growth,temperature_c\ng1,m1,yes,37.0\ng1,m2,perhaps,30\n")
    with pytest.raises(ValueError, match=r"growth.csv row 3, column 'growth': 'perhaps' is not a boolean"): import_growth_table(f, db=db)
    assert db.query("SELECT growth FROM genome_growth ORDER BY medium_id").growth.tolist() == [0, 1]   # row 2 was not committed
    f.write_text("genome_id,medium_id,growth,temperature_c\ng1,m1,yes,37.0\ng1,m9,yes,30\n")
    with pytest.raises(KeyError, match="row 3: medium_id 'm9' is not in"): import_growth_table(f, db=db)
    assert db.query("SELECT growth FROM genome_growth ORDER BY medium_id").growth.tolist() == [0, 1]

def test_numeric_condition_keys_are_normalised(db):
    store_genome_metadata("g1", "bacteria", FASTA, db=db); store_medium("m1", {"NaCl": 5}, db=db)
    a = store_genome_growth_observation("g1", "m1", True, conditions={"temperature_c": 37, "ph": 7}, db=db)
    b = store_genome_growth_observation("g1", "m1", "no", conditions={"temperature_c": 37.0, "ph": "7.0"}, db=db)
    assert a == b and db.count("genome_growth") == 1 and db.query("SELECT growth FROM genome_growth").growth[0] == 0

@pytest.mark.parametrize("gid", ["abc\n", "abc\r\n", "abc ", "\nabc"])
def test_trailing_newline_ids_are_refused_everywhere(db, gid):
    with pytest.raises(ValueError, match="invalid genome_id"): store_genome_metadata(gid, "bacteria", FASTA, db=db)
    with pytest.raises(ValueError, match="invalid medium"): import_media_recipes(pd.DataFrame(dict(medium=[gid], ingredient=["NaCl"], amount=[1], unit=["g/L"])), db=db)
    assert db.count("genomes") == 0 and db.count("media") == 0 and not list(db.root.rglob("abc*"))

def test_gzipped_fasta_is_read_and_binary_junk_names_the_file(db, tmp_path):
    (tmp_path/"g.fasta.gz").write_bytes(gzip.compress(FASTA.encode()))
    r = store_genome_metadata("gz", "fungi", tmp_path/"g.fasta.gz", db=db)
    assert r["status"] == "inserted" and r["sha256"] == mdb.fasta_sha256(parse_fasta(FASTA))
    (tmp_path/"photo.fasta").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    with pytest.raises(ValueError, match=r"photo.fasta: not a FASTA text file"): store_genome_metadata("junk", "fungi", tmp_path/"photo.fasta", db=db)
    assert db.count("genomes") == 1

@pytest.mark.parametrize("seq,why", [("N" * 500, "all N"), ("ACGU" * 100, "RNA"), ("ACGTNNRYACGTNN" * 20, "ambiguous")])
def test_genome_without_a_usable_window_is_rejected_at_ingest(db, seq, why):
    with pytest.raises(ValueError, match=f"no usable A/C/G/T window.*{why}"): store_genome_metadata("bad", "archaea", f">x\n{seq}\n", db=db)
    assert db.count("genomes") == 0 and _files(db.root) == []

def test_stock_solutions_in_ml_per_l(db):
    rows = import_media_recipes(pd.DataFrame(dict(medium=["SL"], ingredient=["Trace element solution SL-10"], amount=[1.0], unit=["mL/L"])), db=db)
    assert rows.amount_g_per_l.tolist() == [1.0]
    assert to_g_per_l(10, "mL/L", density=1.3) == pytest.approx(13.0)

def test_orphans_from_a_crash_are_cleaned_on_open_but_committed_files_kept(tmp_path):
    with MediaDB(tmp_path/"m.db") as d:
        r = store_genome_metadata("g1", "bacteria", FASTA, db=d)
    d2 = tmp_path/"genomes"/"bacteria"
    (d2/".g2.x.fasta.abcd.tmp").write_text(">half")
    (d2/f"g2.{'ab'*8}.fasta").write_text(FASTA)
    with MediaDB(tmp_path/"m.db") as d:
        assert _files(d.root) == ["genomes/bacteria/g1.<sha>.fasta"] and (d.root/r["fasta_path"]).is_file()
        assert not list(d2.glob("*.tmp"))
