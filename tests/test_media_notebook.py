"papermill run of nbs/train_media.ipynb with tiny parameters in a temporary data root; its numbers are recomputed independently."
import json
from pathlib import Path
import numpy as np
import pandas as pd
import papermill as pm

NB = Path(__file__).resolve().parents[1]/"nbs"/"train_media.ipynb"

def f1(true, pred):
    "Presence F1 over cells, written out again here (not imported from the package)."
    tp = (true & pred).sum(); p, r = tp / max(pred.sum(), 1), tp / max(true.sum(), 1)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)

def test_train_media_notebook_runs_and_its_numbers_hold(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data"))
    out_dir = tmp_path/"run"
    pm.execute_notebook(str(NB), str(tmp_path/"out.ipynb"), kernel_name="python3", cwd=str(NB.parent),
                        parameters=dict(out_dir=str(out_dir), n_organisms=60, epochs=4, data_root=str(tmp_path/"data")), progress_bar=False)
    nb = json.loads((tmp_path/"out.ipynb").read_text())
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    summary = json.loads((out_dir/"summary.json").read_text())
    assert summary["family"] == "media" and json.loads((out_dir/"config.json").read_text())["params"]["epochs"] == 4
    assert {"comparison.png", "latent_pca.png", "interpolation.png"} <= set(summary["figures"])
    ev = pd.DataFrame(summary["comparison"]).set_index(["subset", "method"])
    ds = out_dir/"dataset"; meta = pd.read_parquet(ds/"metadata.parquet")
    Xtr, Xte = np.load(ds/"X_train.npy"), np.load(ds/"X_test.npy")
    # the genome-blind baseline, recomputed from the saved arrays: an ingredient is proposed when most training media hold it
    pred = np.tile((Xtr > 0).mean(0) > 0.5, (len(Xte), 1))
    assert abs(ev.loc[("all held-out genomes", "mean medium"), "presence_f1"] - f1(Xte > 0, pred)) < 1e-9
    # "media unseen in training": recomputed from the metadata
    tr, te = meta[meta.split == "train"], meta[meta.split == "test"].reset_index(drop=True)
    unseen = ~te.medium_id.isin(set(tr.medium_id)).to_numpy()
    assert summary["n_unseen_media_pairs"] == int(unseen.sum()) and 0 < unseen.sum() < len(te)   # a real subset in this world
    assert ev.loc[("media unseen in training", "mean medium"), "n_media"] == unseen.sum()
    assert abs(ev.loc[("media unseen in training", "mean medium"), "presence_f1"] - f1(Xte[unseen] > 0, pred[unseen])) < 1e-9
    # the headline says what the table says, for each subset
    for subset, part in zip(["all held-out genomes", "media unseen in training"], summary["headline"].split("; media unseen")):
        t = ev.loc[subset]
        best = t.drop(index=["model", "reconstruction (encoder sees the medium)"]).presence_f1
        says_better = part.split("->")[1].strip().startswith("the model is better")
        assert says_better == bool(t.loc["model", "presence_f1"] > best.max()), (subset, part)
        assert best.idxmax() in part
    # the genome-blind medium proposes no rule ingredient (each is in a minority of media): recall 0 by construction
    assert summary["rules"]["mean medium"]["rule_recall"] == 0 and summary["rules"]["model"]["n_genomes"] == te.genome_id.nunique()
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert summary["headline"] in printed
    # the model's row is a proposal from the genome alone: the saved model, given only the test embeddings, gives the same F1
    import torch
    from vae_notebooks.media.models import ConditionalMediaVAE
    torch.set_num_threads(1)
    model = ConditionalMediaVAE.load(out_dir)
    p, a = model.predict_from_genome(np.load(ds/"C_test.npy"), n_samples=32, temperature=1.0, seed=0)
    assert abs(ev.loc[("all held-out genomes", "model"), "presence_f1"] - f1(Xte > 0, p > 0.5)) < 1e-9
