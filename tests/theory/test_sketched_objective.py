"""f^S and grad f^S: closed forms against enumeration (hypothesis), Lemma 3.2, and the checkers
failing on broken formulas."""
import numpy as np
from hypothesis import given, strategies as st

from fslora_ref.problems import least_squares
from fslora_ref.problems.sketched import enumerate_sketched, least_squares_regulariser
from theory.paper import objective as obj
from theory.exact.sketched_objective import enumerated_grad, global_sketched, regulariser_grad, sketched_grad

from tests.mutants import theory_mutants as M


@st.composite
def point(draw):
    m, n = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    r = draw(st.integers(1, 5))
    k = draw(st.integers(1, r))
    s = draw(st.sampled_from([0.5, 1.0, 2.0]))
    seed = draw(st.integers(0, 10_000))
    problem = least_squares(n_clients=2, m=m, n=n, target_rank=1, mean_size=6, seed=seed % 50)
    rng = np.random.default_rng(seed)
    return problem, [(rng.standard_normal((m, r)), rng.standard_normal((r, n)))], s, k


@given(point())
def test_closed_form_value_matches_enumeration_and_penalty_is_nonnegative(p):
    problem, layers, s, k = p
    (B, A), = layers
    X = problem.clients[0].X
    reg = least_squares_regulariser(X, B, A, s, k)
    W = [problem.base_weights[0] + s * B @ A]
    enum = enumerate_sketched(lambda w: problem.loss(0, w), problem.base_weights, layers, s, [k])
    assert abs(problem.loss(0, W) + reg - enum) <= 1e-10 * (1 + abs(enum))
    assert reg >= -1e-12 * (1 + abs(enum))


@given(point())
def test_closed_form_gradient_matches_enumeration(p):
    problem, layers, s, k = p
    closed, = sketched_grad(problem, 0, layers, s, [k])
    enum, = enumerated_grad(problem, 0, layers, s, [k])
    scale = 1 + max(np.max(np.abs(e)) for e in enum)
    for c, e in zip(closed, enum):
        assert np.max(np.abs(c - e)) <= 1e-10 * scale


@given(point())
def test_regulariser_gradient_is_the_derivative_of_the_regulariser(p):
    problem, layers, s, k = p
    (B, A), = layers
    X = problem.clients[1].X
    gB, gA = regulariser_grad(X, B, A, s, k)
    rng = np.random.default_rng(0)
    U, V = rng.standard_normal(B.shape), rng.standard_normal(A.shape)
    eps = 1e-6
    fd = (least_squares_regulariser(X, B + eps * U, A + eps * V, s, k)
          - least_squares_regulariser(X, B - eps * U, A - eps * V, s, k)) / (2 * eps)
    exact = np.sum(gB * U) + np.sum(gA * V)
    assert abs(fd - exact) <= 1e-5 * (1 + abs(exact))


def test_global_sketched_is_the_client_average():
    problem = least_squares(n_clients=3, m=4, n=3, mean_size=8, seed=1)
    rng = np.random.default_rng(1)
    layers = [(rng.standard_normal((4, 3)), rng.standard_normal((3, 3)))]
    value, grad = global_sketched(problem, layers, 1.0, [1, 2, 3])
    per = [enumerated_grad(problem, i, layers, 1.0, [k]) for i, k in enumerate([1, 2, 3])]
    assert np.allclose(grad[0][0], np.mean([g[0][0] for g in per], axis=0), atol=1e-12)
    assert value > problem.global_loss([problem.base_weights[0] + layers[0][0] @ layers[0][1]])


def test_checkers_pass_on_the_reference():
    for check in (obj.check_closed_form_value, obj.check_closed_form_grad, obj.check_lemma_gradient):
        res = check()
        assert res.status == "verified", (check.__name__, res)


def test_closed_form_checkers_fail_on_wrong_formulas():
    assert obj.check_closed_form_value(regulariser=M.regulariser_without_r).status == "violated"
    assert obj.check_closed_form_grad(reg_grad=M.regulariser_grad_without_cross).status == "violated"


def test_lemma_checker_fails_on_wrong_gradient_formula():
    res = obj.check_lemma_gradient(grad_formula=M.lemma_grad_without_S_on_A)
    assert res.status == "violated" and res.evidence["max_error"] > 1e-3
