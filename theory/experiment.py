"""Theorem 4.4 and Corollary 4.5 on real runs: trajectories over seeds, measured constants, bounds.

A *setting* fixes the problem (family, N, heterogeneity, batch size) and the run (r, k_i, H, T).
The initial point X^0 is the same for every seed (drawn with ``init_seed``); the seeds vary
the sketches and minibatches, so the average over seeds estimates the expectation in the
theorem. Constants are measured over every point the runs visit: each client at every server
iterate X^t, and each client at every local iterate of its own rounds (the points where it
evaluated a gradient, and its end point X^t + scatter(delta_i)).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import sqrt

import numpy as np
from scipy import stats

from fslora_ref.algorithms import get_algorithm
from fslora_ref.client import DivergenceError
from fslora_ref.config import FedConfig, budgets_from_ratios
from fslora_ref.federation import run_round
from fslora_ref.lora import scatter
from fslora_ref.problems import make_problem

from . import bounds, constants
from .sketched_objective import global_sketched

C_H_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class Setting:
    name: str
    family: str = "least_squares"
    n_clients: int = 4
    rank: int = 4
    ratios: tuple = (0.5,)
    local_steps: int = 2
    rounds: int = 12
    heterogeneity: float = 0.5
    batch_size: int | None = 8
    problem_seed: int = 0
    dims: tuple = (8, 5)

    def problem(self):
        m, n = self.dims
        out = "n" if self.family == "least_squares" else "n_classes"
        return make_problem(self.family, n_clients=self.n_clients, m=m, **{out: n}, mean_size=32,
                            heterogeneity=self.heterogeneity, batch_size=self.batch_size, seed=self.problem_seed)

    def config(self, lr: float, seed: int = 0) -> FedConfig:
        return FedConfig(rank=self.rank, budgets=budgets_from_ratios(self.rank, self.ratios, self.n_clients),
                         local_steps=self.local_steps, lr=lr, rounds=self.rounds, seed=seed)


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


def trajectory(problem, config: FedConfig, init_layers, algorithm=None):
    """Server iterates X^0..X^T and the clients' local points [(client, X)] of one run from
    ``init_layers``: every point where a client evaluated a local gradient (after the first,
    which is X^t) and the client's end point, each as a full-size X."""
    algorithm = algorithm or get_algorithm("fslora")
    recorder = _Recorder(problem)
    state = algorithm.init(problem, config)
    state.layers = [(B.copy(), A.copy()) for B, A in init_layers]
    server, local = [state.layers], []
    for t in range(config.rounds):
        recorder.calls.clear()
        new, plans, uploads = run_round(algorithm, state, recorder, config, t)
        indices = {plan.client: plan.indices for plan in plans}
        seen = set()
        for client, block in recorder.calls:
            if client in seen:       # the first evaluation of each client is at X^t itself
                local.append((client, _full_point(state.layers, block, indices[client])))
            seen.add(client)
        for plan, up in zip(plans, uploads):
            end = [(B + dB, A + dA) for (B, A), (dB, dA) in
                   ((pair, scatter(pair[0].shape, pair[1].shape, uB, uA, I))
                    for pair, (uB, uA), I in zip(state.layers, up.deltas, plan.indices))]
            local.append((plan.client, end))
        state = new
        server.append(state.layers)
    return server, local


@dataclass
class Outcome:
    """Everything measured for one setting at one step size."""

    setting: Setting
    lr: float
    seeds: int
    lhs_per_seed: list = field(default_factory=list)
    lhs_curve: list = field(default_factory=list)     # mean over seeds of (1/t) sum_{s<t} ||grad f^S||^2
    constants: dict = field(default_factory=dict)
    c_h: float = 0.0
    gamma_max: float = float("nan")
    rhs: dict = field(default_factory=dict)
    rhs_curve: list = field(default_factory=list)
    diverged: str = ""

    @property
    def lhs_mean(self) -> float:
        return float(np.mean(self.lhs_per_seed)) if self.lhs_per_seed else float("nan")

    @property
    def lhs_ucb(self) -> float:
        """One-sided 95% upper confidence bound on E[LHS] (Student t over seeds)."""
        x = np.asarray(self.lhs_per_seed)
        if x.size < 2:
            return float("nan")
        return float(x.mean() + stats.t.ppf(0.95, x.size - 1) * x.std(ddof=1) / sqrt(x.size))

    @property
    def tightness(self) -> float:
        """UCB95(LHS) / RHS (inf when the RHS is 0 and the LHS is not)."""
        rhs = self.rhs["rhs"]
        return self.lhs_ucb / rhs if rhs > 0 else (0.0 if self.lhs_ucb <= 0 else float("inf"))

    @property
    def within_conditions(self) -> bool:
        return not self.diverged and self.lr <= self.gamma_max

    def to_json(self) -> dict:
        return {"setting": self.setting.name, "family": self.setting.family, "N": self.setting.n_clients,
                "H": self.setting.local_steps, "T": self.setting.rounds, "r": self.setting.rank,
                "ratios": list(self.setting.ratios), "heterogeneity": self.setting.heterogeneity,
                "batch_size": self.setting.batch_size, "gamma": self.lr, "gamma_max": self.gamma_max,
                "seeds": self.seeds, "lhs_mean": self.lhs_mean, "lhs_ucb95": self.lhs_ucb,
                "rhs": self.rhs.get("rhs"), "rhs_terms": self.rhs, "c_h": self.c_h,
                "tightness": self.tightness if self.rhs else None,
                "constants": {k: v.to_json() if hasattr(v, "to_json") else v for k, v in self.constants.items()},
                "diverged": self.diverged}


def evaluate(setting: Setting, lr: float, seeds: int, *, init_seed: int = 0, algorithm=None,
             rhs_fn=bounds.theorem_rhs) -> Outcome:
    """Run ``seeds`` seeds at step ``lr`` from one X^0, measure the LHS exactly per iterate and
    every constant over the visited region; compute gamma_max and the Theorem 4.4 RHS."""
    problem = setting.problem()
    cfg0 = setting.config(lr, init_seed)
    algo = algorithm or get_algorithm("fslora")
    init_layers = algo.init(problem, cfg0).layers
    s, budgets, T, H = cfg0.lora_scaling, cfg0.budgets, setting.rounds, setting.local_steps
    out = Outcome(setting, lr, seeds)
    server_points, local_pairs, curves = [], [], []
    het = constants.Heterogeneity()    # Assumption 4.3 data at every server iterate of every seed
    for seed in range(seeds):
        try:
            server, local = trajectory(problem, setting.config(lr, seed + 1), init_layers, algo)
        except DivergenceError as exc:
            out.diverged = f"seed {seed + 1}: {exc}"
            return out
        if not all(np.all(np.isfinite(B)) and np.all(np.isfinite(A)) for L_ in server for B, A in L_):
            out.diverged = f"seed {seed + 1}: non-finite iterates"
            return out
        seed_het = constants.heterogeneity(problem, server, s, budgets)
        sq = np.array(seed_het.g[:T])          # ||grad f^S(X^t)||^2, t < T
        out.lhs_per_seed.append(float(sq.mean()))
        curves.append(np.cumsum(sq) / np.arange(1, T + 1))
        het.a += seed_het.a
        het.g += seed_het.g
        server_points += server
        local_pairs += local
    out.lhs_curve = list(np.mean(curves, axis=0))
    pairs = constants.every_client(problem, server_points) + local_pairs
    L = constants.smoothness(problem, pairs, s)
    sg = constants.minibatch_variance(problem, pairs, s, budgets)
    ss = constants.sketch_variance(problem, pairs, s, budgets)
    fstar = constants.lower_bound(problem)
    f0, _ = global_sketched(problem, init_layers, s, budgets)
    gap = f0 - fstar.value
    out.constants = {"L": L, "sigma_g2": sg, "sigma_s2": ss, "f_star": fstar,
                     "fS_X0": constants.Constant(f0, "exact", "f^S at the common X^0"),
                     "L_bar": constants.Constant(bounds.L_bar(L.value, setting.rank, budgets), L.method),
                     "L_tilde": constants.Constant(bounds.L_tilde(L.value, setting.rank, budgets), L.method)}
    # choose c_h from a grid: each (c_h, delta_h^2(c_h)) is valid; keep the smallest RHS that
    # admits the step size, or the largest step-size limit if none does
    best = None
    for c_h in C_H_GRID:
        gmax = bounds.step_size_limit(L.value, setting.rank, budgets, H, c_h)
        rhs = rhs_fn(gap=gap, gamma=lr, T=T, H=H, L=L.value, r=setting.rank, budgets=budgets,
                     sigma_g2=sg.value, sigma_s2=ss.value, sigma_h2=het.delta2(c_h))
        key = (lr > gmax, rhs["rhs"] if lr <= gmax else -gmax)
        if best is None or key < best[0]:
            best = (key, c_h, gmax, rhs)
    _, out.c_h, out.gamma_max, out.rhs = best
    out.constants["c_h"] = constants.Constant(out.c_h, "exact at points", f"chosen from grid {C_H_GRID}")
    out.constants["delta_h2"] = constants.Constant(het.delta2(out.c_h), "exact at points",
                                                   f"smallest valid for c_h over {len(het.a)} server iterates")
    out.rhs_curve = [rhs_fn(gap=gap, gamma=lr, T=t, H=H, L=L.value, r=setting.rank, budgets=budgets,
                            sigma_g2=sg.value, sigma_s2=ss.value, sigma_h2=het.delta2(out.c_h))["rhs"]
                     for t in range(1, T + 1)]
    return out


def within_limit(setting: Setting, seeds: int, *, safety: float = 0.5, attempts: int = 4, **kw) -> Outcome:
    """Evaluate at a step size satisfying Theorem 4.4's condition for the constants measured on
    the run itself: start from the limit at a pilot run and shrink until the condition holds."""
    lr = 0.05
    pilot = evaluate(setting, lr, 2, **kw)
    lr = safety * pilot.gamma_max if pilot.gamma_max == pilot.gamma_max else 1e-3
    out = None
    for _ in range(attempts):
        out = evaluate(setting, lr, seeds, **kw)
        if out.within_conditions:
            return out
        lr = safety * min(out.gamma_max, lr) if out.gamma_max == out.gamma_max else lr * safety
    return out
