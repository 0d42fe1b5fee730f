"""The power matrix of `fslora verify --quick --impl ...` (tests/theory/power_matrix.py), tested.

Every biased mutant shipped in tests/ must be violated by at least one convergence or unbiasedness
claim; the mutants whose defect keeps the expected update are not (only `fslora crosscheck` or the
core property tests see them). Issue 18: a round that never moves violates Theorem 4.4; sketches
correlated across clients (the round's mean right, its spread wrong) are violated by at least one claim
(alg1.round_variance); the reference and examples/numpy_fslora.py violate nothing. The catalogue the
report reads (theory/power_catalogue.json: what each claim has been shown to catch) must match live
runs, row by row and claim by claim.
"""
import inspect
import os

import pytest

from fslora_ref.algorithms.protocol import Algorithm
from tests.mutants import MUTANTS, core_mutants, theory_mutants
from theory import power_catalogue
from theory.result import VERIFIED, VIOLATED

from .power_matrix import ALGORITHM_CLAIMS, CONVERGENCE_CLAIMS, ROWS, row

BIASED = [(label, target) for label, target, kind in ROWS if kind == "biased"]
UNBIASED = [(label, target) for label, target, kind in ROWS if kind in ("unbiased", "below_power")]
CATALOGUE = {r["label"]: r for r in power_catalogue.load()["rows"]}


def test_every_shipped_algorithm_mutant_is_in_the_matrix_and_the_catalogue():
    targets = {t for _, t, _ in ROWS}
    shipped = {f"tests.mutants.{m}:impl" for m in MUTANTS}
    for module in (core_mutants, theory_mutants):
        shipped |= {f"{module.__name__}:{name}" for name, cls in inspect.getmembers(module, inspect.isclass)
                    if issubclass(cls, Algorithm) and cls.__module__ == module.__name__}
    assert shipped <= targets, shipped - targets
    assert len(BIASED) >= 19
    assert {k for _, _, k in ROWS} == {"correct", "biased", "unbiased", "below_power", "wrong_variance"}
    assert [r[0] for r in ROWS] == list(CATALOGUE), "regenerate: python -m tests.theory.power_matrix --write"
    for label, _, kind in ROWS:
        assert CATALOGUE[label]["kind"] == kind and set(CATALOGUE[label]["statuses"]) == set(ALGORITHM_CLAIMS)


def test_the_catalogue_pins_what_issue_18_asks():
    violated = {label: {c for c, s in r["statuses"].items() if s == VIOLATED} for label, r in CATALOGUE.items()}
    assert "thm4.4.bound" in violated["theory/NoOpFSLoRA"]
    assert violated["theory/SharedAcrossClientsFSLoRA"]            # at least one claim sees correlated sketches
    assert not violated["reference (fslora_ref FSLoRA)"] and not violated["examples/numpy_fslora.py"]
    for label, _, kind in ROWS:
        if kind == "biased":
            assert violated[label] & set(CONVERGENCE_CLAIMS), label


@pytest.mark.parametrize("label, target", BIASED, ids=[b[0] for b in BIASED])
def test_each_biased_mutant_is_violated_by_a_convergence_or_unbiasedness_claim(label, target):
    statuses = row(target, CONVERGENCE_CLAIMS, stop_at_violation=True)
    assert VIOLATED in statuses.values(), (label, statuses)


@pytest.mark.parametrize("label, target", UNBIASED, ids=[u[0] for u in UNBIASED])
def test_unbiased_defects_keep_the_expected_round(label, target):
    assert row(target, ("alg1.round_unbiased",)) == {"alg1.round_unbiased": VERIFIED}


def test_a_round_that_never_moves_violates_theorem_4_4():
    assert row("tests.mutants.theory_mutants:NoOpFSLoRA", ("thm4.4.bound",)) == {"thm4.4.bound": VIOLATED}


def test_sketches_correlated_across_clients_keep_the_mean_and_break_the_variance():
    statuses = row("tests.mutants.theory_mutants:SharedAcrossClientsFSLoRA", ("alg1.round_unbiased", "alg1.round_variance"))
    assert statuses == {"alg1.round_unbiased": VERIFIED, "alg1.round_variance": VIOLATED}


# Every row live costs minutes each on 2 cores; the suite checks the correct implementations and the
# rows issue 18 added, and FSLORA_POWER_FULL=1 (or `python -m tests.theory.power_matrix --write`,
# which regenerates the catalogue) checks all of them.
LIVE_ROWS = ROWS if os.environ.get("FSLORA_POWER_FULL") == "1" else [
    r for r in ROWS if r[2] in ("correct", "wrong_variance") or r[0] in ("theory/NoOpFSLoRA", "theory/BudgetWeightedFSLoRA")]


@pytest.mark.parametrize("label, target, kind", LIVE_ROWS, ids=[r[0] for r in LIVE_ROWS])
def test_the_catalogue_matches_live_runs(label, target, kind):
    """Every status of the catalogue (what report.md says each claim has been shown to catch) is what the
    quick profile gives now: a changed claim or profile must regenerate it."""
    assert row(target) == CATALOGUE[label]["statuses"], label
