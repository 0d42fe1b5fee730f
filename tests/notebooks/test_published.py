"""The executed full-size notebooks in docs/notebooks/ (what a reader's browser shows) were built
from the current sources: checked from their stamps and cells, without executing anything."""
from __future__ import annotations

import os
import shutil

import pytest

nbformat = pytest.importorskip("nbformat")

from .nbmodules import NB_DIR, ROOT, load  # noqa: E402

publish = load("publish")
builder = load("build")


def test_published_notebooks_are_executed_full_size_builds_of_the_current_sources():
    sources = builder.sources()
    assert len(sources) >= 5
    problems = publish.problems(publish.DEST, sources)
    assert problems == [], "\n".join(problems)
    for src in sources:   # outputs a browser renders: figures and printed numbers
        nb = nbformat.read(publish.target(src), as_version=4)
        kinds = {o.get("output_type") for c in nb.cells if c.cell_type == "code" for o in c.outputs}
        assert {"display_data", "stream"} <= kinds, src
        assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("name") == "stderr"], src


@pytest.fixture
def layout(tmp_path):
    """A copy of one source, the preamble, the plotting helpers (and the package's style they re-export)
    and its published notebook in the repository's layout."""
    name = "01_sketching_operator"
    (tmp_path / "notebooks" / "src").mkdir(parents=True)
    src = shutil.copy(os.path.join(NB_DIR, "src", name + ".py"), tmp_path / "notebooks" / "src")
    pre = shutil.copy(os.path.join(NB_DIR, "nbsetup.py"), tmp_path / "notebooks")
    for helper in publish.helpers(os.path.join(NB_DIR, "src", name + ".py")):
        shutil.copy(helper, tmp_path / "notebooks")
    (tmp_path / "fslora_ref").mkdir()
    shutil.copy(os.path.join(ROOT, publish.STYLE), tmp_path / "fslora_ref")
    dest = tmp_path / "docs" / "notebooks"
    dest.mkdir(parents=True)
    shutil.copy(os.path.join(publish.DEST, name + ".ipynb"), dest)

    def check():
        return publish.problems(str(dest), [str(src)], root=str(tmp_path), preamble=str(pre))
    return src, pre, dest / (name + ".ipynb"), check


def _edit(path, fn):
    nb = nbformat.read(str(path), as_version=4)
    fn(nb)
    nbformat.write(nb, str(path))


def test_the_check_catches_every_kind_of_stale_notebook(layout):
    src, pre, published, check = layout
    assert check() == []
    original = open(src).read()
    with open(src, "a") as fh:                                   # the source gained a cell
        fh.write("\n# %%\nprint('a new cell')\n")
    assert check() == [f"{os.path.join('docs', 'notebooks', published.name)} was built from an older "
                       f"notebooks/src/{os.path.basename(src)}: {publish.REBUILD}"]
    with open(src, "w") as fh:
        fh.write(original)
    with open(pre, "a") as fh:                                   # the shared preamble changed
        fh.write("\nX = 1\n")
    assert len(check()) == 1 and "older notebooks/nbsetup.py" in check()[0]
    shutil.copy(os.path.join(NB_DIR, "nbsetup.py"), pre)
    assert check() == []

    def hand_edit(nb):
        cell = next(c for c in nb.cells if c.cell_type == "code")
        cell.source += "\n# tweaked"
    _edit(published, hand_edit)
    assert len(check()) == 1 and "cells differ" in check()[0]


def test_the_check_catches_unexecuted_small_failed_missing_and_stray_notebooks(layout):
    src, _, published, check = layout
    saved = published.read_bytes()

    def small(nb):
        nb.metadata["fslora"]["size"] = "small"
    _edit(published, small)
    assert len(check()) == 1 and "not a full-size run" in check()[0]
    published.write_bytes(saved)

    def stripped(nb):
        for c in nb.cells:
            if c.cell_type == "code":
                c.execution_count, c.outputs = None, []
    _edit(published, stripped)
    assert len(check()) == 1 and "not executed" in check()[0]
    published.write_bytes(saved)

    def failed(nb):
        cell = [c for c in nb.cells if c.cell_type == "code"][-1]
        cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="off", traceback=[])]
    _edit(published, failed)
    assert len(check()) == 1 and "error output" in check()[0]
    published.write_bytes(saved)

    def unstamped(nb):
        del nb.metadata["fslora"]
    _edit(published, unstamped)
    assert any("older" in p for p in check()) and any("not a full-size" in p for p in check())
    published.write_bytes(saved)

    stray = published.parent / "99_removed.ipynb"
    stray.write_bytes(saved)
    assert len(check()) == 1 and "99_removed.ipynb has no source" in check()[0]
    stray.unlink()
    published.unlink()
    assert len(check()) == 1 and "is missing" in check()[0] and "make notebooks" in check()[0]


def test_publish_stamps_the_sources_and_drops_timings(tmp_path):
    src = next(s for s in builder.sources() if os.path.basename(s).startswith("01_"))   # plots with figures_01
    nb = nbformat.read(publish.target(src), as_version=4)
    nb.cells[-1].metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    del nb.metadata["fslora"]
    path = publish.publish(nb, src, str(tmp_path))
    again = nbformat.read(path, as_version=4)
    assert again.metadata["fslora"] == {"size": "full", "sources": publish.inputs(src)}
    assert set(again.metadata["fslora"]["sources"]) == {os.path.relpath(src, ROOT), "notebooks/nbsetup.py",
                                                        "notebooks/figures_01.py", "notebooks/plotstyle.py",
                                                        "fslora_ref/plotting_style.py"}
    assert all("execution" not in c.metadata for c in again.cells)


def test_a_notebook_using_the_plotting_helpers_is_stale_when_a_helper_changes(tmp_path):
    """Notebooks that import plotstyle / pictures are stamped with them too (pictures uses plotstyle)."""
    name = "07_interactive_round"
    (tmp_path / "notebooks" / "src").mkdir(parents=True)
    src = shutil.copy(os.path.join(NB_DIR, "src", name + ".py"), tmp_path / "notebooks" / "src")
    for helper in ("nbsetup.py", "plotstyle.py", "pictures.py"):
        shutil.copy(os.path.join(NB_DIR, helper), tmp_path / "notebooks")
    dest = tmp_path / "docs" / "notebooks"
    dest.mkdir(parents=True)
    shutil.copy(os.path.join(publish.DEST, name + ".ipynb"), dest)
    pre = str(tmp_path / "notebooks" / "nbsetup.py")
    assert sorted(publish.inputs(str(src), str(tmp_path), pre)) == [
        "notebooks/nbsetup.py", "notebooks/pictures.py", "notebooks/plotstyle.py", f"notebooks/src/{name}.py"]
    assert publish.problems(str(dest), [str(src)], root=str(tmp_path), preamble=pre) == []
    with open(tmp_path / "notebooks" / "plotstyle.py", "a") as fh:      # a colour changed
        fh.write("\nSELECTED = '#000000'\n")
    problems = publish.problems(str(dest), [str(src)], root=str(tmp_path), preamble=pre)
    assert len(problems) == 1 and "older notebooks/plotstyle.py" in problems[0]
