"""Corollary 4.5's speed-up in N and H, run through the implementation under test.

At gamma = sqrt(N / (T H L-tilde)) the corollary's bound is O(sqrt(L-tilde) (gap + sigma^2) / sqrt(T H N)):
at fixed T, doubling N or H divides it by sqrt(2) ("linear speed-up"). The bound is an upper bound, so
by itself it predicts nothing about the LHS; but when the optimisation term dominates (the case in these
settings, where the LHS is ~ gap / (gamma T H)) the LHS of FSLoRA scales like the bound: exponent -1/2
in N and in H. The check:

* at the corollary's largest T (``cor4.5.rate``'s), the implementation runs the base setting (N, H),
  (2N, H) and (N, 2H) at the corollary's gamma, ``seeds`` seeds each; each point must be inside
  Theorem 4.4's condition with the reference's constants re-measured at (gamma, T), else the number is
  reported as descriptive only;
* per factor, the exponent of the mean LHS in N (resp. H) with a 95% bootstrap interval over seeds;
  ``violated`` if that interval lies entirely outside [-1/2 - TOL, -1/2 + TOL] (TOL = 0.25: the problem
  itself changes with N, the clients' data are new draws, and the drift and noise terms scale
  differently), ``verified`` if both intervals meet it.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..exact import bounds
from ..experiment import reference_constants, run_seeds
from ..result import OUTSIDE, VERIFIED, VIOLATED, Result
from .corollary import fit_exponent

TOL = 0.25
PREDICTED = -0.5


def _point(runner, setting, T, L_tilde, seeds) -> dict:
    gamma = bounds.corollary_step(setting.n_clients, T, setting.local_steps, L_tilde)
    consts = reference_constants(setting, gamma, seeds, T)
    _, gmax, _ = consts.choose_c_h(setting, gamma, T)
    runs = run_seeds(runner, setting, gamma, seeds, T)
    out = {"N": setting.n_clients, "H": setting.local_steps, "T": T, "gamma": gamma, "gamma_max": gmax,
           "within_condition": gamma <= gmax, "diverged": runs.diverged}
    if not runs.diverged:
        lhs = runs.lhs_per_seed()
        out.update(lhs_mean=float(lhs.mean()), lhs_per_seed=lhs.tolist())
    return out


def check_speedup(runner, setting, T: int, L_tilde: float, seeds: int) -> Result:
    """Check Corollary 4.5's speed-up in N and H at T (see the module docstring).

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    setting : theory.experiment.Setting
        The base setting (N, H); the 2N and 2H settings are derived from it.
    T : int
        The number of rounds (the corollary's largest T).
    L_tilde : float
        The corollary's pilot L-tilde, for the step size.
    seeds : int
        The seeds per point.

    Returns
    -------
    theory.result.Result
    """
    base = replace(setting, rounds=T)
    points = {"base": _point(runner, base, T, L_tilde, seeds),
              "N": _point(runner, replace(base, name=f"{setting.name}-N{2 * setting.n_clients}",
                                          n_clients=2 * setting.n_clients), T, L_tilde, seeds),
              "H": _point(runner, replace(base, name=f"{setting.name}-H{2 * setting.local_steps}",
                                          local_steps=2 * setting.local_steps), T, L_tilde, seeds)}
    ev = {"setting": setting.name, "T": T, "seeds": seeds, "predicted_exponent": PREDICTED, "tolerance": TOL,
          "points": points, "rule": f"violated if the 95% bootstrap CI of the exponent lies outside "
                                    f"[{PREDICTED - TOL}, {PREDICTED + TOL}]"}
    diverged = [k for k, p in points.items() if p["diverged"]]
    if diverged:
        what = diverged[0]
        inside = points[what]["within_condition"]
        return Result(VIOLATED if inside else OUTSIDE, f"{what}: diverged ({points[what]['diverged']})", ev)
    fits = {}
    for which in ("N", "H"):
        x = np.log([points["base"][which], points[which][which]])
        slope, (lo, hi) = fit_exponent(x, [np.array(points["base"]["lhs_per_seed"]),
                                           np.array(points[which]["lhs_per_seed"])])
        fits[which] = {"exponent": slope, "ci95": [lo, hi],
                       "inside": points["base"]["within_condition"] and points[which]["within_condition"]}
    ev["fits"] = fits
    text = "; ".join(f"{w}x2: LHS ~ {w}^{f['exponent']:.2f} [{f['ci95'][0]:.2f}, {f['ci95'][1]:.2f}]"
                     + ("" if f["inside"] else " (descriptive: outside the condition)") for w, f in fits.items())
    judged = {w: f for w, f in fits.items() if f["inside"]}
    if not judged:
        return Result(OUTSIDE, text, ev)
    bad = [w for w, f in judged.items() if f["ci95"][0] > PREDICTED + TOL or f["ci95"][1] < PREDICTED - TOL]
    if bad:
        return Result(VIOLATED, f"no {bad[0]} speed-up as predicted (-1/2 +- {TOL}): " + text, ev)
    return Result(VERIFIED, text + f" vs -1/2 +- {TOL}", ev)
