"""Runs for the convergence claims: the implementation's trajectories, the reference's constants.

A *setting* fixes the problem (family, N, heterogeneity, batch) and the run (r, k_i, H, T). Every
seed starts from the same X^0 (the reference's PEFT-style init: random B, A = 0); the seeds vary the
sketches, so averages over seeds estimate the theorem's expectations.

Two roles, kept apart so that a wrong implementation cannot excuse itself:

* :func:`run_seeds` runs *the implementation under test* (any round runner, see
  :mod:`theory.implementations`) and records, at every iterate, ||grad f^S||^2, ||grad f||^2, f^S and
  the heterogeneity max_i ||grad f_i^S - grad f^S||^2 (exact, :func:`theory.exact.sketch_batch.point_stats`);
* :func:`reference_constants` measures L, sigma_s^2, sigma_g^2, c_h / delta_h^2, f* and f^S(X^0) on
  the *reference's* runs only: every client at a subsample of the server iterates, at the local points
  of the subsampled rounds (replayed exactly: every draw is keyed by (seed, round, client)), and, for L,
  at every sketched point [B S; A] of each client's sketch law (Proposition D.4).

Both are cached per process (they are pure functions of their arguments), so checking many
implementations pays for the reference once.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats as sstats

from fslora_ref.algorithms import get_algorithm
from fslora_ref.client import DivergenceError
from fslora_ref.config import FedConfig, budgets_from_ratios
from fslora_ref.federation import run_round
from fslora_ref.algorithms.protocol import ServerState
from fslora_ref.lora import scatter
from fslora_ref.problems import make_problem

from .exact import bounds, constants
from .exact.sketch_batch import point_stats
from .implementations import AlgorithmRunner, stack, trajectory

C_H_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SUBSAMPLE_GRID = 24     # server iterates per seed on a uniform grid over [0, T] for L and sigma_s^2 ...
SUBSAMPLE_TOP = 8       # ... plus the iterates with the largest ||B||^2 + ||A||^2 (where curvature peaks)


@dataclass(frozen=True)
class Setting:
    """A setting of the convergence claims: the problem (family, N, heterogeneity, batch) and the run (r, k_i, H, T).

    Hashable (frozen), so runs and constants are cached per setting.

    Parameters
    ----------
    name : str
        The setting's name in reports.
    family : {"least_squares", "logistic"}, optional
        The problem family.
    n_clients : int, optional
        The number of clients N.
    rank : int, optional
        The global rank r.
    ratios : tuple of float, optional
        The sketching ratios k_i / r (spread over the clients, ``budgets_from_ratios``).
    local_steps : int, optional
        The number of local steps H.
    rounds : int, optional
        The number of rounds T.
    heterogeneity : float, optional
        The problem's heterogeneity across clients.
    batch_size : int or None, optional
        The minibatch size (None: full batch).
    problem_seed : int, optional
        The seed of the problem's data.
    dims : tuple of int, optional
        (m, n): input and output (or class) dimensions.
    mean_size : int, optional
        The mean number of samples per client.
    """
    name: str
    family: str = "least_squares"
    n_clients: int = 4
    rank: int = 4
    ratios: tuple = (0.5,)
    local_steps: int = 1
    rounds: int = 1000
    heterogeneity: float = 0.5
    batch_size: int | None = None
    problem_seed: int = 0
    dims: tuple = (8, 5)
    mean_size: int = 32

    def problem(self):
        """The setting's problem (cached per process).

        Returns
        -------
        fslora_ref.problems.Problem
        """
        return _problem(self.family, self.n_clients, self.dims, self.heterogeneity, self.batch_size, self.problem_seed,
                        self.mean_size)

    @property
    def budgets(self) -> tuple:
        return tuple(budgets_from_ratios(self.rank, self.ratios, self.n_clients))

    def config(self, lr: float, seed: int = 0) -> FedConfig:
        """The run's configuration at step size ``lr``.

        Parameters
        ----------
        lr : float
            The step size gamma.
        seed : int, optional
            The run seed.

        Returns
        -------
        fslora_ref.config.FedConfig
        """
        return FedConfig(rank=self.rank, budgets=self.budgets, local_steps=self.local_steps, lr=lr,
                         rounds=self.rounds, seed=seed)

    def init_layers(self) -> list:
        """X^0, the same for every seed: the reference's init (B random, A = 0) with seed 0.

        Returns
        -------
        list of (ndarray, ndarray)
            ``[(B: (m, r), A: (r, n))]``.
        """
        return get_algorithm("fslora").init(self.problem(), self.config(0.1)).layers

    def describe(self) -> str:
        """The setting in one line, for reports.

        Returns
        -------
        str
        """
        return (f"{self.family}, N={self.n_clients}, r={self.rank}, k_i/r={list(self.ratios)}, H={self.local_steps}, "
                f"heterogeneity {self.heterogeneity}, " + ("full batch" if self.batch_size is None else
                                                           f"batch {self.batch_size}"))


@functools.lru_cache(maxsize=16)
def _problem(family, n_clients, dims, heterogeneity, batch_size, seed, mean_size):
    m, n = dims
    out = "n" if family == "least_squares" else "n_classes"
    return make_problem(family, n_clients=n_clients, m=m, **{out: n}, mean_size=mean_size, heterogeneity=heterogeneity,
                        batch_size=batch_size, seed=seed)


@dataclass
class Runs:
    """``seeds`` runs of one implementation at one (setting, lr) over ``rounds`` rounds.

    Parameters
    ----------
    setting : Setting
        The setting.
    lr : float
        The step size.
    rounds : int
        The number of rounds T.
    runner : str
        The implementation's name.
    points : list, optional
        Per seed ``(Bs: (T+1, m, r), As: (T+1, r, n))``.
    stats : list of theory.exact.sketch_batch.PointStats, optional
        Per seed, the statistics over X^0..X^T.
    diverged : str, optional
        "" or the first divergence (then the later seeds are missing).
    """

    setting: Setting
    lr: float
    rounds: int
    runner: str
    points: list = field(default_factory=list)     # per seed (Bs: (T+1, m, r), As: (T+1, r, n))
    stats: list = field(default_factory=list)      # per seed PointStats over X^0..X^T
    diverged: str = ""

    @property
    def seeds(self) -> int:
        return len(self.stats)

    def grad_sq(self, which: str = "sketched") -> np.ndarray:
        """``||grad f^S(X^t)||^2`` (or ``||grad f||^2``) for t < T, per seed.

        Parameters
        ----------
        which : {"sketched", "plain"}, optional
            f^S or f.

        Returns
        -------
        ndarray, shape (seeds, T)
        """
        key = "grad_sq_sketched" if which == "sketched" else "grad_sq_plain"
        return np.array([getattr(s, key)[:self.rounds] for s in self.stats])

    def lhs_per_seed(self, T: int | None = None) -> np.ndarray:
        """The LHS of Theorem 4.4 per seed: ``(1/T) sum_{t<T} ||grad f^S(X^t)||^2``.

        Parameters
        ----------
        T : int or None, optional
            The horizon (None: all rounds).

        Returns
        -------
        ndarray, shape (seeds,)
        """
        return self.grad_sq()[:, :T or self.rounds].mean(axis=1)

    def lhs_curve(self) -> np.ndarray:
        """The mean over seeds of ``(1/T) sum_{t<T} ||grad f^S(X^t)||^2`` for T = 1..rounds.

        Returns
        -------
        ndarray, shape (rounds,)
        """
        g = self.grad_sq()
        return (np.cumsum(g, axis=1) / np.arange(1, g.shape[1] + 1)).mean(axis=0)

    def late(self, which: str = "sketched", fraction: float = 0.25) -> np.ndarray:
        """The per-seed mean of ``||grad f^S||^2`` (or ``||grad f||^2``) over the last ``fraction`` of the rounds.

        Parameters
        ----------
        which : {"sketched", "plain"}, optional
            f^S or f.
        fraction : float, optional
            The share of the rounds at the end (at least one round).

        Returns
        -------
        ndarray, shape (seeds,)
        """
        g = self.grad_sq(which)
        return g[:, -max(1, int(round(fraction * g.shape[1]))):].mean(axis=1)

    def initial_grad_sq(self) -> float:
        """``||grad f^S(X^0)||^2`` (the same for every seed).

        Returns
        -------
        float
            NaN if no seed ran.
        """
        return float(self.stats[0].grad_sq_sketched[0]) if self.stats else float("nan")


def ucb95(x) -> float:
    """The one-sided 95 % upper confidence bound on the mean of ``x`` (Student t over seeds).

    Parameters
    ----------
    x : array_like, shape (S,)
        Per-seed values.

    Returns
    -------
    float
        NaN for fewer than 2 values.

    Examples
    --------
    >>> from theory.experiment import ucb95
    >>> ucb95([2.0, 2.0, 2.0])
    2.0
    >>> round(ucb95([1.0, 3.0]), 3)
    8.314
    """
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return float("nan")
    return float(x.mean() + sstats.t.ppf(0.95, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))


def run_seeds(runner, setting: Setting, lr: float, seeds: int, rounds: int | None = None) -> Runs:
    """The implementation's runs with config seeds 1..``seeds`` from X^0, with the statistics at every iterate.

    Each (setting, lr, rounds, seed) run is computed once per runner (the reference's once per process),
    so claims sharing runs, or asking for fewer seeds, pay nothing extra. Stops at the first seed that
    diverges.

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    setting : Setting
        The problem and run.
    lr : float
        The step size.
    seeds : int
        The number of seeds.
    rounds : int or None, optional
        T (None: ``setting.rounds``).

    Returns
    -------
    Runs
    """
    rounds = setting.rounds if rounds is None else rounds
    if runner.is_reference:
        runner, cache = AlgorithmRunner(), _REFERENCE_RUNS
    else:
        cache = runner.__dict__.setdefault("cache", {})
    out = Runs(setting, lr, rounds, runner.name)
    for seed in range(1, seeds + 1):
        key = (_run_key(setting), float(lr), rounds, seed)
        if key not in cache:
            cache[key] = _seed_run(runner, setting, lr, rounds, seed)
        result = cache[key]
        if isinstance(result, str):
            out.diverged = result
            return out
        out.points.append(result[0])
        out.stats.append(result[1])
    return out


def _run_key(setting: Setting) -> Setting:
    """What one seed's run depends on besides (lr, rounds, seed): the setting without its name and its
    nominal T, so that claims naming the same run differently (``cor4.5``'s base ratio, say) share it."""
    return replace(setting, name="", rounds=0)


def reference_runs(setting: Setting, lr: float, seeds: int, rounds: int) -> Runs:
    """The reference's runs (shared by every claim and every implementation checked in this process).

    Parameters
    ----------
    setting : Setting
        The problem and run.
    lr : float
        The step size.
    seeds : int
        The number of seeds.
    rounds : int
        The number of rounds T.

    Returns
    -------
    Runs
    """
    return run_seeds(AlgorithmRunner(), setting, lr, seeds, rounds)


_REFERENCE_RUNS: dict = {}


def _seed_run(runner, setting, lr, rounds, seed):
    """((Bs, As), PointStats) of one seed, or the divergence message."""
    problem = setting.problem()
    config = setting.config(lr, seed).replace(rounds=rounds)
    try:
        pts = trajectory(runner, problem, config, setting.init_layers())
    except DivergenceError as exc:
        return f"seed {seed}: {exc}"
    Bs, As = stack(pts)
    return (Bs, As), point_stats(problem, Bs, As, config.lora_scaling, setting.budgets)


# -- the reference's constants ------------------------------------------------------------------
class _Recorder:
    """The problem, recording the factors of every local gradient evaluation (client, [(B, A)])."""

    def __init__(self, problem):
        self._problem, self.calls = problem, []

    def __getattr__(self, name):
        return getattr(self._problem, name)

    def loss_and_factor_grads(self, client, factors, batch=None):
        self.calls.append((client, [(f.B.copy(), f.A.copy()) for f in factors]))
        return self._problem.loss_and_factor_grads(client, factors, batch)


def _full_point(layers, block, indices):
    """X with the client's (B_I, A_I) block put back at I (a full-size block is used as is)."""
    out = []
    for (B, A), (bB, bA), I in zip(layers, block, indices):
        if bB.shape == B.shape:
            out.append((bB, bA))
        else:
            B2, A2 = B.copy(), A.copy()
            B2[:, I], A2[I, :] = bB, bA
            out.append((B2, A2))
    return out


def local_points(problem, config: FedConfig, layers, round_index: int) -> list:
    """The points of one reference round replayed from X^t where clients evaluated local gradients.

    Every point where a client evaluated a local gradient after the first (which is X^t), and its end
    point ``X^t + scatter(delta_i)``.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        The problem.
    config : fslora_ref.config.FedConfig
        The run's configuration (its seed keys the round's draws).
    layers : list of (ndarray, ndarray)
        X^t, ``[(B: (m, r), A: (r, n))]``.
    round_index : int
        The round t.

    Returns
    -------
    list of (int, list)
        ``[(client, X)]``.
    """
    recorder = _Recorder(problem)
    algorithm = get_algorithm("fslora")
    state = ServerState([(B.copy(), A.copy()) for B, A in layers])
    _, plans, uploads = run_round(algorithm, state, recorder, config, round_index)
    indices = {plan.client: plan.indices for plan in plans}
    out, seen = [], set()
    for client, block in recorder.calls:
        if client in seen:
            out.append((client, _full_point(layers, block, indices[client])))
        seen.add(client)
    for plan, up in zip(plans, uploads):
        ends = [scatter(B.shape, A.shape, uB, uA, I) for (B, A), (uB, uA), I in zip(layers, up.deltas, plan.indices)]
        out.append((plan.client, [(B + dB, A + dA) for (B, A), (dB, dA) in zip(layers, ends)]))
    return out


def subsample(Bs, As, grid: int = SUBSAMPLE_GRID, top: int = SUBSAMPLE_TOP) -> np.ndarray:
    """The iterates where constants are measured: a uniform grid plus the ``top`` largest ``||B||^2 + ||A||^2``.

    Parameters
    ----------
    Bs : ndarray, shape (T+1, m, r)
        The B factors of one run's iterates.
    As : ndarray, shape (T+1, r, n)
        The A factors.
    grid : int, optional
        The size of the uniform grid.
    top : int, optional
        The number of largest iterates added (where curvature peaks).

    Returns
    -------
    ndarray of int
        Sorted iterate indices.
    """
    T = Bs.shape[0] - 1
    size = np.sum(Bs * Bs, axis=(1, 2)) + np.sum(As * As, axis=(1, 2))
    chosen = set(np.linspace(0, T, min(grid, T + 1)).round().astype(int).tolist())
    chosen |= set(np.argsort(size)[-top:].tolist())
    return np.array(sorted(chosen))


@dataclass
class Constants:
    """The reference's constants for one (setting, lr, T): values with how they were obtained.

    ``consts[name]`` is the value of ``values[name]``.

    Parameters
    ----------
    values : dict
        ``{name: theory.exact.constants.Constant}``: ``L``, ``sigma_s2``, ``sigma_g2``, ``f_star``,
        ``fS_X0``, ``L_bar``, ``L_tilde``.
    heterogeneity : theory.exact.constants.Heterogeneity
        The Assumption 4.3 data at every iterate.
    """

    values: dict                      # name -> constants.Constant
    heterogeneity: constants.Heterogeneity

    def __getitem__(self, name) -> float:
        return self.values[name].value

    def rhs(self, setting: Setting, lr: float, T: int, c_h: float, rhs_fn=bounds.theorem_rhs) -> dict:
        """Theorem 4.4's RHS with these constants at (lr, T) for one c_h.

        Parameters
        ----------
        setting : Setting
            The problem and run.
        lr : float
            The step size.
        T : int
            The number of rounds.
        c_h : float
            The heterogeneity constant (delta_h^2 is the smallest valid one for it).
        rhs_fn : callable, optional
            The RHS (signature of :func:`theory.exact.bounds.theorem_rhs`).

        Returns
        -------
        dict
            ``rhs`` and its terms.
        """
        return rhs_fn(gap=self["fS_X0"] - self["f_star"], gamma=lr, T=T, H=setting.local_steps, L=self["L"],
                      r=setting.rank, budgets=setting.budgets, sigma_g2=self["sigma_g2"], sigma_s2=self["sigma_s2"],
                      sigma_h2=self.heterogeneity.delta2(c_h))

    def step_limit(self, setting: Setting, c_h: float) -> float:
        """Theorem 4.4's step-size limit with these constants for one c_h.

        Parameters
        ----------
        setting : Setting
            The problem and run.
        c_h : float
            The heterogeneity constant.

        Returns
        -------
        float
        """
        return bounds.step_size_limit(self["L"], setting.rank, setting.budgets, setting.local_steps, c_h)

    def choose_c_h(self, setting: Setting, lr: float, T: int, rhs_fn=bounds.theorem_rhs):
        """The c_h that gives the smallest RHS among those whose step-size limit admits ``lr``.

        Every (c_h, delta_h^2(c_h)) pair of ``C_H_GRID`` is valid; if none admits ``lr``, the one with the
        largest limit.

        Parameters
        ----------
        setting : Setting
            The problem and run.
        lr : float
            The step size.
        T : int
            The number of rounds.
        rhs_fn : callable, optional
            The RHS (signature of :func:`theory.exact.bounds.theorem_rhs`).

        Returns
        -------
        c_h : float
        gamma_max : float
        rhs : dict
            The RHS and its terms at that c_h.
        """
        best = None
        for c_h in C_H_GRID:
            gmax = self.step_limit(setting, c_h)
            rhs = self.rhs(setting, lr, T, c_h, rhs_fn)
            key = (lr > gmax, rhs["rhs"] if lr <= gmax else -gmax)
            if best is None or key < best[0]:
                best = (key, c_h, gmax, rhs)
        return best[1:]

    def to_json(self) -> dict:
        """The constants as a JSON-ready dict.

        Returns
        -------
        dict
            ``{name: {"value", "method", "note"}}``.
        """
        return {k: v.to_json() for k, v in self.values.items()}


@functools.lru_cache(maxsize=64)
def reference_constants(setting: Setting, lr: float, seeds: int, rounds: int) -> Constants:
    """The constants measured on the reference's runs at (setting, lr, rounds), cached per process.

    Measured for every client at the subsampled server iterates, at the local points of those rounds
    and, for L, at every sketched point of each client's law (see the module docstring).

    Parameters
    ----------
    setting : Setting
        The problem and run.
    lr : float
        The step size.
    seeds : int
        The number of seeds.
    rounds : int
        The number of rounds T.

    Returns
    -------
    Constants

    Raises
    ------
    fslora_ref.client.DivergenceError
        If the reference itself diverged.
    """
    runs = reference_runs(setting, lr, seeds, rounds)
    if runs.diverged:
        raise DivergenceError(f"the reference diverged at gamma={lr:.4g} on {setting.name}: {runs.diverged}")
    problem = setting.problem()
    budgets, s = setting.budgets, setting.config(lr).lora_scaling
    server, local = [], []
    for seed, (Bs, As) in enumerate(runs.points, start=1):
        config = setting.config(lr, seed)
        for t in subsample(Bs, As):
            X = [(Bs[t], As[t])]
            server.append(X)
            if t < rounds:
                local += local_points(problem, config, X, int(t))
    pairs = constants.every_client(problem, server) + local
    het = constants.Heterogeneity([float(a) for st in runs.stats for a in st.heterogeneity],
                                  [float(g) for st in runs.stats for g in st.grad_sq_sketched])
    L = constants.smoothness(problem, pairs, s, budgets=budgets)
    fstar = constants.lower_bound(problem)
    f0 = float(runs.stats[0].value_sketched[0])
    note = f"reference runs, {seeds} seeds x {rounds} rounds at gamma={lr:.4g}: max over a subsample"
    L.note = f"{note}; {L.note}"
    values = {"L": L,
              "sigma_s2": constants.sketch_variance(problem, pairs, s, budgets),
              "sigma_g2": constants.minibatch_variance(problem, pairs, s, budgets),
              "f_star": fstar, "fS_X0": constants.Constant(f0, "exact", "f^S at the common X^0"),
              "L_bar": constants.Constant(bounds.L_bar(L.value, setting.rank, budgets), L.method, "(1/N) sum r/k_i L"),
              "L_tilde": constants.Constant(bounds.L_tilde(L.value, setting.rank, budgets), L.method,
                                            "(1/N) sum r^2/k_i^2 L")}
    values["sigma_s2"].note = f"{note}; {values['sigma_s2'].note}"
    return Constants(values, het)


@functools.lru_cache(maxsize=16)
def reference_step(setting: Setting, seeds: int, rounds: int, safety: float = 0.9, attempts: int = 4):
    """A step size inside Theorem 4.4's condition for the constants of the reference's own runs at that step size.

    A pilot run at 0.01 gives a first limit; gamma is set to ``safety`` x the limit (c_h = 0, the
    largest) and shrunk until the measured condition holds. Cached per process.

    Parameters
    ----------
    setting : Setting
        The problem and run.
    seeds : int
        The number of seeds.
    rounds : int
        The number of rounds T.
    safety : float, optional
        The fraction of the limit used.
    attempts : int, optional
        The number of shrinking attempts.

    Returns
    -------
    gamma : float
    constants : Constants
        The reference's constants at gamma.
    within : bool
        Whether gamma is inside the condition.
    """
    pilot = reference_constants(setting, 0.01, 1, max(rounds // 4, 50))
    lr = safety * pilot.step_limit(setting, 0.0)
    for _ in range(attempts):
        consts = reference_constants(setting, lr, seeds, rounds)
        _, gmax, _ = consts.choose_c_h(setting, lr, rounds)
        if lr <= gmax:
            return lr, consts, True
        lr = safety * min(gmax, lr)
    return lr, consts, False
