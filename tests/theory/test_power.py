"""The power matrix of `fslora verify --quick --impl ...` (tests/theory/power_matrix.py), tested.

Every biased mutant shipped in tests/ must be violated by at least one convergence or unbiasedness
claim; the mutants whose defect keeps the expected update are not (only `fslora crosscheck` or the
core property tests see them). The toolkit's own H = 1 bound (the ours.* claims that run the
implementation) is pinned separately: exactly the rows of OURS_CATCHES. The reference and
examples/numpy_fslora.py violating nothing is tested end to end in test_cli.py (the whole quick run,
and --impl with exit code 0).
"""
import inspect

import pytest

from fslora_ref.algorithms.protocol import Algorithm
from tests.mutants import MUTANTS, core_mutants, theory_mutants
from theory.result import VERIFIED, VIOLATED

from .power_matrix import CONVERGENCE_CLAIMS, OURS_CATCHES, OURS_CLAIMS, ROWS, row

BIASED = [(label, target) for label, target, kind in ROWS if kind == "biased"]
UNBIASED = [(label, target) for label, target, kind in ROWS if kind in ("unbiased", "below_power")]


def test_every_shipped_algorithm_mutant_is_in_the_matrix():
    targets = {t for _, t, _ in ROWS}
    shipped = {f"tests.mutants.{m}:impl" for m in MUTANTS}
    for module in (core_mutants, theory_mutants):
        shipped |= {f"{module.__name__}:{name}" for name, cls in inspect.getmembers(module, inspect.isclass)
                    if issubclass(cls, Algorithm) and cls.__module__ == module.__name__}
    assert shipped <= targets, shipped - targets
    assert len(BIASED) >= 17 and {k for _, _, k in ROWS} == {"correct", "biased", "unbiased", "below_power"}


@pytest.mark.parametrize("label, target", BIASED, ids=[b[0] for b in BIASED])
def test_each_biased_mutant_is_violated_by_a_convergence_or_unbiasedness_claim(label, target):
    statuses = row(target, CONVERGENCE_CLAIMS, stop_at_violation=True)
    assert VIOLATED in statuses.values(), (label, statuses)


@pytest.mark.parametrize("label, target", UNBIASED, ids=[u[0] for u in UNBIASED])
def test_unbiased_defects_keep_the_expected_round(label, target):
    assert row(target, ("alg1.round_unbiased",)) == {"alg1.round_unbiased": VERIFIED}


@pytest.mark.parametrize("label, target, kind", ROWS, ids=[r[0] for r in ROWS])
def test_our_bound_alone_catches_exactly_the_pinned_mutants(label, target, kind):
    """The ours.* claims that run the implementation (both forms of the H = 1 bound and its steps on the
    runs) violate the biased rows of OURS_CATCHES and nothing else: no correct implementation, no
    unbiased defect (the bound only needs E[g] = grad f^S and the round's variance)."""
    assert set(OURS_CLAIMS) == {"ours.h1.a_posteriori", "ours.h1.a_priori", "ours.h1.steps_on_runs"}
    assert OURS_CATCHES <= {lab for lab, _, k in ROWS if k == "biased"}
    statuses = row(target, OURS_CLAIMS)
    assert (VIOLATED in statuses.values()) == (label in OURS_CATCHES), (label, statuses)
