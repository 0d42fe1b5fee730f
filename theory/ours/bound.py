"""The toolkit's own convergence bound for FSLoRA with H = 1 and full-batch clients, as formulas.

Derivation (notebook 06 checks every step numerically). One round is X^{t+1} = X^t - gamma g_t with
g_t = (1/N) sum_i grad f~_i(X^t; S_i^t), the S_i^t independent random-k sketches. Then

 1. E[g_t | X^t] = grad f^S(X^t)                                   (Lemma 3.2 + E over each S_i)
 2. E||g_t - grad f^S(X^t)||^2 = V(X^t) = (1/N^2) sum_i Var_S grad f~_i(X^t; S)   (independence across clients)
 3. E||g_t||^2 = ||grad f^S(X^t)||^2 + V(X^t)                        (1 and 2)
 4. if lambda_max(Hessian f^S) <= L_S on the segment [X^t, X^{t+1}] (Taylor with integral remainder):
        f^S(X^{t+1}) <= f^S(X^t) - gamma <grad f^S(X^t), g_t> + (L_S gamma^2 / 2) ||g_t||^2
 5. E over the round, with 1 and 3:
        E f^S(X^{t+1}) <= E f^S(X^t) - gamma (1 - L_S gamma / 2) E||grad f^S(X^t)||^2 + (L_S gamma^2 / 2) E V(X^t)
 6. sum over t < T, divide by gamma (1 - L_S gamma/2) T, for gamma < 2 / L_S:

    (1/T) sum_t E||grad f^S(X^t)||^2 <= [f^S(X^0) - E f^S(X^T)] / (gamma (1 - L_S gamma/2) T)
                                        + L_S gamma / (2 (1 - L_S gamma/2)) * (1/T) sum_t E V(X^t)

 the a-posteriori form; replacing E f^S(X^T) by any f* <= inf f^S gives the a-priori form. Jensen
 gives the certified f*: for a convex loss f_i^S(X) = E_S f_i(W0 + s B S A) >= f_i(W0 + s B A), so
 f^S >= f >= min_W f (``theory.exact.lower_bounds``).

Step 4 is the only place the curvature enters, and only through the step actually taken: with the
realised curvature kappa_t = 2 [f^S(X^{t+1}) - f^S(X^t) + gamma <grad f^S, g_t>] / (gamma^2 ||g_t||^2) it
is an equality, which is the identity check (``identity_rhs``).

General H: with u_t = (X^t - X^{t+1}) / (gamma H) = g_t + e_t, e_t the client drift (the local
gradients' departure from grad f~_i(X^t; S_i)), steps 4-6 with Young's inequality
-<grad f, e> <= ||grad f||^2 / 2 + ||e||^2 / 2 and ||g + e||^2 <= 2 ||g||^2 + 2 ||e||^2 give, for L_S gamma H < 1/2,

    (1/T) sum_t E||grad f^S||^2 <= [2 (f^S(X^0) - E f^S(X^T)) / (gamma H T) + (1 + 2 L_S gamma H) D + 2 L_S gamma H V]
                                   / (1 - 2 L_S gamma H)

with D = (1/T) sum_t E||e_t||^2 *measured* on the run (``general_h_rhs``): a proved inequality, but
not an a-priori bound, because D is not bounded here by constants of the problem.
"""
from __future__ import annotations

from math import sqrt

import numpy as np
from scipy import stats

from fslora_ref.validation import check_int, check_positive_float

TERMS = ("optimisation", "noise")


def within_step_limit(gamma: float, L_S: float) -> bool:
    """Whether the H = 1 bound applies: gamma < 2 / L_S (so that 1 - L_S gamma / 2 > 0).

    Parameters
    ----------
    gamma : float
        The step size.
    L_S : float
        The curvature bound of f^S over the run's segments.

    Returns
    -------
    bool
    """
    return gamma * L_S < 2.0


def h1_rhs(*, gap: float, gamma: float, T: int, L_S: float, noise: float) -> dict:
    """The right-hand side of the H = 1 bound and its two terms (step 6 of the module docstring).

    Parameters
    ----------
    gap : float
        ``f^S(X^0) - E f^S(X^T)`` (a posteriori) or ``f^S(X^0) - f*`` (a priori).
    gamma : float
        The step size (> 0).
    T : int
        The number of rounds (>= 1).
    L_S : float
        The curvature bound (> 0).
    noise : float
        ``(1/T) sum_{t<T} E V(X^t)`` (>= 0).

    Returns
    -------
    dict
        ``rhs``, ``optimisation``, ``noise`` (floats), ``dominant`` (the larger term's name) and
        ``factor`` = 1 / (1 - L_S gamma / 2).

    Raises
    ------
    ValueError
        If a parameter is out of range, or gamma L_S >= 2 (the bound says nothing there).

    Examples
    --------
    >>> from theory.ours.bound import h1_rhs
    >>> out = h1_rhs(gap=1.0, gamma=0.5, T=10, L_S=2.0, noise=0.1)
    >>> out["optimisation"], out["noise"], out["dominant"]
    (0.4, 0.1, 'optimisation')
    """
    check_positive_float("gamma", gamma)
    check_positive_float("L_S", L_S)
    check_int("T", T, low=1)
    check_positive_float("noise", noise, allow_zero=True)
    if not within_step_limit(gamma, L_S):
        raise ValueError(f"gamma L_S must be < 2 for the H = 1 bound, got gamma L_S = {gamma * L_S:.4g}")
    q = 1.0 - L_S * gamma / 2.0
    opt = gap / (gamma * q * T)
    noi = L_S * gamma / (2.0 * q) * noise
    return {"rhs": opt + noi, "optimisation": opt, "noise": noi,
            "dominant": "optimisation" if opt >= noi else "noise", "factor": 1.0 / q}


def identity_rhs(*, gap: float, gamma: float, T: int, kappa: float, noise: float) -> float:
    """The a-posteriori right-hand side with L_S replaced by the realised curvature kappa (any sign).

    Equal to the LHS up to the Monte Carlo error of steps 1 and 3 of the module docstring.

    Parameters
    ----------
    gap : float
        ``f^S(X^0) - E f^S(X^T)``.
    gamma : float
        The step size.
    T : int
        The number of rounds.
    kappa : float
        The realised curvature.
    noise : float
        ``(1/T) sum_{t<T} E V(X^t)``.

    Returns
    -------
    float
    """
    q = 1.0 - kappa * gamma / 2.0
    return gap / (gamma * q * T) + kappa * gamma / (2.0 * q) * noise


def general_h_rhs(*, gap: float, gamma: float, H: int, T: int, L_S: float, noise: float, drift: float) -> dict:
    """The general-H inequality with the measured client drift D (see the module docstring).

    Parameters
    ----------
    gap : float
        ``f^S(X^0) - E f^S(X^T)`` or ``f^S(X^0) - f*``.
    gamma : float
        The step size (> 0).
    H : int
        The local steps per round (>= 1).
    T : int
        The number of rounds (>= 1).
    L_S : float
        The curvature bound (> 0).
    noise : float
        ``(1/T) sum_t E V(X^t)``.
    drift : float
        ``D = (1/T) sum_t E||e_t||^2``, measured on the run.

    Returns
    -------
    dict
        ``rhs`` and its terms ``optimisation``, ``noise``, ``drift`` (floats).

    Raises
    ------
    ValueError
        If a parameter is out of range, or L_S gamma H >= 1/2.
    """
    check_positive_float("gamma", gamma)
    check_positive_float("L_S", L_S)
    check_int("H", H, low=1)
    check_int("T", T, low=1)
    a = L_S * gamma * H
    if a >= 0.5:
        raise ValueError(f"L_S gamma H must be < 1/2 for the general-H inequality, got {a:.4g}")
    q = 1.0 - 2.0 * a
    opt = 2.0 * gap / (gamma * H * T) / q
    noi = 2.0 * a * noise / q
    dri = (1.0 + 2.0 * a) * drift / q
    return {"rhs": opt + noi + dri, "optimisation": opt, "noise": noi, "drift": dri}


def mean_bound(x, confidence: float = 0.95, side: str = "upper") -> float:
    """A one-sided Student-t confidence bound on E[x] from samples x (one per seed).

    Scale-safe: computed on x / max|x|, so a run that blew up to 1e200 still gives a finite bound;
    infinite samples of one sign make the bound infinite in that direction.

    Parameters
    ----------
    x : array_like, shape (S,)
        The samples.
    confidence : float, optional
        The one-sided confidence level.
    side : {"upper", "lower"}, optional
        Which bound.

    Returns
    -------
    float
        The bound; NaN for fewer than 2 samples, a NaN sample or infinities of both signs.

    Examples
    --------
    >>> from theory.ours.bound import mean_bound
    >>> mean_bound([1.0, 1.0, 1.0])
    1.0
    >>> mean_bound([1.0])
    nan
    """
    x = np.asarray(x, dtype=float)
    if x.size < 2 or np.any(np.isnan(x)):
        return float("nan")
    if np.any(np.isinf(x)):
        signs = np.sign(x[np.isinf(x)])
        return float(np.inf if np.all(signs > 0) else -np.inf if np.all(signs < 0) else np.nan)
    scale = float(np.max(np.abs(x))) or 1.0
    y = x / scale
    half = stats.t.ppf(confidence, x.size - 1) * y.std(ddof=1) / sqrt(x.size)
    return float(scale * (y.mean() + half if side == "upper" else y.mean() - half))
