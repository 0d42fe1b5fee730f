"""The batched f^S / grad f^S / grad f / V (``theory.exact.sketch_batch``) against the pointwise reference
``theory.exact.sketched_objective`` (closed forms and enumeration, one point and one sketch at a time)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fslora_ref.problems import least_squares, logistic, two_layer
from theory.exact.sketch_batch import evaluate, point_stats
from theory.exact.sketched_objective import (all_sketch_choices, global_sketched, instance_grad, sketched_grad,
                                       unsketched_factors)


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


def _flat(pairs):
    return np.concatenate([x.ravel() for pair in pairs for x in pair])


@settings(max_examples=40)
@given(case())
def test_batched_equals_per_point(c):
    problem, Bs, As, s, budgets = c
    stats = point_stats(problem, Bs, As, s, budgets)
    batch = evaluate(problem, s, budgets, Bs, As)
    N = problem.n_clients
    for p in range(Bs.shape[0]):
        layers = [(Bs[p], As[p])]
        value, ((gB, gA),) = global_sketched(problem, layers, s, budgets)
        scale = 1.0 + abs(value) + float(np.sum(gB * gB) + np.sum(gA * gA))
        assert abs(stats.value_sketched[p] - value) <= 1e-10 * scale
        assert abs(stats.grad_sq_sketched[p] - (np.sum(gB * gB) + np.sum(gA * gA))) <= 1e-10 * scale
        plain = [problem.loss_and_factor_grads(i, unsketched_factors(layers, s))[1][0] for i in range(N)]
        pB, pA = (sum(g[j] for g in plain) / N for j in (0, 1))
        assert abs(stats.grad_sq_plain[p] - (np.sum(pB * pB) + np.sum(pA * pA))) <= 1e-10 * scale
        client = [_flat(sketched_grad(problem, i, layers, s, [k])) for i, k in enumerate(budgets)]
        assert np.max(np.abs(batch.client_grads[p] - np.array(client))) <= 1e-10 * scale
        het = max(np.sum((g - _flat([(gB, gA)])) ** 2) for g in client)
        assert abs(stats.heterogeneity[p] - het) <= 1e-10 * scale
        V = 0.0
        for i, k in enumerate(budgets):
            G = np.array([_flat(instance_grad(problem, i, layers, s, d)[1]) for d in all_sketch_choices(layers, [k])])
            V += np.mean(np.sum((G - G.mean(axis=0)) ** 2, axis=1)) / N ** 2
        assert abs(batch.variance[p] - V) <= 1e-10 * scale


def test_multi_layer_problems_are_refused():
    with pytest.raises(ValueError, match="single-layer"):
        point_stats(two_layer(n_clients=2, m=3, hidden=4, n=2, mean_size=6), np.zeros((1, 3, 2)), np.zeros((1, 2, 4)),
                    1.0, [1, 1])
