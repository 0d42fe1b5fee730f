"""L_S: the largest Hessian eigenvalue of f^S over the step segments a run visits.

Two ways of covering a segment [X^t, X^{t+1}], chosen per family by ``segment_curvature``:

``certified`` (least squares, the default there). What is measured and what is bounded:

* at every server iterate X^t (and at the bisection points below) lambda_max(Hessian f^S) is computed
  exactly from the dense Hessian (``theory.exact.sketch_hessian``): *exact at points*;
* between two points X and Y = X + Delta the segment is covered by a certified bound. For a unit
  direction u, q(tau) = u^T Hessian(X + tau Delta) u satisfies
  q(tau) <= (1 - tau) q(0) + tau q(1) + tau (1 - tau) sup|q''| / 2, hence

      max over the segment of lambda_max  <=  max(lambda(X), lambda(Y)) + Q / 8,   Q >= sup_{u, tau} |q''|,

  with Q from fourth-derivative bounds of the loss along the segment (``segment_margin``): exact
  constants for least squares, cumulant bounds of the softmax for logistic, both using only norms
  computed on the segment's two end points. Q is O(||Delta||^2);
* a segment whose bound exceeds the largest lambda_max at the points of the prefix that contains it by
  more than ``rel_tol`` (relative) is bisected, the midpoint's lambda_max computed exactly, until it
  does not, up to ``max_depth`` halvings. So L_S of every prefix is within rel_tol of its largest
  lambda_max at points, or the report says by how much it is not (``max_relative_excess``).

The result per segment is therefore a certified upper bound of the curvature on the whole segment
(up to float64 rounding), and L_S over a prefix of the run is the maximum of those bounds.

``points`` (logistic, the default there): lambda_max exact at every iterate and at every segment's
midpoint, nothing certified in between. The softmax margin above is valid but 10-100x loose (it bounds
the logit-space cumulants in the worst case), so certifying logistic runs at gamma L_S ~ 1 needs
thousands of bisections; ``interior_excess`` measures what the midpoints miss on sampled segments.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .moments import reference_law
from .sketch_batch import client_moments
from .sketch_hessian import lambda_max


def _spec_norm(M):
    """Spectral norms of a stack of matrices (..., p, q) -> (...)."""
    return np.linalg.norm(M, 2, axis=(-2, -1))


def segment_margin(problem, s: float, budgets, B0, A0, B1, A1, *, law=reference_law, moments=None) -> np.ndarray:
    """Q / 8 for P segments ``[X_0, X_1]``: how far lambda_max may exceed its end-point values inside a segment.

    Q bounds ``|q''|`` of ``q(tau) = u^T Hessian f^S(X_0 + tau Delta) u`` over unit u and tau in [0, 1].
    Per client i and sketch (index set I, coefficient c on I) only the columns B_I and rows A_I enter
    the instance's Hessian, so every norm is of the I-restricted factors. Least squares::

        |q''| <= 3 ||K_i|| c^2 ||Delta_I||^2

    Softmax (from the softmax cumulant bounds), with per sample s::

        w_s   = max over both end points of ||x_s dW_Delta||_inf   (its logit change rate along the segment)
        v_s   = ||x_s 2 dB_I c dA_I||_inf
        K_w   = (1/n) sum_s w_s^2 x_s^T x_s,   K_v = (1/n) sum_s v_s x_s^T x_s
        rho^2 = max over the end points of ||A_I||_2^2 + ||B_I||_2^2

    the bound is::

        |q''| <= c^2 [(3.5 ||K_w|| + ||K_v||) rho^2 + 4 rho ||Delta_I|| sqrt(||K_w|| ||K_i||) + 1.5 ||K_i|| ||Delta_I||^2]
                 + 2.83 sqrt(mean_s w_s^4) sqrt(||K_i||) c

    Both are averaged over the sketch law and the clients, as the Hessian of f^S is.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.
    B0 : ndarray, shape (P, m, r)
        The B factors of the segments' start points.
    A0 : ndarray, shape (P, r, n)
        The A factors of the start points.
    B1 : ndarray, shape (P, m, r)
        The B factors of the end points.
    A1 : ndarray, shape (P, r, n)
        The A factors of the end points.
    law : callable, optional
        The sketch law ``law(r, k) -> (diagonals, probabilities)``; default
        :func:`theory.exact.moments.reference_law`.
    moments : list of ClientMoments, optional
        Precomputed :func:`theory.exact.sketch_batch.client_moments` of the problem.

    Returns
    -------
    ndarray, shape (P,)
        Q / 8 per segment.
    """
    moments = moments or client_moments(problem)
    dB, dA = B1 - B0, A1 - A0
    r = B0.shape[2]
    N = len(moments)
    total = np.zeros(len(B0))
    for i, cm in enumerate(moments):
        kappa = cm.curvature
        diags, probs = law(r, budgets[i])
        for d, q in zip(s * diags, probs):
            I = np.flatnonzero(d)
            c = float(np.max(np.abs(d)))
            delta2 = np.sum(dB[:, :, I] ** 2, axis=(1, 2)) + np.sum(dA[:, I] ** 2, axis=(1, 2))
            if cm.link == "squared":
                total += q * 3.0 * kappa * c * c * delta2 / N
                continue
            rho2 = np.maximum(_spec_norm(A0[:, I]) ** 2 + _spec_norm(B0[:, :, I]) ** 2,
                              _spec_norm(A1[:, I]) ** 2 + _spec_norm(B1[:, :, I]) ** 2)
            w = np.zeros((len(B0), cm.X.shape[0]))
            for B, A in ((B0, A0), (B1, A1)):
                rate = np.matmul(dB * d, A) + np.matmul(B * d, dA)          # dW along the segment at an end point
                w = np.maximum(w, np.max(np.abs(np.matmul(cm.X, rate)), axis=2))
            v = np.max(np.abs(np.matmul(cm.X, 2.0 * np.matmul(dB * d, dA))), axis=2)
            Kw, Kv = (np.linalg.eigvalsh(np.einsum("ps,sa,sb->pab", weight, cm.X, cm.X) / cm.X.shape[0])[:, -1]
                      for weight in (w * w, v))
            bound = c * c * ((3.5 * Kw + Kv) * rho2 + 4.0 * np.sqrt(rho2 * delta2 * Kw * kappa) + 1.5 * kappa * delta2) \
                + 2.83 * np.sqrt(np.mean(w ** 4, axis=1) * kappa) * c
            total += q * bound / N
    return total / 8.0


@dataclass
class SegmentCurvature:
    """The curvature of f^S over every segment t (X^t -> X^{t+1}) of every seed, and how it was obtained.

    Parameters
    ----------
    at_points : ndarray, shape (S, T+1)
        The exact lambda_max at the iterates.
    bound : ndarray, shape (S, T)
        The bound on the max of lambda_max over each segment (certified, or at measured points).
    margin : ndarray, shape (S, T)
        ``bound`` minus the larger lambda_max of the segment's two end points.
    bisections : int
        The number of extra points where lambda_max was computed.
    max_relative_excess : float
        The max over prefixes T of ``L_S(T) / (max lambda_max at the prefix's points) - 1``.
    method : str, optional
        "certified per segment" or "exact at iterates and segment midpoints".
    """

    at_points: np.ndarray      # (S, T+1) exact lambda_max at the iterates
    bound: np.ndarray          # (S, T)   certified max of lambda_max over each segment
    margin: np.ndarray         # (S, T)   bound - max(lambda at the segment's two end points)
    bisections: int            # extra points where lambda_max was computed
    max_relative_excess: float  # max over prefixes T of L_S(T) / max lambda at the prefix's points - 1
    method: str = "certified per segment"

    def L_S(self, T: int | None = None) -> float:
        """L_S: the largest segment bound over the first T rounds of all seeds.

        Parameters
        ----------
        T : int or None, optional
            The number of rounds (None: all).

        Returns
        -------
        float
        """
        return float(np.max(self.bound[:, :T]))


def _segment_bounds(problem, s, budgets, B0, A0, B1, A1, lam0, lam1, ref, rel_tol, depth, law, moments, counter,
                    lambda_fn):
    margin = segment_margin(problem, s, budgets, B0, A0, B1, A1, law=law, moments=moments)
    bound = np.maximum(lam0, lam1) + margin
    need = bound > ref + rel_tol * np.abs(ref)
    if depth == 0 or not np.any(need):
        return bound
    Bm, Am = 0.5 * (B0[need] + B1[need]), 0.5 * (A0[need] + A1[need])
    lam_m = lambda_fn(problem, s, budgets, Bm, Am, law=law, moments=moments)
    counter[0] += int(need.sum())
    left = _segment_bounds(problem, s, budgets, B0[need], A0[need], Bm, Am, lam0[need], lam_m, ref[need], rel_tol,
                           depth - 1, law, moments, counter, lambda_fn)
    right = _segment_bounds(problem, s, budgets, Bm, Am, B1[need], A1[need], lam_m, lam1[need], ref[need], rel_tol,
                            depth - 1, law, moments, counter, lambda_fn)
    bound[need] = np.maximum(left, right)
    return bound


def segment_curvature(problem, s: float, budgets, B: np.ndarray, A: np.ndarray, *, method: str | None = None,
                      rel_tol: float = 1e-3, max_depth: int = 8, law=reference_law, lam=None,
                      lambda_fn=lambda_max) -> SegmentCurvature:
    """The curvature of f^S over every segment of S runs of T rounds.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.
    B : ndarray, shape (S, T+1, m, r)
        The B factors of the iterates of each run.
    A : ndarray, shape (S, T+1, r, n)
        The A factors of the iterates.
    method : {"certified", "points"} or None, optional
        How segments are covered (see the module docstring); default "certified" for least squares,
        "points" for logistic.
    rel_tol : float, optional
        "certified": a segment is bisected while its bound exceeds the prefix's largest lambda_max at
        points by more than this (relative).
    max_depth : int, optional
        "certified": the largest number of halvings of a segment.
    law : callable, optional
        The sketch law; default :func:`theory.exact.moments.reference_law`.
    lam : ndarray, shape (S, T+1), optional
        lambda_max at the iterates, if already computed.
    lambda_fn : callable, optional
        Computes lambda_max at points (signature of :func:`theory.exact.sketch_hessian.lambda_max`;
        tests hand in broken ones).

    Returns
    -------
    SegmentCurvature

    Raises
    ------
    ValueError
        If ``method`` is not "certified" or "points".
    """
    method = method or ("certified" if problem.link == "squared" else "points")
    if method not in ("certified", "points"):
        raise ValueError(f"method must be 'certified' or 'points', got {method!r}")
    moments = client_moments(problem)
    S, T1 = B.shape[:2]
    flatB, flatA = B.reshape(S * T1, *B.shape[2:]), A.reshape(S * T1, *A.shape[2:])
    if lam is None:
        lam = lambda_fn(problem, s, budgets, flatB, flatA, law=law, moments=moments).reshape(S, T1)
    first = (np.arange(S)[:, None] * T1 + np.arange(T1 - 1)[None, :]).ravel()
    ends = np.maximum(lam[:, :-1], lam[:, 1:])
    if method == "points":
        mid = lambda_fn(problem, s, budgets, 0.5 * (flatB[first] + flatB[first + 1]),
                         0.5 * (flatA[first] + flatA[first + 1]), law=law, moments=moments).reshape(S, T1 - 1)
        bound = np.maximum(ends, mid)
        return SegmentCurvature(lam, bound, bound - ends, bound.size, 0.0, "exact at iterates and segment midpoints")
    counter = [0]
    # a segment is bisected only while its bound could exceed, by more than rel_tol, the largest
    # lambda_max at the points of every prefix that contains it (all seeds, rounds <= t + 1)
    ref = np.broadcast_to(np.maximum.accumulate(lam.max(axis=0))[1:], (S, T1 - 1)).ravel()
    bound = _segment_bounds(problem, s, budgets, flatB[first], flatA[first], flatB[first + 1], flatA[first + 1],
                            lam[:, :-1].ravel(), lam[:, 1:].ravel(), ref, rel_tol, max_depth, law, moments, counter,
                            lambda_fn)
    bound = bound.reshape(S, T1 - 1)
    prefix_bound = np.maximum.accumulate(bound.max(axis=0))
    prefix_points = np.maximum.accumulate(lam.max(axis=0))[1:]
    rel = float(np.max(prefix_bound / np.maximum(np.abs(prefix_points), 1e-12) - 1.0)) if bound.size else 0.0
    return SegmentCurvature(lam, bound, bound - ends, counter[0], rel, "certified per segment")


def interior_excess(problem, s: float, budgets, B0, A0, B1, A1, *, subdivisions: int = 8, law=reference_law) -> np.ndarray:
    """What the "points" method misses on P segments, measured at subdivision points.

    The max over tau = j / ``subdivisions`` of ``lambda_max(X_0 + tau Delta)`` minus the max at
    tau in {0, 1/2, 1}.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.
    B0 : ndarray, shape (P, m, r)
        The B factors of the segments' start points.
    A0 : ndarray, shape (P, r, n)
        The A factors of the start points.
    B1 : ndarray, shape (P, m, r)
        The B factors of the end points.
    A1 : ndarray, shape (P, r, n)
        The A factors of the end points.
    law : callable, optional
        The sketch law ``law(r, k) -> (diagonals, probabilities)``; default
        :func:`theory.exact.moments.reference_law`.
    subdivisions : int, optional
        The number of equal parts each segment is cut into (even).

    Returns
    -------
    ndarray, shape (P,)
        The excess per segment (>= 0).
    """
    moments = client_moments(problem)
    lam = np.array([lambda_max(problem, s, budgets, B0 + t * (B1 - B0), A0 + t * (A1 - A0), law=law, moments=moments)
                    for t in np.linspace(0.0, 1.0, subdivisions + 1)])
    coarse = np.max(lam[[0, subdivisions // 2, subdivisions]], axis=0)
    return np.max(lam, axis=0) - coarse


def secant_curvature(value: np.ndarray, grad: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The realised curvature of each step: ``2 [f(X + D) - f(X) - <grad f(X), D>] / ||D||^2``.

    Parameters
    ----------
    value : ndarray, shape (S, T+1)
        f^S at the iterates.
    grad : ndarray, shape (S, T+1, d)
        grad f^S at the iterates, flattened.
    steps : ndarray, shape (S, T, d)
        The steps ``X^{t+1} - X^t``, flattened.

    Returns
    -------
    ndarray, shape (S, T)
        The curvature per step (0 for a zero step).
    """
    d2 = np.sum(steps ** 2, axis=2)
    excess = value[:, 1:] - value[:, :-1] - np.sum(grad[:, :-1] * steps, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d2 > 0, 2.0 * excess / d2, 0.0)
