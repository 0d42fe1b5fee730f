"""The exact quantities behind the toolkit's own bound: batched f^S, grad f^S, V, Hessians, the
segment margins and the certified lower bounds, each against an independent reference."""
import numpy as np
import pytest

from theory.exact import curvature, lower_bounds, sketch_batch as sb, sketch_hessian as sh
from theory.paper.objective import random_points
from theory.exact.constants import dense_hessian, hessian_norm, lower_bound
from theory.exact.moments import reference_law
from theory.ours.bound import general_h_rhs, h1_rhs, identity_rhs, mean_bound
from theory.ours.experiment import LG_SETTING, LS_SETTING
from theory.exact.sketched_objective import all_sketch_choices, global_sketched, instance_grad

from tests.mutants import theory_mutants as M

S = 0.8   # a LoRA scaling != 1 so that misplaced s factors show
SETTINGS = {"least_squares": LS_SETTING, "logistic": LG_SETTING}


def _case(family, count=3, seed=3):
    st = SETTINGS[family]
    problem = st.problem()
    points = random_points(problem, count, seed=seed)
    return problem, st.config(0.1).budgets, points, *sb.stack(points)


def _flat(pairs):
    return np.concatenate([x.ravel() for pair in pairs for x in pair])


@pytest.mark.parametrize("family", sorted(SETTINGS))
def test_batched_value_gradient_and_variance_equal_the_pointwise_enumeration(family):
    problem, budgets, points, B, A = _case(family)
    out = sb.evaluate(problem, S, budgets, B, A)
    for j, layers in enumerate(points):
        value, grad = global_sketched(problem, layers, S, budgets)
        V = 0.0
        for i in range(problem.n_clients):
            G = np.array([_flat(instance_grad(problem, i, layers, S, d)[1])
                          for d in all_sketch_choices(layers, [budgets[i]])])
            V += np.mean(np.sum((G - G.mean(axis=0)) ** 2, axis=1)) / problem.n_clients ** 2
        assert out.value[j] == pytest.approx(value, abs=1e-12)
        assert np.max(np.abs(out.grad[j] - _flat(grad))) < 1e-12
        assert out.variance[j] == pytest.approx(V, rel=1e-12) and V > 0
    # a broken sketch law (the r/k scale forgotten) gives a different gradient: the comparison has teeth
    bad = sb.evaluate(problem, S, budgets, B, A, law=M.unscaled_law)
    assert np.max(np.abs(bad.grad - out.grad)) > 1e-3


@pytest.mark.parametrize("family", sorted(SETTINGS))
def test_batched_hessian_equals_the_enumerated_dense_hessian(family):
    problem, budgets, points, B, A = _case(family, count=2)
    H = sh.hessian(problem, S, budgets, B, A)
    for j, layers in enumerate(points):
        (Bj, Aj), = layers
        ref = sum(q * dense_hessian(problem, i, Bj, Aj, S * d) / problem.n_clients
                  for i in range(problem.n_clients) for d, q in zip(*reference_law(4, budgets[i])))
        assert np.max(np.abs(H[j] - ref)) < 1e-12 * max(1.0, np.max(np.abs(ref)))
    lam = sh.lambda_max(problem, S, budgets, B, A)
    assert np.allclose(lam, np.linalg.eigvalsh(H)[:, -1], rtol=1e-12)
    norms = sh.client_hessian_norm(problem, S, B, A)
    ref = [[hessian_norm(problem, i, b, a, S * np.ones(4))[0] for i in range(problem.n_clients)] for b, a in zip(B, A)]
    assert np.allclose(norms, ref, rtol=1e-10)


def test_instance_grads_for_given_sketches():
    problem, budgets, points, B, A = _case("logistic", count=2)
    rng = np.random.default_rng(0)
    diags = np.zeros((len(B), problem.n_clients, 4))
    for p in range(len(B)):
        for i, k in enumerate(budgets):
            diags[p, i, rng.choice(4, k, replace=False)] = 4 / k
    got = sb.instance_grads(problem, S, B, A, diags)
    for p, layers in enumerate(points):
        for i in range(problem.n_clients):
            assert np.allclose(got[p, i], _flat(instance_grad(problem, i, layers, S, [diags[p, i]])[1]), atol=1e-13)


@pytest.mark.parametrize("family", sorted(SETTINGS))
def test_certified_segment_margin_covers_the_interior(family):
    """max(lambda at the ends) + margin >= lambda_max at 9 interior points of random segments (long ones,
    so the margin matters), for both families; the least-squares margin is also below 5% of lambda there."""
    problem, budgets, _, B, A = _case(family, count=4, seed=5)
    rng = np.random.default_rng(1)
    B1, A1 = B + 0.05 * rng.standard_normal(B.shape), A + 0.05 * rng.standard_normal(A.shape)
    margin = curvature.segment_margin(problem, S, budgets, B, A, B1, A1)
    ends = np.maximum(sh.lambda_max(problem, S, budgets, B, A), sh.lambda_max(problem, S, budgets, B1, A1))
    inner = np.max([sh.lambda_max(problem, S, budgets, B + t * (B1 - B), A + t * (A1 - A))
                    for t in np.linspace(0, 1, 11)], axis=0)
    assert np.all(inner <= ends + margin + 1e-12)
    assert np.all(margin > 0)
    if family == "least_squares":
        assert np.all(margin < 0.05 * ends)


def test_segment_curvature_certifies_every_prefix_and_a_broken_lambda_is_visible():
    problem, budgets, _, B, A = _case("least_squares", count=6, seed=7)
    steps = 0.02 * np.random.default_rng(2).standard_normal((2, 3) + B.shape[1:])
    Bs = np.concatenate([B[:2, None], B[:2, None] + np.cumsum(steps, axis=1)], axis=1)         # (2 seeds, 4 points)
    As = np.concatenate([A[:2, None], A[:2, None] + np.cumsum(0.02 * np.ones((2, 3) + A.shape[1:]), axis=1)], axis=1)
    curv = curvature.segment_curvature(problem, S, budgets, Bs, As)
    assert curv.method == "certified per segment"
    assert curv.at_points.shape == (2, 4) and curv.bound.shape == (2, 3)
    assert np.all(curv.bound >= np.maximum(curv.at_points[:, :-1], curv.at_points[:, 1:]))
    assert 0 <= curv.max_relative_excess <= 1e-3 + 1e-12
    half = curvature.segment_curvature(problem, S, budgets, Bs, As,
                                       lambda_fn=lambda *a, **k: 0.5 * sh.lambda_max(*a, **k))
    assert half.L_S() < 0.6 * curv.L_S()


@pytest.mark.parametrize("family", sorted(SETTINGS))
def test_certified_lower_bound_is_below_f_everywhere(family):
    problem = SETTINGS[family].problem()
    fstar = lower_bounds.certified_lower_bound(problem)
    rng = np.random.default_rng(0)
    (m, n), = problem.layer_shapes
    values = [problem.global_loss([scale * rng.standard_normal((m, n))]) for scale in (0.1, 1.0, 3.0) for _ in range(15)]
    assert fstar.value <= min(values)
    if family == "least_squares":
        assert fstar.value == lower_bound(problem).value and fstar.method == "exact"
    else:
        bound, primal, min_alpha = lower_bounds.softmax_dual_bound(problem)
        assert fstar.method == "certified" and min_alpha > 0 and 0 <= primal - bound < 1e-9 and bound > 0.1


def test_h1_rhs_terms_by_hand_and_bad_input():
    out = h1_rhs(gap=2.0, gamma=0.1, T=10, L_S=4.0, noise=0.5)
    q = 1 - 0.2
    assert out["optimisation"] == pytest.approx(2.0 / (0.1 * q * 10))
    assert out["noise"] == pytest.approx(4.0 * 0.1 / (2 * q) * 0.5)
    assert out["rhs"] == pytest.approx(out["optimisation"] + out["noise"]) and out["dominant"] == "optimisation"
    assert identity_rhs(gap=2.0, gamma=0.1, T=10, kappa=4.0, noise=0.5) == pytest.approx(out["rhs"])
    with pytest.raises(ValueError, match="gamma L_S must be < 2"):
        h1_rhs(gap=1.0, gamma=0.5, T=1, L_S=4.0, noise=0.0)
    with pytest.raises(ValueError, match="T must be"):
        h1_rhs(gap=1.0, gamma=0.1, T=0, L_S=1.0, noise=0.0)
    g = general_h_rhs(gap=1.0, gamma=0.01, H=2, T=5, L_S=4.0, noise=0.5, drift=0.1)
    a = 4.0 * 0.01 * 2
    assert g["rhs"] == pytest.approx((2 / (0.01 * 2 * 5) + (1 + 2 * a) * 0.1 + 2 * a * 0.5) / (1 - 2 * a))
    with pytest.raises(ValueError, match="< 1/2"):
        general_h_rhs(gap=1.0, gamma=0.1, H=2, T=5, L_S=4.0, noise=0.5, drift=0.1)
    x = np.array([1.0, 2.0, 3.0])
    assert mean_bound(x, 0.95, "upper") > 2.0 > mean_bound(x, 0.95, "lower")
    assert mean_bound(1e250 * x, 0.95, "lower") == pytest.approx(1e250 * mean_bound(x, 0.95, "lower"))   # no overflow
    assert mean_bound([1.0, np.inf], 0.95, "lower") == np.inf and np.isnan(mean_bound([1.0], 0.95))
