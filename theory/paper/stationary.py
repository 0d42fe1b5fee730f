"""FSLoRA settles at a stationary point of f^S, not of f -- run through the implementation under test.

Test: the implementation runs at (gamma, T) and at (gamma/2, 2T) (the same gamma T, so the same
"time" along the gradient flow; gamma is the reference's Theorem 4.4 step size on the setting); over
the last quarter of the rounds, averaged over seeds:

* late ||grad f^S||^2 must shrink: ratio (gamma/2) / (gamma) <= RHO_SKETCHED (0.75). At a stationary
  point of f^S only the sketch noise keeps the gradient away from 0, and that floor is proportional
  to gamma (expected ratio 1/2; the reference measures it). An implementation converging anywhere
  else plateaus: ratio ~ 1.
* late ||grad f||^2 must not: ratio >= RHO_PLAIN (0.9), and it must stay >= GAP (10) x the late
  ||grad f^S||^2 (with k_i < r the two stationary sets differ, spec section 1). An implementation
  that ignores the sketch converges to a stationary point of f instead.
"""
from __future__ import annotations

from ..experiment import Setting, reference_step, run_seeds
from ..result import VERIFIED, VIOLATED, Result

RHO_SKETCHED = 0.75
RHO_PLAIN = 0.9
GAP = 10.0


def check_stationary(runner, setting: Setting, seeds: int, step_seeds: int | None = None) -> Result:
    """Check that the implementation settles at a stationary point of f^S, not of f (see the module docstring).

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    setting : theory.experiment.Setting
        The problem and run.
    seeds : int
        The runs at each step size.
    step_seeds : int or None, optional
        The seeds establishing the reference's Theorem 4.4 step size (default ``seeds``; pass the
        theorem's to share its runs).

    Returns
    -------
    theory.result.Result
    """
    T = setting.rounds
    lr, _, _ = reference_step(setting, step_seeds or seeds, T)
    a = run_seeds(runner, setting, lr, seeds, T)
    b = run_seeds(runner, setting, lr / 2, seeds, 2 * T)
    ev = {"setting": setting.name, "describe": setting.describe(), "seeds": seeds, "gamma": lr, "T": T,
          "thresholds": {"rho_sketched_max": RHO_SKETCHED, "rho_plain_min": RHO_PLAIN, "gap_min": GAP},
          "window": "last quarter of the rounds"}
    if a.diverged or b.diverged:
        return Result(VIOLATED, f"diverged: {a.diverged or b.diverged}", ev)
    s1, s2 = float(a.late().mean()), float(b.late().mean())
    f1, f2 = float(a.late("plain").mean()), float(b.late("plain").mean())
    rho_s, rho_f, gap = s2 / s1, f2 / f1, f2 / s2
    ev.update(late_grad_sq_sketched=[s1, s2], late_grad_sq_plain=[f1, f2], rho_sketched=rho_s, rho_plain=rho_f,
              gap=gap, per_seed_sketched=[a.late().tolist(), b.late().tolist()])
    fails = []
    if rho_s > RHO_SKETCHED:
        fails.append(f"late ||grad f^S||^2 {s1:.3g} -> {s2:.3g} (x{rho_s:.2f}) does not shrink with gamma")
    if rho_f < RHO_PLAIN:
        fails.append(f"late ||grad f||^2 {f1:.3g} -> {f2:.3g} (x{rho_f:.2f}) shrinks with gamma")
    if gap < GAP:
        fails.append(f"late ||grad f||^2 is only {gap:.2g} x late ||grad f^S||^2")
    key = f"gamma -> gamma/2: ||grad f^S||^2 x{rho_s:.2f}, ||grad f||^2 x{rho_f:.2f} (gap {gap:.0f}x)"
    return Result(VIOLATED if fails else VERIFIED, "; ".join(fails) if fails else key, ev)
