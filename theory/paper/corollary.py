"""Corollary 4.5 as the corollary says, run through the implementation under test.

gamma(T) = sqrt(N) / sqrt(T H L-tilde). Theorem 4.4's condition holds for that gamma once
T >= T_min = max(36 N H (c_h + 1) L, N^3 H^3 L^2 / L-tilde) (c_h = 0 gives the smallest T_min; its
delta_h^2 is the largest, which is valid). L, L-tilde come from the reference's runs at the setting's
Theorem 4.4 step size; T takes ``len(factors)`` values T_0 = ceil(1.5 T_min) x factors. At each T
the reference's constants are re-measured on its runs at (gamma(T), T): a T whose gamma is not
inside the re-measured condition is outside_conditions, never verified. At every T inside it, the
implementation's UCB95(LHS) must stay below the RHS.

The exponent of the mean LHS in T is fitted (log-log, bootstrap over seeds); the bound scales like
T^(-1/2). An implementation that stalls at ||grad f^S||^2 > 0 decays more slowly: the fit is
violated when its whole 95% interval lies above -1/2 + RATE_SLACK (slack for the transient of the
first T_0 rounds). The exponent in sqrt(L-tilde) across sketching ratios is descriptive only.
"""
from __future__ import annotations

from dataclasses import replace
from math import ceil

import numpy as np

from ..exact import bounds
from ..experiment import Setting, reference_constants, reference_step, run_seeds, ucb95
from ..result import OUTSIDE, VERIFIED, VIOLATED, Result

RATE_SLACK = 0.15
T_MIN_MARGIN = 1.5     # the re-measured L at (gamma(T), T) can exceed the pilot's by ~10%
BOOT = 400


def t_min(consts, setting: Setting, c_h: float = 0.0) -> float:
    """The smallest T for which gamma(T) = sqrt(N / (T H L-tilde)) meets Theorem 4.4's step-size condition.

    ``T_min = max(36 N H (c_h + 1) L, N^3 H^3 L^2 / L-tilde)``.

    Parameters
    ----------
    consts : mapping
        The measured constants; ``consts["L"]`` and ``consts["L_tilde"]`` are read.
    setting : theory.experiment.Setting
        The problem and run (its N and H are read).
    c_h : float, optional
        The heterogeneity constant (0 gives the smallest T_min).

    Returns
    -------
    float
    """
    N, H, L, Lt = setting.n_clients, setting.local_steps, consts["L"], consts["L_tilde"]
    return max(36 * N * H * (c_h + 1) * L, N ** 3 * H ** 3 * L * L / Lt)


def fit_exponent(xs, per_seed, boot: int = BOOT, seed: int = 0):
    """The slope of log(mean over seeds) against ``xs``, with a 95 % percentile bootstrap interval over seeds.

    Parameters
    ----------
    xs : array_like, shape (P,)
        The abscissae (e.g. log T).
    per_seed : sequence of ndarray
        P arrays of per-seed values (positive), one per abscissa.
    boot : int, optional
        The number of bootstrap resamples.
    seed : int, optional
        The bootstrap's seed.

    Returns
    -------
    slope : float
    interval : tuple of float
        (lo, hi), the 2.5 and 97.5 percentiles of the bootstrap slopes.

    Examples
    --------
    >>> import numpy as np
    >>> from theory.paper.corollary import fit_exponent
    >>> xs = np.log([10.0, 20.0, 40.0])
    >>> per_seed = [np.array([1.0, 1.0]) / np.sqrt(T) for T in (10.0, 20.0, 40.0)]
    >>> slope, (lo, hi) = fit_exponent(xs, per_seed, boot=20)
    >>> round(slope, 6), round(lo, 6), round(hi, 6)
    (-0.5, -0.5, -0.5)
    """
    xs = np.asarray(xs, dtype=float)
    slope = float(np.polyfit(xs, [np.log(np.mean(v)) for v in per_seed], 1)[0])
    rng = np.random.default_rng(seed)
    boots = [np.polyfit(xs, [np.log(np.mean(rng.choice(v, len(v)))) for v in per_seed], 1)[0] for _ in range(boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return slope, (float(lo), float(hi))


def corollary(runner, setting: Setting, seeds: int, factors=(1.0, 2.0, 4.0), ratios=(), step_seeds: int | None = None
              ) -> tuple[Result, dict]:
    """Check Corollary 4.5 through the implementation under test (see the module docstring).

    L and L-tilde for gamma(T) and T_min come from the reference's Theorem 4.4 run on ``setting``.

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    setting : theory.experiment.Setting
        The problem and run.
    seeds : int
        The number of seeds per T.
    factors : sequence of float, optional
        T takes the values ``ceil(1.5 T_min) * factor``.
    ratios : sequence of float, optional
        Sketching ratios for the descriptive sqrt(L-tilde) exponent (none: not measured).
    step_seeds : int or None, optional
        The seeds of the reference's Theorem 4.4 run (default ``seeds``).

    Returns
    -------
    result : theory.result.Result
    data : dict
        The plot data: lists ``T``, ``lhs``, ``rhs``, ``within`` and the fitted ``slope``.
    """
    lr0, pilot, _ = reference_step(setting, step_seeds or seeds, setting.rounds)
    N, H = setting.n_clients, setting.local_steps
    T0 = ceil(T_MIN_MARGIN * t_min(pilot, setting))
    rows, per_seed, data = [], [], {"T": [], "lhs": [], "rhs": [], "within": []}
    for f in factors:
        T = int(round(T0 * f))
        st = replace(setting, rounds=T)
        gamma = bounds.corollary_step(N, T, H, pilot["L_tilde"])
        consts = reference_constants(st, gamma, seeds, T)
        c_h, gmax, rhs = consts.choose_c_h(st, gamma, T)
        runs = run_seeds(runner, st, gamma, seeds, T)
        row = {"T": T, "gamma": gamma, "gamma_max": gmax, "c_h": c_h, "within_condition": gamma <= gmax,
               "rhs": rhs["rhs"], "rhs_terms": {k: v for k, v in rhs.items() if k != "rhs"},
               "L": consts["L"], "diverged": runs.diverged}
        if not runs.diverged:
            lhs = runs.lhs_per_seed()
            row.update(lhs_mean=float(lhs.mean()), lhs_ucb95=ucb95(lhs), lhs_over_rhs=ucb95(lhs) / rhs["rhs"],
                       informative=rhs["rhs"] / runs.initial_grad_sq())
            per_seed.append(lhs)
            data["T"].append(T), data["lhs"].append(float(lhs.mean())), data["rhs"].append(rhs["rhs"])
            data["within"].append(gamma <= gmax)
        rows.append(row)
    ev = {"setting": setting.name, "describe": setting.describe(), "seeds": seeds,
          "T_min": t_min(pilot, setting), "T_min_formula": "max(36 N H (c_h+1) L, N^3 H^3 L^2 / L-tilde), c_h = 0",
          "L_pilot": pilot["L"], "L_tilde_pilot": pilot["L_tilde"], "runs": rows,
          "rate_rule": f"violated if the 95% CI of the T exponent lies above -1/2 + {RATE_SLACK}"}
    inside = [r for r in rows if r["within_condition"]]
    broken = [r for r in inside if r["diverged"] or r["lhs_ucb95"] > r["rhs"]]
    if len(per_seed) == len(rows):
        slope, (lo, hi) = fit_exponent(np.log([r["T"] for r in rows]), per_seed)
        ev.update(T_exponent=slope, T_exponent_ci95=[lo, hi], predicted_T_exponent=-0.5)
        data["slope"] = slope
    if ratios:
        ev["sqrt_L_tilde_exponent"] = ratio_dependence(runner, setting, seeds, T0, pilot["L"], ratios)
    if broken:
        r = broken[0]
        what = "diverged" if r["diverged"] else f"UCB {r['lhs_ucb95']:.3g} > RHS {r['rhs']:.3g}"
        return Result(VIOLATED, f"T={r['T']}: {what}", ev), data
    if len(inside) < len(rows):
        return Result(OUTSIDE, f"{len(rows) - len(inside)} of {len(rows)} values of T outside the condition", ev), data
    if ev["T_exponent_ci95"][0] > -0.5 + RATE_SLACK:
        return Result(VIOLATED, f"LHS decays like T^{slope:.2f} [{lo:.2f}, {hi:.2f}], slower than T^-1/2", ev), data
    ratio = max(r["lhs_over_rhs"] for r in rows)
    informative = min(r["informative"] for r in rows)
    ev["informative_min"] = informative
    # LHS <= RHS cannot fail where the RHS exceeds ||grad f^S(X^0)||^2: the verdict then rests on the T exponent
    vacuous = "" if informative < 1 else f", vacuous: RHS >= {informative:.1f} ||grad f^S(X^0)||^2"
    return Result(VERIFIED, f"LHS <= RHS at T={[r['T'] for r in rows]} (max LHS/RHS {ratio:.2g}{vacuous}); "
                            f"T exponent {slope:.2f} [{lo:.2f}, {hi:.2f}] vs -1/2", ev), data


def ratio_dependence(runner, setting, seeds, T, L, ratios) -> dict:
    """Descriptive: the mean LHS at gamma(T) per sketching ratio, and its exponent in sqrt(L-tilde).

    The corollary's O(.) bound grows like sqrt(L-tilde); an upper bound, not a prediction, so nothing
    is judged.

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    setting : theory.experiment.Setting
        The problem and run.
    seeds : int
        The number of seeds per ratio.
    T : int
        The number of rounds.
    L : float
        The smoothness constant (L-tilde is computed from it per ratio).
    ratios : sequence of float
        The sketching ratios k_i / r.

    Returns
    -------
    dict
        ``exponent``, ``ci95``, ``T``, ``L``, ``rows`` (per ratio) and ``note``; or ``{"diverged": ...}``.
    """
    xs, per_seed, rows = [], [], []
    for ratio in ratios:
        st = replace(setting, name=f"{setting.name}-ratio{ratio:g}", ratios=(ratio,), rounds=T)
        Lt = bounds.L_tilde(L, st.rank, st.budgets)
        runs = run_seeds(runner, st, bounds.corollary_step(st.n_clients, T, st.local_steps, Lt), seeds, T)
        if runs.diverged:
            return {"diverged": f"ratio {ratio}: {runs.diverged}"}
        xs.append(0.5 * np.log(Lt))
        per_seed.append(runs.lhs_per_seed())
        rows.append({"ratio": ratio, "L_tilde": Lt, "lhs_mean": float(per_seed[-1].mean())})
    slope, (lo, hi) = fit_exponent(xs, per_seed)
    return {"exponent": slope, "ci95": [lo, hi], "T": T, "L": L, "rows": rows,
            "note": "descriptive: the bound allows up to exponent 1 (an O(.) upper bound, not a prediction)"}
