"""Every notebook runs top to bottom in a fresh ``python3`` kernel at the test-suite size and saves
its key figures; a failing cell (e.g. an assert on a number) fails the test. How long they take
is measured by ``benchmarks/notebooks.py`` (target: under 90 s each on an idle machine), not
asserted here: the only time limit is a hang guard (HANG_GUARD seconds per cell), generous
enough for a heavily loaded machine.

The notebooks' own asserts are the numerical checks (moments vs closed forms to 1e-12, masked vs
submatrix forms to 1e-12, Theorem 4.4 LHS <= RHS, bridge vs reference, ...); this file makes sure
they are executed, that the runner really reports a failing assert, and that the committed
notebooks are the stripped build of their sources.
"""
from __future__ import annotations

import os
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from nbclient.exceptions import CellExecutionError  # noqa: E402

from .nbmodules import NB_DIR, load  # noqa: E402

HANG_GUARD = 1800   # seconds per cell: a hang guard, not a speed target (see benchmarks/notebooks.py)
runner = load("run")
builder = load("build")

# notebook -> the key figures it must save (the README embeds some of them from docs/figures/)
EXPECTED = {
    "00_fslora_in_10_minutes": ["00_what_a_client_trains", "00_why_r_over_k", "00_one_round"],
    "01_sketching_operator": ["01_bsa_picture", "01_moments", "01_monte_carlo", "01_variance_vs_ratio"],
    "02_one_round_and_baselines": ["02_round_trace", "02_baselines_loss", "02_client_memory"],
    "03_what_fslora_minimises": ["03_regulariser", "03_settling", "03_gap_vs_ratio"],
    "04_theorem_and_corollary": ["04_lhs_vs_rhs", "04_tightness_grid", "04_rate_vs_ratio"],
    "05_real_llm": ["05_llm_training", "05_llm_memory_upload"],
    "06_our_bound": ["06_curvature", "06_tightness", "06_lhs_vs_bounds", "06_step_size_story", "06_drift"],
    "07_interactive_round": ["07_round_without_scale"],
}


def test_expected_notebooks_exist():
    present = {os.path.splitext(os.path.basename(p))[0] for p in runner.notebooks()}
    assert set(EXPECTED) <= present, f"missing notebooks: {sorted(set(EXPECTED) - present)}"
    # a new notebook must be listed in EXPECTED, or it would never be executed by the tests
    assert present <= set(EXPECTED), f"notebooks not executed by the tests: {sorted(present - set(EXPECTED))}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_executes(name, tmp_path):
    path = os.path.join(NB_DIR, name + ".ipynb")
    figures = tmp_path / "figures"
    try:
        nb, seconds = runner.execute(path, size="small", figures_dir=str(figures), out_dir=str(tmp_path / "executed"),
                                     timeout=HANG_GUARD)
    except CellExecutionError as exc:   # show the failing cell and its traceback, not a kernel dump
        pytest.fail(f"{name} raised in a cell:\n{str(exc)[-4000:]}", pytrace=False)
    print(f"{name}: {seconds:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    saved = sorted(os.path.splitext(f)[0] for f in os.listdir(figures)) if figures.exists() else []
    missing = [f for f in EXPECTED[name] if f not in saved]
    assert not missing, f"{name} did not save {missing} (saved: {saved})"
    assert all(os.path.getsize(figures / (f + ".png")) > 5_000 for f in EXPECTED[name])


def _tiny_notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(builder.KERNELSPEC)
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, str(path))
    return str(path)


def test_runner_reports_a_failing_assert(tmp_path):
    """The teeth: a notebook whose key-number assert fails must make execute() raise, naming the assert."""
    path = _tiny_notebook(tmp_path / "bad.ipynb", "x = 0.1 + 0.2", "assert abs(x - 0.3) <= 0.0, 'key number off'",
                          "print('never reached')")
    with pytest.raises(CellExecutionError) as info:
        runner.execute(path, size="small", out_dir=str(tmp_path / "out"))
    assert "AssertionError" in str(info.value) and "key number off" in str(info.value)
    executed = nbformat.read(str(tmp_path / "out" / "bad.ipynb"), as_version=4)
    assert executed.cells[2].get("outputs", []) == []          # execution stopped at the failing cell


# Broken variants injected into a real notebook by a first cell: each is off by a relative 1e-9 or
# 1e-10, far below what a plot shows, and the notebook's own asserts must catch it (in the cell
# containing the given text).
MUTANTS = {
    "server_mean_off": ("00_fslora_in_10_minutes", "(1/N) sum of client changes", """
import fslora_ref.algorithms.fslora as _fs
_orig = _fs.scatter_mean
def _bad(state, plans, uploads, config):
    return [(dB * (1 + 1e-9), dA) for dB, dA in _orig(state, plans, uploads, config)]
_fs.scatter_mean = _bad
"""),
    "exact_mean_misses_an_index_set": ("07_interactive_round", "bias(k, False)", """
import itertools as _it
_orig_comb = _it.combinations
def _all_but_last(pool, k):   # the notebook's "exact" mean over index sets misses one of them
    sets = list(_orig_comb(pool, k))
    return iter(sets[:-1] if len(sets) > 1 else sets)
_it.combinations = _all_but_last
"""),
    "cross_moment_off": ("01_sketching_operator", "E[s_j s_l]", """
import fslora_ref, fslora_ref.sketch as _sk
_orig = _sk.sketch_moments
def _bad(rank, k):
    d = dict(_orig(rank, k)); d["cross"] *= 1 + 1e-9; return d
_sk.sketch_moments = fslora_ref.sketch_moments = _bad
"""),
    "submatrix_gather_perturbed": ("02_one_round_and_baselines", "B_I", """
import fslora_ref.algorithms.fslora as _fs
_orig = _fs.gather
def _bad(B, A, sketch):
    B_I, A_I = _orig(B, A, sketch); return B_I * (1 + 1e-10), A_I
_fs.gather = _bad
"""),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_a_real_notebook_catches_a_tiny_mutation(mutant, tmp_path):
    name, failing_cell_text, prelude = MUTANTS[mutant]
    nb = nbformat.read(os.path.join(NB_DIR, name + ".ipynb"), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(prelude))
    path = str(tmp_path / f"{name}.ipynb")
    nbformat.write(nb, path)
    with pytest.raises(CellExecutionError) as info:
        runner.execute(path, size="small", timeout=HANG_GUARD)
    assert "AssertionError" in str(info.value) and failing_cell_text in str(info.value)   # the right cell


def test_runner_passes_size_and_figure_dir_to_the_kernel(tmp_path):
    figures = tmp_path / "figs"
    # the kernel must also be this interpreter (a venv's), so it sees the packages the tests see
    path = _tiny_notebook(tmp_path / "ok.ipynb",
                          "import os, sys\nassert os.environ['FSLORA_NOTEBOOK_SIZE'] == 'small'\n"
                          f"assert os.environ['FSLORA_FIGURES_DIR'] == {str(figures)!r}\n"
                          f"assert sys.prefix == {sys.prefix!r}, sys.prefix")
    _, seconds = runner.execute(path, size="small", figures_dir=str(figures))
    assert seconds >= 0   # returned, not asserted against a speed target


def test_committed_notebooks_are_stripped_builds_of_their_sources():
    """Policy: the committed .ipynb carry no outputs and are exactly what notebooks/build.py writes."""
    assert builder.main(["--check"]) == 0, "run: python3 notebooks/build.py"
    for path in runner.notebooks():
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path} has outputs committed"
