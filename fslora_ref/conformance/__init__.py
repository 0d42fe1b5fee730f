"""Conformance battery: check_* functions that hold an FSLoRA implementation against the reference.

    from fslora_ref.conformance import check_implementation
    table = check_implementation(my_impl)            # white-box, black-box and sampler checks it supports
    print(table.format()); assert table.ok

Each check passes, fails, or is inconclusive (nothing to test: never a pass); ``table.ok`` is
True only if every check passed or failed as declared in ``expected_failed``. The rounds are
probes plus randomised scenarios drawn from ``Options.seed`` (``scenarios.py``; ``Options.budget``
trades their number and the statistical power for speed), and every statistical check states
what it can detect.

The adapter protocol an implementation follows is in ``protocol.py``; the reference behind it is
``reference.impl``; ``fslora crosscheck MODULE:ATTR`` is the command-line front end (``cli.py``).
"""
from .battery import CheckResult, ResultTable, check_implementation, list_checks, parametrize_with_checks
from .black_box import (check_index_set_size, check_index_sets_coincide, check_selection_frequency,
                        check_update_matches_reference)
from .optimizers import Optimizers
from .protocol import MOVED, TOLERANCE, ProblemOracle, QuadraticOracle, RoundResult, RoundTask
from .registry import CHECKS
from .inputs import check_inputs_unchanged_black, check_inputs_unchanged_white
from .sampler import check_sampler_support_and_value, check_sampler_unbiased, check_sampler_uniform_subsets
from .session import CheckFailed, CheckInconclusive, Options
from .white_box import (check_aggregation_divides_by_n, check_full_rank_is_fedavg, check_round_matches_reference,
                        check_scale_applied_once, check_sketch_fixed_within_round, check_untouched_outside_index_set,
                        check_upload_size)

__all__ = ["CHECKS", "CheckFailed", "CheckInconclusive", "CheckResult", "MOVED", "Optimizers", "Options", "ProblemOracle", "QuadraticOracle",
           "ResultTable", "RoundResult", "RoundTask", "TOLERANCE", "check_implementation", "parametrize_with_checks",
           "check_round_matches_reference", "check_untouched_outside_index_set", "check_sketch_fixed_within_round",
           "check_scale_applied_once", "check_aggregation_divides_by_n", "check_full_rank_is_fedavg",
           "check_upload_size", "check_index_sets_coincide", "check_index_set_size", "check_update_matches_reference",
           "check_selection_frequency", "check_sampler_support_and_value", "check_sampler_unbiased",
           "check_sampler_uniform_subsets", "check_inputs_unchanged_white", "check_inputs_unchanged_black",
           "list_checks"]
