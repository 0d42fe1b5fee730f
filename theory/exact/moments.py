"""Moments of the random-k sketch (docs/spec.md §2): closed forms, exact enumeration, Monte Carlo.

A *sketch law* is a function ``law(r, k) -> (diagonals: (M, r), probabilities: (M,))`` giving
the exact distribution of diag(S). The reference law enumerates all C(r, k) index sets with
equal probability, building each diagonal with :class:`fslora_ref.sketch.Sketch` so that the
scale r/k comes from the core. Checkers take the law (and, for large r, a sampler
``sampler(r, k, rng) -> Sketch``) as a parameter so that broken variants can be held to them.
"""
from __future__ import annotations

import itertools
from math import comb, log, sqrt

import numpy as np

from fslora_ref.seeding import SERVER, stream
from fslora_ref.sketch import Sketch, sample_sketch, sketch_moments
from fslora_ref.validation import check_int

MAX_SUBSETS = 20_000


def reference_law(r: int, k: int):
    """The exact law of diag(S): all C(r, k) index sets, each with probability 1 / C(r, k).

    Parameters
    ----------
    r : int
        The rank (>= 1).
    k : int
        The sketch size, in [1, r].

    Returns
    -------
    diagonals : ndarray, shape (C(r, k), r)
        One row per index set: r/k on the set, 0 elsewhere.
    probabilities : ndarray, shape (C(r, k),)
        Uniform weights.

    Raises
    ------
    ValueError
        If ``r`` or ``k`` is out of range, or C(r, k) exceeds ``MAX_SUBSETS``.

    Examples
    --------
    >>> from theory.exact.moments import reference_law
    >>> diags, probs = reference_law(3, 2)
    >>> diags.shape, probs.tolist()
    ((3, 3), [0.3333333333333333, 0.3333333333333333, 0.3333333333333333])
    >>> diags[0].tolist()
    [1.5, 1.5, 0.0]
    """
    r = check_int("r", r, low=1)
    k = check_int("k", k, low=1, high=r)
    if comb(r, k) > MAX_SUBSETS:
        raise ValueError(f"C(r, k) = {comb(r, k)} subsets exceed MAX_SUBSETS={MAX_SUBSETS}; use monte_carlo_check")
    diags = np.array([Sketch(r, np.array(I)).diagonal() for I in itertools.combinations(range(r), k)])
    return diags, np.full(len(diags), 1.0 / len(diags))


# -- closed forms --------------------------------------------------------------------------------
def covariance_closed_form(r: int, k: int) -> np.ndarray:
    """The covariance of diag(S) in closed form: ``Cov(diag S) = c_k (r I - 1 1^T)``.

    Parameters
    ----------
    r : int
        The rank.
    k : int
        The sketch size, in [1, r].

    Returns
    -------
    ndarray, shape (r, r)
    """
    return sketch_moments(r, k)["c_k"] * (r * np.eye(r) - np.ones((r, r)))


def second_moment_matrix(r: int, k: int) -> np.ndarray:
    """``E[s s^T]`` of s = diag(S) in closed form: r/k on the diagonal, r(k-1)/(k(r-1)) off it.

    Parameters
    ----------
    r : int
        The rank.
    k : int
        The sketch size, in [1, r].

    Returns
    -------
    ndarray, shape (r, r)
    """
    mom = sketch_moments(r, k)
    return np.where(np.eye(r, dtype=bool), mom["second"], mom["cross"])


def product_variance_closed_form(B: np.ndarray, A: np.ndarray, k: int) -> float:
    """The sketch variance of a LoRA product, ``E||B S A - B A||_F^2``, in closed form.

    ``E||B S A - B A||_F^2 = c_k (r sum_j ||b_j||^2 ||a_j||^2 - ||B A||_F^2)``.

    Parameters
    ----------
    B : ndarray, shape (m, r)
        The LoRA factor B (b_j its columns).
    A : ndarray, shape (r, n)
        The LoRA factor A (a_j its rows).
    k : int
        The sketch size, in [1, r].

    Returns
    -------
    float
    """
    r = B.shape[1]
    col = np.sum(B * B, axis=0) * np.sum(A * A, axis=1)
    return sketch_moments(r, k)["c_k"] * (r * float(np.sum(col)) - float(np.sum((B @ A) ** 2)))


# -- exact check by enumeration -------------------------------------------------------------------
def exact_errors(r: int, k: int, M: np.ndarray, B: np.ndarray, A: np.ndarray, law=reference_law) -> dict:
    """The largest absolute error of every identity of the spec (§2) under ``law``, from exact expectations.

    Parameters
    ----------
    r : int
        The rank.
    k : int
        The sketch size, in [1, r].
    M : ndarray, shape (p, r)
        The matrix for ``E||M S||^2 = (r/k)||M||^2`` and ``max ||M S||^2 <= (r/k)^2 ||M||^2`` (the
        latter reported as the excess, <= 0 when it holds).
    B : ndarray, shape (m, r)
        The factor B for ``E[B S A] = B A`` and the product variance identity.
    A : ndarray, shape (r, n)
        The factor A of the same identities.
    law : callable, optional
        ``law(r, k) -> (diagonals: (Q, r), probabilities: (Q,))``; default :func:`reference_law`.

    Returns
    -------
    dict
        ``{identity name: error}`` (floats); every error is ~0 (the bound's excess <= 0) for a correct law.
    """
    diags, probs = law(r, k)
    mom = sketch_moments(r, k)
    mean = probs @ diags
    second = np.einsum("q,qi,qj->ij", probs, diags, diags)
    cov = second - np.outer(mean, mean)
    off = ~np.eye(r, dtype=bool)
    MS2 = np.array([np.sum((M * d[None, :]) ** 2) for d in diags])
    prods = np.array([(B * d[None, :]) @ A for d in diags])
    BA = B @ A
    dev2 = np.array([np.sum((P - BA) ** 2) for P in prods])
    m2 = float(np.sum(M * M))
    return {
        "E[s_j]=1": float(np.max(np.abs(mean - 1.0))),
        "E[s_j^2]=r/k": float(np.max(np.abs(np.diag(second) - mom["second"]))),
        "E[s_j s_l]=r(k-1)/(k(r-1))": float(np.max(np.abs(second[off] - mom["cross"]))) if r > 1 else 0.0,
        "Cov(s)=c_k(rI-11^T)": float(np.max(np.abs(cov - covariance_closed_form(r, k)))),
        "E||MS||^2=(r/k)||M||^2": abs(float(probs @ MS2) - (r / k) * m2),
        "max||MS||^2-(r/k)^2||M||^2": float(np.max(MS2) - (r / k) ** 2 * m2),
        "E[BSA]=BA": float(np.max(np.abs(np.einsum("q,qij->ij", probs, prods) - BA))),
        "E||BSA-BA||^2 identity": abs(float(probs @ dev2) - product_variance_closed_form(B, A, k)),
    }


# -- Monte Carlo for large r ---------------------------------------------------------------------
def monte_carlo_check(r: int, k: int, n_samples: int, seed: int, *, delta: float = 1e-3,
                      sampler=sample_sketch) -> dict:
    """Check the sketch's first and second moments by sampling, with a Hoeffding + union bound.

    Compares the sample means of s_j, s_j^2 and s_j s_l over ``n_samples`` draws of ``sampler``
    against their closed forms; the check fails with probability at most ``delta`` when the sampler is
    correct: ``P(any |mean - expectation| > range * sqrt(log(2 Q / delta) / (2 n))) <= delta`` over
    the Q = r + r^2 quantities (s_j in [0, r/k], s_j s_l in [0, (r/k)^2]).

    Parameters
    ----------
    r : int
        The rank (>= 2).
    k : int
        The sketch size, in [1, r].
    n_samples : int
        The number of draws (>= 2).
    seed : int
        The run seed (the draws use the server's evaluation stream).
    delta : float, optional
        The false-alarm probability, in (0, 1).
    sampler : callable, optional
        ``sampler(r, k, rng) -> Sketch``; default :func:`fslora_ref.sketch.sample_sketch`.

    Returns
    -------
    dict
        ``errors`` and ``bounds`` (``{quantity: float}``), ``confidence`` (1 - delta), ``n_samples``
        and ``ok`` (True when every error is within its bound).

    Raises
    ------
    ValueError
        If a parameter is out of range.
    """
    r = check_int("r", r, low=2)
    k = check_int("k", k, low=1, high=r)
    n_samples = check_int("n_samples", n_samples, low=2)
    if not (0 < delta < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    rng = stream(seed, round=-1, client=SERVER, purpose="eval")
    diags = np.array([sampler(r, k, rng).diagonal() for _ in range(n_samples)])
    mean = diags.mean(axis=0)
    second = diags.T @ diags / n_samples
    mom = sketch_moments(r, k)
    off = ~np.eye(r, dtype=bool)
    width = sqrt(log(2 * (r + r * r) / delta) / (2 * n_samples))
    errs = {"E[s_j]=1": (float(np.max(np.abs(mean - 1.0))), (r / k) * width),
            "E[s_j^2]=r/k": (float(np.max(np.abs(np.diag(second) - mom["second"]))), (r / k) ** 2 * width),
            "E[s_j s_l]": (float(np.max(np.abs(second[off] - mom["cross"]))), (r / k) ** 2 * width)}
    return {"errors": {name: e for name, (e, _) in errs.items()},
            "bounds": {name: b for name, (_, b) in errs.items()},
            "confidence": 1.0 - delta, "n_samples": n_samples,
            "ok": all(e <= b for e, b in errs.values())}
