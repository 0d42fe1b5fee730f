"""Constants measured on points: exact Hessians, exact minibatch variance, sketch variance,
heterogeneity, f*; each against brute force, and the Hessian check failing on a mutant."""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

from fslora_ref.problems import least_squares, logistic, two_layer
from theory.exact import constants as C
from theory.exact.sketched_objective import all_sketch_choices, global_sketched, instance_grad, sketched_grad

from tests.mutants import theory_mutants as M


def _problem(family, seed, batch_size=None, mean_size=10):
    if family == "least_squares":
        return least_squares(n_clients=2, m=5, n=3, mean_size=mean_size, batch_size=batch_size, seed=seed)
    return logistic(n_clients=2, m=5, n_classes=3, mean_size=mean_size, batch_size=batch_size, seed=seed)


def _point(problem, r, seed):
    rng = np.random.default_rng(seed)
    (m, n), = problem.layer_shapes
    return rng.standard_normal((m, r)) / 2, rng.standard_normal((r, n)) / 2, rng.uniform(0.3, 2.0, r)


@given(st.sampled_from(["least_squares", "logistic"]), st.integers(1, 4), st.integers(0, 1000))
def test_hessian_vector_products_match_finite_differences(family, r, seed):
    problem = _problem(family, seed % 20)
    B, A, c = _point(problem, r, seed)
    assert C.hvp_error(problem, 0, B, A, c, seed=seed) < 1e-6


@pytest.mark.parametrize("family", ["least_squares", "logistic"])
def test_hvp_check_fails_on_gauss_newton_mutant(family):
    problem = _problem(family, 0)
    B, A, c = _point(problem, 3, 0)
    assert C.hvp_error(problem, 0, B, A, c, hvp_fn=M.hvp_gauss_newton) > 1e-2


def test_dense_hessian_is_symmetric_and_power_iteration_agrees():
    problem = _problem("logistic", 1)
    B, A, c = _point(problem, 3, 1)
    H = C.dense_hessian(problem, 0, B, A, c)
    raw_U, raw_V = C.hvp(problem, 0, B, A, c, np.eye(H.shape[0])[:, :15].reshape(-1, 5, 3),
                         np.eye(H.shape[0])[:, 15:].reshape(-1, 3, 3))
    raw = np.concatenate([raw_U.reshape(len(H), -1), raw_V.reshape(len(H), -1)], axis=1)
    assert np.max(np.abs(raw - raw.T)) < 1e-12
    exact = np.max(np.abs(np.linalg.eigvalsh(H)))
    power = C.power_iteration(lambda U, V: C.hvp(problem, 0, B, A, c, U[None], V[None]), B.shape, A.shape, 500, 0)
    assert abs(power - exact) <= 1e-6 * exact


def test_multi_layer_problems_are_refused_with_a_clear_message():
    problem = two_layer(n_clients=2, m=3, hidden=4, n=2, mean_size=6)
    with pytest.raises(ValueError, match="single-layer"):
        C.hvp(problem, 0, np.zeros((3, 2)), np.zeros((2, 4)), np.ones(2), np.zeros((1, 3, 2)), np.zeros((1, 2, 4)))


@pytest.mark.parametrize("family", ["least_squares", "logistic"])
def test_minibatch_variance_equals_enumeration_of_every_batch(family):
    problem = _problem(family, 3, batch_size=3, mean_size=7)
    B, A, _ = _point(problem, 3, 3)
    layers, s, budgets = [(B, A)], 0.7, [2, 3]
    pairs = C.every_client(problem, [layers])
    got = C.minibatch_variance(problem, pairs, s, budgets).value
    brute = 0.0
    for i in range(2):
        n_i = problem.clients[i].size
        for diags in all_sketch_choices(layers, [budgets[i]]):
            _, full = instance_grad(problem, i, layers, s, diags)
            devs = []
            for batch in itertools.combinations(range(n_i), 3):
                _, g = instance_grad(problem, i, layers, s, diags, np.array(batch))
                devs.append(sum(np.sum((a - b) ** 2) for pa, pb in zip(g, full) for a, b in zip(pa, pb)))
            brute = max(brute, float(np.mean(devs)))
    assert abs(got - brute) <= 1e-10 * brute


def test_sketch_variance_is_the_enumerated_variance():
    problem = _problem("least_squares", 4)
    B, A, _ = _point(problem, 4, 4)
    layers = [(B, A)]
    got = C.sketch_variance(problem, [(1, layers)], 1.0, [2, 2]).value
    grads = [instance_grad(problem, 1, layers, 1.0, d)[1][0] for d in all_sketch_choices(layers, [2])]
    mean = sketched_grad(problem, 1, layers, 1.0, [2])[0]
    want = np.mean([np.sum((g[0] - mean[0]) ** 2) + np.sum((g[1] - mean[1]) ** 2) for g in grads])
    assert abs(got - want) <= 1e-10 * want
    assert C.sketch_variance(problem, [(1, layers)], 1.0, [4, 4]).value < 1e-20


def test_heterogeneity_pairs_are_valid_at_every_point():
    problem = least_squares(n_clients=3, m=4, n=3, mean_size=8, heterogeneity=1.0, seed=2)
    rng = np.random.default_rng(2)
    points = [[(rng.standard_normal((4, 3)), rng.standard_normal((3, 3)))] for _ in range(3)]
    het = C.heterogeneity(problem, points, 1.0, [1, 2, 3])
    for c_h in (0.0, 0.5, 2.0):
        d2 = het.delta2(c_h)
        for layers in points:
            _, g = global_sketched(problem, layers, 1.0, [1, 2, 3])
            gn = sum(np.sum(x * x) for x in g[0])
            for i, k in enumerate([1, 2, 3]):
                gi = sketched_grad(problem, i, layers, 1.0, [k])[0]
                dev = sum(np.sum((a - b) ** 2) for a, b in zip(gi, g[0]))
                assert dev <= c_h * gn + d2 + 1e-10


def test_lower_bound_is_below_the_sketched_objective():
    problem = least_squares(n_clients=3, m=4, n=3, mean_size=8, seed=5)
    fstar = C.lower_bound(problem)
    assert fstar.method == "exact"
    rng = np.random.default_rng(5)
    for _ in range(5):
        layers = [(rng.standard_normal((4, 3)), rng.standard_normal((3, 3)))]
        assert global_sketched(problem, layers, 1.0, [1, 2, 3])[0] >= fstar.value
    assert C.lower_bound(_problem("logistic", 0)).value == 0.0


def test_smoothness_is_a_max_over_pairs():
    problem = _problem("least_squares", 6)
    B, A, _ = _point(problem, 2, 6)
    pairs = C.every_client(problem, [[(B, A)], [(2 * B, 2 * A)]])
    L = C.smoothness(problem, pairs, 1.0)
    each = [C.hessian_norm(problem, i, Bx, Ax, np.ones(2))[0] for i, [(Bx, Ax)] in pairs]
    assert L.value == max(each) and L.method == "exact at points"


@pytest.mark.parametrize("family", ["least_squares", "logistic"])
def test_batched_dense_hessians_are_bit_identical_to_one_at_a_time(family):
    # smoothness() assembles the Hessians of a (client, point) pair's sketched points in one batch; the
    # constants verify reports must not move by a bit (the batch is a speed-up, not a new estimate)
    rng = np.random.default_rng(7)
    for seed in range(6):
        problem = _problem(family, seed, mean_size=int(rng.integers(5, 40)))
        r = int(rng.integers(1, 5))
        B, A, _ = _point(problem, r, seed)
        coeff = rng.uniform(0.2, 3.0) * np.ones(r)
        points = [B] + [B * d for (d,) in all_sketch_choices([(B, A)], [int(rng.integers(1, r + 1))])]
        batched = C._dense_hessians(problem, 1, np.stack(points), A, coeff)
        for j, Bx in enumerate(points):
            assert np.array_equal(batched[j], C.dense_hessian(problem, 1, Bx, A, coeff))


def test_smoothness_over_sketched_points_is_the_max_of_single_hessian_norms():
    problem = _problem("logistic", 3)
    B, A, _ = _point(problem, 3, 3)
    pairs = C.every_client(problem, [[(B, A)], [(1.5 * B, A)]])
    L = C.smoothness(problem, pairs, 0.7, budgets=[2, 1])
    each = [C.hessian_norm(problem, i, Bp, Ap, 0.7 * np.ones(3))[0]
            for i, [(Bx, Ap)] in pairs
            for Bp in [Bx] + [Bx * d for (d,) in all_sketch_choices([(Bx, Ap)], [[2, 1][i]])]]
    assert L.value == max(each)
    # the batched path runs only with the exact hvp: a mutant hvp still goes point by point (and is caught)
    assert C.smoothness(problem, pairs, 0.7, budgets=[2, 1], hvp_fn=M.hvp_gauss_newton).value != L.value
