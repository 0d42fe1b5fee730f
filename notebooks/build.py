"""Build the committed notebooks from their readable sources (stdlib + nbformat only).

    python3 notebooks/build.py            # notebooks/src/NN_name.py  ->  notebooks/NN_name.ipynb
    python3 notebooks/build.py --check    # exit 1 if a committed .ipynb differs from its source

A source is a plain Python file in the "percent" format: a line ``# %%`` starts a code cell,
``# %% [markdown]`` starts a markdown cell whose lines are written as ``# text``. The .ipynb
files are written with outputs stripped (the repository's policy, see notebooks/README_SECTION.md);
they are what the tests execute.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def parse_cells(text: str) -> list:
    """[(kind, source)] from a percent-format source."""
    cells, kind, lines = [], None, []

    def flush():
        if kind is not None:
            body = "\n".join(lines).strip("\n")
            if body:
                cells.append((kind, body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build_notebook(src_path: str):
    with open(src_path, encoding="utf-8") as fh:
        cells = parse_cells(fh.read())
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for i, (kind, body) in enumerate(cells):
        cell = nbformat.v4.new_markdown_cell(body) if kind == "markdown" else nbformat.v4.new_code_cell(body)
        cell.id = f"c{i:02d}"   # stable ids: rebuilding an unchanged source gives an identical file
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def target_for(src_path: str) -> str:
    return os.path.join(HERE, os.path.splitext(os.path.basename(src_path))[0] + ".ipynb")


def sources() -> list:
    return sorted(glob.glob(os.path.join(HERE, "src", "[0-9][0-9]_*.py")))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if any notebook is out of date")
    args = p.parse_args(argv)
    stale = []
    for src in sources():
        text = nbformat.writes(build_notebook(src)) + "\n"
        target = target_for(src)
        current = open(target, encoding="utf-8").read() if os.path.exists(target) else None
        if current != text:
            stale.append(os.path.relpath(target))
            if not args.check:
                with open(target, "w", encoding="utf-8") as fh:
                    fh.write(text)
    if args.check and stale:
        print("out of date (run python3 notebooks/build.py): " + ", ".join(stale))
        return 1
    if not args.check:
        print("wrote " + (", ".join(stale) if stale else "nothing (all up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
