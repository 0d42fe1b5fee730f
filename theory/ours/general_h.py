"""General H, a priori: the toolkit's H > 1 bound with the client drift bounded by the problem's constants.

``theory.ours.drift`` proves, for a = L_bar gamma H < 1/2 (L_bar bounds the Hessian of f^S, Proposition D.4),

    (1/T) sum E||grad f^S||^2 <= [2 gap / (gamma H T) + (1 + 2a) D + 2a V] / (1 - 2a),

with D = (1/T) sum E||e_t||^2 the client drift *measured*. Here D is bounded instead (textbook local-SGD
drift argument, e.g. Stich 2019; Karimireddy et al. 2020, Lemma 8). Client i, fixed sketch S_i, local
iterates X^h (X^0 = X^t), l_i = L r^2 / k_i^2 (the smoothness of f~_i(.; S), Proposition D.4),
G_i = ||grad f~_i(X^t; S_i)||:

    ||X^{h+1} - X^t|| <= (1 + gamma l_i) ||X^h - X^t|| + gamma G_i   =>   ||X^h - X^t|| <= gamma h e^{gamma l_i H} G_i,
    ||e_t|| <= (1/N) sum_i (1/H) sum_{h<H} l_i ||X^h - X^t|| <= (1/N) sum_i l_i gamma (H - 1)/2 e^{gamma l_i H} G_i,
    E||e_t||^2 <= kappa (1/N) sum_i E G_i^2,   kappa = (gamma (H - 1) / 2)^2 e^{2 gamma l_max H} (1/N) sum_i l_i^2
              <= kappa [(1 + c_h) ||grad f^S||^2 + delta_h^2 + sigma_s^2]         (Assumptions 4.2, 4.3),

and V <= sigma_s^2 / N. Moving the ||grad f^S||^2 part of D to the left:

    (1/T) sum E||grad f^S||^2 <= [2 (f^S(X^0) - f*) / (gamma H T) + (1 + 2a) kappa (delta_h^2 + sigma_s^2)
                                  + 2a sigma_s^2 / N] / (1 - 2a - (1 + 2a) kappa (1 + c_h))

when the denominator is > 0: an a-priori bound in L, sigma_s^2, c_h, delta_h^2 and f* only (full batch;
a minibatch adds sigma_g^2 next to sigma_s^2). The constants are the reference's, measured on its runs
(``theory.experiment.reference_constants``, like Theorem 4.4's); nothing is measured on the drift.
``theory.ours.drift`` is the a-posteriori counterpart with the drift measured.
"""
from __future__ import annotations

from dataclasses import replace
from math import exp

import numpy as np

from ..exact import bounds
from ..experiment import reference_runs, reference_step, ucb95
from ..result import INCONCLUSIVE, SKIPPED, VERIFIED, VIOLATED, Result

WITHIN_10X = 10.0


def general_h_prior(*, gap: float, gamma: float, H: int, T: int, L: float, r: int, budgets, sigma_s2: float,
                    sigma_g2: float, c_h: float, delta2: float) -> dict:
    """The a-priori general-H bound and its terms (see the module docstring).

    Parameters
    ----------
    gap : float
        ``f^S(X^0) - f*``.
    gamma : float
        The step size.
    H : int
        The local steps.
    T : int
        The number of rounds.
    L : float
        The smoothness constant.
    r : int
        The rank.
    budgets : sequence of int
        The sketch sizes k_i.
    sigma_s2 : float
        The sketch variance bound.
    sigma_g2 : float
        The minibatch variance bound.
    c_h : float
        The multiplicative heterogeneity constant.
    delta2 : float
        delta_h^2 for that c_h.

    Returns
    -------
    dict
        ``rhs``, ``optimisation``, ``drift``, ``noise``, ``kappa``, ``a`` and ``denominator``; ``{}`` when
        the conditions fail (L_bar gamma H >= 1/2 or a non-positive denominator).
    """
    N = len(budgets)
    ell = np.array([L * (r / k) ** 2 for k in budgets])
    a = bounds.L_bar(L, r, budgets) * gamma * H
    kappa = (gamma * (H - 1) / 2.0) ** 2 * exp(2.0 * gamma * float(ell.max()) * H) * float(np.mean(ell ** 2))
    q = 1.0 - 2.0 * a - (1.0 + 2.0 * a) * kappa * (1.0 + c_h)
    if a >= 0.5 or q <= 0:
        return {}
    noise2 = sigma_s2 + sigma_g2
    opt = 2.0 * gap / (gamma * H * T) / q
    drift = (1.0 + 2.0 * a) * kappa * (delta2 + noise2) / q
    noise = 2.0 * a * noise2 / N / q
    return {"rhs": opt + drift + noise, "optimisation": opt, "drift": drift, "noise": noise, "kappa": kappa,
            "a": a, "denominator": q}


def best_prior(consts, setting, gamma: float, T: int, bound_fn=general_h_prior) -> dict:
    """The bound at the c_h (of the measured (c_h, delta_h^2) pairs) that makes it smallest.

    Parameters
    ----------
    consts : theory.experiment.Constants
        The reference's constants.
    setting : theory.experiment.Setting
        The setting (H, r, budgets).
    gamma : float
        The step size.
    T : int
        The number of rounds.
    bound_fn : callable, optional
        The bound (signature of :func:`general_h_prior`).

    Returns
    -------
    dict
        The smallest bound's terms plus its ``c_h``; ``{}`` if no c_h satisfies the conditions.
    """
    best = {}
    for c_h in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
        out = bound_fn(gap=consts["fS_X0"] - consts["f_star"], gamma=gamma, H=setting.local_steps, T=T,
                              L=consts["L"], r=setting.rank, budgets=setting.budgets, sigma_s2=consts["sigma_s2"],
                              sigma_g2=consts["sigma_g2"], c_h=c_h, delta2=consts.heterogeneity.delta2(c_h))
        if out and (not best or out["rhs"] < best["rhs"]):
            best = dict(out, c_h=c_h)
    return best


def sweep(base, heterogeneities, seeds: int, bound_fn=general_h_prior) -> list:
    """Per heterogeneity: the reference's runs at Theorem 4.4's step size, our bound and Theorem 4.4's RHS.

    Parameters
    ----------
    base : theory.experiment.Setting
        The setting (its H > 1); its heterogeneity is replaced by each value.
    heterogeneities : sequence of float
        The heterogeneity levels.
    seeds : int
        The reference's seeds per level.
    bound_fn : callable, optional
        The bound (signature of :func:`general_h_prior`).

    Returns
    -------
    list of dict
        One row per heterogeneity: the LHS (mean, UCB95, per seed), our bound, the paper's RHS, the
        constants and, where our bound applies, both tightnesses.
    """
    rows = []
    for h in heterogeneities:
        st = replace(base, name=f"{base.name}-het{h:g}", heterogeneity=h)
        T = st.rounds
        lr, consts, within = reference_step(st, seeds, T)
        runs = reference_runs(st, lr, seeds, T)
        lhs = runs.lhs_per_seed()
        ours = best_prior(consts, st, lr, T, bound_fn)
        c_h, gmax, paper = consts.choose_c_h(st, lr, T)
        row = {"setting": st.name, "describe": st.describe(), "heterogeneity": h, "T": T, "gamma": lr, "seeds": seeds,
               "lhs_mean": float(lhs.mean()), "lhs_ucb95": ucb95(lhs), "lhs_per_seed": lhs.tolist(),
               "ours": ours, "paper_rhs": paper["rhs"], "paper_within": lr <= gmax,
               "initial_grad_sq": runs.initial_grad_sq(),
               "constants": {k: consts[k] for k in ("L", "sigma_s2", "fS_X0", "f_star")}}
        if ours:
            row.update(ours_tightness=row["lhs_ucb95"] / ours["rhs"], paper_tightness=row["lhs_ucb95"] / paper["rhs"],
                       ours_over_paper=ours["rhs"] / paper["rhs"], informative=ours["rhs"] / row["initial_grad_sq"])
        rows.append(row)
    return rows


def check(base, heterogeneities, seeds: int, bound_fn=general_h_prior) -> Result:
    """``ours.general_h.a_priori``: the reference's LHS UCB95 stays below the a-priori general-H bound.

    Violated if it exceeds the bound anywhere (the derivation or a constant is wrong); verified if it
    holds everywhere it applies. It runs the reference, so it tests the bound (a formula or constant more
    than 1 / (LHS/bound) too optimistic fails it), not an implementation; ``informative`` (bound /
    ``||grad f^S(X^0)||^2``) says whether it could catch one.

    Parameters
    ----------
    base : theory.experiment.Setting
        The setting (its H > 1); its heterogeneity is replaced by each value.
    heterogeneities : sequence of float
        The heterogeneity levels.
    seeds : int
        The reference's seeds per level.
    bound_fn : callable, optional
        The bound (signature of :func:`general_h_prior`).

    Returns
    -------
    theory.result.Result
    """
    rows = sweep(base, heterogeneities, seeds, bound_fn)
    applies = [r for r in rows if r["ours"]]
    ev = {"rows": rows, "bound": "a priori: drift bounded by gamma^2 H^2 l^2 e^{2 gamma l H} x (c_h, delta_h^2, "
                                 "sigma_s^2) (module docstring); constants from the reference's runs",
          "runs": "the reference's (the bound is about FSLoRA; the implementation-level checks are ours.h1.*)"}
    if not applies:
        return Result(SKIPPED, "the bound's conditions (L_bar gamma H < 1/2, positive denominator) fail everywhere", ev)
    bad = [r for r in applies if r["lhs_ucb95"] > r["ours"]["rhs"]]
    tight = [r["ours_tightness"] for r in applies]
    ev["within_10x_of_the_lhs"] = bool(max(tight) >= 1.0 / WITHIN_10X)
    span = f"{min(tight):.2g}-{max(tight):.2g}" if len(tight) > 1 else f"{tight[0]:.2g}"
    key = (f"H={base.local_steps}: LHS/bound {span} over heterogeneity {[r['heterogeneity'] for r in applies]}; the bound "
           f"is {min(r['ours_over_paper'] for r in applies):.2g}-{max(r['ours_over_paper'] for r in applies):.2g}x "
           f"Theorem 4.4's RHS at the same gamma, T")
    if bad:
        return Result(VIOLATED, f"{bad[0]['setting']}: LHS UCB {bad[0]['lhs_ucb95']:.3g} > bound {bad[0]['ours']['rhs']:.3g}", ev)
    if len(applies) < len(rows):
        return Result(INCONCLUSIVE, key + f"; {len(rows) - len(applies)} setting(s) outside its conditions", ev)
    return Result(VERIFIED, key, ev)
