"""Checkers for the sketched objective (docs/spec.md §2) and Lemma 3.2 (implementation-independent).

All comparisons are exact (every index set enumerated, full-batch clients) at random points
X = [(B, A)] of small least-squares and logistic problems. The claims about Algorithm 1 itself run
through the implementation under test: :mod:`theory.paper.algorithm`, :mod:`theory.paper.unbiased`.
"""
from __future__ import annotations

import numpy as np

from fslora_ref.lora import LayerFactors
from fslora_ref.problems import least_squares, logistic
from fslora_ref.problems.sketched import enumerate_sketched, least_squares_regulariser
from fslora_ref.seeding import SERVER, stream

from ..exact.sketched_objective import (all_sketch_choices, enumerated_grad, instance_grad, lemma_grad,
                                       regulariser_grad, sketched_grad)
from ..result import VIOLATED, Result, exact

RANK = 4
SCALING = 0.8   # a LoRA scaling s != 1 so that misplaced s factors show


def small_problems(batch_size=None):
    """A least-squares and a logistic problem (2 clients, m = 6) small enough to enumerate everything.

    Parameters
    ----------
    batch_size : int or None, optional
        The clients' minibatch size (None: full batch).

    Returns
    -------
    list of fslora_ref.problems.Problem
        ``[least squares, logistic]``.
    """
    return [least_squares(n_clients=2, m=6, n=4, mean_size=20, batch_size=batch_size, seed=3),
            logistic(n_clients=2, m=6, n_classes=3, mean_size=20, batch_size=batch_size, seed=3)]


def random_points(problem, count: int, seed: int = 0, rank: int = RANK):
    """Random single-layer points with O(1) entries and A != 0 (unlike the init, so every term of the gradient shows).

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem (its ``layer_shapes`` (m, n)).
    count : int
        The number of points.
    seed : int, optional
        The seed (server evaluation stream).
    rank : int, optional
        The rank r.

    Returns
    -------
    list
        ``count`` points, each ``[(B: (m, r), A: (r, n))]``.
    """
    rng = stream(seed, round=-1, client=SERVER, purpose="eval")
    (m, n), = problem.layer_shapes
    return [[(rng.standard_normal((m, rank)) / np.sqrt(m), rng.standard_normal((rank, n)) / np.sqrt(rank))]
            for _ in range(count)]


def check_closed_form_value(regulariser=least_squares_regulariser, points: int = 3) -> Result:
    """Check the closed form ``f_i^S = f_i + R(X)`` of least squares against enumerating every sketch, and ``R >= 0``.

    Parameters
    ----------
    regulariser : callable, optional
        ``regulariser(X, B, A, s, k) -> float``, the R under test; default
        :func:`fslora_ref.problems.sketched.least_squares_regulariser`.
    points : int, optional
        The number of random points.

    Returns
    -------
    theory.result.Result
        VERIFIED when every error is within the exact tolerance and R >= 0, else VIOLATED.
    """
    problem = small_problems()[0]
    errors, min_reg = {}, np.inf
    for p, layers in enumerate(random_points(problem, points)):
        (B, A), = layers
        for i in range(problem.n_clients):
            W = [problem.base_weights[0] + SCALING * B @ A]
            for k in range(1, RANK + 1):
                reg = regulariser(problem.clients[i].X, B, A, SCALING, k)
                enum = enumerate_sketched(lambda w: problem.loss(i, w), problem.base_weights, layers, SCALING, [k])
                errors[f"point{p} client{i} k={k}"] = abs(problem.loss(i, W) + reg - enum)
                min_reg = min(min_reg, reg)
    res = exact(errors, scale=10.0)
    res.evidence["min_regulariser"] = float(min_reg)
    if min_reg < -1e-12:
        res.status = VIOLATED
        res.key += f"; regulariser {min_reg:.2e} < 0"
    return res


def check_closed_form_grad(reg_grad=regulariser_grad, points: int = 3) -> Result:
    """Check the closed-form ``grad f_i^S`` of least squares against the enumerated ``E_S grad f~_i(X; S)``.

    Parameters
    ----------
    reg_grad : callable, optional
        ``reg_grad(X, B, A, s, k) -> (dB, dA)``, the regulariser gradient under test; default
        :func:`theory.exact.sketched_objective.regulariser_grad`.
    points : int, optional
        The number of random points.

    Returns
    -------
    theory.result.Result
    """
    problem = small_problems()[0]
    errors = {}
    for p, layers in enumerate(random_points(problem, points, seed=1)):
        (B, A), = layers
        for i in range(problem.n_clients):
            _, g = problem.loss_and_factor_grads(i, [_unsketched(B, A)])
            for k in range(1, RANK + 1):
                rB, rA = reg_grad(problem.clients[i].X, B, A, SCALING, k)
                (eB, eA), = enumerated_grad(problem, i, layers, SCALING, [k])
                errors[f"point{p} client{i} k={k}"] = max(np.max(np.abs(g[0][0] + rB - eB)),
                                                          np.max(np.abs(g[0][1] + rA - eA)))
    return exact(errors, scale=10.0)


def _unsketched(B, A):
    return LayerFactors(B, A, SCALING * np.ones(B.shape[1]))


def check_lemma_gradient(grad_formula=lemma_grad, points: int = 2) -> Result:
    """Check Lemma 3.2, ``grad_B f~ = s G A^T S^T`` and ``grad_A f~ = s S^T B^T G``.

    The formula is compared, for every sketch, with the problems' exact factor gradients (themselves
    checked against central finite differences of the loss), and its mean over the sketch law with
    ``grad f_i^S``.

    Parameters
    ----------
    grad_formula : callable, optional
        ``grad_formula(problem, client, B, A, diag_S, s) -> (grad_B, grad_A)``; default
        :func:`theory.exact.sketched_objective.lemma_grad`.
    points : int, optional
        The number of random points per problem.

    Returns
    -------
    theory.result.Result
        VIOLATED also when the finite-difference error exceeds 1e-6.
    """
    errors, fd_err = {}, 0.0
    for problem in small_problems():
        for p, layers in enumerate(random_points(problem, points, seed=2)):
            (B, A), = layers
            for k in (1, 2, RANK):
                mean_B, mean_A = np.zeros_like(B), np.zeros_like(A)
                choices = all_sketch_choices(layers, [k])
                for (d,) in choices:
                    fB, fA = grad_formula(problem, 0, B, A, d, SCALING)
                    _, ((tB, tA),) = instance_grad(problem, 0, layers, SCALING, (d,))
                    key = f"{problem.name} point{p} k={k}"
                    errors[key] = max(errors.get(key, 0.0), np.max(np.abs(fB - tB)), np.max(np.abs(fA - tA)))
                    mean_B, mean_A = mean_B + fB / len(choices), mean_A + fA / len(choices)
                (sB, sA), = sketched_grad(problem, 0, layers, SCALING, [k])
                errors[f"{problem.name} point{p} k={k} E_S"] = max(np.max(np.abs(mean_B - sB)), np.max(np.abs(mean_A - sA)))
            fd_err = max(fd_err, _finite_difference_error(problem, layers, choices[0][0]))
    res = exact(errors, scale=10.0)
    # the problems' gradients themselves against finite differences (O(eps^2) truncation)
    res.evidence["finite_difference_max_error"] = fd_err
    if fd_err > 1e-6:
        res.status = VIOLATED
    return res


def _finite_difference_error(problem, layers, d, eps=1e-5):
    (B, A), = layers
    _, ((gB, gA),) = instance_grad(problem, 0, layers, SCALING, (d,))
    worst = 0.0
    for which, G in ((0, gB), (1, gA)):
        for idx in np.ndindex(G.shape):
            P = [B.copy(), A.copy()]
            P[which][idx] += eps
            up = problem.loss(0, [problem.base_weights[0] + SCALING * (P[0] * d) @ P[1]])
            P[which][idx] -= 2 * eps
            down = problem.loss(0, [problem.base_weights[0] + SCALING * (P[0] * d) @ P[1]])
            worst = max(worst, abs((up - down) / (2 * eps) - G[idx]))
    return worst
