"""The vectorised f^S / grad f^S / grad f against the per-point closed forms and enumeration."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fslora_ref.problems import least_squares, logistic, two_layer
from theory.batched_objective import client_grads, point_stats
from theory.sketched_objective import global_sketched, sketched_grad, sketched_loss, unsketched_factors


@st.composite
def case(draw):
    family = draw(st.sampled_from(["least_squares", "logistic"]))
    m, n, r = draw(st.integers(1, 5)), draw(st.integers(2, 4)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 500))
    N = draw(st.integers(1, 3))
    budgets = [draw(st.integers(1, r)) for _ in range(N)]
    s = draw(st.sampled_from([0.5, 1.0, 1.7]))
    if family == "least_squares":
        problem = least_squares(n_clients=N, m=m, n=n, target_rank=1, mean_size=6, seed=seed)
    else:
        problem = logistic(n_clients=N, m=m, n_classes=n, target_rank=1, mean_size=6, seed=seed)
    rng = np.random.default_rng(seed)
    return problem, rng.standard_normal((3, m, r)), rng.standard_normal((3, r, n)), s, budgets


@settings(max_examples=40)
@given(case())
def test_batched_equals_per_point(c):
    problem, Bs, As, s, budgets = c
    stats = point_stats(problem, Bs, As, s, budgets)
    for p in range(Bs.shape[0]):
        layers = [(Bs[p], As[p])]
        value, ((gB, gA),) = global_sketched(problem, layers, s, budgets)
        scale = 1.0 + abs(value) + float(np.sum(gB * gB) + np.sum(gA * gA))
        assert abs(stats.value_sketched[p] - value) <= 1e-10 * scale
        assert abs(stats.grad_sq_sketched[p] - (np.sum(gB * gB) + np.sum(gA * gA))) <= 1e-10 * scale
        plain = [problem.loss_and_factor_grads(i, unsketched_factors(layers, s))[1][0] for i in range(problem.n_clients)]
        pB, pA = (sum(g[j] for g in plain) / problem.n_clients for j in (0, 1))
        assert abs(stats.grad_sq_plain[p] - (np.sum(pB * pB) + np.sum(pA * pA))) <= 1e-10 * scale
        het = max(sum(np.sum((x - y) ** 2) for x, y in zip(sketched_grad(problem, i, layers, s, [k])[0], (gB, gA)))
                  for i, k in enumerate(budgets))
        assert abs(stats.heterogeneity[p] - het) <= 1e-10 * scale


def test_client_values_and_gradients_match_at_k_and_without_sketch():
    problem = logistic(n_clients=2, m=4, n_classes=3, mean_size=8, seed=1)
    rng = np.random.default_rng(1)
    Bs, As = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 3, 3))
    v, dB, dA = client_grads(problem, 1, Bs, As, 0.7, 2)
    for p in range(2):
        layers = [(Bs[p], As[p])]
        assert abs(v[p] - sketched_loss(problem, 1, layers, 0.7, [2])) < 1e-12
        (eB, eA), = sketched_grad(problem, 1, layers, 0.7, [2])
        assert np.max(np.abs(dB[p] - eB)) < 1e-12 and np.max(np.abs(dA[p] - eA)) < 1e-12


def test_multi_layer_problems_are_refused():
    with pytest.raises(ValueError, match="single-layer"):
        point_stats(two_layer(n_clients=2, m=3, hidden=4, n=2, mean_size=6), np.zeros((1, 3, 2)), np.zeros((1, 2, 4)),
                    1.0, [1, 1])
