"""The baseline battery (``fslora crosscheck --algorithm fedit|hetlora|flexlora|flora``): the reference and
the bundled examples conform; each realistic defect fails with a message that names it; every check
fails on at least one of them."""
import importlib.util
import os
import sys

import pytest

from fslora_cli.main import main
from fslora_ref.conformance.baselines import BASELINE_CHECKS, check_baseline
from fslora_ref.conformance.baselines.reference import ReferenceBaseline
from tests.mutants import baseline_defects as defects

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASELINES = ["fedit", "hetlora", "flexlora", "flora"]


def load(name):
    folder = os.path.join(ROOT, "examples")
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("algorithm", BASELINES)
def test_the_examples_conform(algorithm):
    table = check_baseline(load(f"numpy_{algorithm}").impl, algorithm)
    assert table.ok and table.exit_code == 0 and all(r.passed for r in table), table.format()


@pytest.mark.parametrize("algorithm,options", [("fedit", {"weighting": "data_size"}), ("hetlora", {"aggregate": "matrix"}),
                                               ("hetlora", {"scaling": "constant"}),
                                               ("flexlora", {"weighting": "data_size", "split": "balanced"}),
                                               ("flora", {"weighting": "data_size", "scaling": "constant"})])
def test_every_reference_variant_conforms_as_itself_and_not_as_the_default(algorithm, options):
    assert check_baseline(ReferenceBaseline(algorithm, **options), algorithm).ok
    table = check_baseline(ReferenceBaseline(algorithm), algorithm, options=options)   # the default, declared as the variant
    assert table.verdict == "fails", table.format()


DEFECTS = [  # (algorithm, defect, check that must fail, words its diagnosis must contain)
    ("fedit", defects.first_client_fedit, "aggregation_matches_reference", "first client's upload alone"),
    ("fedit", defects.first_client_fedit, "every_client_counts", "keeps only the first client"),
    ("hetlora", defects.matrix_hetlora, "aggregation_matches_reference", "aggregate='matrix'"),
    ("hetlora", defects.matrix_hetlora, "no_op_round", "averages the zero-padded client matrices"),
    ("flexlora", defects.size_weighted_flexlora, "weights_as_declared", "weights clients by data size"),
    ("flexlora", defects.size_weighted_flexlora, "aggregation_matches_reference", "weighting='data_size'"),
    ("flora", defects.no_reinit_flora, "rounds_match_reference", "forgets to re-initialise"),
]


@pytest.mark.parametrize("algorithm,impl,check,words", DEFECTS, ids=[f"{d[0]}-{d[2]}" for d in DEFECTS])
def test_each_defect_fails_with_a_message_that_names_it(algorithm, impl, check, words):
    table = check_baseline(impl, algorithm)
    assert table.verdict == "fails" and table.exit_code == 1
    assert table[check].outcome == "fail" and words in table[check].diagnosis, table.format()


def test_every_check_fails_on_some_defect():
    failed = set()
    for algorithm, impl, _, _ in DEFECTS:
        failed |= set(check_baseline(impl, algorithm).failed())
    assert failed == set(BASELINE_CHECKS)


def test_an_adapter_without_rounds_is_inconclusive_not_a_pass():
    class AggregateOnly:
        def aggregate(self, task):
            return ReferenceBaseline("hetlora").aggregate(task)

    table = check_baseline(AggregateOnly(), "hetlora")
    assert table.verdict == "inconclusive" and table.exit_code == 3
    assert table.inconclusive() == ["rounds_match_reference"]


def test_cli_conforms_fails_and_refuses_bad_input(capsys):
    assert main(["crosscheck", "--algorithm", "hetlora", "examples/numpy_hetlora.py:impl"]) == 0
    assert "4/4 checks passed; conforms" in capsys.readouterr().out
    assert main(["crosscheck", "--algorithm", "flora", "tests.mutants.baseline_defects:no_reinit_flora"]) == 1
    assert "forgets to re-initialise" in capsys.readouterr().out
    assert main(["crosscheck", "--algorithm", "hetlora", "--variant", "aggregate=mean",
                 "examples/numpy_hetlora.py:impl"]) == 2
    assert "hetlora aggregate must be one of" in capsys.readouterr().err
    assert main(["crosscheck", "--algorithm", "flexlora", "examples/numpy_hetlora.py:impl"]) == 2
    assert "declares algorithm 'hetlora', not 'flexlora'" in capsys.readouterr().err
    assert main(["crosscheck", "--variant", "aggregate=delta", "examples/numpy_fslora.py:impl"]) == 2


def test_cli_variant_overrides_the_declared_options(capsys):
    args = ["crosscheck", "--algorithm", "hetlora", "--variant", "aggregate=matrix", "examples/numpy_hetlora.py:impl"]
    assert main(args) == 1
    assert "aggregate='delta' (averages the zero-padded changes) instead of the declared 'matrix'" in capsys.readouterr().out


def test_peft_state_dict_adapter_checks_a_federatedllm_style_fedavg():
    pytest.importorskip("torch")
    module = load("peft_fedit_state_dicts")
    good = check_baseline(module.impl, "fedit")
    assert good.verdict == "inconclusive" and good.inconclusive() == ["rounds_match_reference"], good.format()
    assert all(r.passed for r in good if r.check != "rounds_match_reference")
    bad = check_baseline(module.buggy, "fedit")
    assert bad.exit_code == 1 and "weighted_sindgle_weights" in bad["every_client_counts"].diagnosis
