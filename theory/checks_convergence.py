"""Theorem 4.4, Corollary 4.5 and "k_i = r recovers FedAvg" on real runs.

Theorem 4.4: a grid of settings (least squares and logistic; N, H, budgets, heterogeneity,
batch size) run at a step size inside the theorem's condition for the constants measured on
the run; LHS estimated over seeds with a one-sided 95% upper confidence bound (Student t);
tightness = UCB / RHS. A few runs above the limit are reported as outside_conditions.
Corollary 4.5: gamma = sqrt(N / (T H L-tilde)) at several sketching ratios; the exponent of
the average squared gradient norm in sqrt(L-tilde) is fitted and compared with the bound's 1.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from fslora_ref.algorithms import get_algorithm
from fslora_ref.config import FedConfig
from fslora_ref.federation import run

from . import bounds
from .constants import every_client, sketch_variance
from .experiment import Setting, evaluate, within_limit
from .result import OUTSIDE, SKIPPED, VERIFIED, VIOLATED, Result, exact

BASE = Setting("ls-base")
GRID = [
    BASE,
    replace(BASE, name="ls-N2", n_clients=2),
    replace(BASE, name="ls-N8", n_clients=8),
    replace(BASE, name="ls-H1", local_steps=1),
    replace(BASE, name="ls-H4", local_steps=4),
    replace(BASE, name="ls-mixed-k", ratios=(0.25, 0.5, 0.75, 1.0)),
    replace(BASE, name="ls-k=r", ratios=(1.0,)),
    replace(BASE, name="ls-iid", heterogeneity=0.0),
    replace(BASE, name="ls-het2", heterogeneity=2.0),
    replace(BASE, name="ls-fullbatch", batch_size=None),
    replace(BASE, name="lg-base", family="logistic", dims=(8, 4)),
    replace(BASE, name="lg-mixed-k", family="logistic", dims=(8, 4), ratios=(0.25, 0.5, 0.75, 1.0)),
    replace(BASE, name="lg-H4", family="logistic", dims=(8, 4), local_steps=4),
    replace(BASE, name="lg-N8-het2", family="logistic", dims=(8, 4), n_clients=8, heterogeneity=2.0),
]
QUICK_GRID = [GRID[0], GRID[5], GRID[10], GRID[11]]
OUTSIDE_FACTORS = (4.0, 32.0, 256.0)


def theorem_grid(grid=GRID, seeds: int = 20, *, algorithm=None, rhs_fn=bounds.theorem_rhs, progress=None):
    """[Outcome] per setting, each at a step size satisfying the condition (if one was found)."""
    out = []
    for setting in grid:
        out.append(within_limit(setting, seeds, algorithm=algorithm, rhs_fn=rhs_fn))
        if progress:
            progress.update(1, setting.name)
    return out


def theorem_status(outcomes) -> Result:
    """verified if UCB95(LHS) <= RHS for every setting run within the condition."""
    inside = [o for o in outcomes if o.within_conditions]
    rows = [o.to_json() for o in outcomes]
    if not inside:
        return Result(SKIPPED, "no setting satisfied the step-size condition", {"settings": rows})
    bad = [o for o in inside if o.lhs_ucb > o.rhs["rhs"]]
    tight = [o.tightness for o in inside]
    ev = {"settings": rows, "tightness_min": min(tight), "tightness_max": max(tight),
          "settings_within_condition": len(inside), "seeds": inside[0].seeds,
          "confidence": "one-sided 95% Student-t upper bound on E[(1/T) sum_t ||grad f^S(X^t)||^2]",
          "constants": "measured over every visited point (each client at every server iterate and at its own "
                       "round end point), max over seeds; L, sigma's, c_h/delta_h exact at those points"}
    if bad:
        worst = max(bad, key=lambda o: o.tightness)
        ev["counterexample"] = worst.to_json()
        return Result(VIOLATED, f"{worst.setting.name}: UCB {worst.lhs_ucb:.3g} > RHS {worst.rhs['rhs']:.3g}", ev)
    left_out = len(outcomes) - len(inside)
    ev["settings_not_within_condition"] = [o.setting.name for o in outcomes if not o.within_conditions]
    return Result(VERIFIED, f"LHS/RHS in [{min(tight):.2e}, {max(tight):.2e}] over {len(inside)} settings"
                  + (f" ({left_out} not within the condition)" if left_out else ""), ev)


def above_limit(reference_outcome, seeds: int = 10, factors=OUTSIDE_FACTORS, algorithm=None) -> Result:
    """Runs of the reference's first setting at factors x its step-size limit: what happens."""
    rows = []
    for f in factors:
        o = evaluate(reference_outcome.setting, f * reference_outcome.gamma_max, seeds, algorithm=algorithm)
        row = {"factor_over_limit": f, "gamma": o.lr, "diverged": o.diverged}
        if not o.diverged:
            row.update(lhs_ucb95=o.lhs_ucb, rhs=o.rhs["rhs"], gamma_max_measured=o.gamma_max,
                       lhs_over_rhs=o.tightness, L=o.constants["L"].value)
        rows.append(row)
    summary = "; ".join(f"{r['factor_over_limit']:g}x: " + ("diverged" if r["diverged"] else
                                                           f"LHS/RHS {r['lhs_over_rhs']:.2g}") for r in rows)
    return Result(OUTSIDE, summary, {"setting": reference_outcome.setting.name, "runs": rows})


def corollary(base: Setting = None, ratios=(1.0, 0.75, 0.5, 0.25), seeds: int = 12, *, algorithm=None,
              boot: int = 400, step_fn=bounds.corollary_step) -> tuple[Result, dict]:
    """Fitted exponent of the average squared gradient norm in sqrt(L-tilde) at the Corollary
    4.5 step size. The corollary is an upper bound (O(sqrt(L-tilde))): violated if the 95%
    bootstrap interval lies entirely above the predicted exponent 1 (convergence slows faster
    than predicted) or a run diverges; verified otherwise."""
    base = base or replace(BASE, name="cor", rounds=30, ratios=(1.0,))
    N, T, H = base.n_clients, base.rounds, base.local_steps
    L = evaluate(base, 0.01, 2, algorithm=algorithm).constants["L"].value   # region of a k = r pilot
    xs, per_seed, rows = [], [], []
    for ratio in ratios:
        st = replace(base, name=f"cor-{ratio}", ratios=(ratio,))
        budgets = st.config(0.1).budgets
        Lt = bounds.L_tilde(L, st.rank, budgets)
        gamma = step_fn(N, T, H, Lt)
        o = evaluate(st, gamma, seeds, algorithm=algorithm)
        if o.diverged:
            return Result(VIOLATED, f"ratio {ratio} diverged", {"diverged": o.diverged}), {}
        xs.append(np.log(np.sqrt(Lt)))
        per_seed.append(np.array(o.lhs_per_seed))
        rows.append({"ratio": ratio, "L_tilde": Lt, "gamma": gamma, "lhs_mean": o.lhs_mean,
                     "gamma_max_theorem": o.gamma_max, "curve": o.lhs_curve})
    slope = float(np.polyfit(xs, [np.log(v.mean()) for v in per_seed], 1)[0])
    rng = np.random.default_rng(0)
    boots = [np.polyfit(xs, [np.log(rng.choice(v, v.size).mean()) for v in per_seed], 1)[0] for _ in range(boot)]
    lo, hi = (float(x) for x in np.percentile(boots, [2.5, 97.5]))
    ev = {"fitted_exponent": slope, "ci95": [lo, hi], "predicted_exponent": 1.0, "L_region": L,
          "settings": [{k: v for k, v in r.items() if k != "curve"} for r in rows], "seeds": seeds,
          "direction": "slower at smaller ratios" if slope > 0 else "not slower at smaller ratios",
          "note": "gamma exceeds Theorem 4.4's step-size limit at this T (the corollary is asymptotic)"}
    status = VIOLATED if lo > 1.0 else VERIFIED
    return Result(status, f"exponent {slope:.2f} [{lo:.2f}, {hi:.2f}] vs predicted 1", ev), {"rows": rows, "xs": xs}


def fedavg(algorithm=None, rounds: int = 5) -> Result:
    """k_i = r: FSLoRA's iterates equal FedAvg's (FedIT: every client trains the full pair, the
    server averages); c_k = 0 so sigma_s^2 = 0 and L-bar = L-tilde = L."""
    algorithm = algorithm or get_algorithm("fslora")
    st = replace(BASE, ratios=(1.0,))
    problem = st.problem()
    cfg = FedConfig(rank=st.rank, budgets=(st.rank,) * st.n_clients, local_steps=3, lr=0.05, rounds=rounds, seed=3)
    a = run(algorithm, problem, cfg).final_state.layers
    b = run(get_algorithm("fedit"), problem, cfg).final_state.layers
    diff = max(float(np.max(np.abs(x - y))) for p, q in zip(a, b) for x, y in zip(p, q))
    ss = sketch_variance(problem, every_client(problem, [a]), cfg.lora_scaling, cfg.budgets).value
    ratio_gap = abs(bounds.L_bar(1.0, st.rank, cfg.budgets) - 1.0) + abs(bounds.L_tilde(1.0, st.rank, cfg.budgets) - 1.0)
    return exact({"FSLoRA vs FedAvg iterates": diff, "sigma_s^2 at k=r": ss, "|L-bar/L - 1| + |L-tilde/L - 1|": ratio_gap})
