"""Each step of the H = 1 derivation (``theory.ours.bound``) checked exactly at given points.

One round from X is enumerated over *every* joint choice of the clients' index sets (prod_i C(r, k_i)
rounds, each with probability prod_i 1/C(r, k_i)) through a white-box round of the implementation:
by default the reference's (``fslora_ref.conformance.reference.impl.white_box_round``, i.e.
``local_train`` + ``FSLoRA.aggregate``), or any object speaking the conformance protocol. With
g = (X - X^+) / gamma for each choice, every expectation below is exact:

    step 1   E[g] = grad f^S(X)                              (vs ``sketch_batch.evaluate``)
    step 2   E||g - grad f^S||^2 = V(X) = (1/N^2) sum_i Var_S grad f~_i
    step 3   E||g||^2 = ||grad f^S||^2 + V
    step 4   Hessian of f^S (``sketch_hessian.hessian``) = central differences of the exact gradient
             (O(eps^2)); lambda_max(segment) >= the realised curvature of every enumerated step
    step 6   with the realised curvature kappa = E[kappa_g ||g||^2] / E||g||^2 in place of L_S, the T = 1
             bound ``h1_rhs`` equals ||grad f^S(X)||^2 exactly (the derivation loses nothing else);
             with the certified L_S over the enumerated segments it is >= ||grad f^S(X)||^2.

Each check takes the formula it checks as a parameter, which is how tests hold it against mutants.
"""
from __future__ import annotations

import itertools

import numpy as np

from fslora_ref.conformance.protocol import ProblemOracle, RoundTask
from fslora_ref.conformance.reference import impl as reference_impl

from ..exact.curvature import segment_curvature
from ..exact.moments import reference_law
from ..exact.sketch_batch import evaluate, flatten
from ..exact.sketch_hessian import hessian
from ..result import EXACT_RTOL, VERIFIED, VIOLATED, Result
from .bound import h1_rhs, identity_rhs

FD_TOL = 1e-6      # central differences of the exact gradient: O(eps^2) truncation at eps = 1e-5


def enumerate_round(problem, config, layers, impl=reference_impl):
    """One round from ``layers`` for every joint choice of the clients' index sets (white-box rounds).

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer full-batch problem.
    config : fslora_ref.config.FedConfig
        The round's rank, budgets, lr, H and scale.
    layers : list of (ndarray, ndarray)
        The start point ``[(B: (m, r), A: (r, n))]``.
    impl : object, optional
        An implementation with ``white_box_round(task)`` (the conformance protocol); default the
        reference's.

    Returns
    -------
    probabilities : ndarray, shape (M,)
        ``prod_i 1 / C(r, k_i)`` for each of the M joint choices.
    B : ndarray, shape (M, m, r)
        The new B factor after each choice's round.
    A : ndarray, shape (M, r, n)
        The new A factor after each choice's round.
    """
    (B, A), = layers
    r = B.shape[1]
    per_client = [list(itertools.combinations(range(r), k)) for k in config.budgets]
    oracles = [ProblemOracle(problem, i) for i in range(problem.n_clients)]
    probs, Bs, As = [], [], []
    for choice in itertools.product(*per_client):
        task = RoundTask(layers=[(B.copy(), A.copy())], base_weights=problem.base_weights, oracles=oracles,
                         budgets=tuple(config.budgets), rank=r, lr=config.lr, local_steps=config.local_steps,
                         lora_scaling=config.lora_scaling, index_sets=[[np.array(I)] for I in choice],
                         seed=config.seed, label="enumeration")
        out = impl.white_box_round(task)
        (nB, nA), = out.layers if hasattr(out, "layers") else out
        probs.append(np.prod([1.0 / len(c) for c in per_client]))
        Bs.append(np.asarray(nB, float))
        As.append(np.asarray(nA, float))
    return np.array(probs), np.stack(Bs), np.stack(As)


def step_errors(problem, config, layers, *, impl=reference_impl, evaluate_fn=evaluate, hessian_fn=hessian,
                rhs_fn=h1_rhs, law=reference_law, eps: float = 1e-5, seed: int = 0) -> dict:
    """The error of every step of the H = 1 derivation at X = ``layers`` (H = 1, full batch), exactly.

    Each formula is a parameter, which is how tests hold the check against mutants.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer full-batch problem.
    config : fslora_ref.config.FedConfig
        The round's configuration (H = 1).
    layers : list of (ndarray, ndarray)
        The point ``[(B: (m, r), A: (r, n))]``.
    impl : object, optional
        The implementation whose white-box rounds are enumerated.
    evaluate_fn : callable, optional
        f^S, grad f^S and V at points (signature of :func:`theory.exact.sketch_batch.evaluate`).
    hessian_fn : callable, optional
        The Hessian of f^S (signature of :func:`theory.exact.sketch_hessian.hessian`).
    rhs_fn : callable, optional
        The H = 1 bound (signature of :func:`theory.ours.bound.h1_rhs`).
    law : callable, optional
        The sketch law.
    eps : float, optional
        The central-difference step of the Hessian check.
    seed : int, optional
        The seed of the Hessian check's random direction.

    Returns
    -------
    dict
        ``{step name: error}``: identities are absolute errors (compare with EXACT_RTOL x scale),
        "step 4 ... (relative)" is relative, and "... (excess)" must be <= 0; plus ``_scale``,
        ``_kappa`` (realised curvature), ``_L_S`` and ``_joint_choices``.
    """
    (B, A), = layers
    m, r = B.shape
    n = A.shape[1]
    s, budgets, gamma = config.lora_scaling, config.budgets, config.lr
    probs, Bp, Ap = enumerate_round(problem, config, layers, impl)
    here = evaluate_fn(problem, s, budgets, B[None], A[None], law=law)
    grad, V, f0 = here.grad[0], float(here.variance[0]), float(here.value[0])
    x0 = flatten(B[None], A[None])[0]
    g = (x0[None] - flatten(Bp, Ap)) / gamma                                    # (M, d)
    Eg = probs @ g
    dev2 = np.sum((g - grad) ** 2, axis=1)
    g2 = np.sum(g * g, axis=1)
    after = evaluate_fn(problem, s, budgets, Bp, Ap, law=law)
    gap = f0 - float(probs @ after.value)
    # realised curvature of each enumerated step and the certified curvature over its segment
    kappa_g = 2.0 * (after.value - f0 + gamma * (g @ grad)) / (gamma ** 2 * np.maximum(g2, 1e-300))
    kappa = float(probs @ (kappa_g * g2) / (probs @ g2))
    grad_sq = float(grad @ grad)
    # (h1_rhs takes L_S > 0; a negative realised curvature is checked through identity_rhs, the same algebra)
    exact_rhs = (rhs_fn(gap=gap, gamma=gamma, T=1, L_S=kappa, noise=V)["rhs"] if kappa > 0
                 else identity_rhs(gap=gap, gamma=gamma, T=1, kappa=kappa, noise=V))
    Bseg = np.stack([np.broadcast_to(B, Bp.shape), Bp], axis=1)
    Aseg = np.stack([np.broadcast_to(A, Ap.shape), Ap], axis=1)
    L_seg = segment_curvature(problem, s, budgets, Bseg, Aseg, law=law, method="certified").bound[:, 0]
    L_S = float(L_seg.max())
    bound = rhs_fn(gap=gap, gamma=gamma, T=1, L_S=L_S, noise=V)["rhs"]
    # Hessian against central differences of the exact gradient along one random direction
    v = np.random.default_rng(seed).standard_normal(x0.size)
    H = hessian_fn(problem, s, budgets, B[None], A[None], law=law)[0]
    Bv, Av = v[:m * r].reshape(m, r), v[m * r:].reshape(r, n)
    ge = evaluate_fn(problem, s, budgets, np.stack([B + eps * Bv, B - eps * Bv]), np.stack([A + eps * Av, A - eps * Av]),
                     law=law).grad
    fd = (ge[0] - ge[1]) / (2 * eps)
    return {"step 1: E[g] = grad f^S": float(np.max(np.abs(Eg - grad))),
            "step 2: E||g - grad f^S||^2 = V": abs(float(probs @ dev2) - V),
            "step 3: E||g||^2 = ||grad f^S||^2 + V": abs(float(probs @ g2) - grad_sq - V),
            "step 4: Hessian vs central differences (relative)": float(np.max(np.abs(H @ v - fd)) / max(np.max(np.abs(fd)), 1e-12)),
            "step 4: realised curvature - L_S on each segment (excess)": float(np.max(kappa_g - L_seg)),
            "step 6: bound with realised curvature = LHS": abs(exact_rhs - grad_sq),
            "step 6: LHS - bound with certified L_S (excess)": grad_sq - bound,
            "_scale": max(1.0, grad_sq + V, abs(f0)), "_kappa": kappa, "_L_S": L_S, "_joint_choices": int(probs.size)}


def check_steps(problem, config, points, **kw) -> Result:
    """Check every derivation step at every point.

    Identities within EXACT_RTOL x scale, the Hessian within ``FD_TOL``, excesses <= 0.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer full-batch problem.
    config : fslora_ref.config.FedConfig
        The round's configuration (H = 1).
    points : list
        Points ``[(B: (m, r), A: (r, n))]``.
    **kw
        Passed to :func:`step_errors` (``impl``, ``evaluate_fn``, ``hessian_fn``, ``rhs_fn``, ``law``,
        ``eps``, ``seed``).

    Returns
    -------
    theory.result.Result
    """
    worst = {}
    scale = 1.0
    for p, layers in enumerate(points):
        err = step_errors(problem, config, layers, **kw)
        scale = max(scale, err.pop("_scale"))
        for key in ("_kappa", "_L_S", "_joint_choices"):
            worst.setdefault(key, []).append(err.pop(key))
        for key, val in err.items():
            worst[key] = max(worst.get(key, -np.inf), val)
    tol = EXACT_RTOL * scale
    failed = [k for k, v in worst.items() if not k.startswith("_") and
              (v > FD_TOL if "relative" in k else v > 0 if "excess" in k else v > tol)]
    ev = {k: v for k, v in worst.items()}
    ev.update(tolerance_identities=tol, tolerance_hessian=FD_TOL, points=len(points), failed=failed)
    key = "; ".join(failed) if failed else f"max identity error {max(v for k, v in worst.items() if k.startswith('step') and 'excess' not in k and 'relative' not in k):.1e}"
    return Result(VIOLATED if failed else VERIFIED, key, ev)
