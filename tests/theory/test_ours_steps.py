"""Each derivation step of the toolkit's H = 1 bound, checked exactly on an enumerated round, and
held against a broken formula or a broken round that must make exactly that step fail."""
import numpy as np
import pytest

from tests.mutants.missing_scale import impl as missing_scale
from theory.ours import steps as ours_steps
from theory.exact import sketch_batch as sb, sketch_hessian as sh
from theory.ours.bound import h1_rhs
from theory.ours.experiment import LG_SETTING, LS_SETTING
from theory.ours.runs import run_seeds

from tests.mutants import theory_mutants as M


def _points(setting, lr=0.05, rounds=25):
    problem = setting.problem()
    cfg = setting.config(lr)
    runs = run_seeds(problem, cfg, rounds, [1])
    return problem, cfg, [[(runs.B[0, rounds], runs.A[0, rounds])]]


@pytest.fixture(scope="module")
def ls_case():
    return _points(LS_SETTING)


def _failed(res):
    return set(res.evidence["failed"])


@pytest.mark.parametrize("setting", [LS_SETTING, LG_SETTING], ids=["least_squares", "logistic"])
def test_every_step_holds_exactly_on_the_reference_round(setting):
    problem, cfg, points = _points(setting)
    res = ours_steps.check_steps(problem, cfg.replace(lr=0.2 if setting is LS_SETTING else 0.5), points)
    assert res.status == "verified", res.key
    ev = res.evidence
    assert ev["_joint_choices"] == [4 * 6 * 4 * 1]
    assert ev["step 4: realised curvature - L_S on each segment (excess)"] < 0
    assert ev["step 6: LHS - bound with certified L_S (excess)"] < 0
    assert ev["_kappa"][0] > 0


def _variance_over_n(problem, s, budgets, B, A, **kw):
    out = sb.evaluate(problem, s, budgets, B, A, **kw)
    out.variance = out.variance * problem.n_clients       # forgets the independence across clients: 1/N, not 1/N^2
    return out


def _hessian_half_cross_block(problem, s, budgets, B, A, **kw):
    """The (B, A) cross block halved (where the first-order term delta_jl c_j G lives)."""
    H = sh.hessian(problem, s, budgets, B, A, **kw)
    d = B.shape[1] * B.shape[2]
    H[:, :d, d:] *= 0.5
    H[:, d:, :d] *= 0.5
    return H


def _rhs_without_q_on_noise(**kw):
    out = h1_rhs(**kw)
    q = 1 - kw["L_S"] * kw["gamma"] / 2
    out["rhs"] = out["optimisation"] + out["noise"] * q
    return out


@pytest.mark.parametrize("broken, step", [
    (dict(law=M.unscaled_law), "step 1: E[g] = grad f^S"),
    (dict(evaluate_fn=_variance_over_n), "step 2: E||g - grad f^S||^2 = V"),
    (dict(hessian_fn=_hessian_half_cross_block), "step 4: Hessian vs central differences (relative)"),
    (dict(rhs_fn=_rhs_without_q_on_noise), "step 6: bound with realised curvature = LHS"),
    (dict(impl=missing_scale), "step 1: E[g] = grad f^S"),
], ids=["unscaled_law", "variance_1_over_N", "hessian_half_cross_block", "rhs_missing_1_over_q", "round_missing_scale"])
def test_a_broken_formula_or_round_fails_its_step(ls_case, broken, step):
    problem, cfg, points = ls_case
    res = ours_steps.check_steps(problem, cfg.replace(lr=0.2), points, **broken)
    assert res.status == "violated" and step in _failed(res), (res.key, _failed(res))


def test_enumerated_round_is_the_reference_round(ls_case):
    """The enumeration's probabilities sum to one and its mean step is -gamma grad f^S (step 1 again,
    here as an explicit identity on the rounds' average)."""
    problem, cfg, points = ls_case
    probs, Bp, Ap = ours_steps.enumerate_round(problem, cfg, points[0])
    assert probs.sum() == pytest.approx(1.0) and len(probs) == 96
    (B, A), = points[0]
    grad = sb.evaluate(problem, cfg.lora_scaling, cfg.budgets, B[None], A[None]).grad[0]
    mean_step = probs @ (sb.flatten(Bp, Ap) - sb.flatten(B[None], A[None]))
    assert np.max(np.abs(mean_step + cfg.lr * grad)) < 1e-12
