"""The docs check used where Quarto is absent (CI): process every notebook the way `nbdev-proc-nbs` does,
then convert each processed page to HTML with nbconvert into _docs/. Fails on a notebook that was not
processed, on a page that does not convert, and on a page that carries an error output.

`nbdev-proc-nbs` itself first tries to download and install Quarto (impossible offline); this script runs
the same steps it runs after that: refresh the Quarto config, rebuild the module index for doc links, and
`nbdev.serve.proc_nbs`. Processing executes each page's import, export and show_doc cells (as nbdev does), so a
page whose imports fail is caught here. Cells' `execution` timing metadata (written by execnb as numbers, which
nbformat's schema rejects) is dropped before conversion."""
import json, os, sys, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
os.chdir(root)
from nbdev.config import get_config
from nbdev.quarto import refresh_quarto_yml
from nbdev.serve import proc_nbs
import nbdev.doclinks
from nbconvert import HTMLExporter
import nbformat

def main():
    t0 = time.time()
    cfg = get_config()
    refresh_quarto_yml()
    nbdev.doclinks._build_modidx()
    cache = proc_nbs(cfg.nbs_path, n_workers=2)
    sources = sorted(p.name for p in cfg.nbs_path.glob("*.ipynb") if not p.name.startswith(("_", ".")))
    missing = [n for n in sources if not (cache/n).exists()]
    if missing: sys.exit(f"docs check: nbdev processing produced no page for {missing}")

    out_dir = root/"_docs"; out_dir.mkdir(exist_ok=True)
    exporter = HTMLExporter()
    bad = []
    for name in sources:
        page = cache/name
        try:
            nb = nbformat.read(page, as_version=4)
            for c in nb.cells: c.metadata.pop("execution", None)  # execnb's timing record: a number where nbformat wants strings
            errs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
            if errs: bad.append(f"{name}: the page shows an error output ({errs[0].get('ename')}: {errs[0].get('evalue')})"); continue
            body, _ = exporter.from_notebook_node(nb)
            (out_dir/(Path(name).stem + ".html")).write_text(body)
        except Exception as e: bad.append(f"{name}: {type(e).__name__}: {e}")
    if bad: sys.exit("docs check failed:\n  " + "\n  ".join(bad))
    print(f"docs check: {len(sources)} notebooks processed and converted to HTML in _docs/ ({time.time()-t0:.0f}s)")


if __name__ == "__main__":
    sys.exit(main())
