"""General H: what client drift does to the toolkit's bound, measured (no a-priori theorem is claimed).

With H local steps, u_t = (X^t - X^{t+1}) / (gamma H) = g_t + e_t where g_t = (1/N) sum_i grad f~_i(X^t; S_i^t)
is the H = 1 direction for the round's own sketches and e_t the client drift. ``theory.ours.bound``
proves, for L_S gamma H < 1/2,

    (1/T) sum E||grad f^S||^2 <= [2 gap / (gamma H T) + (1 + 2 L_S gamma H) D + 2 L_S gamma H V] / (1 - 2 L_S gamma H),

D = (1/T) sum E||e_t||^2. D is *measured* here (exactly, from the iterates and the reported index
sets), so this is an a-posteriori inequality, not a bound in terms of the problem's constants: the
step that would make it one (bounding D by gamma^2 H^2 times local smoothness and gradient norms) is
exactly where Theorem 4.4 spends its drift term. This module reports, side by side, the drift actually
realised, its share in the inequality above, and Theorem 4.4's drift term 12 (gamma L~/N)(sigma_g^2 +
sigma_s^2 + 3 delta_h^2) at the same (gamma, H, T).

g_t uses the index sets the reference draws for (seed, round, client) (``ours_runs.law_index_sets``):
keyed independently of the iterates, they are a draw from the sketch law whatever the round did, which
is all the derivation needs. Because e_t is whatever the round did beyond g_t, a biased round's bias
is counted as drift: the inequality holds for any round, so it checks the derivation (a wrong
``rhs_fn`` fails it), not the implementation; ``fslora verify`` runs it on the reference only, and the
claims ``ours.h1.*`` run on the implementation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fslora_ref.sketch import Sketch

from ..exact.lower_bounds import certified_lower_bound
from ..exact.sketch_batch import flatten, instance_grads
from .bound import general_h_rhs, mean_bound
from .experiment import Grid, measure, pilot
from .paper import paper_constants, paper_rhs
from .runs import law_index_sets, run_seeds


@dataclass
class DriftRow:
    """One (H, gamma) of the drift study at horizon T.

    Parameters
    ----------
    H : int
        The local steps.
    label : str
        How gamma was chosen.
    gamma : float
        The step size.
    T : int
        The horizon.
    L_S : float
        The curvature bound over the runs' segments.
    lhs : ndarray, shape (S,)
        The per-seed LHS ``(1/T) sum_t ||grad f^S(X^t)||^2``.
    drift : float
        ``D = mean ||e_t||^2``.
    cross : float
        ``mean <grad f^S(X^t), e_t>``.
    noise : float
        ``mean V(X^t)``.
    ours : dict
        The general-H inequality's terms (``{}`` when L_S gamma H >= 1/2).
    paper : dict
        Theorem 4.4's terms at (gamma, H, T).
    """
    H: int
    label: str
    gamma: float
    T: int
    L_S: float
    lhs: np.ndarray
    drift: float            # D = mean ||e_t||^2
    cross: float            # mean <grad f^S(X^t), e_t>
    noise: float            # mean V(X^t)
    ours: dict              # general-H inequality terms ({} when L_S gamma H >= 1/2)
    paper: dict             # Theorem 4.4 terms at (gamma, H, T)

    def to_json(self) -> dict:
        """The row as a JSON-ready dict.

        Returns
        -------
        dict
            The row's numbers, the LHS mean and UCB95, both bounds' tightness (LHS UCB / RHS) and the
            drift's share of the toolkit's inequality.
        """
        ucb = mean_bound(self.lhs)
        out = {"H": self.H, "step": self.label, "gamma": self.gamma, "T": self.T, "L_S": self.L_S,
               "L_S_gamma_H": self.L_S * self.gamma * self.H, "lhs_mean": float(self.lhs.mean()), "lhs_ucb95": ucb,
               "drift_realised": self.drift, "drift_cross_term": self.cross, "noise": self.noise,
               "paper": self.paper, "paper_drift_term": self.paper.get("drift"),
               "paper_tightness": ucb / self.paper["rhs"] if self.paper else None}
        if self.ours:
            out.update(ours=self.ours, ours_tightness=ucb / self.ours["rhs"],
                       drift_share_ours=self.ours["drift"] / self.ours["rhs"])
        return out


def drift_of_runs(problem, config, runs) -> tuple[np.ndarray, np.ndarray]:
    """The client drift of every round, and the H = 1 direction with the round's own sketches.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem.
    config : fslora_ref.config.FedConfig
        The runs' configuration (lr, H, scale, budgets).
    runs : theory.ours.runs.Runs
        The runs (B: (S, T+1, m, r), A: (S, T+1, r, n)).

    Returns
    -------
    e : ndarray, shape (S, T, d)
        ``u_t - g_t``, the drift.
    g : ndarray, shape (S, T, d)
        ``g_t = (1/N) sum_i grad f~_i(X^t; S_i^t)``.
    """
    S, T1 = runs.B.shape[:2]
    T = T1 - 1
    r = runs.B.shape[3]
    diags = np.zeros((S, T, config.n_clients, r))
    for s_, seed in enumerate(runs.seeds):
        for t in range(T):
            for i, I in enumerate(law_index_sets(config, seed, t, config.n_clients)):
                diags[s_, t, i] = Sketch(r, I).diagonal()
    B, A = runs.B[:, :T].reshape(S * T, *runs.B.shape[2:]), runs.A[:, :T].reshape(S * T, *runs.A.shape[2:])
    g = instance_grads(problem, config.lora_scaling, B, A, diags.reshape(S * T, config.n_clients, r)).mean(axis=1)
    X = flatten(runs.B.reshape(S * T1, *runs.B.shape[2:]), runs.A.reshape(S * T1, *runs.A.shape[2:])).reshape(S, T1, -1)
    u = (X[:, :-1] - X[:, 1:]) / (config.lr * config.local_steps)
    g = g.reshape(S, T, -1)
    return u - g, g


def drift_study(setting, Hs=(2, 4), gamma_LH=(0.05, 0.2), rounds: int = 600, seeds: int = 4, *, runner=None,
                paper_step: bool = True, rhs_fn=general_h_rhs, progress=None) -> list:
    """Measure the client drift for each H at several step sizes (see the module docstring).

    For each H: runs at the paper's gamma_max (Theorem 4.4's condition at this H, constants of a pilot
    run of the reference) and at gamma = g / (L_pilot H) for each g in ``gamma_LH``.

    Parameters
    ----------
    setting : theory.experiment.Setting
        The base setting (its local steps are replaced by each H).
    Hs : sequence of int, optional
        The local steps studied.
    gamma_LH : sequence of float, optional
        The nominal gamma L_pilot H values.
    rounds : int, optional
        The horizon T.
    seeds : int, optional
        The number of seeds.
    runner : object, optional
        The implementation whose runs are measured (None: the reference; L_S from those runs).
    paper_step : bool, optional
        Whether to include the paper's gamma_max.
    rhs_fn : callable, optional
        The general-H inequality (signature of :func:`theory.ours.bound.general_h_rhs`).
    progress : object, optional
        Told ``update(1, text)`` after each (H, gamma).

    Returns
    -------
    list of DriftRow
        One per (H, gamma).
    """
    rows = []
    for H in Hs:
        st = replace(setting, local_steps=H)
        problem = st.problem()
        config = st.config(0.1)
        f_star = certified_lower_bound(problem)
        L_pilot, gmax, _ = pilot(problem, config, Grid(st, pilot_rounds=60))
        plan = ([("paper gamma_max", gmax)] if paper_step else []) + [(f"gamma L_pilot H = {g:g}", g / (L_pilot * H))
                                                                      for g in gamma_LH]
        for label, gamma in plan:
            cfg = config.replace(lr=float(gamma))
            runs = run_seeds(problem, cfg, rounds, range(1, seeds + 1), runner)
            m = measure(problem, cfg, runs)
            e, _ = drift_of_runs(problem, cfg, m.runs)
            T = m.rounds
            grad = m.batch.grad.reshape(len(m.runs.seeds), T + 1, -1)[:, :T]
            lhs = m.grad_sq[:, :T].mean(axis=1)
            gap = float(np.mean(m.value[:, 0] - m.value[:, T]))
            noise = float(m.variance[:, :T].mean())
            D = float(np.mean(np.sum(e * e, axis=2)))
            L_S = m.curvature.L_S()
            ours = (rhs_fn(gap=gap, gamma=gamma, H=H, T=T, L_S=L_S, noise=noise, drift=D)
                    if L_S * gamma * H < 0.5 else {})
            consts = paper_constants(problem, cfg.lora_scaling, cfg.budgets, m.runs.B, m.runs.A, m.batch)
            pap = paper_rhs(consts, gap=float(m.value[0, 0]) - f_star.value, gamma=gamma, T=T, r=st.rank,
                            budgets=cfg.budgets, H=H)
            rows.append(DriftRow(H, label, float(gamma), T, L_S, lhs, D, float(np.mean(np.sum(grad * e, axis=2))),
                                 noise, ours, pap))
            if progress is not None:
                progress.update(1, f"H={H} {label}")
    return rows
