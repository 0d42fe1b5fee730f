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
    """L-bar = ((1/N) sum_i r/k_i) L: the smoothness of f^S (Proposition D.4)."""
    return float(np.mean(_ratios(r, budgets))) * L


def L_tilde(L: float, r: int, budgets) -> float:
    """L-tilde = ((1/N) sum_i r^2/k_i^2) L."""
    return float(np.mean(_ratios(r, budgets) ** 2)) * L


def step_size_limit(L: float, r: int, budgets, H: int, c_h: float) -> float:
    """gamma_max = min{ 1 / (6 H sqrt((c_h + 1) L-tilde L)), 1 / (N H^2 L) } (Theorem 4.4)."""
    check_positive_float("L", L)
    check_int("H", H, low=1)
    check_positive_float("c_h", c_h, allow_zero=True)
    N = len(budgets)
    return min(1.0 / (6 * H * sqrt((c_h + 1) * L_tilde(L, r, budgets) * L)), 1.0 / (N * H * H * L))


def theorem_rhs(*, gap: float, gamma: float, T: int, H: int, L: float, r: int, budgets,
                sigma_g2: float, sigma_s2: float, sigma_h2: float) -> dict:
    """Right-hand side of Theorem 4.4 and its three terms.

    gap = f^S(X^0) - f*;  4 gap / (gamma T H) + 6 (gamma L-bar / N)(sg2 + ss2)
                          + 12 (gamma L-tilde / N)(sg2 + ss2 + 3 sh2).
    """
    check_int("T", T, low=1)
    N = len(budgets)
    opt = 4.0 * gap / (gamma * T * H)
    noise = 6.0 * gamma * L_bar(L, r, budgets) / N * (sigma_g2 + sigma_s2)
    drift = 12.0 * gamma * L_tilde(L, r, budgets) / N * (sigma_g2 + sigma_s2 + 3.0 * sigma_h2)
    return {"rhs": opt + noise + drift, "optimisation": opt, "noise": noise, "drift": drift}


def corollary_step(N: int, T: int, H: int, L_t: float) -> float:
    """gamma = sqrt(N) / sqrt(T H L-tilde) (Corollary 4.5)."""
    return sqrt(N / (check_int("T", T, low=1) * check_int("H", H, low=1) * check_positive_float("L_tilde", L_t)))
