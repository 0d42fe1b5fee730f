"""The documentation site: it builds offline with no warning, its internal links resolve, it loads
nothing from other hosts, every module has an API page, the results pages carry the commit their
record names, and in headless Chromium its math is typeset and its figures load. Screenshots of the
landing page and of notebook 00 are written to tests/artifacts/ (git-ignored).

The site is built once per session, into a temporary folder (about a minute of CPU). Without Chromium
the browser tests fail where it could be installed (root with apt-get: run `make setup`) and are
skipped, with the reason, only where it cannot.
"""
from __future__ import annotations

import json
import os
import re
import struct
import sys

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")

from . import sitecheck  # noqa: E402

sys.path.insert(0, os.path.join(sitecheck.DOCS, "_ext"))
# the Flower app is not an installed package (flwr ships its folder): find it as docs/conf.py does
sys.path.append(os.path.join(os.path.dirname(sitecheck.DOCS), "flower_app"))
import fslora_api  # noqa: E402
import fslora_results  # noqa: E402

ARTIFACTS = os.path.join(sitecheck.ROOT, "tests", "artifacts")
# pages opened in the browser: (page, has math, minimum number of images)
BROWSER_PAGES = [
    ("index.html", True, 1),
    ("getting-started.html", True, 0),
    ("spec.html", False, 0),
    ("notebooks/00_fslora_in_10_minutes.html", True, 3),
    ("notebooks/01_sketching_operator.html", True, 4),
    ("notebooks/07_interactive_round.html", True, 1),
    ("results/verify.html", False, 3),
    ("api/generated/fslora_ref.html", False, 0),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("site") / "html")
    proc = sitecheck.build(out)
    assert proc.returncode == 0, f"the site does not build without warnings:\n{(proc.stdout + proc.stderr)[-6000:]}"
    return out


@pytest.fixture
def browser():
    path, why = sitecheck.find_chromium()
    if path is None:
        if "can be installed" in why:
            pytest.fail(why)
        pytest.skip(why)
    return path


def test_the_site_builds_offline_without_warnings(site):
    for page in ("index.html", "getting-started.html", "spec.html", "architecture.html", "development.html", "notebooks/00_fslora_in_10_minutes.html",
                 "results/verify.html", "results/claims.html", "api/index.html"):
        assert os.path.exists(os.path.join(site, page)), page
    for guide in ("simulate", "bench", "verify", "claims", "crosscheck", "finetune", "flower",
                  "own-problem", "own-model", "own-implementation"):
        assert os.path.exists(os.path.join(site, "guides", guide + ".html")), guide
    assert os.path.exists(os.path.join(site, "_static", "mathjax", "tex-chtml-full.js"))


def test_every_internal_link_resolves(site):
    assert sitecheck.broken_links(site) == []


def test_the_link_check_catches_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.html").write_text('<a id="top" href="b.html#there">b</a><a href="gone.html">x</a>'
                                     '<img src="img/missing.png"><a href="#top">up</a><a href="#nowhere">?</a>')
    (tmp_path / "b.html").write_text('<p id="here">b</p>')
    found = sitecheck.broken_links(str(tmp_path))
    assert sorted(p.split(" (")[0] for p in found) == ["a.html: #nowhere", "a.html: b.html#there", "a.html: gone.html",
                                                      "a.html: img/missing.png"]


def test_the_site_loads_nothing_from_other_hosts(site):
    assert sitecheck.external_resources(site) == []
    with open(os.path.join(site, "index.html"), encoding="utf-8") as fh:
        assert "_static/mathjax/tex-chtml-full.js" in fh.read()     # the vendored MathJax, not a CDN


def test_every_module_has_an_api_page_and_every_exported_name_an_entry(site):
    for package in fslora_api.PACKAGES:
        modules = fslora_api.walk(package)
        assert len(modules) >= 1
        for name in modules:
            page = os.path.join(site, "api", "generated", name + ".html")
            assert os.path.exists(page), f"no API page for {name}"
            module = sys.modules[name]
            if hasattr(module, "__all__"):
                # a public name is documented at this module's path, or at the parent package that
                # re-exports it (once, at the outermost public path)
                paths = [".".join(name.split(".")[:i]) for i in range(len(name.split(".")), 0, -1)]

                def documented(n):
                    return any(f"{p}.{n}" in sitecheck.parse(os.path.join(site, "api", "generated", p + ".html")).ids
                               for p in paths)
                missing = [n for n in fslora_api.public_names(module) if not documented(n)]
                assert not missing, f"{name}: no entry for {missing}"
    ids = sitecheck.parse(os.path.join(site, "api", "generated", "fslora_ref.html")).ids
    assert {"fslora_ref.Sketch", "fslora_ref.run", "fslora_ref.FedConfig"} <= ids


@pytest.mark.parametrize("command", ["verify", "claims"])
def test_results_pages_render_the_committed_record_with_its_commit(site, command):
    record = fslora_results.load_record(os.path.join(sitecheck.DOCS, "results", command, "record.json"))
    assert len(record["commit"]) == 40
    with open(os.path.join(site, "results", command + ".html"), encoding="utf-8") as fh:
        page = fh.read()
    # a literal renders one <span> per word ("fslora claims --quick"): compare the page's text
    text = " ".join(re.sub(r"<[^>]+>", "", page).split())
    assert record["commit"] in text and record["command"] in text
    for claim in record["report"]["claims"]:
        assert claim["status"] in page
        assert (claim.get("claim") or claim["id"]) in page


def test_a_record_without_a_commit_is_refused(tmp_path):
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"command": "fslora verify", "recorded_utc": "x", "exit_code": 0,
                                "report": {"claims": []}}))
    with pytest.raises(ValueError, match="commit"):
        fslora_results.load_record(str(path))


CONTROL = ('<html><body><span class="math notranslate nohighlight">\\(x^2\\)</span>'
           '<img src="_control_missing.png"></body></html>')


def _png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_in_chromium_math_is_typeset_figures_load_and_screenshots_are_written(site, browser, tmp_path):
    control = os.path.join(site, "_control.html")     # no MathJax, a missing image: must be reported
    with open(control, "w", encoding="utf-8") as fh:
        fh.write(CONTROL)
    os.makedirs(ARTIFACTS, exist_ok=True)
    shots = {"index.html": os.path.join(ARTIFACTS, "site_landing.png"),
             "notebooks/00_fslora_in_10_minutes.html": os.path.join(ARTIFACTS, "site_notebook_00.png")}
    for path in shots.values():
        if os.path.exists(path):
            os.remove(path)
    try:
        pages = [p for p, _, _ in BROWSER_PAGES] + ["_control.html"]
        found = sitecheck.inspect_pages(browser, site, pages, str(tmp_path / "profile"), screenshots=shots)
    finally:
        os.remove(control)
    results = {r["path"]: r for r in found}
    print(json.dumps({p: {k: v for k, v in r.items() if k != "images"} for p, r in results.items()}, indent=1))
    ctl = results["_control.html"]
    assert ctl["math"] == 1 and ctl["typeset"] == 0 and ctl["images"] == [{"src": "_control_missing.png", "ok": False}]
    for page, has_math, min_images in BROWSER_PAGES:
        r = results[page]
        if has_math:
            assert r["mathjax"] == "ready", f"{page}: MathJax {r['mathjax']}"
            assert r["math"] > 0 and r["containers"] >= r["math"], page
        assert r["typeset"] == r["math"] and r["errors"] == 0, f"{page}: {r['typeset']}/{r['math']} math typeset"
        broken = [i["src"] for i in r["images"] if not i["ok"]]
        assert not broken, f"{page}: images that did not load: {broken}"
        assert len(r["images"]) >= min_images, f"{page}: {len(r['images'])} images"
    for path in shots.values():
        assert _png_size(path) == (1280, 1000) and os.path.getsize(path) > 20_000, path
        print("screenshot:", path)
