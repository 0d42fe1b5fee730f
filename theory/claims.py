"""The claims registry: one entry per claim of the paper / spec, each run to a status + evidence.

    results = run_all(quick=False, progress=Progress(...))   # [(Claim, Result)]

Every entry calls a checker from ``checks_*`` with the reference implementation; the checkers
take the thing they check as a parameter, which is how tests hold them against mutants.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from . import checks_convergence as conv
from . import checks_moments as mom
from . import checks_objective as obj
from . import checks_smoothness as smooth


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    method: str
    check: callable    # check(context) -> Result


class Context:
    """Run options plus results shared between claims (the Theorem 4.4 grid, the corollary)."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.seeds = 8 if quick else 20
        self.grid = conv.QUICK_GRID if quick else conv.GRID
        self._grid_outcomes = None
        self._corollary = None
        self.progress = None

    def grid_outcomes(self):
        if self._grid_outcomes is None:
            self._grid_outcomes = conv.theorem_grid(self.grid, self.seeds, progress=self.progress)
        return self._grid_outcomes

    def corollary(self):
        if self._corollary is None:
            base = conv.replace(conv.BASE, name="cor", rounds=12 if self.quick else 30, ratios=(1.0,))
            self._corollary = conv.corollary(base, seeds=6 if self.quick else 12)
        return self._corollary


def _identity(cid):
    return lambda ctx: mom.check_identity(cid)


CLAIMS = [
    Claim("def3.1.unbiased", "E[S] = I_r, hence E[B S A] = B A (Definition 3.1)",
          "exact: all C(r,k) index sets, 1<=k<=r<=7", _identity("def3.1.unbiased")),
    Claim("def3.1.second_moment", "E[S^2] = (r/k) I_r (Definition 3.1)",
          "exact: all C(r,k) index sets, 1<=k<=r<=7", _identity("def3.1.second_moment")),
    Claim("identity.cross_moment", "E[s_j s_l] = r(k-1)/(k(r-1)) for j != l",
          "exact: enumeration", _identity("identity.cross_moment")),
    Claim("identity.covariance", "Cov(s) = c_k (r I - 1 1^T), c_k = (r-k)/(k(r-1))",
          "exact: enumeration", _identity("identity.covariance")),
    Claim("identity.frobenius_expectation", "E||M S||_F^2 = (r/k)||M||_F^2 (equality; the paper states <=)",
          "exact: enumeration", _identity("identity.frobenius_expectation")),
    Claim("identity.frobenius_max", "||M S||_F^2 <= (r/k)^2 ||M||_F^2 for every draw",
          "exact: every draw, reported as excess", _identity("identity.frobenius_max")),
    Claim("identity.product_variance", "E||BSA - BA||_F^2 = c_k (r sum_j ||b_j||^2 ||a_j||^2 - ||BA||_F^2)",
          "exact: enumeration", _identity("identity.product_variance")),
    Claim("sketch.large_r", "the moments hold for the core sampler at r = 64",
          "Monte Carlo, Hoeffding + union bound, 99.9% per k, fixed seed",
          lambda ctx: mom.check_large_r(n_samples=4000 if ctx.quick else 20_000)),
    Claim("sketch.uniform_subsets", "the core sampler draws every k-subset with equal probability",
          "chi-square test at alpha = 1e-3, fixed seed",
          lambda ctx: mom.check_uniform_subsets(n_samples=4000 if ctx.quick else 20_000)),
    Claim("objective.closed_form", "least squares: f_i^S = f_i + (s^2/2n_i) c_k (r sum_j ||X b_j||^2||a_j||^2 - ||XBA||^2), penalty >= 0",
          "exact: closed form vs enumeration", lambda ctx: obj.check_closed_form_value()),
    Claim("objective.gradient", "least squares: grad f_i^S = grad f_i + grad of the implicit regulariser (closed form)",
          "exact: closed form vs enumeration", lambda ctx: obj.check_closed_form_grad()),
    Claim("lemma3.2.gradient", "grad_B f~ = grad l A^T S^T, grad_A f~ = S^T B^T grad l; E_S of it = grad f_i^S (Lemma 3.2)",
          "exact vs the problems' gradients and enumeration; finite differences", lambda ctx: obj.check_lemma_gradient()),
    Claim("alg1.one_step_unbiased", "H = 1: E_S[client delta] = -gamma grad f_i^S(X)",
          "exact: every sketch enumerated, full batch", lambda ctx: obj.check_one_step_unbiased()),
    Claim("alg1.sketch_fixed", "one sketch per client and round: only the k selected columns/rows move during the H steps",
          "exact: H = 4 local minibatch steps", lambda ctx: obj.check_sketch_fixed()),
    Claim("alg1.forms_agree", "submatrix client == full-size masked client; upload k_i(m+n) floats",
          "exact: 3 rounds, N = 3, SGD", lambda ctx: obj.check_forms_agree()),
    Claim("propD4.instance", "f~_i(.;S) is L r^2/k_i^2-smooth (Proposition D.4)",
          "exact Hessians; L over X and every [BS; A]", lambda ctx: smooth.check("instance")),
    Claim("propD4.client", "f_i^S is L r/k_i-smooth (Proposition D.4)",
          "exact Hessians averaged over all S", lambda ctx: smooth.check("client")),
    Claim("propD4.global", "f^S is L-bar-smooth, L-bar = (1/N) sum_i (r/k_i) L (Proposition D.4)",
          "exact Hessians averaged over all S and clients", lambda ctx: smooth.check("global")),
    Claim("thm4.4.bound", "(1/T) sum_t E||grad f^S(X^t)||^2 <= Theorem 4.4 RHS when gamma <= its limit",
          "grid of runs, seeds, one-sided 95% UCB, constants measured on the visited region",
          lambda ctx: conv.theorem_status(ctx.grid_outcomes())),
    Claim("thm4.4.above_limit", "behaviour above the step-size limit (the theorem says nothing there)",
          "runs at 4x, 32x, 256x the limit", lambda ctx: conv.above_limit(ctx.grid_outcomes()[0], seeds=6 if ctx.quick else 10)),
    Claim("cor4.5.ratio_dependence", "at gamma = sqrt(N/(THL-tilde)) the rate scales like sqrt(L-tilde): smaller ratios slow convergence at most that much",
          "fit over 4 sketching ratios, bootstrap 95% CI", lambda ctx: ctx.corollary()[0]),
    Claim("cor4.5.fedavg", "k_i = r recovers FedAvg (identical iterates; sigma_s^2 = 0; L-bar = L-tilde = L)",
          "exact: FSLoRA vs FedIT runs", lambda ctx: conv.fedavg()),
]


def steps(quick: bool, only=None) -> int:
    """Progress steps of run_all: one per claim plus one per Theorem 4.4 grid setting."""
    ids = [c.id for c in CLAIMS if only is None or c.id in only]
    grid = conv.QUICK_GRID if quick else conv.GRID
    return len(ids) + (len(grid) if {"thm4.4.bound", "thm4.4.above_limit"} & set(ids) else 0)


def run_all(quick: bool = False, progress=None, only=None):
    """[(Claim, Result, seconds)] for every registered claim (or the ids in ``only``)."""
    ctx = Context(quick)
    ctx.progress = progress
    out = []
    for claim in CLAIMS:
        if only is not None and claim.id not in only:
            continue
        start = time.perf_counter()
        result = claim.check(ctx)
        out.append((claim, result, time.perf_counter() - start))
        if progress is not None:
            progress.update(1, claim.id)
    return out, ctx
