"""The offline docs site (tools/docs_site.py) and its browser check (tools/docs_browser_check.py).

The pure-Python parts are checked directly. The browser check is run on a tiny site built here from hand-made
processed notebooks: a good page must pass, and each kind of fault a reader would see (raw maths, an undrawn
diagram, a broken internal link, a visible directive) must make it fail, naming the page. Needs Chromium and npm
(for the pinned MathJax/mermaid files): skipped loudly where absent, except under CI, where it fails."""
import importlib.util, os, shutil, sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

ROOT = Path(__file__).resolve().parent.parent

def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT/"tools"/f"{name}.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

site = _load("docs_site")
check = _load("docs_browser_check")


def test_cell_options_and_quarto_cells():
    opts, code = site.cell_options("#| echo: false\n#| output: asis\nshow_doc(f)")
    assert opts == {"echo": False, "output": "asis"} and code == "show_doc(f)"
    nb = new_notebook(cells=[
        new_code_cell("#| echo: false\n#| output: asis\nshow_doc(f)",
                      outputs=[new_output("execute_result", {"text/markdown": '[source](https://x/y.py#L3){target="_blank" style="float:right"}'})]),
        new_code_cell("#| include: false\nsecret = 1"),
        new_code_cell("#| hide\nhidden = 2"),
        new_code_cell("#| output: false\nprint('noise')", outputs=[new_output("stream", name="stdout", text="noise")]),
        new_code_cell("#| eval: false\ndef _helper(): pass")])
    cells = site.quarto_cells(nb).cells
    srcs = [c.source for c in cells]
    assert not any("#|" in s for s in srcs), srcs                       # no directive is shown
    assert not any("secret" in s or "hidden" in s for s in srcs)         # include: false and hide drop the cell
    shown_doc = [c for c in cells if c.get("outputs") and "text/markdown" in c.outputs[0].get("data", {})][0]
    assert shown_doc.metadata["transient"]["remove_source"] is True      # echo: false hides the code, keeps the output
    md = shown_doc.outputs[0]["data"]["text/markdown"]
    assert '<a href="https://x/y.py#L3" target="_blank" style="float:right">source</a>' == md
    assert [c for c in cells if "noise" in c.source][0].outputs == []    # output: false
    assert '<span id="_helper"></span>' in srcs                          # the definition gets the anchor nbdev links to


def test_front_matter_links_and_ids():
    nb = new_notebook(cells=[new_raw_cell("---\ntitle: Losses\ndescription: The ELBO\noutput-file: losses.html\n---\n"),
                             new_markdown_cell("text")])
    assert site.front_matter(nb) == {"title": "Losses", "description": "The ELBO", "output-file": "losses.html"}
    assert len(nb.cells) == 1
    assert site.pandoc_id("KL of a diagonal Gaussian <a class=\"anchor-link\">¶</a>") == "kl-of-a-diagonal-gaussian"
    assert site.pandoc_id("VAELearner.fit") == "vaelearner.fit"
    html_in = ('<h2 id="The-ELBO">The ELBO<a class="anchor-link" href="#The-ELBO">¶</a></h2>'
               '<a href="01_losses.ipynb#the-elbo">x</a> <a href="https://site.io/proj/losses.html#kl">y</a>'
               ' <a href="https://github.com/z">z</a>')
    out = site.fix_html(html_in, {"01_losses.ipynb": "losses.html"}, "https://site.io/proj/")
    assert 'id="the-elbo"' in out and 'href="#the-elbo"' in out
    assert 'href="losses.html#the-elbo"' in out and 'href="losses.html#kl"' in out and 'href="https://github.com/z"' in out
    assert site.inline_code("`python -m x` & y") == "<code>python -m x</code> &amp; y"


# ------------------------------------------------------------------------------------------- in a browser
def _need_browser():
    missing = [n for n, ok in (("chromium", check.find_chromium()), ("npm", shutil.which("npm") or all(
        (site.VENDOR_DIR/f"{p}-{v}"/Path(m).name).exists() for p, v, m in site.VENDORED.values()))) if not ok]
    if missing:
        if os.environ.get("CI"): pytest.fail(f"{missing} missing: the docs browser check must run in CI")
        pytest.skip(f"!!! {missing} not installed: the docs browser check was NOT run !!!")

def _page(title, *cells, out=None):
    fm = f"---\ntitle: {title}\ndescription: about {title}\n" + (f"output-file: {out}\n" if out else "") + "---\n"
    return new_notebook(cells=[new_raw_cell(fm), *cells])

GOOD_CELLS = lambda: [
    new_markdown_cell("## The ELBO\n\nInline $\\mathbb E_q[\\log p(x\\mid z)]$ and display\n\n$$\\mathrm{KL}(q\\,\\|\\,p) \\ge 0$$\n\n"
                      "See [the other page](02_other.ipynb#a-section) and [below](#the-elbo)."),
    new_code_cell("#| echo: false\n#| output: asis\nshow_doc(f)", outputs=[new_output("execute_result", {
        "text/markdown": '[source](https://example.org/f.py){target="_blank" style="float:right"}\n\n### f\n\n> f(x)\n\n'
                         "```mermaid\nflowchart TD\n  a[\"input<br/>2×4\"] --> b[encoder]\n```\n"})]),
    new_code_cell("x = 1 + 1\nx", outputs=[new_output("execute_result", {"text/plain": "2"})])]

def _build(tmp_path, nbs, quarto=True):
    entries = [(None, n) for n in nbs]
    bad = site.render_site(nbs, tmp_path, entries, "test site", "https://site.io/proj/", quarto=quarto)
    assert bad == []
    return tmp_path

def _run_check(tmp_path, capsys):
    rc = check.main([str(tmp_path), "--site-url", "https://site.io/proj/", "--ready-timeout", "30"])
    return rc, capsys.readouterr()

def _other():
    return _page("Other", new_markdown_cell("## A section\n\nBack to [the first page](01_first.ipynb)."), out="other.html")

def test_browser_check_passes_a_good_site(tmp_path, capsys):
    _need_browser()
    _build(tmp_path, {"01_first.ipynb": _page("First", *GOOD_CELLS(), out="index.html"), "02_other.ipynb": _other()})
    rc, cap = _run_check(tmp_path, capsys)
    assert rc == 0, cap.err
    assert "2 pages OK" in cap.out and "1 diagrams drawn" in cap.out

@pytest.mark.parametrize("fault,cells,expected", [
    ("raw maths", [new_markdown_cell('Plain <span class="tex2jax_ignore">$x^2$ here</span>.')], "untypeset maths"),
    ("bad diagram", [new_markdown_cell("```mermaid\nflowchart TD\n  a[ --> \n```")], "undrawn diagram"),
    ("broken link", [new_markdown_cell("Next: [missing](99_missing.ipynb).")], "broken internal link: 99_missing.ipynb"),
    ("missing anchor", [new_markdown_cell("See [x](02_other.ipynb#no-such-section).")], "no anchor #no-such-section"),
])
def test_browser_check_fails_on_each_fault(tmp_path, capsys, fault, cells, expected):
    _need_browser()
    _build(tmp_path, {"01_first.ipynb": _page("First", *GOOD_CELLS(), *cells, out="index.html"), "02_other.ipynb": _other()})
    rc, cap = _run_check(tmp_path, capsys)
    assert rc == 1, f"{fault}: the check passed\n{cap.out}"
    assert "index.html: " in cap.err and expected in cap.err, cap.err
    assert "  other.html: " not in cap.err  # the good page is not blamed

def test_browser_check_fails_on_visible_directives_and_missing_libraries(tmp_path, capsys):
    _need_browser()
    # Without the Quarto-like processing (the old nbconvert build) the directives and the leaked attributes show.
    _build(tmp_path, {"01_first.ipynb": _page("First", *GOOD_CELLS(), new_markdown_cell("[x](https://site.io/proj/other.html)"),
                                              out="index.html"), "02_other.ipynb": _other()}, quarto=False)
    rc, cap = _run_check(tmp_path, capsys)
    assert rc == 1
    for expected in ("visible directive: #| echo: false", "visible directive: show_doc(f)", 'visible directive: {target="_blank"',
                     "broken internal link: 02_other.ipynb", "points to the published site"):
        assert expected in cap.err, (expected, cap.err)
    # A good site whose MathJax and mermaid.js are missing (what the CDN build looked like offline).
    _build(tmp_path, {"01_first.ipynb": _page("First", *GOOD_CELLS(), out="index.html"), "02_other.ipynb": _other()})
    for f in (tmp_path/"site_libs").glob("*.js"): f.unlink()
    rc, cap = _run_check(tmp_path, capsys)
    assert rc == 1 and "untypeset maths" in cap.err and "undrawn diagram" in cap.err, cap.err
    assert "MathJax could not be loaded" in cap.err and "mermaid.js could not be loaded" in cap.err, cap.err
