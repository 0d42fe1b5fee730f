"""The checks of the ``ours.*`` claims of ``fslora verify`` (registered in ``theory.claims``).

    grids = results(runner, quick)        # [GridResult] least squares, logistic: the runner's runs
    refs = reference_results(quick)       # the same grids on the reference (L_S, f*, a-priori noise, Thm 4.4)

Every check takes the registry's ``Context`` (``ctx.runner``, ``ctx.quick``, ``ctx.ours()``,
``ctx.ours_references()``). The grids run once per process and runner: the reference's in a module
cache shared by every implementation checked, an implementation's in its runner's ``cache`` (the one
``theory.experiment.run_seeds`` uses), so the power matrix, which builds one Context per claim, pays
for each grid once. L_S, f*, the a-priori noise and Theorem 4.4's constants always come from the
reference's runs; the LHS and the a-posteriori pieces from the runner's.

Through the implementation: ``ours.h1.a_posteriori``, ``ours.h1.a_priori``, ``ours.h1.steps_on_runs``.
On the reference only: ``ours.h1.steps_exact`` (the derivation, enumerated through the reference's
white-box round), ``ours.h1.curvature`` (L_S vs the realised curvature), ``ours.h1.step_size`` (the
step-size story) and ``ours.general_h.drift`` (an a-posteriori inequality that holds for any round by
construction, see ``theory.ours.drift``).
"""
from __future__ import annotations

from ..result import SKIPPED, VERIFIED, VIOLATED, Result
from .bound import mean_bound
from .checks import ALPHA, bound_status, curvature_status, step_size_story, steps_status
from .drift import drift_study
from .experiment import LG_GRID, LG_SETTING, LS_GRID, LS_SETTING, QUICK_LG_GRID, QUICK_LS_GRID, run_and_measure, \
    run_grid
from .steps import check_steps

_REFERENCE_GRIDS: dict = {}


def grids(quick: bool) -> tuple:
    """The profile's grids: least squares and logistic.

    Parameters
    ----------
    quick : bool
        The quick profile's small grids.

    Returns
    -------
    tuple of theory.ours.experiment.Grid
    """
    return (QUICK_LS_GRID, QUICK_LG_GRID) if quick else (LS_GRID, LG_GRID)


def grid_steps(quick: bool, impl: bool = False) -> int:
    """The number of step sizes over the grids (one progress step each).

    Parameters
    ----------
    quick : bool
        The quick profile.
    impl : bool, optional
        Count an implementation's steps (which skip the paper's gamma_max) instead of the reference's.

    Returns
    -------
    int
    """
    return sum(len(g.gamma_L) + (g.paper_step and not impl) for g in grids(quick))


def reference_results(quick: bool, progress=None) -> list:
    """The reference's grids on the profile, computed once per process.

    Parameters
    ----------
    quick : bool
        The quick profile.
    progress : object, optional
        Told ``update(1, text)`` after each step size.

    Returns
    -------
    list of theory.ours.experiment.GridResult
    """
    out = []
    for g in grids(quick):
        if g not in _REFERENCE_GRIDS:
            _REFERENCE_GRIDS[g] = run_grid(g, progress=progress)
        out.append(_REFERENCE_GRIDS[g])
    return out


def results(runner, quick: bool, progress=None) -> list:
    """The grids run through ``runner``, with the reference's L_S, f* and constants (cached in the runner).

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    quick : bool
        The quick profile.
    progress : object, optional
        Told ``update(1, text)`` after each step size.

    Returns
    -------
    list of theory.ours.experiment.GridResult
    """
    refs = reference_results(quick, progress)
    if runner.is_reference:
        return refs
    cache = runner.__dict__.setdefault("cache", {})
    out = []
    for g, ref in zip(grids(quick), refs):
        key = ("ours", g)
        if key not in cache:
            cache[key] = run_grid(g, runner=runner, reference=ref, progress=progress)
        out.append(cache[key])
    return out


def check_exact_steps(ctx) -> Result:
    """``ours.h1.steps_exact``: steps 1-6 exactly at points of a short reference run, on both families.

    All joint index sets of a round are enumerated through the reference's white-box round: this checks
    the derivation, not an implementation (an implementation's rounds are checked against steps 1 and
    3 by ``ours.h1.steps_on_runs``).

    Parameters
    ----------
    ctx : theory.claims.Context
        The registry's context (``ctx.runner``, ``ctx.quick``, ``ctx.ours()``, ``ctx.ours_references()``).

    Returns
    -------
    theory.result.Result
    """
    worst, evidence = None, {}
    for setting, lr in ((LS_SETTING, 0.2), (LG_SETTING, 0.5)):
        problem, cfg = setting.problem(), setting.config(0.05)
        m = run_and_measure(problem, cfg, 12 if ctx.quick else 25, [1], curvature=False)
        points = [[(m.runs.B[0, t], m.runs.A[0, t])] for t in ((12,) if ctx.quick else (10, 25))]
        res = check_steps(problem, cfg.replace(lr=lr), points)
        evidence[setting.family] = res.evidence
        if worst is None or res.status == VIOLATED:
            worst = res
    return Result(worst.status, worst.key, evidence)


def check_drift(ctx) -> Result:
    """``ours.general_h.drift``: the a-posteriori inequality with the measured client drift D holds (least squares).

    Violated if the LHS's lower (1 - ALPHA/K) bound exceeds its RHS; the evidence holds D, its share,
    and Theorem 4.4's drift term at the same (gamma, H, T). Not an a-priori theorem: D is measured.

    Parameters
    ----------
    ctx : theory.claims.Context
        The registry's context (``ctx.runner``, ``ctx.quick``, ``ctx.ours()``, ``ctx.ours_references()``).

    Returns
    -------
    theory.result.Result
    """
    rows = drift_study(LS_SETTING, Hs=(2,) if ctx.quick else (2, 4), gamma_LH=(0.2,),
                       rounds=100 if ctx.quick else 200, seeds=3, paper_step=not ctx.quick)
    inside = [r for r in rows if r.ours]
    out = [r.to_json() for r in rows]
    if not inside:
        return Result(SKIPPED, "no step with L_S gamma H < 1/2", {"rows": out})
    K = len(inside)
    bad = [r for r in inside if mean_bound(r.lhs, 1 - ALPHA / K, "lower") > r.ours["rhs"]]
    share = max(r.ours["drift"] / r.ours["rhs"] for r in inside)
    paper_share = max(r.paper["drift"] / r.paper["rhs"] for r in rows)
    ev = {"rows": out, "statement": "a-posteriori inequality with measured drift; no a-priori bound on the drift is claimed",
          "max_drift_share_ours": share, "max_drift_share_paper": paper_share}
    if bad:
        return Result(VIOLATED, f"H={bad[0].H} {bad[0].label}: LHS above the drift inequality", ev)
    return Result(VERIFIED, f"drift {share:.1%} of our RHS vs {paper_share:.0%} of Theorem 4.4's", ev)


def check_bound(form: str):
    """The check of ``ours.h1.a_posteriori`` or ``ours.h1.a_priori`` on the implementation's grids.

    Parameters
    ----------
    form : {"a_posteriori", "a_priori"}
        The form of the bound.

    Returns
    -------
    callable
        ``check(ctx) -> Result``.
    """
    return lambda ctx: bound_status(ctx.ours(), form)


def check_steps_on_runs(ctx) -> Result:
    """``ours.h1.steps_on_runs``: :func:`theory.ours.checks.steps_status` on the implementation's grids.

    Parameters
    ----------
    ctx : theory.claims.Context
        The registry's context (``ctx.runner``, ``ctx.quick``, ``ctx.ours()``, ``ctx.ours_references()``).

    Returns
    -------
    theory.result.Result
    """
    return steps_status(ctx.ours())


def check_curvature(ctx) -> Result:
    """``ours.h1.curvature``: :func:`theory.ours.checks.curvature_status` on the reference's grids.

    Parameters
    ----------
    ctx : theory.claims.Context
        The registry's context (``ctx.runner``, ``ctx.quick``, ``ctx.ours()``, ``ctx.ours_references()``).

    Returns
    -------
    theory.result.Result
    """
    return curvature_status(ctx.ours_references())


def check_step_size(ctx) -> Result:
    """``ours.h1.step_size``: :func:`theory.ours.checks.step_size_story` on the reference's grids.

    Parameters
    ----------
    ctx : theory.claims.Context
        The registry's context (``ctx.runner``, ``ctx.quick``, ``ctx.ours()``, ``ctx.ours_references()``).

    Returns
    -------
    theory.result.Result
    """
    return step_size_story(ctx.ours_references())
