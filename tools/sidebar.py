"""Write nbs/sidebar.yml: the docs sidebar, chapters grouped by family from their number prefix.

`custom_sidebar = true` in pyproject.toml tells nbdev not to generate this file; this script does, from the
notebooks present, so a new chapter appears in the right group without hand-editing."""
import re, sys
from pathlib import Path

GROUPS = [  # (section title, predicate on the notebook's stem)
    ("Maths", lambda n, s: n is not None and n < 3),
    ("Engine", lambda n, s: n is not None and 3 <= n < 20),
    ("MRI", lambda n, s: n is not None and 20 <= n < 30 and not re.search(r"\.(exp3|ode|growth)$", s)),
    ("Growth", lambda n, s: n is not None and 20 <= n < 30 and re.search(r"\.(exp3|ode|growth)$", s)),
    ("ABR", lambda n, s: n is not None and 30 <= n < 40),
    ("Media", lambda n, s: n is not None and 40 <= n < 50),
    ("Magnetics", lambda n, s: n is not None and 50 <= n < 60),
    ("Lab and guides", lambda n, s: n is not None and n >= 60),
    ("Training notebooks", lambda n, s: s.startswith("train_")),
]

def build(nbs: Path) -> str:
    files = sorted(p.name for p in nbs.glob("*.ipynb") if not p.name.startswith(("_", ".")) and p.name != "index.ipynb")
    lines = ["website:", "  sidebar:", "    contents:", "      - index.ipynb"]
    for title, pred in GROUPS:
        members = []
        for f in files:
            m = re.match(r"(\d+)", f)
            if pred(int(m.group(1)) if m else None, Path(f).stem): members.append(f)
        if not members: continue
        lines += [f"      - section: {title}", "        contents:"] + [f"          - {f}" for f in members]
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    nbs = Path(__file__).resolve().parent.parent/"nbs"
    out = nbs/"sidebar.yml"
    txt = build(nbs)
    if not out.exists() or out.read_text() != txt: out.write_text(txt); print(f"wrote {out}")
    sys.exit(0)
