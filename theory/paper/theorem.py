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

*informative* = RHS / ||grad f^S(X^0)||^2: the smallest plateau the setting detects, relative to where
every run starts. A setting with informative >= 1 is vacuous (an implementation that never moves
passes it): it is reported, but it can never make the claim ``verified`` on its own; the claim is
``verified`` only when every setting inside the condition holds and at least one of them is
informative (< 1). Keys print the implementation's own fall of the LHS.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..experiment import Runs, Setting, reference_runs, reference_step, run_seeds, ucb95
from ..result import INCONCLUSIVE, MEASUREMENT, OUTSIDE, SKIPPED, VERIFIED, VIOLATED, Result

OUTSIDE_FACTORS = (4.0, 32.0, 256.0)
INFORMATIVE_MAX = 1.0   # RHS / ||grad f^S(X^0)||^2 below which a setting can catch a run that never moves


@dataclass
class Outcome:
    """One setting of the Theorem 4.4 check: the reference's step size, constants and bound, and both sides' runs.

    Parameters
    ----------
    setting : theory.experiment.Setting
        The setting.
    lr : float
        The step size gamma used (0.9 x the reference's limit).
    gamma_max : float
        The step-size limit from the reference's constants.
    c_h : float
        The heterogeneity constant chosen.
    within : bool
        Whether gamma <= gamma_max.
    constants : theory.experiment.Constants
        The reference's constants at (gamma, T).
    rhs : dict
        :func:`theory.exact.bounds.theorem_rhs` at T.
    rhs_curve : list of float, optional
        The RHS at every T' = 1..T.
    reference : theory.experiment.Runs or None, optional
        The reference's runs.
    candidate : theory.experiment.Runs or None, optional
        The implementation's runs (None if it could not run the setting).
    not_run : str, optional
        Why the implementation could not run this setting (then no verdict there).
    """

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
    not_run: str = ""           # why the implementation could not run this setting (no verdict there)

    @property
    def informative(self) -> float:
        """RHS / ||grad f^S(X^0)||^2: the smallest detectable plateau relative to the start."""
        return self.rhs["rhs"] / self.reference.initial_grad_sq()

    @property
    def counts(self) -> bool:
        """Inside the condition and run by the implementation: a setting with a verdict."""
        return self.within and not self.not_run

    @property
    def lhs_ucb(self) -> float:
        return ucb95(self.candidate.lhs_per_seed()) if self.candidate and not self.candidate.diverged else float("inf")

    @property
    def lhs_over_rhs(self) -> float:
        return self.lhs_ucb / self.rhs["rhs"]

    def rounds_to_detect(self, plateau: float) -> float:
        """The T at which the smallest RHS over gamma falls to ``plateau``.

        The RHS minimised over gamma is ``2 sqrt(4 (f^S(X^0) - f*) K / (T H))`` with K the noise + drift
        terms per unit gamma, so ``T = 16 (f^S(X^0) - f*) K / (H plateau^2)``.

        Parameters
        ----------
        plateau : float
            The level of ``||grad f^S||^2`` to detect.

        Returns
        -------
        float
        """
        K = (self.rhs["noise"] + self.rhs["drift"]) / self.lr
        gap = self.constants["fS_X0"] - self.constants["f_star"]
        return 16.0 * gap * K / (self.setting.local_steps * plateau ** 2)

    @property
    def violated(self) -> bool:
        return self.counts and (bool(self.candidate.diverged) or self.lhs_ucb > self.rhs["rhs"])

    def to_json(self) -> dict:
        """The setting's row of the claim's evidence.

        Returns
        -------
        dict
            The setting, gamma and its limit, the RHS and its terms, the detectable plateau, whether the
            setting is informative, the constants, and the implementation's LHS (mean, UCB95, LHS / RHS) or
            why it did not run.
        """
        st, g0 = self.setting, self.reference.initial_grad_sq()
        ref_lhs = float(self.reference.lhs_per_seed().mean())
        out = {"setting": st.name, "describe": st.describe(), "T": st.rounds, "seeds": self.reference.seeds,
               "gamma": self.lr, "gamma_max": self.gamma_max, "c_h": self.c_h, "within_condition": self.within,
               "rhs": self.rhs["rhs"], "rhs_terms": {k: v for k, v in self.rhs.items() if k != "rhs"},
               "initial_grad_sq": g0, "reference_lhs_mean": ref_lhs, "reference_lhs_fall_factor": g0 / ref_lhs,
               "detectable_plateau": self.rhs["rhs"], "detectable_plateau_over_initial": self.rhs["rhs"] / g0,
               "informative": self.informative, "is_informative": self.informative < INFORMATIVE_MAX,
               "T_to_detect_a_tenth_of_initial": self.rounds_to_detect(0.1 * g0),
               "constants": self.constants.to_json()}
        if self.not_run:
            out["not_run"] = self.not_run
            return out
        out["diverged"] = self.candidate.diverged
        if not self.candidate.diverged:
            lhs = self.candidate.lhs_per_seed()
            out.update(lhs_mean=float(lhs.mean()), lhs_ucb95=self.lhs_ucb, lhs_over_rhs=self.lhs_over_rhs,
                       lhs_fall_factor=g0 / float(lhs.mean()), late_grad_sq=float(self.candidate.late().mean()))
        return out


def theorem_setting(runner, setting: Setting, seeds: int) -> Outcome:
    """Run the theorem check on one setting: the reference's step size and constants, then the implementation's runs.

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    setting : theory.experiment.Setting
        The problem and run.
    seeds : int
        The number of seeds (the same for the reference and the implementation).

    Returns
    -------
    Outcome
    """
    T = setting.rounds
    lr, consts, _ = reference_step(setting, seeds, T)
    c_h, gmax, rhs = consts.choose_c_h(setting, lr, T)
    out = Outcome(setting, lr, gmax, c_h, lr <= gmax, consts, rhs)
    # only the optimisation term depends on T (as 1/T): one evaluation of the constants serves every T
    out.rhs_curve = [rhs["optimisation"] * T / t + rhs["noise"] + rhs["drift"] for t in range(1, T + 1)]
    out.reference = reference_runs(setting, lr, seeds, T)
    if setting.batch_size is not None and not getattr(runner, "runs_minibatches", True):
        out.not_run = (f"{runner.name} gets full-batch gradient oracles (conformance protocol); this setting "
                       f"has minibatches of {setting.batch_size}")
        return out
    out.candidate = run_seeds(runner, setting, lr, seeds, T)
    return out


def _fall(o) -> str:
    return f"{o.reference.initial_grad_sq() / float(o.candidate.lhs_per_seed().mean()):.2g}x"


def theorem_status(outcomes) -> Result:
    """The claim's verdict over all settings.

    Violated if any setting inside the condition has UCB95(LHS) > RHS (or diverged); verified if all
    settings inside the condition hold and at least one is informative (RHS < ``||grad f^S(X^0)||^2``);
    inconclusive if they all hold but none is informative; outside_conditions if no setting could be put
    inside it. Settings the implementation cannot run are reported without a verdict.

    Parameters
    ----------
    outcomes : list of Outcome
        One per setting.

    Returns
    -------
    theory.result.Result
    """
    rows = [o.to_json() for o in outcomes]
    inside = [o for o in outcomes if o.counts]
    ev = {"settings": rows, "confidence": "one-sided 95% Student-t upper bound on E[(1/T) sum_t ||grad f^S(X^t)||^2] "
          "over seeds", "constants": "the reference's, measured on its own runs at the same gamma and T",
          "informative_rule": f"a setting can make the claim verified only if RHS / ||grad f^S(X^0)||^2 < "
                              f"{INFORMATIVE_MAX:g} (else an implementation that never moves passes it)"}
    if not inside:
        return Result(OUTSIDE, "no setting inside the step-size condition", ev)
    bad = [o for o in inside if o.violated]
    if bad:
        worst = bad[0]
        what = (f"diverged ({worst.candidate.diverged})" if worst.candidate.diverged else
                f"UCB {worst.lhs_ucb:.3g} > RHS {worst.rhs['rhs']:.3g} (informative {worst.informative:.2f}; its LHS "
                f"fell {_fall(worst)})")
        ev["counterexample"] = worst.to_json()
        return Result(VIOLATED, f"{worst.setting.name}: {what}", ev)
    useful = [o for o in inside if o.informative < INFORMATIVE_MAX]
    left_out = len(outcomes) - len(inside)
    tail = f" ({left_out} not run or outside the condition)" if left_out else ""
    if not useful:
        return Result(INCONCLUSIVE, f"holds in {len(inside)} setting(s), all vacuous (informative >= "
                                    f"{min(o.informative for o in inside):.2g})" + tail, ev)
    best = min(useful, key=lambda o: o.informative)
    return Result(VERIFIED, f"{len(inside)} setting(s), {len(useful)} informative; best {best.setting.name}: "
                            f"LHS/RHS {best.lhs_over_rhs:.2g}, informative {best.informative:.2f}, its LHS fell "
                            f"{_fall(best)}" + tail, ev)


def above_limit(runner, setting: Setting, seeds: int, rounds: int, factors=OUTSIDE_FACTORS) -> Result:
    """Runs at multiples of the reference's step-size limit, where the theorem says nothing.

    A measurement without a pass/fail rule.

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    setting : theory.experiment.Setting
        The problem and run.
    seeds : int
        The number of seeds.
    rounds : int
        The rounds T of each run.
    factors : sequence of float, optional
        The multiples of gamma_max.

    Returns
    -------
    theory.result.Result
        MEASUREMENT, or SKIPPED when no step-size limit was established.
    """
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
    return Result(MEASUREMENT, summary, {"setting": setting.name, "rounds": rounds, "gamma_max": gmax, "runs": rows,
                                         "note": "outside the theorem's conditions: reported, never judged"})

