"""Theorem 4.4 in a regime where it can fail, run through the implementation under test.

Per setting: T long enough that the reference's LHS falls >= 10x below ||grad f^S(X^0)||^2; gamma
= 0.9 x the step-size limit computed from the *reference's* constants at that gamma (measured on
its runs, L including every sketched point [B S; A]); the implementation runs the same seeds from
the same X^0; its LHS, (1/T) sum_{t<T} ||grad f^S(X^t)||^2 per seed (exact), gets a one-sided 95%
Student-t upper bound (UCB) that must stay below the RHS.

Power: a biased implementation settles where ||grad f^S|| does not vanish; its LHS tends to that
plateau while the RHS is fixed by the reference, so any implementation whose ||grad f^S(X^t)||^2
stays above the RHS over the T rounds is caught. ``detectable_plateau`` states that level, in
absolute terms and relative to ||grad f^S(X^0)||^2; ``T_to_detect_a_tenth_of_initial`` how many
rounds the bound would need (at its best gamma) to catch a plateau of 0.1 ||grad f^S(X^0)||^2.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..experiment import Runs, Setting, reference_runs, reference_step, run_seeds, ucb95
from ..result import OUTSIDE, SKIPPED, VERIFIED, VIOLATED, Result

OUTSIDE_FACTORS = (4.0, 32.0, 256.0)


@dataclass
class Outcome:
    """One setting of the theorem check."""

    setting: Setting
    lr: float
    gamma_max: float
    c_h: float
    within: bool
    constants: object
    rhs: dict
    rhs_curve: list = field(default_factory=list)
    reference: Runs | None = None
    candidate: Runs | None = None

    @property
    def lhs_ucb(self) -> float:
        return ucb95(self.candidate.lhs_per_seed()) if self.candidate and not self.candidate.diverged else float("inf")

    @property
    def lhs_over_rhs(self) -> float:
        return self.lhs_ucb / self.rhs["rhs"]

    def rounds_to_detect(self, plateau: float) -> float:
        """T at which the smallest RHS over gamma, 2 sqrt(4 (f^S(X^0) - f*) K / (T H)) with K the
        noise + drift terms per unit gamma, falls to ``plateau``: 16 (f^S(X^0) - f*) K / (H plateau^2)."""
        K = (self.rhs["noise"] + self.rhs["drift"]) / self.lr
        gap = self.constants["fS_X0"] - self.constants["f_star"]
        return 16.0 * gap * K / (self.setting.local_steps * plateau ** 2)

    @property
    def violated(self) -> bool:
        return self.within and (bool(self.candidate.diverged) or self.lhs_ucb > self.rhs["rhs"])

    def to_json(self) -> dict:
        st, g0 = self.setting, self.reference.initial_grad_sq()
        ref_lhs = float(self.reference.lhs_per_seed().mean())
        out = {"setting": st.name, "describe": st.describe(), "T": st.rounds, "seeds": self.reference.seeds,
               "gamma": self.lr, "gamma_max": self.gamma_max, "c_h": self.c_h, "within_condition": self.within,
               "rhs": self.rhs["rhs"], "rhs_terms": {k: v for k, v in self.rhs.items() if k != "rhs"},
               "initial_grad_sq": g0, "reference_lhs_mean": ref_lhs, "reference_lhs_fall_factor": g0 / ref_lhs,
               "detectable_plateau": self.rhs["rhs"], "detectable_plateau_over_initial": self.rhs["rhs"] / g0,
               "T_to_detect_a_tenth_of_initial": self.rounds_to_detect(0.1 * g0),
               "constants": self.constants.to_json(), "diverged": self.candidate.diverged}
        if not self.candidate.diverged:
            lhs = self.candidate.lhs_per_seed()
            out.update(lhs_mean=float(lhs.mean()), lhs_ucb95=self.lhs_ucb, lhs_over_rhs=self.lhs_over_rhs,
                       lhs_fall_factor=g0 / float(lhs.mean()), late_grad_sq=float(self.candidate.late().mean()))
        return out


def theorem_setting(runner, setting: Setting, seeds: int) -> Outcome:
    """The check on one setting: reference step size and constants, the implementation's runs."""
    T = setting.rounds
    lr, consts, _ = reference_step(setting, seeds, T)
    c_h, gmax, rhs = consts.choose_c_h(setting, lr, T)
    out = Outcome(setting, lr, gmax, c_h, lr <= gmax, consts, rhs)
    out.rhs_curve = [consts.rhs(setting, lr, t, c_h)["rhs"] for t in range(1, T + 1)]
    out.reference = reference_runs(setting, lr, seeds, T)
    out.candidate = run_seeds(runner, setting, lr, seeds, T)
    return out


def theorem_status(outcomes) -> Result:
    """violated if any setting inside the condition has UCB95(LHS) > RHS (or diverged); verified if all
    settings inside the condition hold; outside_conditions if no setting could be put inside it."""
    rows = [o.to_json() for o in outcomes]
    inside = [o for o in outcomes if o.within]
    ev = {"settings": rows, "confidence": "one-sided 95% Student-t upper bound on E[(1/T) sum_t ||grad f^S(X^t)||^2] "
          "over seeds", "constants": "the reference's, measured on its own runs at the same gamma and T"}
    if not inside:
        return Result(OUTSIDE, "no setting inside the step-size condition", ev)
    bad = [o for o in inside if o.violated]
    if bad:
        worst = bad[0]
        what = (f"diverged ({worst.candidate.diverged})" if worst.candidate.diverged else
                f"UCB {worst.lhs_ucb:.3g} > RHS {worst.rhs['rhs']:.3g}")
        ev["counterexample"] = worst.to_json()
        return Result(VIOLATED, f"{worst.setting.name}: {what}", ev)
    ratios = [o.lhs_over_rhs for o in inside]
    falls = [r["reference_lhs_fall_factor"] for r in rows if r["within_condition"]]
    span = (lambda xs, f: f"{min(xs):{f}}" if len(xs) == 1 else f"{min(xs):{f}}-{max(xs):{f}}")
    left_out = len(outcomes) - len(inside)
    return Result(VERIFIED, f"LHS/RHS {span(ratios, '.2g')} over {len(inside)} setting(s) where the LHS fell "
                            f"{span(falls, '.0f')}x" + (f" ({left_out} outside the condition)" if left_out else ""), ev)


def above_limit(runner, setting: Setting, seeds: int, rounds: int, factors=OUTSIDE_FACTORS) -> Result:
    """Runs at ``factors`` x the reference's step-size limit (T = ``rounds``): what the implementation
    does where the theorem says nothing. Always outside_conditions."""
    lr, consts, within = reference_step(setting, seeds, setting.rounds)
    if not within:
        return Result(SKIPPED, "no step-size limit was established", {"setting": setting.name})
    c_h, gmax, _ = consts.choose_c_h(setting, lr, setting.rounds)
    rows = []
    for f in factors:
        runs = run_seeds(runner, setting, f * gmax, seeds, rounds)
        row = {"factor_over_limit": f, "gamma": f * gmax, "diverged": runs.diverged}
        if not runs.diverged:
            row.update(lhs_mean=float(runs.lhs_per_seed().mean()), late_grad_sq=float(runs.late().mean()))
        rows.append(row)
    summary = "; ".join(f"{r['factor_over_limit']:g}x: " + ("diverged" if r["diverged"] else
                                                           f"late ||grad f^S||^2 {r['late_grad_sq']:.2g}") for r in rows)
    return Result(OUTSIDE, summary, {"setting": setting.name, "rounds": rounds, "gamma_max": gmax, "runs": rows})

