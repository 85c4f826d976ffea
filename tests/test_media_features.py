"Media features and model: k-mer profiles against an independent count, the simulated world, genome-split data sets, the VAE and its metrics."
from collections import Counter
import json
import numpy as np
import pandas as pd
import pytest
import torch
from vae_notebooks.media.db import MediaDB, load_genome_embeddings
from vae_notebooks.media.genomes import simulate_world, default_world, required_ingredients, grows_on
from vae_notebooks.media.features import (kmer_profile, kmer_names, genome_stats, compute_all_genome_embeddings,
                                          build_genome_media_dataset, load_genome_media_dataset)
from vae_notebooks.media.models import (ConditionalMediaVAE, media_scores, baseline_predictions, MediaPairs, MediaLoss, CurriculumCallback,
                                        curriculum_effect)

def naive_profile(seq, k, canonical=False):
    "Independent count: a Python loop over windows into a Counter."
    seq = seq.upper(); counts = Counter()
    for i in range(len(seq) - k + 1):
        w = seq[i:i+k]
        if all(ch in "ACGT" for ch in w):
            if canonical:
                rc = "".join({"A": "T", "C": "G", "G": "C", "T": "A"}[ch] for ch in reversed(w))
                w = min(w, rc)
            counts[w] += 1
    import itertools
    names = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    if canonical:
        comp = {"A": "T", "C": "G", "G": "C", "T": "A"}
        names = [w for w in names if w <= "".join(comp[c] for c in reversed(w))]
    total = sum(counts.values())
    return np.array([counts[w] / total for w in names])

@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("canonical", [False, True])
def test_kmer_profile_matches_independent_count(k, canonical):
    rng = np.random.default_rng(k)
    seq = "".join(rng.choice(list("ACGTNacgtRY"), size=2000, p=[.2, .2, .2, .2, .04, .03, .03, .03, .03, .02, .02]))
    np.testing.assert_allclose(kmer_profile(seq, k, canonical), naive_profile(seq, k, canonical), atol=1e-7)
    assert len(kmer_names(k, canonical)) == len(naive_profile(seq, k, canonical))

def test_kmer_profile_basics():
    p = kmer_profile("AAAAC", 2)
    assert p.shape == (16,) and p[0] == pytest.approx(0.75) and p[1] == pytest.approx(0.25)   # AA x3, AC x1; index = lexicographic
    assert kmer_names(4)[0] == "AAAA" and kmer_names(4)[-1] == "TTTT" and len(kmer_names(4, True)) == 136
    np.testing.assert_allclose(kmer_profile([("a", "ACG"), ("b", "TAC")], 2), naive_profile("ACGNTAC", 2))   # no window spans records
    p8 = kmer_profile("ACGT" * 300, 8); assert p8.shape == (65536,) and p8.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no A/C/G/T window"): kmer_profile("ACGNNACG", 4)
    np.testing.assert_allclose(genome_stats("GGGCNNAT"), [4/6*100, 2/6*100, np.log(8), 2], rtol=1e-6)

def test_simulated_world_is_deterministic_and_follows_rules():
    a, b = simulate_world(12, 1000, seed=3), simulate_world(12, 1000, seed=3)
    assert a["genomes"] == b["genomes"] and a["media"] == b["media"]
    orgs = a["organisms"].set_index("genome_id")
    for g in a["growth"].itertuples():
        o = orgs.loc[g.genome_id]; traits = {t: bool(o[t]) for t in ("halophile", "thermophile", "anaerobe", "acidophile", "vitamin_auxotroph", "methanogen")}
        assert g.growth == grows_on(o.organism_type, traits, a["media"][g.medium_id])
    assert "NaCl" in required_ingredients({"halophile": True})

@pytest.fixture(scope="module")
def world_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("media")/"media.db"
    with MediaDB(path) as db: default_world(db, n_organisms=40, genome_length=1500, seed=1)
    return path

def test_embeddings_and_dataset_split_by_genome(world_db, tmp_path):
    with MediaDB(world_db) as db:
        assert compute_all_genome_embeddings("kmer4_canonical", db=db) == dict(computed=40, failed={})
        assert compute_all_genome_embeddings("kmer4_canonical", db=db)["computed"] == 0
        ids, E = load_genome_embeddings("kmer4_canonical", db=db); assert E.shape == (40, 136)
        ds = build_genome_media_dataset("kmer4", test_size=0.25, val_size=0.25, seed=1, out_dir=tmp_path/"ds", db=db)
    meta = ds["metadata"]
    assert meta.groupby("genome_id").split.nunique().max() == 1
    for s in ("train", "valid", "test"):
        assert set(meta[meta.split == s].organism_type) == {"bacteria", "archaea", "fungi", "protists"}
        assert len(ds[f"X_{s}"]) == len(ds[f"C_{s}"]) == len(ds[f"y_{s}"]) == (meta.split == s).sum()
    assert (ds["X_train"] >= 0).all() and 12 <= (ds["X_train"] > 0).sum(1).mean() <= 22
    again = load_genome_media_dataset(tmp_path/"ds")
    np.testing.assert_array_equal(again["C_test"], ds["C_test"]); assert again["metadata"].genome_id.tolist() == meta.genome_id.tolist()
    with pytest.raises(ValueError, match="unknown embedding method"):
        with MediaDB(world_db) as db: build_genome_media_dataset("bert", db=db, save=False)

def test_model_metrics_and_curriculum(world_db):
    from vae_notebooks.learner import vae_dataloaders, vae_learner
    from vae_notebooks.losses import VAELoss
    torch.manual_seed(0); torch.set_num_threads(1)
    with MediaDB(world_db) as db: ds = build_genome_media_dataset("stats", db=db, save=False, seed=0)
    m = ConditionalMediaVAE.from_data(ds["X_train"], ds["C_train"], latent_dim=3, hidden_dims=(32, 16))
    out = m(torch.tensor(ds["X_train"][:5]), torch.tensor(ds["C_train"][:5]))
    assert out.recon.shape == out.presence_logits.shape == out.log_amount.shape == (5, m.n_ingredients) and (out.recon >= 0).all()
    train = MediaPairs(ds["X_train"], ds["C_train"], ds["y_train"], m); valid = MediaPairs(ds["X_valid"], ds["C_valid"], ds["y_valid"], m)
    cb = CurriculumCallback(verbose=False)
    learn = vae_learner(vae_dataloaders(train, valid, bs=8, n_inp=2, device="cpu", seed=0), m, MediaLoss(beta=0.01),
                        lr=1e-2, cbs=[cb], progress=False, diagnostics=False)
    learn.fit(4)
    sizes = [h["n_train"] for h in cb.history]
    assert [h["added"] for h in cb.history] == ["bacteria", "archaea", "fungi", "protists"]
    assert sizes == sorted(sizes) and sizes[0] == (ds["y_train"] == 0).sum() and sizes[-1] == len(ds["X_train"]) == len(train)
    gen = m.generate(6, ds["C_test"][0], seed=1)
    assert gen.shape == (6, m.n_ingredients) and (gen >= 0).all()
    assert list(curriculum_effect(pd.DataFrame(cb.history)).added) == ["archaea", "fungi"]
    X = ds["X_test"]
    perfect = media_scores(X, X > 0, np.where(X > 0, X, 1.0))
    assert perfect["presence_f1"] == 1 and perfect["amount_log10_error"] == 0
    assert media_scores(X, np.zeros_like(X), np.ones_like(X))["presence_f1"] == 0   # true absences earn nothing

def test_baselines_use_training_data_only_and_nearest_neighbour_is_nearest():
    "The baselines read training rows only: changing a test medium changes no prediction; the NN is the genome at distance 0."
    rng = np.random.default_rng(0)
    Xtr = (rng.random((12, 5)) > 0.5) * rng.lognormal(size=(12, 5)); Ctr = rng.normal(size=(12, 3)); ytr = np.arange(12) % 4
    gid = [f"g{i // 2}" for i in range(12)]        # 6 genomes, two media each (same embedding)
    Ctr[1::2] = Ctr[::2]
    b = baseline_predictions(Xtr, Ctr, ytr, gid, Ctr[[4, 10]], ytr[[4, 10]])
    nn_p = b["nearest-neighbour genome"][0]
    np.testing.assert_allclose(nn_p[0], ((Xtr[4] > 0).astype(float) + (Xtr[5] > 0)) / 2)     # genome g2's two media
    np.testing.assert_allclose(nn_p[1], ((Xtr[10] > 0).astype(float) + (Xtr[11] > 0)) / 2)   # genome g5's
    np.testing.assert_allclose(b["per-type mean"][0][0], (Xtr[ytr == ytr[4]] > 0).mean(0))
