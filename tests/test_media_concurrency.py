"Media database under two real writer processes and under `kill -9` at every stage of an ingest: the store stays consistent."
import multiprocessing as mp
import os, signal, sqlite3, time
from pathlib import Path
import pytest
import vae_notebooks.media.db as mdb
from vae_notebooks.media.db import MediaDB, store_genome_metadata, fasta_sha256, parse_fasta, STAGES, PAUSE_ENV

A = ">chr\n" + "ACGTTGCA" * 50 + "\n"
B = ">chr\n" + "GGCCAATT" * 50 + "\n"
CTX = mp.get_context("fork")   # real processes, started fast (the children use only sqlite and the file system)
N_RUNS = 30

def check_store(path) -> list[str]:
    "Everything wrong with the store at `path`: integrity, rows whose file is missing or differs, stray files."
    problems = []
    con = sqlite3.connect(path)
    if (ic := con.execute("PRAGMA integrity_check").fetchone()[0]) != "ok": problems.append(f"integrity_check: {ic}")
    root = Path(path).parent
    rows = con.execute("SELECT genome_id, fasta_path, sha256 FROM genomes").fetchall(); con.close()
    for gid, rel, sha in rows:
        f = root/rel
        if not f.is_file(): problems.append(f"{gid}: file {rel} missing")
        elif fasta_sha256(parse_fasta(f.read_text())) != sha: problems.append(f"{gid}: file {rel} does not match its row")
    referenced = {rel for _, rel, _ in rows}
    for f in (root/"genomes").rglob("*") if (root/"genomes").exists() else []:
        if f.is_file() and f.relative_to(root).as_posix() not in referenced: problems.append(f"stray file {f.relative_to(root)}")
    return problems

def _writer(db_paths, contents, barrier, results):
    "Ingest genome `g1` into each database in turn, meeting the other writer at a barrier before each one."
    for path, text in zip(db_paths, contents):
        with MediaDB(path) as db:
            barrier.wait()
            try: results.put((path, store_genome_metadata("g1", "bacteria", text, db=db)["status"]))
            except Exception as e: results.put((path, f"{type(e).__name__}: {e}"))

def test_two_writers_same_genome(tmp_path):
    "Two processes ingest the same genome id at the same moment, N_RUNS times (same content in half the runs, different in the other half)."
    paths = [str(tmp_path/f"run{i}"/"media.db") for i in range(N_RUNS)]
    for p in paths: MediaDB(p).close()
    same = [i % 2 == 0 for i in range(N_RUNS)]
    barrier, results = CTX.Barrier(2), CTX.Queue()
    procs = [CTX.Process(target=_writer, args=(paths, [A if s or w == 0 else B for s in same], barrier, results)) for w in range(2)]
    for p in procs: p.start()
    out = [results.get(timeout=120) for _ in range(2 * N_RUNS)]
    for p in procs: p.join(60); assert p.exitcode == 0
    by_run = {p: sorted(s for q, s in out if q == p) for p in paths}
    for i, p in enumerate(paths):
        st = by_run[p]
        if same[i]: assert st == ["inserted", "unchanged"], (i, st)
        else: assert st[0].startswith("ValueError: genome 'g1' is already stored") and st[1] == "inserted", (i, st)
        assert check_store(p) == [], (i, check_store(p))
        with MediaDB(p) as db: assert db.count("genomes") == 1

def _ingest(path, text, replace):
    with MediaDB(path) as db: store_genome_metadata("g1", "bacteria", text, replace=replace, db=db)

@pytest.mark.parametrize("replace", [False, True], ids=["insert", "replace"])
@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_at_every_stage(tmp_path, monkeypatch, stage, replace):
    "Pause an ingest at `stage` (test hook), SIGKILL the process, reopen: the store is consistent and the next ingest works."
    db = tmp_path/"media.db"
    if replace: _ingest(db, A, False)
    before = check_store(db) if db.exists() else []
    pause = tmp_path/"paused"
    monkeypatch.setenv(PAUSE_ENV, stage); monkeypatch.setenv(PAUSE_ENV + "_FILE", str(pause))
    p = CTX.Process(target=_ingest, args=(db, B, replace)); p.start()
    t0 = time.time()
    while not pause.exists():
        assert p.is_alive() and time.time() - t0 < 60, f"the writer never reached stage {stage!r} (exit code {p.exitcode})"
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL); p.join(10)
    assert p.exitcode == -signal.SIGKILL
    monkeypatch.delenv(PAUSE_ENV)
    with MediaDB(db) as d:   # opening cleans what the killed writer left
        rows = d.query("SELECT sha256 FROM genomes").sha256.tolist()
    assert before == [] and check_store(db) == [], check_store(db)
    committed = stage == "committed"
    expected = [fasta_sha256(parse_fasta(B))] if committed else [fasta_sha256(parse_fasta(A))] if replace else []
    assert rows == expected
    with MediaDB(db) as d: status = store_genome_metadata("g1", "bacteria", B, replace=True, db=d)["status"]
    assert status == ("unchanged" if committed else "replaced" if replace else "inserted")
    assert check_store(db) == []
