"""Algorithm 1's claims through an implementation: round unbiasedness, fixed sketch, client forms,
FedAvg at k = r. Each verified on the reference (and an independent implementation) and violated by
the mutants built to break it."""
import numpy as np
import pytest

from fslora_ref.conformance.reference import ReferenceImplementation
from theory.paper import algorithm as alg
from theory.paper import unbiased as unb
from theory.paper.objective import random_points
from theory.exact.fedavg import fedavg_round
from theory.implementations import load_runner, runner_for

from tests.mutants import theory_mutants as M
from tests.mutants.theory_mutants import ScaleDroppedBothForms, ServerDividesByNMinus1

NUMPY = "examples/numpy_fslora.py:impl"


@pytest.mark.parametrize("target", [None, NUMPY])
def test_round_unbiased_on_correct_implementations(target):
    runner = runner_for(None) if target is None else load_runner(target)
    res = unb.check_round_unbiased(runner, rounds=400)
    assert res.status == "verified", res.key
    for point in res.evidence["points"]:
        assert point["law_mean_vs_grad_fS"] < 1e-12          # enumerated law's mean is -gamma grad f^S
        assert abs(point["step_along_grad_over_reference"] - 1) < 0.05


@pytest.mark.parametrize("impl", [load_runner("tests.mutants.missing_scale:impl"), runner_for(ServerDividesByNMinus1()),
                                  load_runner("tests.mutants.contiguous_window:impl")], ids=["scale", "N-1", "window"])
def test_round_unbiased_violated_by_biased_rounds(impl):
    assert unb.check_round_unbiased(impl, rounds=1000).status == "violated"


def test_bernstein_radius_covers_its_level_by_simulation():
    # Rademacher means (var 1, range 1): the radius at level 0.05 is exceeded in <= 5% of 4000 trials
    rng = np.random.default_rng(0)
    eps = unb.bernstein_radius(np.array(1.0), np.array(1.0), 200, 0.05)
    means = rng.choice([-1.0, 1.0], size=(4000, 200)).mean(axis=1)
    assert np.mean(np.abs(means) >= eps) <= 0.05


def test_sketch_fixed_on_reference_and_against_redraw():
    assert alg.check_sketch_fixed(runner_for(None)).status == "verified"
    assert alg.check_sketch_fixed(load_runner(NUMPY)).status == "verified"
    res = alg.check_sketch_fixed(load_runner("tests.mutants.redraw_each_step:impl"))
    assert res.status == "violated" and len(res.evidence["failures"][0]["B_columns_moved"]) > res.evidence["failures"][0]["k"]


def test_forms_agree_and_its_mutant_and_protocol_implementations_skip():
    assert alg.check_forms_agree(runner_for(None)).status == "verified"
    assert alg.check_forms_agree(runner_for(M.UnscaledSubmatrixFSLoRA())).status == "violated"
    # the table's "r/k dropped in both forms" is consistent between the forms: forms_agree cannot see it
    assert alg.check_forms_agree(runner_for(ScaleDroppedBothForms())).status == "verified"
    assert alg.check_forms_agree(load_runner(NUMPY)).status == "skipped"


def test_fedavg_oracle_is_not_fslora_code_and_matches_the_reference():
    assert alg.check_fedavg(runner_for(None)).status == "verified"
    assert alg.check_fedavg(load_runner(NUMPY)).status == "verified"
    assert alg.check_fedavg(runner_for(ReferenceImplementation())).status == "verified"


@pytest.mark.parametrize("impl", [runner_for(M.SummingFSLoRA()), load_runner("tests.mutants.full_rank_skipped:impl")],
                         ids=["summing", "full-rank-skipped"])
def test_fedavg_violated(impl):
    res = alg.check_fedavg(impl)
    assert res.status == "violated" and res.evidence.get("max_relative_error", 1.0) > 1e-3


def test_plain_fedavg_by_hand_for_one_step():
    from fslora_ref.problems import least_squares
    problem = least_squares(n_clients=2, m=3, n=2, mean_size=6, seed=0)
    (B, A), = random_points(problem, 1, seed=1, rank=2)[0]
    (nB, nA), = fedavg_round(problem, [(B, A)], lr=0.1, local_steps=1, s=0.5)
    Gs = [problem.loss_and_weight_grads(i, [problem.base_weights[0] + 0.5 * B @ A])[1][0] for i in range(2)]
    G = (Gs[0] + Gs[1]) / 2
    assert np.allclose(nB, B - 0.1 * 0.5 * G @ A.T, atol=1e-14) and np.allclose(nA, A - 0.1 * 0.5 * B.T @ G, atol=1e-14)


# -- alg1.round_variance (issue 18) ------------------------------------------------------------------
def test_round_variance_on_correct_implementations():
    from theory.paper import variance as var
    for runner in (runner_for(None), load_runner(NUMPY)):
        res = var.check_round_variance(runner, rounds=1000)
        assert res.status == "verified", res.key
        for point in res.evidence["points"]:
            assert abs(point["trace_empirical_over_exact"] - 1) < point["detectable_relative_change_of_trace"]


def test_round_variance_sees_sketches_shared_across_clients_that_the_mean_cannot():
    from theory.paper import variance as var
    runner = runner_for(M.SharedAcrossClientsFSLoRA())
    assert unb.check_round_unbiased(runner, rounds=1000).status == "verified"     # each client's law is right
    res = var.check_round_variance(runner, rounds=1000)
    assert res.status == "violated" and all(p["trace_empirical_over_exact"] > 1.2 for p in res.evidence["points"])


def test_the_exact_fourth_moments_match_brute_force_enumeration():
    """_trace_law and _square_law (mean, variance, range of ||sum_i y_i||^2 for independent centred clients)
    against the joint law enumerated outright: 3 clients with 2, 3, 4 equally likely values in R^2."""
    import itertools
    from theory.paper import variance as var
    rng = np.random.default_rng(3)
    ys = [rng.standard_normal((n, 2)) for n in (2, 3, 4)]
    ys = [y - y.mean(axis=0) for y in ys]
    totals = np.array([sum(c) for c in itertools.product(*ys)])
    Y = np.sum(totals ** 2, axis=1)
    mean, variance, top = var._trace_law(ys)
    assert mean == pytest.approx(Y.mean(), rel=1e-12) and variance == pytest.approx(Y.var(), rel=1e-12)
    assert top >= Y.max()
    mean, variance, top = var._square_law([y[:, 0] for y in ys])
    assert mean == pytest.approx(np.mean(totals[:, 0] ** 2), rel=1e-12)
    assert variance == pytest.approx(np.var(totals[:, 0] ** 2), rel=1e-12) and top >= np.max(totals[:, 0] ** 2)
