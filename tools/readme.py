"""Write README.md from nbs/index.ipynb (what `nbdev-readme` does, without needing Quarto).

Markdown cells are copied; visible code cells become fenced Python blocks followed by their text output;
cells marked `#| hide` are skipped; the title cell's `> summary` stays a block quote."""
import json, sys
from pathlib import Path

def _src(cell): return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]

def _text_out(cell):
    res = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream": res.append("".join(o["text"]))
        elif "data" in o and "text/plain" in o["data"] and "image/png" not in o["data"]: res.append("".join(o["data"]["text/plain"]))
    return "".join(res).rstrip()

def build(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    parts = ["<!-- Generated from nbs/index.ipynb by tools/readme.py (make sync): edit the notebook, not this file. -->"]
    for c in nb["cells"]:
        src = _src(c)
        lines = src.splitlines()
        directives = [l for l in lines if l.startswith("#|")]
        if any(d.replace(" ", "").startswith("#|hide") for d in directives): continue
        body = "\n".join(l for l in lines if not l.startswith("#|")).strip()
        if not body: continue
        if c["cell_type"] == "markdown": parts.append(body)
        elif c["cell_type"] == "code":
            parts.append(f"```python\n{body}\n```")
            out = _text_out(c)
            if out: parts.append(f"```\n{out}\n```")
    return "\n\n".join(parts) + "\n"

if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    out, txt = root/"README.md", build(root/"nbs"/"index.ipynb")
    if not out.exists() or out.read_text() != txt: out.write_text(txt); print(f"wrote {out}")
    sys.exit(0)
