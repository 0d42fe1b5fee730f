"""Early divergence detection: stop a run whose loss blows up, naming the round, the client,
the algorithm and the step size to lower.

After every round the run compares the global loss f(X^{t+1}) with its initial value f(X^0):
the run has diverged if any recorded value is non-finite or

    f(X^{t+1}) > DIVERGENCE_FACTOR * f(X^0)          (DIVERGENCE_FACTOR = 1e4)

It then decides who blew up: a client whose own full-data loss after local training exceeds
DIVERGENCE_FACTOR times its loss at the broadcast model (or is non-finite) diverged locally,
so the client step size ``lr`` (``--lr``) is too large; otherwise the server step did, and it
is ``server_lr`` (``--server-lr``) when a server optimiser is used, ``lr`` otherwise.
"""
from __future__ import annotations

import numpy as np

from .client import DivergenceError
from .lora import LayerFactors

DIVERGENCE_FACTOR = 1e4

LR_HINT = "lower the client step size (lr, --lr; now {lr:g})"
SERVER_LR_HINT = "lower the server step size (server_lr, --server-lr; now {server_lr:g})"


def step_size_hint(config, server_side: bool) -> str:
    """Which option to change after a divergence.

    Parameters
    ----------
    config : FedConfig
        The run's configuration (its optimisers and step sizes).
    server_side : bool
        Whether the server step (not a client's local training) diverged.

    Returns
    -------
    str
        The server's step size if the server step diverged and a server optimiser is in use,
        the clients' otherwise, with its current value.
    """
    if server_side and config.server_optimizer != "none":
        return SERVER_LR_HINT.format(server_lr=config.server_lr)
    return LR_HINT.format(lr=config.lr)


def client_loss(problem, client: int, factors) -> float:
    """f_i on the full data at LayerFactors (coeff and dense offset included).

    Parameters
    ----------
    problem : Problem
        The problem.
    client : int
        The client i.
    factors : list of LayerFactors
        One per layer.

    Returns
    -------
    float
        Possibly non-finite (floating-point warnings silenced).
    """
    with np.errstate(all="ignore"):
        return float(problem.loss_and_factor_grads(client, factors)[0])


def local_blow_up(problem, plans, uploads, factor: float):
    """The participant whose full-data loss grew most in local training.

    Parameters
    ----------
    problem : Problem
        The problem.
    plans : list of ClientPlan
        The round's plans (the factors each client started from).
    uploads : list of Upload
        The round's uploads (the trained factors).
    factor : float
        Growth (loss after / loss before) above this counts as divergence.

    Returns
    -------
    worst : tuple
        (client, loss before, loss after).
    diverged : bool
        Whether its growth exceeds ``factor``.
    """
    worst, worst_ratio = None, -np.inf
    for plan, up in zip(plans, uploads):
        before = client_loss(problem, plan.client, plan.factors)
        trained = [LayerFactors(B, A, f.coeff, f.delta) for (B, A), f in zip(up.trained, plan.factors)]
        after = client_loss(problem, plan.client, trained)
        ratio = np.inf if not np.isfinite(after) else after / max(before, np.finfo(float).tiny)
        if ratio > worst_ratio:
            worst, worst_ratio = (plan.client, before, after), ratio
    return worst, bool(worst_ratio > factor)


def diverged(row: dict, initial_loss: float, factor: float | None) -> bool:
    """Whether a history row shows divergence.

    Parameters
    ----------
    row : dict
        One round's recorded values (``"loss"`` among them).
    initial_loss : float
        f(X^0).
    factor : float or None
        The limit on loss / initial loss (None: only non-finite values count).

    Returns
    -------
    bool
        True for any non-finite recorded number, or a loss above ``factor`` x the initial loss
        (when that is positive).
    """
    values = [v for v in row.values() if isinstance(v, (int, float, np.floating))]
    if not all(np.isfinite(values)):
        return True
    return factor is not None and initial_loss > 0 and row["loss"] > factor * initial_loss


def raise_divergence(algorithm, problem, config, round_index, row, initial_loss, plans, uploads, factor):
    """Raise DivergenceError naming the algorithm, round, client and the option to change.

    Parameters
    ----------
    algorithm : Algorithm
        The algorithm (named).
    problem : Problem
        The problem.
    config : FedConfig
        The run's configuration (the step-size hint).
    round_index : int
        The round that diverged.
    row : dict
        Its recorded values.
    initial_loss : float
        f(X^0).
    plans : list of ClientPlan
        The round's plans.
    uploads : list of Upload
        The round's uploads.
    factor : float or None
        The divergence factor (None: ``DIVERGENCE_FACTOR`` for the local check).

    Raises
    ------
    DivergenceError
        Always.
    """
    (client, before, after), local = local_blow_up(problem, plans, uploads, factor or DIVERGENCE_FACTOR)
    head = (f"{algorithm.name} diverged in round {round_index}: global loss {row['loss']:.4g} "
            f"(initial {initial_loss:.4g}; the limit is {factor or DIVERGENCE_FACTOR:g}x the initial loss)")
    if local:
        raise DivergenceError(f"{head}; client {client}'s local training took its loss from {before:.4g} to "
                              f"{after:.4g} in H = {config.local_steps} steps: {step_size_hint(config, False)}")
    raise DivergenceError(f"{head}; no client diverged locally (client {client} grew most, {before:.4g} -> "
                          f"{after:.4g}), the aggregated model did: {step_size_hint(config, True)}")
