"""check_implementation's contract: modes, expected failures, bad input, crashing implementations."""
import numpy as np
import pytest

from fslora_ref.conformance import Options, check_implementation, parametrize_with_checks
from fslora_ref.conformance.reference import ReferenceImplementation, impl
from tests.mutants.first_k import FirstK


def test_unknown_expected_failure_is_rejected():
    with pytest.raises(ValueError, match="unknown checks"):
        check_implementation(impl, expected_failed={"no_such_check": "x"})


def test_expected_failure_needs_a_reason():
    with pytest.raises(TypeError, match="non-empty reason"):
        check_implementation(impl, mode="sampler", expected_failed={"sampler_unbiased": ""})


def test_bad_mode_and_missing_methods():
    with pytest.raises(ValueError, match="mode must be one of"):
        check_implementation(impl, mode="grey")
    with pytest.raises(TypeError, match="implements none of"):
        check_implementation(object())

    class SamplerOnly:
        def sample_sketch(self, rank, k, seed):
            return impl.sample_sketch(rank, k, seed)

    with pytest.raises(TypeError, match="white_box_round"):
        check_implementation(SamplerOnly(), mode="white")
    assert [r.mode for r in check_implementation(SamplerOnly())] == ["sampler"] * 3


def test_bad_options():
    with pytest.raises(ValueError, match="rounds must be"):
        Options(rounds=3)
    with pytest.raises(ValueError, match="alpha, the false-alarm rate .--false-alarm-rate., must be"):
        Options(alpha=0.9)


def test_crash_and_malformed_results_are_failures_with_a_reason():
    class Crashes(ReferenceImplementation):
        def white_box_round(self, task):
            raise RuntimeError("boom")

    class WrongShape(ReferenceImplementation):
        def white_box_round(self, task):
            return [(B[:, :1], A) for B, A in task.layers]

    crashed = check_implementation(Crashes(), mode="white")
    assert not crashed.ok and all("implementation raised RuntimeError: boom" in r.diagnosis for r in crashed
                                  if r.check != "inputs_unchanged_white")
    assert crashed["inputs_unchanged_white"].outcome == "inconclusive"
    wrong = check_implementation(WrongShape(), mode="white")["round_matches_reference"]
    assert not wrong.passed and "returned B" in wrong.diagnosis


def test_bad_dtype_is_rejected():
    class Half(ReferenceImplementation):
        dtype = np.float16

    with pytest.raises(ValueError, match="impl.dtype must be one of"):
        check_implementation(Half())


def test_options_must_be_options():
    with pytest.raises(TypeError, match="options must be"):
        check_implementation(impl, options={"rounds": 30})


def test_an_implementation_can_declare_its_known_failures():
    class Declared(FirstK):
        expected_failed = {"selection_frequency": "deterministic truncation, by design"}

    table = check_implementation(Declared(), mode="black")
    assert table.ok and table["selection_frequency"].status == "XFAIL"
    assert table["selection_frequency"].expected_failure == "deterministic truncation, by design"


class _DeclaredFirstK(FirstK):
    name = "first_k-declared"
    expected_failed = {"selection_frequency": "truncation by design"}


@parametrize_with_checks([_DeclaredFirstK()], mode="black", options=Options(rounds=40))
def test_parametrized_checks_honour_declared_failures(impl, check):
    check(impl)   # selection_frequency is a strict xfail: it must fail, the other three must pass


class _NoOp(ReferenceImplementation):
    name = "no-op"

    def white_box_round(self, task):
        return task.layers


def test_a_parametrized_check_that_had_nothing_to_test_raises_instead_of_passing():
    from fslora_ref.conformance import CheckFailed, CheckInconclusive

    mark = parametrize_with_checks([_NoOp()], mode="white")
    checks = {p.id.removeprefix("no-op-"): p.values for p in mark.args[1]}
    impl_, check = checks["aggregation_divides_by_n"]
    with pytest.raises(CheckInconclusive, match="inconclusive: no rank index was moved"):
        check(impl_)
    impl_, check = checks["round_matches_reference"]
    with pytest.raises(CheckFailed, match="round 'two_layer'"):
        check(impl_)


def test_declared_optimisers_come_from_the_implementation_or_the_argument():
    class Declares(ReferenceImplementation):
        optimizers = {"client": "adamw", "weight_decay": 0.0}

    table = check_implementation(Declares(), mode="sampler")
    assert table.optimizers.startswith("client AdamW")
    assert check_implementation(Declares(), mode="sampler", optimizers={}).optimizers.startswith("client SGD")
    with pytest.raises(ValueError, match="unknown keys"):
        check_implementation(impl, optimizers={"clients": "adamw"})
