"""Build the documentation site in _docs/ without Quarto (what `make docs` does where Quarto is absent, and
what `make test` builds before the browser check, tools/docs_browser_check.py).

Steps:
1. Process every notebook as `nbdev-proc-nbs` does (it would first download Quarto, impossible offline):
   refresh the Quarto config, rebuild the module index for doc links, `nbdev.serve.proc_nbs` into _proc/.
   This executes each page's import, export and show_doc cells, so a page whose imports fail is caught here.
2. Turn each processed notebook into a page as Quarto would: the front matter becomes the title and the
   description; a cell's `#|` options are obeyed (`echo: false` hides the code, `include: false` the cell,
   `output: false` the outputs) and never shown; `[source](...){target="_blank" ...}` becomes a link with those
   attributes; links to `NN_name.ipynb` and to the published site point to the local page; headings get
   Pandoc's ids (what nbdev's doc links point at); the sidebar of nbs/sidebar.yml is on every page.
3. Maths is typeset by MathJax 3 and the Mermaid diagrams are drawn by mermaid.js, both from files in
   _docs/site_libs/ (taken from the npm registry's `mathjax` and `mermaid` packages by `npm pack` into
   .cache/docs-js/, once): the site works from `file://` with no network.

Fails on a notebook that was not processed, a page that does not convert, and a page that carries an error
output. Usage: `python tools/docs_site.py [--skip-proc] [NAME.ipynb ...]`."""
import argparse, html, json, os, re, shutil, subprocess, sys, tarfile, tempfile, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
VENDOR_DIR = root/".cache"/"docs-js"
# (npm package, version, file inside the package tarball): pinned so the site is the same everywhere.
VENDORED = {"mathjax": ("mathjax", "3.2.2", "package/es5/tex-svg-full.js"),
            "mermaid": ("mermaid", "11.12.2", "package/dist/mermaid.min.js")}
SITE_CSS = """
body.docs-page { margin: 0; }
#docs-sidebar { position: fixed; top: 0; left: 0; bottom: 0; width: 250px; overflow-y: auto; padding: 1rem 0.8rem;
  box-sizing: border-box; background: #f7f7f9; border-right: 1px solid #e3e3e8; font: 14px/1.45 system-ui, sans-serif; }
#docs-sidebar a { color: #2a5db0; text-decoration: none; display: block; padding: 2px 4px; border-radius: 3px; }
#docs-sidebar a:hover { background: #e8eef9; }
#docs-sidebar a.active { background: #2a5db0; color: white; }
#docs-sidebar .docs-site-title { font-weight: 600; font-size: 17px; margin-bottom: 0.6rem; color: #222; }
#docs-sidebar .docs-section { margin: 0.7rem 0 0.2rem 4px; font-weight: 600; color: #555; text-transform: uppercase;
  font-size: 11.5px; letter-spacing: 0.04em; }
#docs-sidebar ul { list-style: none; margin: 0; padding: 0; }
#docs-main { margin-left: 250px; padding: 1.5rem 2rem 3rem 2rem; max-width: 1100px; }
.docs-title-block h1.title { margin: 0 0 0.3rem 0; font-size: 2.2rem; }
.docs-title-block p.description { margin: 0 0 1.2rem 0; font-style: italic; font-size: 1.15rem; opacity: 0.75; }
.jp-Mermaid:not(.jp-RenderedMermaid) pre.mermaid { white-space: pre; }
.jp-RenderedMermaid:not(.jp-mod-warning) > pre.mermaid { display: none; }
.jp-RenderedMermaid.jp-mod-warning { border: 1px solid #e0a000; padding: 0.5em; }
figure.docs-diagram { margin: 0.5rem 0; overflow: auto; max-width: 100%; }
.docs-footer { margin-top: 3rem; font-size: 12px; color: #888; }
@media (max-width: 800px) { #docs-sidebar { position: static; width: auto; } #docs-main { margin-left: 0; } }
"""


def vendor(quiet=False) -> dict:
    "Make sure the pinned MathJax and mermaid files are in .cache/docs-js/ (by `npm pack`); return name -> path."
    paths = {}
    for key, (pkg, version, member) in VENDORED.items():
        dest = VENDOR_DIR/f"{pkg}-{version}"/Path(member).name
        if not dest.exists():
            if shutil.which("npm") is None:
                sys.exit(f"docs site: {dest} is missing and npm is not installed to fetch {pkg}@{version} "
                         "(install Node.js and npm, e.g. `apt-get install -y npm`)")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=VENDOR_DIR) as tmp:
                r = subprocess.run(["npm", "pack", f"{pkg}@{version}", "--silent", "--pack-destination", tmp],
                                   capture_output=True, text=True)
                tgz = list(Path(tmp).glob("*.tgz"))
                if r.returncode or not tgz: sys.exit(f"docs site: `npm pack {pkg}@{version}` failed:\n{r.stderr}")
                with tarfile.open(tgz[0]) as tf:
                    data = tf.extractfile(member).read()
                part = Path(tmp)/dest.name
                part.write_bytes(data)
                os.replace(part, dest)  # atomic: a half-written file never looks like a cached one
            if not quiet: print(f"docs site: fetched {pkg}@{version} -> {dest.relative_to(root)}")
        paths[key] = dest
    return paths


# ---------------------------------------------------------------------------------------------- cell options
_re_opt = re.compile(r"^\s*#\|\s*([\w-]+)\s*(?::\s*(.*?))?\s*$")

def cell_options(source: str):
    "Split a code cell into its `#|` options (a dict) and the code without them."
    opts, code = {}, []
    for line in source.splitlines():
        m = _re_opt.match(line)
        if m:
            val = (m.group(2) or "true").strip().strip("'\"")
            opts[m.group(1).lower()] = {"true": True, "false": False}.get(val.lower(), val)
        else: code.append(line)
    return opts, "\n".join(code).strip("\n")

def front_matter(nb):
    "Pop the raw `---` front matter cell that nbdev writes; return it as a dict."
    import yaml
    for i, c in enumerate(nb.cells):
        if c.cell_type == "raw" and c.source.lstrip().startswith("---"):
            body = c.source.strip().strip("-").strip()
            del nb.cells[i]
            return yaml.safe_load(body) or {}
    return {}

_re_attr_link = re.compile(r'(!?)\[([^\]\n]*)\]\(([^)\s]+)\)\{((?:\s*[\w-]+\s*=\s*"[^"]*")+)\s*\}')

def attr_links(md: str) -> str:
    "Pandoc's `[text](url){key=\"value\"}` as an HTML link carrying those attributes (markdown has no syntax for it)."
    def rep(m):
        if m.group(1): return m.group(0)
        attrs = " ".join(f'{k}="{html.escape(v)}"' for k, v in re.findall(r'([\w-]+)\s*=\s*"([^"]*)"', m.group(4)))
        return f'<a href="{html.escape(m.group(3))}" {attrs}>{m.group(2)}</a>'
    return _re_attr_link.sub(rep, md)

def defined_names(code: str):
    "Anchor ids for what a code cell defines: `name` for a function or class, `cls.method` for its methods."
    import ast
    try: tree = ast.parse(code)
    except SyntaxError: return []
    out = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            patched = [d for d in node.decorator_list if getattr(d, "id", getattr(d, "attr", "")) == "patch"]
            ann = node.args.args[0].annotation if patched and node.args.args else None
            owners = [e.id for e in (ann.elts if isinstance(ann, ast.Tuple) else [ann]) if isinstance(e, ast.Name)] if ann else []
            out += [f"{o}.{node.name}".lower() for o in owners] or [node.name.lower()]
        elif isinstance(node, ast.ClassDef):
            out.append(node.name.lower())
            out += [f"{node.name}.{b.name}".lower() for b in node.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return out

def quarto_cells(nb):
    "Apply the cell options as Quarto does; drop the directive lines from what is shown."
    import nbformat
    documented = set()  # names with a show_doc section: their heading carries the anchor already
    for c in nb.cells:
        if c.cell_type == "code":
            for m in re.finditer(r"show_doc\(\s*([\w.]+)", c.source): documented.add(m.group(1).lower())
    cells, anchored = [], set()
    for c in nb.cells:
        if c.cell_type == "markdown":
            c.source = attr_links(c.source)
        if c.cell_type != "code": cells.append(c); continue
        opts, code = cell_options(c.source)
        if opts.get("include") is False or "hide" in opts: continue
        c.source = code
        if opts.get("output") is False: c.outputs = []
        for o in c.get("outputs", []):
            data = o.get("data", {})
            if "text/markdown" in data:
                md = data["text/markdown"]
                data["text/markdown"] = attr_links("".join(md) if isinstance(md, list) else md)
        c.metadata.pop("execution", None)  # execnb's timing record: a number where nbformat wants strings
        hide_input = opts.get("echo") is False or not code.strip()
        if hide_input:
            c.metadata.setdefault("transient", {})["remove_source"] = True
            c.metadata.setdefault("jupyter", {})["source_hidden"] = True
        if hide_input and not c.get("outputs"): continue
        if not hide_input:  # nbdev links `_private` names to page#name: let the link land on the code defining it
            ids = [i for i in defined_names(code) if i not in documented and i not in anchored]
            if ids:
                anchored.update(ids)
                cells.append(nbformat.v4.new_markdown_cell("".join(f'<span id="{i}"></span>' for i in ids)))
        cells.append(c)
    nb.cells = cells
    return nb


# ---------------------------------------------------------------------------------------------- site pieces
def sidebar_entries(sidebar_yml: Path):
    "(section or None, notebook file) pairs in the order of nbs/sidebar.yml."
    import yaml
    data = yaml.safe_load(sidebar_yml.read_text())
    out = []
    def walk(items, section):
        for it in items or []:
            if isinstance(it, str): out.append((section, it))
            elif isinstance(it, dict) and "section" in it: walk(it.get("contents"), it["section"])
            elif isinstance(it, dict) and "href" in it: out.append((section, it["href"]))
    walk(data["website"]["sidebar"]["contents"], None)
    return out

def sidebar_html(entries, titles: dict, pages: dict, current: str) -> str:
    parts, section = ["<ul>"], None
    for sec, nb in entries:
        if nb not in pages: continue
        if sec != section:
            parts.append(f'</ul><div class="docs-section">{html.escape(sec or "")}</div><ul>'); section = sec
        active = ' class="active" aria-current="page"' if nb == current else ""
        parts.append(f'<li><a href="{pages[nb]}"{active}>{inline_code(titles.get(nb, nb))}</a></li>')
    parts.append("</ul>")
    return "".join(parts)

def inline_code(text: str) -> str:
    "Escape a title for HTML, with `backticked` parts as code (titles are markdown in the front matter)."
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))

def pandoc_id(text: str) -> str:
    "The identifier Pandoc (so Quarto) gives a heading: lower case, punctuation other than _-. dropped, spaces to -."
    t = re.sub(r"<[^>]+>", "", text)
    t = html.unescape(t).replace("¶", "").strip().lower()
    t = re.sub(r"[^\w\s.-]", "", t)
    t = re.sub(r"\s+", "-", t)
    t = re.sub(r"^[^a-z]+", "", t)
    return t or "section"

_re_heading = re.compile(r'<(h[1-6])([^>]*?)\sid="([^"]*)"([^>]*)>(.*?)</\1>', re.S)

def fix_html(body: str, pages: dict, site_url: str) -> str:
    "Heading ids as Pandoc writes them, and links to notebooks or to the published site made local."
    seen = {}
    def head(m):
        inner = m.group(5)
        text = re.sub(r'<a class="anchor-link".*?</a>', "", inner, flags=re.S)
        new = pandoc_id(text)
        n = seen.get(new, 0); seen[new] = n + 1
        if n: new = f"{new}-{n}"
        inner = re.sub(r'(<a class="anchor-link" href=")#[^"]*(")', rf"\g<1>#{new}\2", inner)
        return f'<{m.group(1)}{m.group(2)} id="{new}"{m.group(4)}>{inner}</{m.group(1)}>'
    body = _re_heading.sub(head, body)
    def href(m):
        url = html.unescape(m.group(1))
        if site_url and url.startswith(site_url): url = url[len(site_url):].lstrip("/") or "index.html"
        base, frag = (url.split("#", 1) + [""])[:2]
        name = base.split("/")[-1]
        if name.endswith(".ipynb") and name in pages and not base.startswith(("http:", "https:")):
            url = pages[name] + (f"#{frag}" if frag else "")
        return f'href="{html.escape(url)}"'
    return re.sub(r'href="([^"]*)"', href, body)


def render_site(nbs: dict, out_dir, entries, site_title="docs", site_url="", styles=None, names=None, quarto=True):
    "Write one HTML page per processed notebook (`nbs`: file name -> notebook) and the site's files; return problems."
    from nbconvert import HTMLExporter
    out_dir = Path(out_dir); out_dir.mkdir(parents=True, exist_ok=True)
    libs = vendor()
    libs_dir = out_dir/"site_libs"; libs_dir.mkdir(exist_ok=True)
    for p in libs.values(): shutil.copy2(p, libs_dir/p.name)
    (libs_dir/"site.css").write_text(SITE_CSS)
    if styles and Path(styles).exists(): shutil.copy2(styles, out_dir/"styles.css")
    metas = {n: front_matter(nb) for n, nb in nbs.items()}
    pages = {n: metas[n].get("output-file") or (Path(n).stem + ".html") for n in nbs}
    titles = {n: str(metas[n].get("title") or Path(n).stem) for n in nbs}
    tpl = Path(__file__).resolve().parent/"docs_templates"
    exporter = HTMLExporter(template_name="lab", extra_template_paths=[str(tpl)], template_file="page.html.j2",
                            exclude_input_prompt=True, exclude_output_prompt=True)
    bad, bodies = [], {}
    for name in (names or sorted(nbs)):
        nb = nbs[name]
        try:
            errs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
            if errs: bad.append(f"{name}: the page shows an error output ({errs[0].get('ename')}: {errs[0].get('evalue')})"); continue
            if quarto: quarto_cells(nb)
            nb.metadata["title"] = titles[name]
            res = {"site_libs": "site_libs", "mathjax_file": libs["mathjax"].name, "mermaid_file": libs["mermaid"].name,
                   "extra_css": "styles.css" if styles and Path(styles).exists() else "", "site_title": site_title,
                   "page_title": titles[name], "page_title_html": inline_code(titles[name]),
                   "page_description": metas[name].get("description", ""),
                   "page_description_html": inline_code(str(metas[name].get("description") or "")),
                   "sidebar_html": sidebar_html(entries, titles, pages, name), "source_name": name}
            body, _ = exporter.from_notebook_node(nb, resources=res)
            bodies[name] = fix_html(body, pages, site_url) if quarto else body
        except Exception as e: bad.append(f"{name}: {type(e).__name__}: {e}")
    # nbdev links every backticked name of the module index to page#name, also names the docs show no section
    # for (private helpers, methods without show_doc): such a link would land nowhere, so it becomes plain code.
    ids = {pages[n]: set(re.findall(r'\sid="([^"]+)"', b)) for n, b in bodies.items()}
    def unlink(m):
        page, frag = m.group(1), m.group(2)
        return m.group(0) if page not in ids or frag in ids[page] else f"<code>{m.group(3)}</code>"
    if names is None:  # a full build: pages of notebooks that no longer exist would be checked as if current
        for stale in set(p.name for p in out_dir.glob("*.html")) - set(pages.values()): (out_dir/stale).unlink()
    for name, body in bodies.items():
        if quarto: body = re.sub(r'<a href="([^"#/:]+\.html)#([^"]+)"><code>(.*?)</code></a>', unlink, body)
        dest = out_dir/pages[name]
        tmp = dest.with_suffix(".html.part"); tmp.write_text(body); os.replace(tmp, dest)
    return bad


def build(names=None, skip_proc=False, out_dir=None, skip_file_re=None):
    "Process the notebooks with nbdev (unless `skip_proc`) and write the site."
    import nbformat
    from nbdev.config import get_config
    t0 = time.time()
    os.chdir(root)
    cfg = get_config()
    vendor()
    cache = root/"_proc"
    if not skip_proc:
        from nbdev.quarto import refresh_quarto_yml
        from nbdev.serve import proc_nbs
        import nbdev.doclinks
        refresh_quarto_yml()
        nbdev.doclinks._build_modidx()
        try: cache = proc_nbs(cfg.nbs_path, n_workers=2, **({"skip_file_re": skip_file_re} if skip_file_re else {}))
        except Exception as e:  # nbdev runs each page's import, export and show_doc cells: name the page that failed
            msg = str(e).strip().splitlines()
            sys.exit("docs site: nbdev could not process a notebook (its import/export/show_doc cells must run on their own):\n  "
                     + "\n  ".join([msg[0], "...", msg[-1]] if len(msg) > 2 else msg))
    sources = sorted(p.name for p in cfg.nbs_path.glob("*.ipynb") if not p.name.startswith(("_", "."))
                     and not (skip_file_re and re.search(skip_file_re, p.name)))
    missing = [n for n in sources if not (cache/n).exists()]
    if missing and skip_proc:
        print(f"docs site: warning: --skip-proc: no processed page yet for {missing} (left out)")
        sources = [n for n in sources if n not in missing]; missing = []
    if missing: sys.exit(f"docs site: nbdev processing produced no page for {missing}")
    entries = sidebar_entries(cfg.nbs_path/"sidebar.yml")
    not_in_sidebar = [n for n in sources if n not in {e[1] for e in entries}]
    if not_in_sidebar: print(f"docs site: warning: not in nbs/sidebar.yml (run tools/sidebar.py): {not_in_sidebar}")
    site_url = str(cfg.get("doc_host", "")).rstrip("/") + str(cfg.get("doc_baseurl", "")).rstrip("/") + "/"
    out_dir = Path(out_dir or cfg.doc_path)
    nbs = {n: nbformat.read(cache/n, as_version=4) for n in sources}
    bad = render_site(nbs, out_dir, entries, cfg.get("title", "docs"), site_url, cfg.nbs_path/"styles.css", names)
    if bad: sys.exit("docs site failed:\n  " + "\n  ".join(bad))
    print(f"docs site: {len(names or sources)} pages in {out_dir}/ ({time.time()-t0:.0f}s); open {out_dir/'index.html'}")
    return out_dir


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="only these notebooks (e.g. 01_losses.ipynb); default: all")
    ap.add_argument("--skip-proc", action="store_true", help="reuse _proc/ from the last build (faster while editing)")
    ap.add_argument("--vendor-only", action="store_true", help="only fetch the pinned MathJax and mermaid files")
    ap.add_argument("--out", default=None, help="output folder (default: the doc_path of pyproject, _docs)")
    ap.add_argument("--skip-file-re", default=None, help="leave out notebooks whose name matches (local use, e.g. '^(_|\\.|02a_)')")
    a = ap.parse_args()
    if a.vendor_only: vendor(); sys.exit(0)
    build(a.names or None, a.skip_proc, a.out, a.skip_file_re)
