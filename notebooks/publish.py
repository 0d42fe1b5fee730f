"""Executed full-size notebooks for readers: docs/notebooks/NN_name.ipynb, with outputs.

``make notebooks`` (``notebooks/run.py``) writes one after each successful full-size run, stamped
in its metadata with the SHA-256 of the sources it was built from:

    nb.metadata["fslora"] = {"size": "full",
                             "sources": {"notebooks/src/NN_name.py": sha256, "notebooks/nbsetup.py": sha256}}

plus the plotting helpers (``plotstyle.py``, ``pictures.py``, ``figures_NN.py``) for a notebook whose
source imports them, and the package's figure style they draw with (``fslora_ref/plotting_style.py``).

``problems(dest_dir, sources)`` compares those stamps, and the cells, with the current sources
without executing anything: the test suite calls it, so a notebook source changed (or added)
without ``make notebooks`` fails the tests with the command to run.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEST = os.path.join(ROOT, "docs", "notebooks")
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from build import build_notebook  # noqa: E402  (sibling module, not a package)

PREAMBLE = os.path.join(HERE, "nbsetup.py")
# helper modules beside the preamble -> the helpers a notebook importing it is built from
HELPERS = {"plotstyle": ("plotstyle",), "pictures": ("pictures", "plotstyle")}
FIGURE_HELPER = r"figures_\d\d"          # figures_NN.py: notebook NN's plotting, drawn with plotstyle
STYLE = os.path.join("fslora_ref", "plotting_style.py")   # what plotstyle re-exports (relative to the root)
REBUILD = "run `make notebooks` (or `python3 notebooks/run.py NN`)"


def digest(path: str) -> str:
    """SHA-256 of a text file with line endings normalised (a CRLF checkout gives the same hash)."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read().replace(b"\r\n", b"\n")).hexdigest()


def helpers(src: str, preamble: str = PREAMBLE) -> list:
    """Paths of the helper modules (beside the preamble) that the notebook source imports."""
    with open(src, encoding="utf-8") as fh:
        text = fh.read()
    names = {dep for name, deps in HELPERS.items()
             if re.search(rf"^\s*(import|from)\s+{name}\b", text, re.M) for dep in deps}
    for name in re.findall(rf"^\s*(?:import|from)\s+({FIGURE_HELPER})\b", text, re.M):
        names |= {name, "plotstyle"}
    return [os.path.join(os.path.dirname(preamble), name + ".py") for name in sorted(names)]


def inputs(src: str, root: str = ROOT, preamble: str = PREAMBLE) -> dict:
    """{repository-relative path: sha256} of what an executed notebook is built from; a notebook drawing
    with plotstyle also depends on the package's style module (when ``root`` holds it)."""
    paths = [src, preamble, *helpers(src, preamble)]
    style = os.path.join(root, STYLE)
    if any(os.path.basename(p) == "plotstyle.py" for p in paths) and os.path.exists(style):
        paths.append(style)
    return {os.path.relpath(p, root).replace(os.sep, "/"): digest(p) for p in paths}


def target(src: str, dest_dir: str = DEST) -> str:
    return os.path.join(dest_dir, os.path.splitext(os.path.basename(src))[0] + ".ipynb")


def publish(nb, src: str, dest_dir: str = DEST) -> str:
    """Stamp an executed full-size notebook with its sources' hashes and write it (atomically)
    to ``dest_dir``; per-cell execution timestamps are dropped so a rerun changes only outputs."""
    import nbformat

    from fslora_ref.outputs import atomic_write_bytes
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata["fslora"] = {"size": "full", "sources": inputs(src)}
    os.makedirs(dest_dir, exist_ok=True)
    path = target(src, dest_dir)
    atomic_write_bytes(path, (nbformat.writes(nb) + "\n").encode("utf-8"))
    return path


def _cells(nb) -> list:
    return [(c.cell_type, c.source) for c in nb.cells]


def problems(dest_dir: str, sources, root: str = ROOT, preamble: str = PREAMBLE) -> list:
    """Why the executed notebooks in ``dest_dir`` are not the current full-size builds of
    ``sources`` (one line each; [] if they are). Reads files only, executes nothing."""
    import nbformat
    out = []
    expected = {os.path.basename(target(s, dest_dir)) for s in sources}
    if os.path.isdir(dest_dir):
        out += [f"{os.path.join(dest_dir, f)} has no source in notebooks/src/ (delete it)"
                for f in sorted(os.listdir(dest_dir)) if f.endswith(".ipynb") and f not in expected]
    for src in sources:
        path = target(src, dest_dir)
        name = os.path.relpath(path, root)
        if not os.path.exists(path):
            out.append(f"{name} is missing: {REBUILD}")
            continue
        nb = nbformat.read(path, as_version=4)
        stamp = nb.metadata.get("fslora", {})
        if stamp.get("size") != "full":
            out.append(f"{name} is not a full-size run (size {stamp.get('size')!r}): {REBUILD}")
        stale = sorted(p for p, h in inputs(src, root, preamble).items() if stamp.get("sources", {}).get(p) != h)
        if stale:
            out.append(f"{name} was built from an older {', '.join(stale)}: {REBUILD}")
        elif _cells(nb) != _cells(build_notebook(src)):
            out.append(f"{name}: its cells differ from {os.path.relpath(src, root)} (edited by hand?): {REBUILD}")
        code = [c for c in nb.cells if c.cell_type == "code"]
        if any(c.execution_count is None for c in code):
            out.append(f"{name} has code cells that were not executed: {REBUILD}")
        if any(o.get("output_type") == "error" for c in code for o in c.get("outputs", [])):
            out.append(f"{name} holds an error output: {REBUILD}")
    return out
