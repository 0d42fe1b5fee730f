"""Every shipped mutant fails exactly the checks its defect breaks, with a diagnosis naming it.

The expected failing sets were derived from each defect (and are pinned here so a change in
the battery's attribution shows up): the first check listed is the one the defect is aimed at,
and its diagnosis must contain the given phrase. INCONCLUSIVE pins the checks a defect leaves
nothing to test (e.g. frequencies of index sets that are not k-subsets): they must say so, not pass.
"""
import importlib

import pytest

from fslora_ref.conformance import CHECKS, Options, check_implementation
from tests.mutants import MUTANTS

WHITE, BLACK = "white", "black"
# the quick budget (fewer randomised scenarios and rounds, same seed) keeps the suite fast; the acceptance runs
# at the default budget are in test_randomised.py, test_examples.py and test_cli.py
QUICK = Options(budget="quick")
EXPECTED = {
    "no_sketch": ({"index_set_size", "round_matches_reference", "untouched_outside_index_set", "scale_applied_once",
                   "upload_size", "sampler_support_and_value", "sampler_uniform_subsets"}, "index_set_size",
                  "no sketch applied"),
    "independent_sets": ({"index_sets_coincide", "round_matches_reference", "untouched_outside_index_set",
                          "scale_applied_once"}, "index_sets_coincide", "do not share one index set"),
    "missing_scale": ({"scale_applied_once", "round_matches_reference", "update_matches_reference"},
                      "scale_applied_once", "the r/k scale is missing"),
    # (r/k)^2 up to 32^2 in the randomised black-box scenarios: its training diverges there (it raises)
    "double_scale": ({"scale_applied_once", "round_matches_reference", "update_matches_reference", "index_sets_coincide",
                      "index_set_size", "selection_frequency"}, "scale_applied_once", "applied twice"),
    "per_coordinate_mean": ({"aggregation_divides_by_n", "round_matches_reference", "update_matches_reference"},
                            "aggregation_divides_by_n", "averaging over the selecting clients instead of N"),
    "redraw_each_step": ({"sketch_fixed_within_round", "round_matches_reference", "index_set_size"},
                         "sketch_fixed_within_round", "the index set changes between the local steps"),
    "weight_decay_unselected": ({"untouched_outside_index_set", "round_matches_reference"},
                                "untouched_outside_index_set", "weight decay applied to unselected coordinates"),
    "first_k": ({"selection_frequency", "round_matches_reference", "untouched_outside_index_set", "scale_applied_once",
                 "sampler_unbiased", "sampler_uniform_subsets"}, "selection_frequency",
                "pooled over layers and rounds, in 0 of"),
    "contiguous_window": ({"selection_frequency", "sampler_uniform_subsets"}, "sampler_uniform_subsets",
                          "never appeared"),
    "with_replacement": ({"index_set_size", "sampler_support_and_value", "sampler_uniform_subsets"},
                         "sampler_support_and_value", "expected exactly 3 entries"),
    "shared_across_layers": ({"selection_frequency"}, "selection_frequency", "not independent across layers"),
    # the black-box scenarios have a client with k = r, which then moves nothing
    "full_rank_skipped": ({"full_rank_is_fedavg", "round_matches_reference", "index_set_size"}, "full_rank_is_fedavg",
                          "FedAvg (FedIT)"),
    # declared optimisers: the defect breaks what the declaration promises
    "adamw_missing_scale": ({"scale_applied_once", "round_matches_reference", "update_matches_reference"},
                            "scale_applied_once", "the r/k scale is missing"),
    "adamw_decay_unselected": ({"index_set_size", "untouched_outside_index_set", "round_matches_reference",
                                "update_matches_reference", "upload_size"}, "index_set_size",
                               "weight decay applied to unselected coordinates"),
    "server_lr_ignored": ({"update_matches_reference", "round_matches_reference", "full_rank_is_fedavg"},
                          "update_matches_reference", "optimizers={'server': 'average'}"),
    "leaky_mask": ({"index_set_size", "untouched_outside_index_set", "round_matches_reference", "upload_size"},
                   "index_set_size", "a mask that leaks"),
    "writes_inputs": ({"inputs_unchanged_white", "inputs_unchanged_black"}, "inputs_unchanged_white",
                      "wrote into their inputs"),
}
# further diagnoses that must name the cause (check, phrase)
SECONDARY = {
    "with_replacement": ("index_set_size", "fewer than k coordinates moved"),
    "per_coordinate_mean": ("update_matches_reference", "averaged over the selecting clients instead of N"),
    "adamw_decay_unselected": ("untouched_outside_index_set", "weight decay applied to unselected coordinates"),
    "server_lr_ignored": ("round_matches_reference", "the sketch is not at fault"),
    "leaky_mask": ("untouched_outside_index_set", "not a multiple of the coordinate"),
}
# the checks whose premise a defect destroys (no valid index set, nothing moved attributably)
INCONCLUSIVE = {
    "no_sketch": {"aggregation_divides_by_n", "sketch_fixed_within_round", "update_matches_reference",
                  "selection_frequency"},
    "independent_sets": {"update_matches_reference", "selection_frequency"},
    "redraw_each_step": {"selection_frequency"},   # H = 1 scenarios leave it valid sets to compare
    "with_replacement": {"update_matches_reference", "selection_frequency"},
    "full_rank_skipped": {"selection_frequency"},
    "leaky_mask": {"aggregation_divides_by_n", "sketch_fixed_within_round", "update_matches_reference",
                   "selection_frequency"},
}


def test_every_mutant_has_an_expectation_and_every_check_has_teeth():
    assert set(EXPECTED) == set(MUTANTS) and set(INCONCLUSIVE) <= set(MUTANTS)
    assert len(MUTANTS) >= 8
    # each check is failed by at least one shipped mutant (pinned by the test below)
    assert set().union(*(failing for failing, _, _ in EXPECTED.values())) == set(CHECKS)


@pytest.mark.parametrize("name", MUTANTS)
def test_mutant_fails_exactly_its_checks(name):
    module = importlib.import_module(f"tests.mutants.{name}")
    table = check_implementation(module.impl, options=QUICK)
    failing, primary, phrase = EXPECTED[name]
    assert set(table.failed()) == failing, table.format()
    assert set(table.inconclusive()) == INCONCLUSIVE.get(name, set()), table.format()
    assert not table.ok and table.verdict == "fails"
    assert phrase in table[primary].diagnosis, table[primary].diagnosis
    if name in SECONDARY:
        check, text = SECONDARY[name]
        assert text in table[check].diagnosis, table[check].diagnosis


def test_first_k_in_black_box_names_the_index():
    module = importlib.import_module("tests.mutants.first_k")
    table = check_implementation(module.impl, mode="black", options=QUICK)
    text = table["selection_frequency"].diagnosis
    assert "black_box_0 (r=12): index 9 was selected by the 2 client(s) with k=9" in text and "in 0 of" in text


def test_declared_expected_failures_make_a_mutant_pass():
    module = importlib.import_module("tests.mutants.missing_scale")
    reasons = {c: "known defect" for c in EXPECTED["missing_scale"][0]}
    table = check_implementation(module.impl, expected_failed=reasons, options=QUICK)
    assert table.ok
    assert {r.status for r in table if r.check in reasons} == {"XFAIL"}
