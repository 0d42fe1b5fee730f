"""Checkers for the sketched objective (docs/spec.md §2), Lemma 3.2 and the client of Algorithm 1.

All comparisons are exact (every index set enumerated, full-batch clients) at random points
X = [(B, A)] of small least-squares and logistic problems.
"""
from __future__ import annotations

import numpy as np

from fslora_ref.algorithms import get_algorithm
from fslora_ref.config import FedConfig
from fslora_ref.federation import run_round
from fslora_ref.lora import LayerFactors
from fslora_ref.problems import least_squares, logistic
from fslora_ref.problems.sketched import enumerate_sketched, least_squares_regulariser
from fslora_ref.seeding import SERVER, stream
from fslora_ref.sketch import Sketch, sample_sketch

from .client_step import fslora_client_delta
from .result import VERIFIED, VIOLATED, Result, exact
from .sketched_objective import (all_sketch_choices, enumerated_grad, instance_grad, lemma_grad, regulariser_grad,
                                 sketched_grad)

RANK = 4
SCALING = 0.8   # a LoRA scaling s != 1 so that misplaced s factors show


def small_problems(batch_size=None):
    """A least-squares and a logistic problem small enough to enumerate everything."""
    return [least_squares(n_clients=2, m=6, n=4, mean_size=20, batch_size=batch_size, seed=3),
            logistic(n_clients=2, m=6, n_classes=3, mean_size=20, batch_size=batch_size, seed=3)]


def random_points(problem, count: int, seed: int = 0, rank: int = RANK):
    """``count`` points [(B: (m, r), A: (r, n))] with O(1) entries (A != 0, unlike the init)."""
    rng = stream(seed, round=-1, client=SERVER, purpose="eval")
    (m, n), = problem.layer_shapes
    return [[(rng.standard_normal((m, rank)) / np.sqrt(m), rng.standard_normal((rank, n)) / np.sqrt(rank))]
            for _ in range(count)]


def check_closed_form_value(regulariser=least_squares_regulariser, points: int = 3) -> Result:
    """f_i^S = f_i + R(X) (closed form) against enumeration of all sketches; R >= 0."""
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
    """grad f_i^S closed form (least squares) against the enumerated E_S grad f~_i(X; S)."""
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
    """Lemma 3.2: grad_B f~ = s G A^T S^T, grad_A f~ = s S^T B^T G (G = grad_W loss at W0 + s BSA),
    against the problems' exact factor gradients and central finite differences of the loss;
    and E_S of the formula equals grad f_i^S."""
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


def check_one_step_unbiased(client_delta=fslora_client_delta, lr: float = 0.05, points: int = 2) -> Result:
    """H = 1, full batch: E_S[client delta] = -gamma grad f_i^S(X), every sketch enumerated."""
    errors = {}
    for problem in small_problems():
        for p, layers in enumerate(random_points(problem, points, seed=4)):
            for k in (1, 2, 3, RANK):
                sketches = [Sketch(RANK, np.flatnonzero(d)) for (d,) in all_sketch_choices(layers, [k])]
                acc = [np.zeros_like(x) for x in layers[0]]
                for S in sketches:
                    (dB, dA), = client_delta(problem, 0, layers, [S], steps=1, lr=lr, s=SCALING,
                                             rng=stream(0, round=0, client=0, purpose="batch"))
                    acc = [acc[0] + dB / len(sketches), acc[1] + dA / len(sketches)]
                (sB, sA), = sketched_grad(problem, 0, layers, SCALING, [k])
                errors[f"{problem.name} point{p} k={k}"] = max(np.max(np.abs(acc[0] + lr * sB)),
                                                               np.max(np.abs(acc[1] + lr * sA)))
    return exact(errors, scale=1.0)


def check_sketch_fixed(client_delta=fslora_client_delta, lr: float = 0.05, steps: int = 4, trials: int = 6) -> Result:
    """Within a round the client's sketch is fixed: after H steps only the k columns of B and
    k rows of A in I have moved (Algorithm 1, step 2), and each of them has moved."""
    worst_outside, unmoved, cases = 0.0, 0, 0
    problem = small_problems(batch_size=5)[0]
    rng = stream(0, round=-1, client=SERVER, purpose="eval")
    for t, layers in enumerate(random_points(problem, trials, seed=5)):
        k = 1 + t % (RANK - 1)
        S = sample_sketch(RANK, k, rng)
        (dB, dA), = client_delta(problem, 0, layers, [S], steps=steps, lr=lr, s=SCALING,
                                 rng=stream(t, round=0, client=0, purpose="batch"))
        out = ~S.mask()
        worst_outside = max(worst_outside, float(np.max(np.abs(dB[:, out]), initial=0.0)),
                            float(np.max(np.abs(dA[out, :]), initial=0.0)))
        unmoved += int(np.sum(np.all(dB[:, S.indices] == 0, axis=0)))
        cases += 1
    ok = worst_outside == 0.0 and unmoved == 0
    return Result(VERIFIED if ok else VIOLATED, f"max change outside I {worst_outside:.2e}",
                  {"max_change_outside_I": worst_outside, "unmoved_selected_columns": unmoved,
                   "trials": cases, "local_steps": steps})


def check_forms_agree(algorithm=None, rounds: int = 3) -> Result:
    """The efficient submatrix client and the full-size masked client give identical iterates,
    and each client uploads exactly k_i (m + n) floats."""
    algorithm = algorithm or get_algorithm("fslora")
    problem = least_squares(n_clients=3, m=6, n=4, mean_size=20, batch_size=5, seed=3)
    cfg = FedConfig(rank=RANK, budgets=(1, 2, 3), local_steps=3, lr=0.05, rounds=rounds, seed=7,
                    lora_scaling=SCALING)
    states = {}
    uploads_ok = True
    for form in ("submatrix", "masked"):
        c = cfg.replace(form=form)
        state = algorithm.init(problem, c)
        for t in range(rounds):
            state, plans, uploads = run_round(algorithm, state, problem, c, t)
            uploads_ok &= all(u.upload_floats == c.budgets[u.client] * 10 for u in uploads)
        states[form] = state.layers
    diff = max(float(np.max(np.abs(x - y))) for (a, b) in zip(states["submatrix"], states["masked"])
               for x, y in zip(a, b))
    res = exact({"submatrix vs masked iterates": diff}, scale=1.0)
    res.evidence["upload_floats_equal_k(m+n)"] = bool(uploads_ok)
    if not uploads_ok:
        res.status = VIOLATED
    return res
