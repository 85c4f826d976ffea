"""Load every page of the docs site in headless Chromium and fail on what a reader would see broken.

For each page (opened from `file://`, as a person offline would), after MathJax and mermaid.js have finished,
the rendered DOM is inspected through the DevTools protocol. A page fails on:
- untypeset maths: visible prose (outside code) still holding `$...$`, `$$`, `\\(` or `\\[`, or a MathJax error;
- an undrawn diagram: a Mermaid block without a drawn SVG, a drawing error, or diagram source shown as text;
- a broken internal link: a link to a file that is not in the site (e.g. `01_losses.ipynb`), to an anchor that
  is not on the target page, or to the published site instead of the local page;
- a visible directive: a `#|` line or a `show_doc(` call in a code cell, a leaked `{target="_blank" ...}`,
  front matter shown as text;
- no title, no sidebar, a broken image, or a script error on the page.

Usage: `python tools/docs_browser_check.py [SITE_DIR] [--page losses.html ...] [--screenshots DIR]`.
Exit status 1 lists every problem by page. Chromium is Debian's `chromium` (`apt-get install -y chromium`);
where it is absent the check is skipped with a loud message, except under CI (`CI` set), where that fails."""
import argparse, base64, json, os, re, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path
from urllib.parse import unquote, urlparse

root = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--allow-file-access-from-files", "--hide-scrollbars", "--remote-debugging-port=0"]
SHOT_PAGES = ["index.html", "losses.html", "mri.models.html", "magnetics.detector.html", "model_gallery.html"]

# Runs in the page: returns what the checks need (as JSON). Hidden elements (display:none etc.) do not count.
INSPECT_JS = r"""
(() => {
  const vis = (el) => el && el.checkVisibility ? el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}) : true;
  const SKIP = "script,style,noscript,textarea,mjx-container,svg,pre,code,kbd,samp";
  const textOf = (el) => {
    let s = "";
    for (const n of el.childNodes) {
      if (n.nodeType === 3) s += n.textContent;
      else if (n.nodeType === 1 && !n.matches(SKIP) && vis(n)) s += textOf(n);
    }
    return s;
  };
  const out = {title: "", sidebar_links: 0, sidebar_active: 0, raw_math: [], math_errors: [], diagrams: 0,
               undrawn: [], directives: [], links: [], ids: [], broken_images: [], state: window.__docs || null};
  const h1 = document.querySelector("h1.title"); out.title = h1 ? h1.textContent.trim() : "";
  out.sidebar_links = document.querySelectorAll("#docs-sidebar a").length;
  out.sidebar_active = document.querySelectorAll("#docs-sidebar a.active").length;
  const mathRe = /\$\$|\\\(|\\\[|(^|[^\\$])\$(?=[^\s$])[^$\n]*?[^\s\\$]\$(?!\d)|(^|[^\\$])\$[^\s$]\$/;
  for (const el of document.querySelectorAll("#docs-main p, #docs-main li, #docs-main td, #docs-main th, #docs-main h1, #docs-main h2, #docs-main h3, #docs-main h4, #docs-main blockquote, #docs-main dd, #docs-main dt, #docs-main figcaption")) {
    if (!vis(el) || el.closest(SKIP)) continue;
    const t = textOf(el), m = t.match(mathRe);
    if (m) out.raw_math.push(t.slice(Math.max(0, m.index - 30), m.index + 50).replace(/\s+/g, " "));
  }
  for (const el of document.querySelectorAll("mjx-merror, [data-mjx-error]"))
    out.math_errors.push((el.getAttribute("data-mjx-error") || el.textContent).slice(0, 100));
  for (const box of document.querySelectorAll(".jp-Mermaid")) {
    out.diagrams++;
    const svg = box.querySelector("figure.docs-diagram svg"), r = svg && svg.getBoundingClientRect();
    const text = (box.querySelector("pre.mermaid") || box).textContent.trim().slice(0, 60);
    if (!svg || box.classList.contains("jp-mod-warning") || !(r.width > 20 && r.height > 20)) out.undrawn.push(text);
  }
  for (const el of document.querySelectorAll("code.language-mermaid, pre.mermaid")) {
    if (!el.closest(".jp-Mermaid")) out.undrawn.push("not a diagram block: " + el.textContent.trim().slice(0, 60));
  }
  for (const pre of document.querySelectorAll("#docs-main pre")) {
    if (!vis(pre) || pre.closest(".jp-Mermaid")) continue;
    const t = pre.textContent;
    if (/^\s*(flowchart|graph)\s+(TD|TB|LR|RL|BT)\b/.test(t)) out.undrawn.push("diagram source shown as text: " + t.trim().slice(0, 60));
  }
  for (const area of document.querySelectorAll(".jp-InputArea")) {
    if (!vis(area)) continue;
    const t = area.textContent;
    for (const re of [/^\s*#\|.*$/m, /show_doc\(.*$/m]) { const m = t.match(re); if (m) out.directives.push(m[0].trim().slice(0, 80)); }
  }
  const body = document.getElementById("docs-main") ? textOf(document.getElementById("docs-main")) : document.body.innerText;
  for (const re of [/\{target="_blank"[^}]*\}/, /^\s*output-file:.*$/m, /^---\s*\n\s*(title|description):/m]) {
    const m = body.match(re); if (m) out.directives.push(m[0].trim().slice(0, 80));
  }
  for (const a of document.querySelectorAll("a[href]")) out.links.push([a.getAttribute("href"), a.href]);
  for (const el of document.querySelectorAll("[id]")) out.ids.push(el.id);
  for (const el of document.querySelectorAll("a[name]")) out.ids.push(el.getAttribute("name"));
  for (const img of document.querySelectorAll("img")) if (!img.complete || img.naturalWidth === 0) out.broken_images.push((img.getAttribute("src") || "").slice(0, 80));
  return JSON.stringify(out);
})()
"""


class Browser:
    "Headless Chromium driven through the DevTools protocol over one websocket (flattened sessions)."
    def __init__(self, exe, width=1280, height=1400):
        import websocket
        self.tmp = tempfile.mkdtemp(prefix="docs-chromium-")
        self.proc = subprocess.Popen([exe, *CHROMIUM_FLAGS, f"--user-data-dir={self.tmp}", f"--window-size={width},{height}",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url, t0 = None, time.time()
        while time.time() - t0 < 60:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None: break
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m: url = m.group(1); break
        if not url: self.close(); raise RuntimeError("Chromium did not start (no DevTools address on stderr)")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()  # keep the pipe drained
        self.ws = websocket.create_connection(url, timeout=120, suppress_origin=True)
        self.next_id, self.events = 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for m in ("Page.enable", "Runtime.enable", "Log.enable"): self.call(m, session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method, session=False, timeout=120, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session: msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        t0 = time.time()
        while time.time() - t0 < timeout:
            r = json.loads(self.ws.recv())
            if r.get("id") == self.next_id:
                if "error" in r: raise RuntimeError(f"{method}: {r['error']}")
                return r.get("result", {})
            if "method" in r: self.events.append(r)
        raise TimeoutError(method)

    def wait_event(self, name, timeout):
        t0 = time.time()
        while time.time() - t0 < timeout:
            for i, e in enumerate(self.events):
                if e["method"] == name: del self.events[i]; return e
            self.ws.settimeout(max(0.1, timeout - (time.time() - t0)))
            try: r = json.loads(self.ws.recv())
            except Exception: break
            finally: self.ws.settimeout(120)
            if "method" in r: self.events.append(r)
        return None

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", session=True, expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r: raise RuntimeError(f"page script failed: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def open(self, url, ready_timeout=60):
        "Load a page, wait until MathJax and mermaid report done; return (seconds, whether ready, page errors)."
        self.events.clear()
        t0 = time.time()
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired", ready_timeout)
        ready = False
        while time.time() - t0 < ready_timeout:
            if self.evaluate("!!(window.__docs && window.__docs.math && window.__docs.mermaid)"): ready = True; break
            time.sleep(0.1)
        errors = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                errors.append("script error: " + str((d.get("exception") or {}).get("description") or d.get("text"))[:200])
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("console: " + p["entry"].get("text", "")[:200] + " " + p["entry"].get("url", "")[-80:])
        return time.time() - t0, ready, errors

    def screenshot(self, path, selector=None):
        if selector:
            self.evaluate(f"(() => {{const e = document.querySelector({json.dumps(selector)}); if (e) e.scrollIntoView(); return !!e}})()")
            time.sleep(0.2)
        else: self.evaluate("window.scrollTo(0, 0)")
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        try: self.ws.close()
        except Exception: pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try: self.proc.wait(10)
            except subprocess.TimeoutExpired: self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p: return p
    return None


def check_links(site: Path, results: dict, site_url: str):
    "Problems with each page's links: (page, message) pairs. Anchors are checked against the target's rendered ids."
    problems = []
    ids = {page: set(r["ids"]) for page, r in results.items()}
    for page, r in results.items():
        for raw, resolved in r["links"]:
            if raw.startswith(("mailto:", "javascript:", "data:")): continue
            if site_url and raw.startswith(site_url):
                problems.append((page, f"broken internal link: {raw} points to the published site, not the local page")); continue
            u = urlparse(resolved)
            if u.scheme in ("http", "https"): continue  # external: not checked offline
            if u.scheme != "file": problems.append((page, f"broken internal link: {raw}")); continue
            target = Path(unquote(u.path))
            try: rel = target.resolve().relative_to(site.resolve())
            except ValueError: problems.append((page, f"broken internal link: {raw} leaves the site")); continue
            if not target.exists(): problems.append((page, f"broken internal link: {raw} (no {rel} in the site)")); continue
            frag = unquote(u.fragment)
            if frag and str(rel) in ids and frag not in ids[str(rel)]:
                problems.append((page, f"broken internal link: {raw} (no anchor #{frag} on {rel})"))
    return problems


def page_problems(page, r, seconds, ready, errors):
    out = []
    if not ready: out.append(f"MathJax/mermaid did not finish within the time limit ({seconds:.0f}s)")
    out += [f"untypeset maths: ...{s}..." for s in r["raw_math"]]
    out += [f"MathJax error: {s}" for s in r["math_errors"]]
    out += [f"undrawn diagram: {s}" for s in r["undrawn"]]
    out += [f"visible directive: {s}" for s in r["directives"]]
    out += [f"broken image: {s}" for s in r["broken_images"]]
    out += [f"page error: {s}" for s in (r["state"] or {}).get("errors", [])]
    out += errors
    if not r["title"]: out.append("no title (h1.title is missing or empty)")
    if r["sidebar_links"] < 2 or r["sidebar_active"] != 1: out.append(f"no usable sidebar ({r['sidebar_links']} links, {r['sidebar_active']} marked current)")
    return [(page, p) for p in out]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("site", nargs="?", default=str(root/"_docs"), help="the site folder (default _docs)")
    ap.add_argument("--page", action="append", help="check only this page (repeatable)")
    ap.add_argument("--screenshots", help=f"save screenshots of {', '.join(SHOT_PAGES)} in this folder")
    ap.add_argument("--ready-timeout", type=float, default=60, help="seconds a page may take to typeset and draw")
    ap.add_argument("--site-url", default=None, help="the published site's address (default: from pyproject's nbdev settings)")
    a = ap.parse_args(argv)
    site = Path(a.site)
    exe = find_chromium()
    if exe is None:
        msg = "docs browser check: Chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"): print(f"{msg}: it must run in CI: FAILED", file=sys.stderr); return 1
        print("!" * 100 + f"\n!! {msg}: SKIPPED, the pages were NOT checked in a browser\n" + "!" * 100, file=sys.stderr)
        return 0
    pages = a.page or sorted(p.name for p in site.glob("*.html"))
    if not pages: print(f"docs browser check: no pages in {site}", file=sys.stderr); return 1
    site_url = a.site_url
    if site_url is None:
        try:
            sys.path.insert(0, str(root))
            from nbdev.config import get_config
            cfg = get_config(path=root)
            site_url = str(cfg.get("doc_host", "")).rstrip("/") + str(cfg.get("doc_baseurl", "")).rstrip("/") + "/"
        except Exception: site_url = ""
    t0 = time.time()
    browser = Browser(exe)
    results, problems, slowest = {}, [], (0, "")
    try:
        for page in pages:
            url = (site/page).resolve().as_uri()
            seconds, ready, errors = browser.open(url, a.ready_timeout)
            r = json.loads(browser.evaluate(INSPECT_JS))
            results[page] = r
            problems += page_problems(page, r, seconds, ready, errors)
            slowest = max(slowest, (seconds, page))
            if a.screenshots and page in SHOT_PAGES:
                d = Path(a.screenshots); d.mkdir(parents=True, exist_ok=True)
                stem = Path(page).stem
                browser.screenshot(d/f"{stem}.png")
                for sel, tag in (("mjx-container[display=true]", "maths"), (".jp-Mermaid", "diagram")):
                    if browser.evaluate(f"!!document.querySelector({json.dumps(sel)})"): browser.screenshot(d/f"{stem}-{tag}.png", sel)
    finally: browser.close()
    problems += check_links(site, results, site_url)
    n_math = sum(1 for r in results.values() if r["state"]) ; n_diag = sum(r["diagrams"] for r in results.values())
    n_links = sum(len(r["links"]) for r in results.values())
    if problems:
        print(f"docs browser check FAILED: {len(problems)} problems on {len({p for p, _ in problems})} of {len(pages)} pages", file=sys.stderr)
        for page, msg in problems: print(f"  {page}: {msg}", file=sys.stderr)
        return 1
    print(f"docs browser check: {len(pages)} pages OK in Chromium ({n_diag} diagrams drawn, {n_links} links followed, "
          f"no raw maths, no visible directive; slowest page {slowest[1]} {slowest[0]:.1f}s; total {time.time()-t0:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
