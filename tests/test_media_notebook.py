"papermill run of nbs/train_media.ipynb with tiny parameters in a temporary data root."
import json
from pathlib import Path
import papermill as pm

NB = Path(__file__).resolve().parents[1]/"nbs"/"train_media.ipynb"

def test_train_media_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_NOTEBOOKS_DATA", str(tmp_path/"data"))
    out_dir = tmp_path/"run"
    pm.execute_notebook(str(NB), str(tmp_path/"out.ipynb"), kernel_name="python3", cwd=str(NB.parent),
                        parameters=dict(out_dir=str(out_dir), n_organisms=40, epochs=4, data_root=str(tmp_path/"data")), progress_bar=False)
    summary = json.loads((out_dir/"summary.json").read_text())
    assert {"latent_pca.png", "interpolation.png", "curriculum.png"} <= set(summary["figures"])
    assert [c["added"] for c in summary["curriculum"]] == ["bacteria", "archaea", "fungi", "protists"]
    assert 0 <= summary["rules"]["model"]["rule_precision"] <= 1 and summary["test"]["model"]["mse"] >= 0
    assert json.loads((out_dir/"config.json").read_text())["params"]["epochs"] == 4
    nb = json.loads((tmp_path/"out.ipynb").read_text())
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
