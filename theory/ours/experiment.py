"""The toolkit's H = 1 bound on real runs: a grid of step sizes and horizons, exact measurements, cells.

    result = run_grid(LS_GRID)                               # the reference, all quantities exact
    result = run_grid(LS_GRID, runner=runner, reference=ref) # an implementation under test (a round runner)

Per step size gamma, ``seeds`` runs of T rounds from one X^0 go through ``runner`` (a round runner of
:mod:`theory.implementations`; default: the reference's real FSLoRA). At every iterate f^S, grad f^S and V
are computed exactly (``theory.exact.sketch_batch``); L_S over the visited segments comes from the
*reference's* runs (``theory.exact.curvature``) so that an implementation under test cannot excuse itself
with its own curvature. Each horizon T (a prefix of the runs) is a *cell*:

* LHS per seed: (1/T) sum_{t<T} ||grad f^S(X^t)||^2 (exact); its one-sided 95% upper confidence bound
  over seeds (Student t) divided by a bound is that bound's *tightness*;
* a posteriori: per seed [f^S(X^0) - f^S(X^T)] / (gamma q T) + (L_S gamma / 2q) avg_t V(X^t), q = 1 - L_S gamma/2,
  on the implementation's own iterates (the bound holds per trajectory once E is taken, see
  ``theory.ours.bound``); the paired difference LHS - RHS per seed has mean <= 0 for FSLoRA;
* a priori: [f^S(X^0) - f*] / (gamma q T) + (L_S gamma / 2q) avg_t E V(X^t) with the certified f* and
  E V from the reference;
* Theorem 4.4's RHS at the same (gamma, T) with its constants measured on the reference's runs;
* derivation steps on the run: mean over t of <grad f^S(X^t), g_t> - ||grad f^S(X^t)||^2 (step 1) and of
  ||g_t||^2 - ||grad f^S||^2 - V (step 3), both martingale sums with mean 0 per seed for FSLoRA, and the
  identity: the a-posteriori RHS with L_S replaced by the realised curvature.

The step sizes are set from a pilot run: the paper's gamma_max (Theorem 4.4's condition with the
pilot's constants) and gamma = g / L_pilot for each nominal g in ``gamma_L``; every cell reports the
gamma L_S actually realised (L_S grows with gamma: larger steps visit more curved regions).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fslora_ref.algorithms import get_algorithm

from ..exact.curvature import segment_curvature, secant_curvature
from ..exact.lower_bounds import certified_lower_bound
from ..exact.sketch_batch import evaluate, flatten
from ..exact.sketch_hessian import lambda_max
from ..experiment import Setting
from ..implementations import runner_for
from .bound import h1_rhs, identity_rhs, mean_bound, within_step_limit
from .paper import paper_constants, paper_rhs, paper_step_limit
from .runs import run_seeds

LS_SETTING = Setting("ours-ls", family="least_squares", dims=(6, 5), ratios=(0.25, 0.5, 0.75, 1.0), local_steps=1,
                     batch_size=None)
LG_SETTING = Setting("ours-lg", family="logistic", dims=(6, 3), ratios=(0.25, 0.5, 0.75, 1.0), local_steps=1,
                     batch_size=None)
PAPER = "paper gamma_max"


@dataclass
class Measured:
    """Exact quantities along the runs of one step size.

    Parameters
    ----------
    runs : theory.ours.runs.Runs
        The runs measured.
    value : ndarray, shape (S, T+1)
        f^S at the iterates.
    grad_sq : ndarray, shape (S, T+1)
        ``||grad f^S||^2`` at the iterates.
    variance : ndarray, shape (S, T+1)
        V at the iterates.
    inner : ndarray, shape (S, T)
        ``<grad f^S(X^t), g_t>``, ``g_t = (X^t - X^{t+1}) / gamma``.
    step_sq : ndarray, shape (S, T)
        ``||g_t||^2``.
    secant : ndarray, shape (S, T)
        The realised curvature of each step.
    batch : theory.exact.sketch_batch.SketchedBatch or None
        The exact quantities of all S (T+1) points (dropped once no longer needed).
    curvature : theory.exact.curvature.SegmentCurvature, optional
        L_S over the segments (reference runs only).
    """

    runs: object
    value: np.ndarray
    grad_sq: np.ndarray
    variance: np.ndarray
    inner: np.ndarray          # <grad f^S(X^t), g_t>, g_t = (X^t - X^{t+1}) / gamma
    step_sq: np.ndarray        # ||g_t||^2
    secant: np.ndarray         # realised curvature of each step
    batch: object              # the SketchedBatch of all S (T+1) points
    curvature: object = None   # SegmentCurvature (reference runs only)

    @property
    def gamma(self) -> float:
        return self.runs.lr

    @property
    def rounds(self) -> int:
        return self.value.shape[1] - 1

    def realised_curvature(self, T: int) -> float:
        """The curvature that makes step 4 exact: ``sum kappa_t ||g_t||^2 / sum ||g_t||^2`` over t < T and seeds.

        Parameters
        ----------
        T : int
            The horizon.

        Returns
        -------
        float
            0 if no step moved.
        """
        w = self.step_sq[:, :T]
        return float(np.sum(self.secant[:, :T] * w) / np.sum(w)) if np.sum(w) > 0 else 0.0


def measure(problem, config, runs, *, curvature: bool = True, curvature_method=None) -> Measured:
    """Exact f^S, grad f^S and V at every iterate of ``runs``, the steps, and L_S over the segments.

    Iterates that are finite but so large that f^S overflows count as divergence: the runs are cut to
    the rounds every seed completed with finite values, and ``runs.diverged`` says where.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem.
    config : fslora_ref.config.FedConfig
        The runs' configuration.
    runs : theory.ours.runs.Runs
        The runs.
    curvature : bool, optional
        Whether to compute L_S (:func:`theory.exact.curvature.segment_curvature`).
    curvature_method : str or None, optional
        Its method ("certified" or "points"; None: the family's default).

    Returns
    -------
    Measured
    """
    S, T1 = runs.B.shape[:2]
    s, budgets = config.lora_scaling, config.budgets
    with np.errstate(over="ignore", invalid="ignore"):
        batch = evaluate(problem, s, budgets, runs.B.reshape(S * T1, *runs.B.shape[2:]),
                         runs.A.reshape(S * T1, *runs.A.shape[2:]))
        finite = np.isfinite(batch.value) & np.isfinite(batch.grad_sq) & np.isfinite(batch.variance)
    bad = np.flatnonzero(~finite.reshape(S, T1).all(axis=0))
    if bad.size:
        keep = int(bad[0]) - 1
        runs = runs.prefix(max(keep, 0))
        runs.diverged = runs.diverged or f"f^S overflowed at round {keep + 1}"
        return measure(problem, config, runs, curvature=curvature, curvature_method=curvature_method)
    flatB, flatA = runs.B.reshape(S * T1, *runs.B.shape[2:]), runs.A.reshape(S * T1, *runs.A.shape[2:])
    X = flatten(flatB, flatA).reshape(S, T1, -1)
    steps = X[:, 1:] - X[:, :-1]
    grad = batch.grad.reshape(S, T1, -1)
    value = batch.value.reshape(S, T1)
    g = -steps / runs.lr
    curv = segment_curvature(problem, s, budgets, runs.B, runs.A, method=curvature_method) if curvature else None
    return Measured(runs, value, batch.grad_sq.reshape(S, T1), batch.variance.reshape(S, T1),
                    np.sum(grad[:, :-1] * g, axis=2), np.sum(g * g, axis=2), secant_curvature(value, grad, steps),
                    batch, curv)


def run_and_measure(problem, config, rounds: int, seeds, runner=None, *, curvature: bool = True,
                    progress=None) -> Measured:
    """Run ``rounds`` rounds per seed (:func:`theory.ours.runs.run_seeds`) and :func:`measure` them.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem.
    config : fslora_ref.config.FedConfig
        The runs' configuration.
    rounds : int
        The rounds T.
    seeds : iterable of int
        The run seeds.
    runner : object, optional
        The implementation (None: the reference).
    curvature : bool, optional
        Whether to compute L_S.
    progress : object, optional
        Told ``update(1, text)`` after each seed.

    Returns
    -------
    Measured
    """
    runs = run_seeds(problem, config, rounds, seeds, runner, progress=progress)
    return measure(problem, config, runs, curvature=curvature)


@dataclass
class Cell:
    """One (step size, horizon T) of the grid, for the implementation under test.

    Parameters
    ----------
    setting : str
        The setting's name.
    family : str
        The problem family.
    label : str
        How gamma was chosen.
    gamma : float
        The step size.
    T : int
        The horizon.
    L_S : float
        The reference's curvature bound over the first T rounds.
    L_S_method : str
        How L_S was obtained.
    lhs : ndarray, shape (S,)
        The per-seed LHS.
    rhs_post_seed : ndarray, shape (S,)
        The per-seed a-posteriori RHS.
    post : dict
        The a-posteriori RHS terms at the seed means.
    prior : dict
        The a-priori RHS terms.
    f_star : theory.exact.constants.Constant
        The certified lower bound f*.
    kappa : float
        The realised curvature (implementation's runs, t < T).
    identity : float
        The a-posteriori RHS with kappa in place of L_S.
    step1 : ndarray, shape (S,)
        ``mean_t <grad f^S, g_t> - ||grad f^S||^2``.
    step3 : ndarray, shape (S,)
        ``mean_t ||g_t||^2 - ||grad f^S||^2 - V``.
    lhs_start : float
        ``||grad f^S(X^0)||^2``.
    final_grad_sq : float
        The mean over seeds of ``||grad f^S(X^T)||^2``.
    paper : dict, optional
        Theorem 4.4's RHS terms at (gamma, T).
    diverged : str, optional
        Why the implementation did not complete T rounds (then LHS = inf).
    """

    setting: str
    family: str
    label: str
    gamma: float
    T: int
    L_S: float
    L_S_method: str
    lhs: np.ndarray             # (S,) per-seed LHS
    rhs_post_seed: np.ndarray   # (S,) per-seed a-posteriori RHS
    post: dict                  # a-posteriori RHS terms at the seed means
    prior: dict                 # a-priori RHS terms
    f_star: object
    kappa: float                # realised curvature (implementation's runs, t < T)
    identity: float             # a-posteriori RHS with kappa in place of L_S
    step1: np.ndarray           # (S,) mean_t <grad f^S, g_t> - ||grad f^S||^2
    step3: np.ndarray           # (S,) mean_t ||g_t||^2 - ||grad f^S||^2 - V
    lhs_start: float            # ||grad f^S(X^0)||^2
    final_grad_sq: float        # mean over seeds of ||grad f^S(X^T)||^2
    paper: dict = field(default_factory=dict)
    diverged: str = ""          # the implementation did not complete T rounds (LHS = inf)

    @property
    def gamma_L(self) -> float:
        return self.gamma * self.L_S

    @property
    def within(self) -> bool:
        return within_step_limit(self.gamma, self.L_S)

    @property
    def lhs_ucb(self) -> float:
        return mean_bound(self.lhs, 0.95, "upper")

    @property
    def tightness_post(self) -> float:
        return self.lhs_ucb / self.post["rhs"] if self.within else float("nan")

    @property
    def tightness_prior(self) -> float:
        return self.lhs_ucb / self.prior["rhs"] if self.within else float("nan")

    @property
    def tightness_paper(self) -> float:
        return self.lhs_ucb / self.paper["rhs"] if self.paper else float("nan")

    def excess(self, form: str) -> np.ndarray:
        """The per-seed LHS - RHS of one form of the bound: mean <= 0 when the bound holds.

        Parameters
        ----------
        form : {"a_posteriori", "a_priori"}
            The form.

        Returns
        -------
        ndarray, shape (S,)
        """
        return self.lhs - (self.rhs_post_seed if form == "a_posteriori" else self.prior["rhs"])

    def to_json(self) -> dict:
        """The cell as a JSON-ready dict.

        Returns
        -------
        dict
            The cell's numbers, both forms of the bound with their tightness (when inside the step limit),
            and the paper's RHS; a diverged cell gives only what is known.
        """
        if self.diverged:
            return {"setting": self.setting, "family": self.family, "step": self.label, "gamma": self.gamma,
                    "T": self.T, "L_S": self.L_S, "gamma_L_S": self.gamma_L, "diverged": self.diverged,
                    "a_priori": self.prior}
        out = {"setting": self.setting, "family": self.family, "step": self.label, "gamma": self.gamma, "T": self.T,
               "seeds": int(self.lhs.size), "L_S": self.L_S, "L_S_method": self.L_S_method, "gamma_L_S": self.gamma_L,
               "within_step_limit": self.within, "lhs_mean": float(self.lhs.mean()), "lhs_ucb95": self.lhs_ucb,
               "lhs_start": self.lhs_start, "lhs_decay_factor": self.lhs_start / float(self.lhs.mean()),
               "final_grad_sq": self.final_grad_sq, "f_star": self.f_star.to_json(),
               "realised_curvature": self.kappa, "realised_over_L_S": self.kappa / self.L_S,
               "identity_rhs": self.identity, "identity_gap": self.identity / float(self.lhs.mean()) - 1.0,
               "step1_mean": float(self.step1.mean()), "step3_mean": float(self.step3.mean())}
        if self.within:
            out.update(a_posteriori=dict(self.post, tightness=self.tightness_post),
                       a_priori=dict(self.prior, tightness=self.tightness_prior))
        if self.paper:
            out["paper"] = {k: v for k, v in self.paper.items()}
            out["paper"]["tightness"] = self.tightness_paper
        return out


def _prefix_terms(m: Measured, T: int):
    lhs = m.grad_sq[:, :T].mean(axis=1)
    gap = m.value[:, 0] - m.value[:, T]
    noise = m.variance[:, :T].mean(axis=1)
    return lhs, gap, noise


def make_cells(setting: Setting, label: str, impl: Measured, ref: Measured, Ts, f_star, paper=None, r=None,
               budgets=None) -> list:
    """The cells of one step size at the horizons ``Ts``.

    LHS and a-posteriori pieces come from ``impl``; L_S, the a-priori noise and the paper's constants
    from ``ref``.

    Parameters
    ----------
    setting : theory.experiment.Setting
        The setting.
    label : str
        How gamma was chosen.
    impl : Measured
        The implementation's runs.
    ref : Measured
        The reference's runs (with curvature).
    Ts : sequence of int
        The horizons (cut to the runs' length).
    f_star : theory.exact.constants.Constant
        The certified lower bound.
    paper : dict, optional
        :func:`theory.ours.paper.paper_constants` (None: no paper column).
    r : int, optional
        The rank (for the paper's RHS).
    budgets : sequence of int, optional
        The sketch sizes (for the paper's RHS).

    Returns
    -------
    list of Cell
    """
    out = []
    gamma = impl.gamma
    for T in Ts:
        T = min(int(T), ref.rounds)
        L_S = ref.curvature.L_S(T)
        _, _, ref_noise = _prefix_terms(ref, T)
        f0 = float(ref.value[0, 0])
        pap = paper_rhs(paper, gap=f0 - f_star.value, gamma=gamma, T=T, r=r, budgets=budgets) if paper else {}
        prior = (h1_rhs(gap=f0 - f_star.value, gamma=gamma, T=T, L_S=L_S, noise=float(ref_noise.mean()))
                 if within_step_limit(gamma, L_S) else {})
        if impl.rounds < T:      # the implementation diverged where the reference did not
            S = impl.value.shape[0]
            inf, nan = np.full(S, np.inf), np.full(S, np.nan)
            out.append(Cell(setting.name, setting.family, label, gamma, T, L_S, ref.curvature.method, inf, nan,
                            {}, prior, f_star, np.nan, np.nan,
                            nan, nan, float(impl.grad_sq[:, 0].mean()), np.inf, pap, impl.runs.diverged))
            continue
        lhs, gap, noise = _prefix_terms(impl, T)
        kappa = impl.realised_curvature(T)
        if prior:
            per_seed = np.array([h1_rhs(gap=g, gamma=gamma, T=T, L_S=L_S, noise=v)["rhs"] for g, v in zip(gap, noise)])
            post = h1_rhs(gap=float(gap.mean()), gamma=gamma, T=T, L_S=L_S, noise=float(noise.mean()))
        else:
            per_seed, post = np.full(lhs.shape, np.nan), {}
        step1 = np.mean(impl.inner[:, :T] - impl.grad_sq[:, :T], axis=1)
        step3 = np.mean(impl.step_sq[:, :T] - impl.grad_sq[:, :T] - impl.variance[:, :T], axis=1)
        out.append(Cell(setting.name, setting.family, label, gamma, T, L_S, ref.curvature.method, lhs, per_seed, post,
                        prior, f_star, kappa, identity_rhs(gap=float(gap.mean()), gamma=gamma, T=T, kappa=kappa,
                                                           noise=float(noise.mean())),
                        step1, step3, float(impl.grad_sq[:, 0].mean()), float(impl.grad_sq[:, T].mean()), pap))
    return out


@dataclass(frozen=True)
class Grid:
    """What to run: nominal gamma L_pilot values (plus the paper's gamma_max), horizons and seeds.

    Parameters
    ----------
    setting : theory.experiment.Setting
        The problem and run.
    gamma_L : tuple of float, optional
        The nominal gamma L_pilot values.
    rounds : int, optional
        The rounds of every run.
    Ts : tuple of int, optional
        The horizons of the cells.
    seeds : int, optional
        The seeds per step size.
    paper_step : bool, optional
        Whether to also run at the paper's gamma_max.
    pilot_rounds : int, optional
        The rounds of the pilot run.
    pilot_seeds : int, optional
        The seeds of the pilot run.
    """

    setting: Setting
    gamma_L: tuple = (0.1, 0.3, 0.6)
    rounds: int = 1000
    Ts: tuple = (100, 300, 1000)
    seeds: int = 8
    paper_step: bool = True
    pilot_rounds: int = 100
    pilot_seeds: int = 2


LS_GRID = Grid(LS_SETTING, gamma_L=(0.1, 0.3, 0.6), rounds=600, Ts=(100, 600), seeds=5)
# seeds: enough that a cell whose mean LHS is 1.2x its bound is violated (theory.ours.checks.detectable_ratio <= 1.2
# on the reference's spread; the logistic grid's spread is the widest)
LG_GRID = Grid(LG_SETTING, gamma_L=(0.1, 0.5), rounds=300, Ts=(100, 300), seeds=6)
QUICK_LS_GRID = Grid(LS_SETTING, gamma_L=(0.3,), rounds=200, Ts=(200,), seeds=4, pilot_rounds=40)
QUICK_LG_GRID = Grid(LG_SETTING, gamma_L=(0.3,), rounds=120, Ts=(120,), seeds=5, pilot_rounds=30, paper_step=False)


@dataclass
class GridResult:
    """A grid run through one implementation.

    Parameters
    ----------
    grid : Grid
        What was run.
    L_pilot : float
        The pilot's curvature bound.
    paper_gamma_max_pilot : float
        The paper's gamma_max from the pilot's constants.
    f_star : theory.exact.constants.Constant
        The certified lower bound.
    steps : list of dict
        Per step size: ``label``, ``gamma``, ``ref`` and ``impl`` (:class:`Measured`) and ``paper``
        (the paper's constants).
    cells : list of Cell
        Every (step size, horizon).
    """
    grid: Grid
    L_pilot: float
    paper_gamma_max_pilot: float
    f_star: object
    steps: list                 # per step size: {"label", "gamma", "ref": Measured, "impl": Measured, "paper": consts}
    cells: list


def pilot(problem, config, grid: Grid):
    """A short reference run at gamma = 0.1 / lambda_max(X^0), setting the grid's step sizes.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem.
    config : fslora_ref.config.FedConfig
        The grid's configuration.
    grid : Grid
        The grid (its pilot rounds and seeds).

    Returns
    -------
    L_pilot : float
        The pilot run's L_S.
    gamma_max : float
        The paper's gamma_max from the pilot's constants.
    L0 : float
        lambda_max of the Hessian of f^S at X^0.
    """
    (B0, A0), = get_algorithm("fslora").init(problem, config).layers
    L0 = float(lambda_max(problem, config.lora_scaling, config.budgets, B0[None], A0[None])[0])
    cfg = config.replace(lr=0.1 / L0)
    m = run_and_measure(problem, cfg, grid.pilot_rounds, range(1, grid.pilot_seeds + 1))
    consts = paper_constants(problem, config.lora_scaling, config.budgets, m.runs.B, m.runs.A, m.batch)
    return m.curvature.L_S(), paper_step_limit(consts, grid.setting.rank, config.budgets, config.local_steps), L0


def run_grid(grid: Grid, *, runner=None, reference: GridResult | None = None, progress=None) -> GridResult:
    """Run the grid through ``runner``, with L_S, f*, the a-priori noise and the paper's constants from the reference.

    Parameters
    ----------
    grid : Grid
        What to run.
    runner : object, optional
        The implementation (a round runner; None: the reference).
    reference : GridResult, optional
        The reference's result of the same grid, to reuse (else the reference is run).
    progress : object, optional
        Told ``update(1, text)`` after each step size.

    Returns
    -------
    GridResult

    Raises
    ------
    ValueError
        If ``reference`` is of another grid.
    """
    runner = runner_for(runner)
    problem = grid.setting.problem()
    config = grid.setting.config(0.1)
    if reference is not None and reference.grid != grid:
        raise ValueError("reference must be a GridResult of the same grid")
    if reference is None:
        f_star = certified_lower_bound(problem)
        L_pilot, gmax_paper, _ = pilot(problem, config, grid)
        plan = ([(PAPER, gmax_paper)] if grid.paper_step else []) + [(f"gamma L_pilot = {g:g}", g / L_pilot)
                                                                     for g in grid.gamma_L]
    else:
        f_star, L_pilot, gmax_paper = reference.f_star, reference.L_pilot, reference.paper_gamma_max_pilot
        # an implementation runs the grid's own steps; the paper's gamma_max (tiny: the LHS barely moves
        # there, so it adds no power, only Bonferroni cost) is the reference's, for ours.h1.step_size
        plan = [(st["label"], st["gamma"]) for st in reference.steps if runner.is_reference or st["label"] != PAPER]
    seeds = range(1, grid.seeds + 1)
    steps, cells = [], []
    for label, gamma in plan:
        cfg = config.replace(lr=float(gamma))
        if reference is None:
            ref = run_and_measure(problem, cfg, grid.rounds, seeds)
            consts = paper_constants(problem, cfg.lora_scaling, cfg.budgets, ref.runs.B, ref.runs.A, ref.batch)
        else:
            ref, consts = next((st["ref"], st["paper"]) for st in reference.steps if st["label"] == label)
        impl = ref if runner.is_reference else run_and_measure(problem, cfg, grid.rounds, seeds, runner,
                                                                curvature=False)
        steps.append({"label": label, "gamma": float(gamma), "ref": ref, "impl": impl, "paper": consts})
        ref.batch = impl.batch = None      # per-client arrays (S (T+1), N, d): only the paper's constants needed them
        cells += make_cells(grid.setting, label, impl, ref, grid.Ts, f_star, consts, grid.setting.rank, cfg.budgets)
        if progress is not None:
            progress.update(1, f"{grid.setting.name} {label}")
    return GridResult(grid, L_pilot, gmax_paper, f_star, steps, cells)


def bound_curves(step: dict, f_star, r: int, budgets, paper_points: int = 40) -> dict:
    """Per horizon T = 1..rounds for one step size: the mean LHS and both forms of the bound, and Theorem 4.4's RHS.

    Parameters
    ----------
    step : dict
        One entry of :attr:`GridResult.steps`.
    f_star : theory.exact.constants.Constant
        The certified lower bound.
    r : int
        The rank.
    budgets : sequence of int
        The sketch sizes.
    paper_points : int, optional
        The number of log-spaced T at which the paper's RHS is evaluated.

    Returns
    -------
    dict
        ``T``, ``lhs``, ``a_posteriori``, ``a_priori`` (arrays of length T; NaN where gamma L_S(T) >= 2),
        ``paper_T``, ``paper`` and ``grad_sq`` (mean over seeds at every iterate).
    """
    impl, ref, gamma = step["impl"], step["ref"], step["gamma"]
    T = impl.rounds
    Ts = np.arange(1, T + 1)
    lhs = np.cumsum(impl.grad_sq[:, :T].mean(axis=0)) / Ts
    noise_impl = np.cumsum(impl.variance[:, :T].mean(axis=0)) / Ts
    noise_ref = np.cumsum(ref.variance[:, :T].mean(axis=0)) / Ts
    L = np.maximum.accumulate(ref.curvature.bound.max(axis=0))
    q = 1.0 - L * gamma / 2.0
    ok = q > 0
    gap_post = impl.value[:, 0].mean() - impl.value[:, 1:].mean(axis=0)
    f0 = float(ref.value[0, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        post = np.where(ok, gap_post / (gamma * q * Ts) + L * gamma / (2 * q) * noise_impl, np.nan)
        prior = np.where(ok, (f0 - f_star.value) / (gamma * q * Ts) + L * gamma / (2 * q) * noise_ref, np.nan)
    pts = np.unique(np.geomspace(1, T, paper_points).astype(int))
    paper = [paper_rhs(step["paper"], gap=f0 - f_star.value, gamma=gamma, T=int(t), r=r, budgets=budgets)["rhs"]
             for t in pts]
    return {"T": Ts, "lhs": lhs, "a_posteriori": post, "a_priori": prior, "paper_T": pts, "paper": np.array(paper),
            "grad_sq": impl.grad_sq.mean(axis=0)}
