"""The power matrix of `fslora verify`: every algorithm mutant shipped in tests/ (and the reference and
examples/numpy_fslora.py) against every claim that runs the implementation, quick profile, exactly
as `fslora verify --quick --impl TARGET` runs them.

    python -m tests.theory.power_matrix          # prints the markdown table shown in docs/guides/verify.md
    python -m tests.theory.power_matrix --write  # ... and rewrites theory/power_catalogue.json, from which
                                                 # report.md and the table say what each claim has caught

ROWS pins what each one is: ``correct``; ``biased`` (its expected update or its fixed point differs
from FSLoRA's: some convergence or unbiasedness claim must flag it); ``unbiased`` (a defect that keeps
the expected update, or one that single-layer, weight-decay-free, SGD-client, plain-average runs never
exercise: only `fslora crosscheck` or the core property tests can see it); ``below_power`` (biased, but
by far less than the convergence and unbiasedness claims resolve: a mask leaking 1e-4 of the gradient;
`alg1.sketch_fixed` and `fslora crosscheck` see it); ``wrong_variance`` (the expected round is right, its
spread is not: sketches correlated across clients; `alg1.round_variance` must see it).
"""
from __future__ import annotations

import sys
import time

import numpy as np

from theory import claims
from theory.implementations import load_runner, runner_for
from theory.result import VIOLATED

ALGORITHM_CLAIMS = [c.id for c in claims.CLAIMS if c.through_impl]
OURS_CLAIMS = tuple(c for c in ALGORITHM_CLAIMS if c.startswith("ours."))   # the toolkit's own H = 1 bound
CONVERGENCE_CLAIMS = ("alg1.round_unbiased", "alg1.round_variance", "alg1.stationary_point", "thm4.4.bound", "cor4.5.rate",
                      "cor4.5.speedup") + OURS_CLAIMS

ROWS = [
    ("reference (fslora_ref FSLoRA)", None, "correct"),
    ("examples/numpy_fslora.py", "examples/numpy_fslora.py:impl", "correct"),
    ("mutants/no_sketch", "tests.mutants.no_sketch:impl", "biased"),
    ("mutants/independent_sets", "tests.mutants.independent_sets:impl", "biased"),
    ("mutants/missing_scale", "tests.mutants.missing_scale:impl", "biased"),
    ("mutants/double_scale", "tests.mutants.double_scale:impl", "biased"),
    ("mutants/per_coordinate_mean", "tests.mutants.per_coordinate_mean:impl", "biased"),
    ("mutants/redraw_each_step", "tests.mutants.redraw_each_step:impl", "unbiased"),
    ("mutants/weight_decay_unselected", "tests.mutants.weight_decay_unselected:impl", "unbiased"),
    ("mutants/first_k", "tests.mutants.first_k:impl", "biased"),
    ("mutants/contiguous_window", "tests.mutants.contiguous_window:impl", "biased"),
    ("mutants/with_replacement", "tests.mutants.with_replacement:impl", "biased"),
    ("mutants/shared_across_layers", "tests.mutants.shared_across_layers:impl", "unbiased"),
    ("mutants/full_rank_skipped", "tests.mutants.full_rank_skipped:impl", "biased"),
    ("mutants/adamw_missing_scale", "tests.mutants.adamw_missing_scale:impl", "biased"),
    ("mutants/adamw_decay_unselected", "tests.mutants.adamw_decay_unselected:impl", "unbiased"),
    ("mutants/server_lr_ignored", "tests.mutants.server_lr_ignored:impl", "unbiased"),
    ("mutants/leaky_mask", "tests.mutants.leaky_mask:impl", "below_power"),
    ("mutants/writes_inputs", "tests.mutants.writes_inputs:impl", "unbiased"),
    ("core/SubmatrixWithoutScale", "tests.mutants.core_mutants:SubmatrixWithoutScale", "biased"),
    ("core/SharedSketchAcrossLayers", "tests.mutants.core_mutants:SharedSketchAcrossLayers", "unbiased"),
    ("core/LeakyUnselected", "tests.mutants.core_mutants:LeakyUnselected", "biased"),
    ("core/UploadsFullRank", "tests.mutants.core_mutants:UploadsFullRank", "unbiased"),
    ("core/GlobalRandomState", "tests.mutants.core_mutants:GlobalRandomState", "unbiased"),
    ("core/DividesBySelectors", "tests.mutants.core_mutants:DividesBySelectors", "biased"),
    ("table/ServerDividesByNMinus1", "tests.mutants.theory_mutants:ServerDividesByNMinus1", "biased"),
    ("table/ScaleDroppedBothForms", "tests.mutants.theory_mutants:ScaleDroppedBothForms", "biased"),
    ("theory/SummingFSLoRA", "tests.mutants.theory_mutants:SummingFSLoRA", "biased"),
    ("theory/UnscaledSubmatrixFSLoRA", "tests.mutants.theory_mutants:UnscaledSubmatrixFSLoRA", "biased"),
    ("theory/DoubleScaledSubmatrixFSLoRA", "tests.mutants.theory_mutants:DoubleScaledSubmatrixFSLoRA", "biased"),
    ("theory/ExplodingFSLoRA", "tests.mutants.theory_mutants:ExplodingFSLoRA", "biased"),
    ("theory/NoOpFSLoRA", "tests.mutants.theory_mutants:NoOpFSLoRA", "biased"),
    ("theory/SharedAcrossClientsFSLoRA", "tests.mutants.theory_mutants:SharedAcrossClientsFSLoRA", "wrong_variance"),
    ("theory/BudgetWeightedFSLoRA", "tests.mutants.theory_mutants:BudgetWeightedFSLoRA", "biased"),
]


def runner(target):
    """The round runner `fslora verify --impl TARGET` would use (the reference for None)."""
    np.random.seed(0)   # GlobalRandomState draws from numpy's global RNG: make its row reproducible
    return runner_for(None) if target is None else load_runner(target)


def row(target, ids=ALGORITHM_CLAIMS, stop_at_violation: bool = False) -> dict:
    """{claim id: status} of the quick profile's claims ``ids`` on ``target``, in registry order;
    with ``stop_at_violation`` the first violated claim ends the row."""
    impl = runner(target)
    out = {}
    for cid in [c.id for c in claims.CLAIMS if c.id in ids]:
        results, _ = claims.run_all(quick=True, only=[cid], impl=impl)
        out[cid] = results[0][1].status
        if stop_at_violation and out[cid] == VIOLATED:
            break
    return out


SHORT = {"alg1.round_unbiased": "unbiased", "alg1.round_variance": "variance", "cor4.5.speedup": "speed-up", "alg1.sketch_fixed": "sketch fixed", "alg1.forms_agree": "forms",
         "alg1.stationary_point": "stationary", "thm4.4.bound": "Thm 4.4", "thm4.4.above_limit": "above limit",
         "cor4.5.rate": "Cor 4.5", "cor4.5.fedavg": "FedAvg", "ours.h1.a_posteriori": "ours a-post.",
         "ours.h1.a_priori": "ours a-priori", "ours.h1.steps_on_runs": "ours steps"}
MARK = {"verified": "ok", "violated": "**VIOLATED**", "outside_conditions": "outside", "skipped": "skip",
        "measurement": "meas.", "identity": "id.", "inconclusive": "inconcl."}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    header = "| implementation | kind | " + " | ".join(SHORT[c] for c in ALGORITHM_CLAIMS) + " |"
    lines = [header, "|" + "---|" * (len(ALGORITHM_CLAIMS) + 2)]
    start = time.perf_counter()
    table = []
    for label, target, kind in ROWS:
        tic = time.perf_counter()
        statuses = row(target)
        table.append({"label": label, "target": target, "kind": kind, "statuses": statuses})
        lines.append(f"| {label} | {kind} | " + " | ".join(MARK[statuses[c]] for c in ALGORITHM_CLAIMS) + " |")
        print(f"{lines[-1]}  ({time.perf_counter() - tic:.1f} s)", file=sys.stderr)
    print("\n".join(lines))
    print(f"\n({len(ROWS)} implementations, `fslora verify --quick` profile, {time.perf_counter() - start:.0f} s)")
    if "--write" in argv:
        from theory import power_catalogue
        power_catalogue.write(table)
        print(f"wrote {power_catalogue.PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
