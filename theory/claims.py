"""The claims registry: one entry per claim of the paper / spec, each run to a status + evidence.

    results, ctx = run_all(quick=False, impl=None, progress=Progress(...))   # [(Claim, Result, seconds)]

Two kinds of claims. Sketch, objective and smoothness identities are mathematics: they do not depend
on an implementation. Algorithm-level claims (``Claim.through_impl``) run *the implementation under
test*: ``ctx.runner``, a round runner (:mod:`theory.implementations`) -- the reference's
``run_round`` by default, or whatever ``fslora verify --impl MODULE:ATTR`` loads. Their constants,
f* and step sizes always come from the reference's own runs (:mod:`theory.experiment`), so a wrong
implementation cannot excuse itself. A new family of algorithm-level claims is a list of ``Claim``s
whose ``check(ctx)`` calls ``ctx.runner`` (directly, or through ``experiment.run_seeds``), added to
``CLAIMS``; nothing else changes.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

from fslora_ref.algorithms.fslora import reuse_sketch_draws

from .implementations import runner_for
from .ours import claims as ours
from .ours import general_h as ours_general_h
from .paper import algorithm as alg
from .paper import corollary as cor
from .paper import moments as mom
from .paper import objective as obj
from .paper import smoothness as smooth
from .paper import theorem as thm
from .paper.speedup import check_speedup
from .paper.stationary import check_stationary
from .paper.unbiased import check_round_unbiased
from .paper.variance import check_round_variance
from .profiles import FULL, GENERAL_H, QUICK
from .result import VIOLATED, Result, as_identity


@dataclass(frozen=True)
class Claim:
    """One claim of the paper or the spec, and how it is checked.

    Parameters
    ----------
    id : str
        The claim's id (e.g. ``thm4.4.bound``).
    statement : str
        What is claimed, in one line.
    method : str
        How it is checked, in one line.
    check : callable
        ``check(ctx: Context) -> theory.result.Result``.
    through_impl : bool, optional
        Whether it runs the implementation under test (``ctx.runner``); an exception there makes the
        claim violated.
    """
    id: str
    statement: str
    method: str
    check: callable             # check(context) -> Result
    through_impl: bool = False  # runs the implementation under test (ctx.runner)


class Context:
    """Run options, the implementation under test, and results shared between claims.

    Parameters
    ----------
    quick : bool
        The quick profile (``theory.profiles.QUICK``) instead of the full one.
    impl : object, optional
        The implementation under test: anything :func:`theory.implementations.runner_for` accepts
        (None: the reference).
    """

    def __init__(self, quick: bool, impl=None):
        self.quick = quick
        self.profile = QUICK if quick else FULL
        self.runner = runner_for(impl)
        self.progress = None
        self._theorem = None
        self._corollary = None
        self._ours = None

    @property
    def seeds(self) -> int:
        return self.profile.seeds

    def theorem(self) -> list:
        """The Theorem 4.4 outcome of every setting of the profile (computed once).

        Returns
        -------
        list of theory.paper.theorem.Outcome
        """
        if self._theorem is None:
            self._theorem = []
            for setting in self.profile.theorem:
                self._theorem.append(thm.theorem_setting(self.runner, setting, self.seeds))
                if self.progress:
                    self.progress.update(1, setting.name)
        return self._theorem

    def ours(self) -> list:
        """The ``ours.*`` grids (least squares, logistic) run by the implementation under test.

        Returns
        -------
        list of theory.ours.experiment.GridResult
        """
        self._ours = ours.results(self.runner, self.quick, self.progress)
        return self._ours

    def ours_references(self) -> list:
        """The same grids on the reference (L_S, f* and Theorem 4.4's constants come from these).

        Returns
        -------
        list of theory.ours.experiment.GridResult
        """
        return ours.reference_results(self.quick, self.progress)

    def corollary(self):
        """The Corollary 4.5 check on the profile's setting (computed once; the speed-up claim reads it too).

        Returns
        -------
        result : theory.result.Result
        data : dict
            The plot data of :func:`theory.paper.corollary.corollary`.
        """
        if self._corollary is None:
            p = self.profile
            self._corollary = cor.corollary(self.runner, p.corollary, p.corollary_seeds, p.corollary_factors, p.ratios,
                                            step_seeds=self.seeds)
        return self._corollary


# Proposition D.4's L is measured at the very sketched points [B S; A] whose Hessians are compared with it,
# so the chain rule makes the inequality hold for any problem: the check can only catch a coding error.
_SAME_POINTS = ("L is measured at the same sketched points [B S; A] the claim is evaluated at: the chain rule "
                "forces the inequality; only a coding error of the toolkit fails it")


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
          lambda ctx: mom.check_large_r(n_samples=ctx.profile.moment_samples)),
    Claim("sketch.uniform_subsets", "the core sampler draws every k-subset with equal probability",
          "chi-square test at alpha = 1e-3, fixed seed",
          lambda ctx: mom.check_uniform_subsets(n_samples=ctx.profile.moment_samples)),
    Claim("objective.closed_form", "least squares: f_i^S = f_i + (s^2/2n_i) c_k (r sum_j ||X b_j||^2||a_j||^2 - ||XBA||^2), penalty >= 0",
          "exact: closed form vs enumeration", lambda ctx: obj.check_closed_form_value()),
    Claim("objective.gradient", "least squares: grad f_i^S = grad f_i + grad of the implicit regulariser (closed form)",
          "exact: closed form vs enumeration", lambda ctx: obj.check_closed_form_grad()),
    Claim("lemma3.2.gradient", "grad_B f~ = grad l A^T S^T, grad_A f~ = S^T B^T grad l; E_S of it = grad f_i^S (Lemma 3.2)",
          "exact vs the problems' gradients and enumeration; finite differences", lambda ctx: obj.check_lemma_gradient()),
    Claim("propD4.instance", "f~_i(.;S) is L r^2/k_i^2-smooth (Proposition D.4)",
          "exact Hessians; L over X and every [BS; A]", lambda ctx: as_identity(smooth.check("instance"), _SAME_POINTS)),
    Claim("propD4.client", "f_i^S is L r/k_i-smooth (Proposition D.4)",
          "exact Hessians averaged over all S", lambda ctx: as_identity(smooth.check("client"), _SAME_POINTS)),
    Claim("propD4.global", "f^S is L-bar-smooth, L-bar = (1/N) sum_i (r/k_i) L (Proposition D.4)",
          "exact Hessians averaged over all S and clients", lambda ctx: as_identity(smooth.check("global"), _SAME_POINTS)),
    Claim("alg1.round_unbiased", "H = 1, full batch: E[X^{t+1} - X^t] = -gamma grad f^S(X^t) over the implementation's own sketches",
          "Monte Carlo over rounds; Bernstein bound with the exact variance, alpha = 1e-3",
          lambda ctx: check_round_unbiased(ctx.runner, rounds=ctx.profile.unbiased_rounds), True),
    Claim("alg1.round_variance", "H = 1, full batch: Cov[X^{t+1} - X^t] = (1/N^2) sum_i Cov_S[-gamma grad f~_i(X^t; S)] "
          "(the clients' sketches independent)",
          "Monte Carlo over the same rounds; Bernstein with exact 4th moments (every sketch enumerated), alpha = 1e-3",
          lambda ctx: check_round_variance(ctx.runner, rounds=ctx.profile.unbiased_rounds), True),
    Claim("alg1.sketch_fixed", "one sketch per client and round: the k selected columns of B and the same k rows of A move, nothing else",
          "exact: H = 4 local steps, one client, k = 1..r-1", lambda ctx: alg.check_sketch_fixed(ctx.runner), True),
    Claim("alg1.forms_agree", "submatrix client == full-size masked client; upload k_i(m+n) floats",
          "exact: 3 rounds, N = 3, SGD (the reference's two forms)", lambda ctx: alg.check_forms_agree(ctx.runner), True),
    Claim("alg1.stationary_point", "FSLoRA settles at a stationary point of f^S, not of f",
          "halve gamma at fixed gamma T: late ||grad f^S||^2 x<=0.75, late ||grad f||^2 x>=0.9",
          lambda ctx: check_stationary(ctx.runner, ctx.profile.host, ctx.profile.stationary_seeds, ctx.seeds), True),
    Claim("thm4.4.bound", "(1/T) sum_t E||grad f^S(X^t)||^2 <= Theorem 4.4 RHS when gamma <= its limit",
          "long runs (LHS falls >= 10x), reference constants incl. [BS; A], one-sided 95% UCB",
          lambda ctx: thm.theorem_status(ctx.theorem()), True),
    Claim("thm4.4.above_limit", "behaviour above the step-size limit (the theorem says nothing there)",
          "runs at 4x, 32x, 256x the reference's limit",
          lambda ctx: thm.above_limit(ctx.runner, ctx.profile.host, ctx.seeds, ctx.profile.above_limit_rounds), True),
    Claim("cor4.5.rate", "at gamma = sqrt(N/(THL-tilde)), T >= T_min: LHS <= RHS at every T, decaying like T^-1/2",
          "3 values of T inside the condition, reference constants; T exponent fitted (bootstrap CI)",
          lambda ctx: ctx.corollary()[0], True),
    Claim("cor4.5.speedup", "at gamma = sqrt(N/(THL-tilde)) and fixed T, doubling N or H divides the LHS by ~sqrt(2) "
          "(the corollary's linear speed-up in N and H)",
          "(N, H), (2N, H), (N, 2H) at cor4.5.rate's largest T; exponent of the LHS, bootstrap CI vs -1/2 +- 0.25",
          lambda ctx: _speedup(ctx), True),
    Claim("cor4.5.fedavg", "k_i = r recovers FedAvg (identical iterates; sigma_s^2 = 0; L-bar = L-tilde = L)",
          "exact: each round vs plain NumPy FedAvg (theory/exact/fedavg.py)",
          lambda ctx: alg.check_fedavg(ctx.runner), True),
    # -- the toolkit's own H = 1 bound (not the paper's; derivation in docs/spec.md and notebook 06) --
    Claim("ours.h1.a_posteriori", "ours, H = 1, full batch: (1/T) sum E||grad f^S||^2 <= [f^S(X^0) - E f^S(X^T)] / "
          "(gamma q T) + (L_S gamma / 2q) avg E V, q = 1 - L_S gamma/2, gamma < 2/L_S",
          "gamma L_S x T grids, 2 families; per-seed LHS - RHS, one-sided t-bounds (Bonferroni); L_S from the reference",
          ours.check_bound("a_posteriori"), True),
    Claim("ours.h1.a_priori", "ours: the same with a certified f* <= inf f^S for E f^S(X^T) and the reference's E V",
          "same grids; f*: exact least-squares minimum / dual certificate (logistic); one-sided t-bounds",
          ours.check_bound("a_priori"), True),
    Claim("ours.h1.steps_on_runs", "ours, along the implementation's runs: E<grad f^S, g_t> = ||grad f^S||^2 and "
          "E||g_t||^2 = ||grad f^S||^2 + V (steps 1 and 3 of the derivation)",
          "martingale means per seed, two-sided t-tests, Bonferroni, alpha = 1e-3", ours.check_steps_on_runs, True),
    Claim("ours.h1.steps_exact", "ours: every step of the derivation (E[g] = grad f^S, E||g - grad f^S||^2 = V, "
          "Hessian, segment curvature, T = 1 equality with the realised curvature)",
          "exact: every joint index set of a round enumerated (reference white-box round), 2 families",
          ours.check_exact_steps),
    Claim("ours.h1.curvature", "ours: the realised curvature of every reference step is <= L_S of its segment",
          "exact secants vs certified (least squares) / dense-point (logistic) segment curvature",
          lambda ctx: as_identity(ours.check_curvature(ctx), "L_S is computed on the very segments whose realised "
                                  "curvature it is compared with (certified for least squares): only a coding error "
                                  "of the toolkit fails it")),
    Claim("ours.h1.step_size", "ours: at equal T, the largest step our bound covers reaches a smaller average "
          "||grad f^S||^2 than Theorem 4.4's gamma_max", "reference runs of the grids; our step conclusive a posteriori",
          ours.check_step_size),
    Claim("ours.general_h.a_priori", "ours, H > 1, full batch: (1/T) sum E||grad f^S||^2 <= [2 gap/(gamma H T) + (1+2a) "
          "kappa (delta_h^2 + sigma_s^2) + 2a sigma_s^2/N] / (1 - 2a - (1+2a) kappa (1+c_h)), a = L-bar gamma H, kappa = "
          "(gamma (H-1)/2)^2 e^{2 gamma l_max H} mean l_i^2, l_i = L r^2/k_i^2 (drift bounded, not measured)",
          "reference runs at Theorem 4.4's gamma, heterogeneity sweep, reference constants; UCB95 of the LHS vs the bound",
          lambda ctx: ours_general_h.check(GENERAL_H, ctx.profile.general_h, ctx.seeds)),
    Claim("ours.general_h.drift", "ours, H > 1: the a-posteriori inequality with the measured client drift holds "
          "(not an a-priori theorem); drift realised vs Theorem 4.4's drift term",
          "least squares, reference runs; drift exact from the iterates and the law's index sets",
          lambda ctx: as_identity(ours.check_drift(ctx), "the drift e_t is defined as whatever the round did beyond "
                                  "the H = 1 direction, so the inequality holds for any round by construction "
                                  "(theory/ours_drift.py)")),
]


def _speedup(ctx) -> Result:
    ev = ctx.corollary()[0].evidence
    T = max(r["T"] for r in ev["runs"])
    return check_speedup(ctx.runner, ctx.profile.corollary, T, ev["L_tilde_pilot"], ctx.profile.corollary_seeds)


def _run_claim(claim: Claim, ctx: Context) -> Result:
    """claim.check(ctx); an exception raised while running the implementation under test makes the
    claim violated (with the error), since a correct FSLoRA round does not raise on these problems."""
    if not claim.through_impl:
        return claim.check(ctx)
    try:
        return claim.check(ctx)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:   # noqa: BLE001 -- any failure of the implementation is the claim's counterexample
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return Result(VIOLATED, f"{ctx.runner.name} raised {type(exc).__name__}: {str(exc)[:160]}",
                      {"exception": f"{type(exc).__name__}: {exc}", "raised_at": f"{where.filename}:{where.lineno}",
                       "traceback": traceback.format_exception(exc)[-6:]})


def steps(quick: bool, only=None, impl: bool = False) -> int:
    """The number of progress steps of :func:`run_all`.

    One per claim, one per Theorem 4.4 setting, one per step size of the ``ours.*`` grids (twice with an
    implementation under test: its runs and the reference's).

    Parameters
    ----------
    quick : bool
        The quick profile.
    only : collection of str, optional
        The claim ids run (None: all).
    impl : bool, optional
        Whether an implementation other than the reference is checked.

    Returns
    -------
    int
    """
    ids = [c.id for c in CLAIMS if only is None or c.id in only]
    profile = QUICK if quick else FULL
    grids = [c for c in ids if c.startswith("ours.h1.") and c != "ours.h1.steps_exact"]
    on_impl = any(c in grids for c in ("ours.h1.a_posteriori", "ours.h1.a_priori", "ours.h1.steps_on_runs"))
    return (len(ids) + (len(profile.theorem) if "thm4.4.bound" in ids else 0)
            + (ours.grid_steps(quick) + (ours.grid_steps(quick, impl=True) if impl and on_impl else 0) if grids else 0))


def run_all(quick: bool = False, progress=None, only=None, impl=None):
    """Run every registered claim (or the ids in ``only``).

    Parameters
    ----------
    quick : bool, optional
        The quick profile.
    progress : object, optional
        Told ``update(1, text)`` after each claim and each long step.
    only : collection of str, optional
        The claim ids to run (None: all).
    impl : object, optional
        The implementation under test (an Algorithm, a conformance-protocol object, a round runner);
        None: the reference.

    Returns
    -------
    results : list of tuple
        ``[(Claim, theory.result.Result, seconds)]`` in registry order.
    ctx : Context
        The context the claims shared (its runs feed the report's figures).
    """
    ctx = Context(quick, impl)
    ctx.progress = progress
    out = []
    with reuse_sketch_draws():   # the claims re-run the same rounds at many step sizes: draw each sketch once
        for claim in CLAIMS:
            if only is not None and claim.id not in only:
                continue
            start = time.perf_counter()
            result = _run_claim(claim, ctx)
            out.append((claim, result, time.perf_counter() - start))
            if progress is not None:
                progress.update(1, claim.id)
    return out, ctx
