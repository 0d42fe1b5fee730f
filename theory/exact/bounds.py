"""The paper's bounds as functions of the constants (Proposition D.4, Theorem 4.4, Corollary 4.5).

budgets: k_i per client; r: global rank; L, sigma_g2, sigma_s2, sigma_h2 (= delta_h^2), c_h as
measured by :mod:`theory.exact.constants`.
"""
from __future__ import annotations

from math import sqrt

import numpy as np

from fslora_ref.validation import check_int, check_positive_float


def _ratios(r: int, budgets) -> np.ndarray:
    r = check_int("r", r, low=1)
    ks = np.array([check_int(f"budgets[{i}]", k, low=1, high=r) for i, k in enumerate(budgets)], dtype=float)
    if ks.size == 0:
        raise ValueError("budgets must hold at least one k_i")
    return r / ks


def L_bar(L: float, r: int, budgets) -> float:
    """L-bar = ((1/N) sum_i r/k_i) L, the smoothness constant of the sketched objective f^S (Proposition D.4).

    Parameters
    ----------
    L : float
        The smoothness constant of the unsketched objective.
    r : int
        The global LoRA rank (>= 1).
    budgets : sequence of int, length N
        The sketch sizes k_i of the N clients, each in [1, r].

    Returns
    -------
    float
        ``mean_i(r / k_i) * L``.

    Raises
    ------
    ValueError
        If ``r`` or a budget is out of range, or ``budgets`` is empty.

    Examples
    --------
    >>> from theory.exact.bounds import L_bar
    >>> L_bar(2.0, 4, [2, 4])
    3.0
    """
    return float(np.mean(_ratios(r, budgets))) * L


def L_tilde(L: float, r: int, budgets) -> float:
    """L-tilde = ((1/N) sum_i r^2/k_i^2) L, the constant of the drift term of Theorem 4.4.

    Parameters
    ----------
    L : float
        The smoothness constant of the unsketched objective.
    r : int
        The global LoRA rank (>= 1).
    budgets : sequence of int, length N
        The sketch sizes k_i of the N clients, each in [1, r].

    Returns
    -------
    float
        ``mean_i((r / k_i)^2) * L``.

    Raises
    ------
    ValueError
        If ``r`` or a budget is out of range, or ``budgets`` is empty.

    Examples
    --------
    >>> from theory.exact.bounds import L_tilde
    >>> L_tilde(2.0, 4, [2, 4])
    5.0
    """
    return float(np.mean(_ratios(r, budgets) ** 2)) * L


def step_size_limit(L: float, r: int, budgets, H: int, c_h: float) -> float:
    """The largest step size gamma_max that Theorem 4.4 allows.

    ``gamma_max = min{ 1 / (6 H sqrt((c_h + 1) L-tilde L)), 1 / (N H^2 L) }`` with N = ``len(budgets)``.

    Parameters
    ----------
    L : float
        The smoothness constant (> 0).
    r : int
        The global LoRA rank.
    budgets : sequence of int, length N
        The sketch sizes k_i, each in [1, r].
    H : int
        The number of local steps per round (>= 1).
    c_h : float
        The heterogeneity constant of Assumption 4.3 (>= 0).

    Returns
    -------
    float
        gamma_max.

    Raises
    ------
    ValueError
        If a parameter is out of range.
    """
    check_positive_float("L", L)
    check_int("H", H, low=1)
    check_positive_float("c_h", c_h, allow_zero=True)
    N = len(budgets)
    return min(1.0 / (6 * H * sqrt((c_h + 1) * L_tilde(L, r, budgets) * L)), 1.0 / (N * H * H * L))


def theorem_rhs(*, gap: float, gamma: float, T: int, H: int, L: float, r: int, budgets,
                sigma_g2: float, sigma_s2: float, sigma_h2: float) -> dict:
    """The right-hand side of Theorem 4.4 and its three terms.

    ``rhs = 4 gap / (gamma T H) + 6 (gamma L-bar / N)(sigma_g2 + sigma_s2)
    + 12 (gamma L-tilde / N)(sigma_g2 + sigma_s2 + 3 sigma_h2)``.

    Parameters
    ----------
    gap : float
        ``f^S(X^0) - f*``, the initial optimality gap.
    gamma : float
        The step size.
    T : int
        The number of rounds (>= 1).
    H : int
        The number of local steps per round.
    L : float
        The smoothness constant.
    r : int
        The global LoRA rank.
    budgets : sequence of int, length N
        The sketch sizes k_i, each in [1, r].
    sigma_g2 : float
        The minibatch gradient variance bound.
    sigma_s2 : float
        The sketch gradient variance bound.
    sigma_h2 : float
        The heterogeneity bound delta_h^2.

    Returns
    -------
    dict
        ``{"rhs", "optimisation", "noise", "drift"}``: the bound and its three terms (floats), ``rhs``
        being their sum.

    Raises
    ------
    ValueError
        If ``T``, ``r`` or a budget is out of range.
    """
    check_int("T", T, low=1)
    N = len(budgets)
    opt = 4.0 * gap / (gamma * T * H)
    noise = 6.0 * gamma * L_bar(L, r, budgets) / N * (sigma_g2 + sigma_s2)
    drift = 12.0 * gamma * L_tilde(L, r, budgets) / N * (sigma_g2 + sigma_s2 + 3.0 * sigma_h2)
    return {"rhs": opt + noise + drift, "optimisation": opt, "noise": noise, "drift": drift}


def corollary_step(N: int, T: int, H: int, L_t: float) -> float:
    """The step size of Corollary 4.5: gamma = sqrt(N) / sqrt(T H L-tilde).

    Parameters
    ----------
    N : int
        The number of clients.
    T : int
        The number of rounds (>= 1).
    H : int
        The number of local steps per round (>= 1).
    L_t : float
        L-tilde (> 0), see :func:`L_tilde`.

    Returns
    -------
    float
        gamma.

    Raises
    ------
    ValueError
        If ``T``, ``H`` or ``L_t`` is out of range.

    Examples
    --------
    >>> from theory.exact.bounds import corollary_step
    >>> corollary_step(4, 100, 1, 1.0)
    0.2
    """
    return sqrt(N / (check_int("T", T, low=1) * check_int("H", H, low=1) * check_positive_float("L_tilde", L_t)))
