"""Hints that name the cause of a mismatch people actually hit, so that an optimiser effect is
not blamed on the sketch: another client optimiser or server rule (tried against the reference
run with those settings), weight decay on unselected coordinates, an Adam-like step."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .reference import reference_round

ADAMW_DEFAULTS = {"client_optimizer": "adamw", "betas": (0.9, 0.999), "eps": 1e-8}
ALTERNATIVE_CLIENTS = (ADAMW_DEFAULTS, {**ADAMW_DEFAULTS, "weight_decay": 0.01}, {"client_optimizer": "sgd"})
ADAM_DEFAULTS = {"server_optimizer": "adam", "server_betas": (0.9, 0.999), "server_eps": 1e-8}


def relative_error(task, expected, got, region=None) -> float:
    """``max |got - expected| / max |expected - start|`` over the factors.

    Parameters
    ----------
    task : RoundTask
        The round (its starting factors).
    expected : list of tuple of ndarray
        The reference's ``[(B_l, A_l)]``.
    got : list of tuple of ndarray
        The implementation's.
    region : list, optional
        Per layer, the (B columns, A rows) to compare (default: all).

    Returns
    -------
    float
    """
    worst = 0.0
    for l, ((eB, eA), (gB, gA), (B0, A0)) in enumerate(zip(expected, got, task.layers)):
        pairs = ((eB, gB, np.asarray(B0, float)), (eA, gA, np.asarray(A0, float)))
        if region is not None:
            cols, rows = region[l]
            pairs = ((eB[:, cols], gB[:, cols], np.asarray(B0, float)[:, cols]),
                     (eA[rows, :], gA[rows, :], np.asarray(A0, float)[rows, :]))
        for e, g, x0 in pairs:
            if e.size:
                worst = max(worst, float(np.max(np.abs(g - e)) / max(np.max(np.abs(e - x0)), 1e-300)))
    return worst


OPTIMIZERS_KEYS = {"client_optimizer": "client", "server_optimizer": "server"}


def as_declaration(fields: dict) -> dict:
    """The ``optimizers`` dict an implementation would declare RoundTask fields with.

    Parameters
    ----------
    fields : dict
        RoundTask optimiser fields.

    Returns
    -------
    dict
    """
    out = {}
    for key, value in fields.items():
        if isinstance(value, float):
            value = float(f"{value:.4g}")
        out[OPTIMIZERS_KEYS.get(key, key)] = value
    return out


def _changes(task, got):
    return [np.concatenate([np.ravel(np.asarray(g, float) - np.asarray(x, float)) for g, x in zip(gl, xl)])
            for gl, xl in zip(got, task.layers)]


def optimizer_hint(task, got, tol: float, region=None) -> str:
    """'' or '; it matches the reference run with client='adamw', ...: declare it' when another
    client optimiser / server rule reproduces ``got`` (the implementation's [(B, A)] for ``task``,
    whose index_sets are given); else a signature-based hint (sign-like or lr-bounded steps).

    Parameters
    ----------
    task : RoundTask
        The round (its starting factors).
    got : list of tuple of ndarray
        The implementation's new factors.
    tol : float
        The relative tolerance of a match.
    region : list, optional
        Per layer, the (B columns, A rows) to compare (default: all).

    Returns
    -------
    str
        The hint, or "".
    """
    change = np.concatenate(_changes(task, got))
    moved = np.abs(change[np.abs(change) > 1e-12 * max(np.max(np.abs(change)), 1e-300)])
    if moved.size == 0:
        return ""
    step = float(np.median(moved))
    best = (np.inf, None)
    clients = [{}] + [c for c in ALTERNATIVE_CLIENTS if any(getattr(task, k) != v for k, v in c.items())]
    for client in clients:
        averaged = reference_round(replace(task, **client, server_optimizer="average"))
        e = np.concatenate(_changes(task, averaged))
        c = float(change @ e / max(e @ e, 1e-300))
        servers = [{}, {"server_optimizer": "average"}, {**ADAM_DEFAULTS, "server_lr": step}]
        if c > 0:
            servers.append({"server_optimizer": "sgd", "server_lr": c})
        for server in servers:
            fields = {**client, **server}
            if all(getattr(task, k) == v for k, v in fields.items()):
                continue   # the declared settings: already known not to match
            expected = averaged if server.get("server_optimizer") == "average" else \
                reference_round(replace(task, **fields))
            err = relative_error(task, expected, got, region)
            if err < best[0]:
                best = (err, fields)
    # a hint, not a verdict: 1e-3 relative identifies the optimiser even with a fitted server_lr,
    # whose Adam steps lr g/(|g|+eps) differ from lr by eps/|g| coordinate to coordinate; and it
    # must explain the mismatch far better than the declared settings (server sgd at lr 1 is the average)
    declared = relative_error(task, reference_round(task), got, region)
    if best[0] <= max(10 * tol, 1e-3) and best[0] <= 0.01 * declared:
        return (f"; it matches the reference run with optimizers={as_declaration(best[1])} (max error "
                f"{best[0]:.2g}): the implementation's optimiser is not the declared one; declare it (the sketch is not "
                f"at fault)")
    if moved.size >= 4 and np.mean(np.abs(moved - step) <= 0.01 * step) >= 0.9:
        return (f"; every moved coordinate changed by about +-{step:.3g} whatever its gradient: the signature of a "
                f"first Adam step (a server Adam step moves each coordinate by about +-server_lr): declare the "
                f"optimiser (e.g. server='adam', server_lr={step:.3g}), the sketch is not at fault")
    # Adam-type steps are about lr each whatever the gradient; SGD's scale with it
    if task.client_optimizer == "sgd" and np.max(moved) <= 1.05 * task.local_steps * task.lr and step >= 0.25 * task.lr:
        return (f"; no coordinate moved by more than H x lr = {task.local_steps * task.lr:.3g}, as Adam-type steps "
                f"(at most about lr each) do, whereas SGD's change scales with the gradient: an Adam-like client "
                f"optimiser? declare it (client='adamw', betas, eps, weight_decay)")
    return ""


def decay_hint(task, factor: float) -> str:
    """Why coordinates outside the index set moved by ``factor`` x their own value.

    Parameters
    ----------
    task : RoundTask
        The round (its starting factors).
    factor : float
        The measured relative move.

    Returns
    -------
    str
    """
    if factor >= 0:
        return (f"; they moved by +{factor:.4g} x their own value: the factors were rescaled, not trained (weight "
                f"decay would shrink them)")
    H, lr, wd = task.local_steps, task.lr, task.weight_decay
    server = task.server_lr if task.server_optimizer == "sgd" else 1.0
    client_factor = factor / server
    implied = (1.0 - (1.0 + client_factor) ** (1.0 / H)) / lr if client_factor > -1 else float("nan")
    expect = -(1.0 - (1.0 - lr * wd) ** H) * server
    declared = (f"the declared weight decay {wd:g} gives -(1-(1-lr wd)^H) = {expect:.4g}" if wd else
                "the task has no weight decay")
    return (f"; they moved by {factor:.4g} x their own value (weight decay of about {implied:.3g} per step on "
            f"coordinates outside the index set; {declared}): weight decay applied to unselected coordinates (a full-size "
            f"masked optimiser whose gradient is masked but whose decay is not); declare scope='full' if intended")


def _representable(x: np.ndarray, half: str) -> bool:
    x = np.asarray(x, float)
    if not np.all(np.isfinite(x)) or np.max(np.abs(x), initial=0.0) > 6e4:
        return False   # beyond float16's range (and non-finite values say nothing about precision)
    if half == "float16":
        return bool(np.array_equal(x.astype(np.float16).astype(float), x))
    bits = x.astype(np.float32).view(np.uint32)
    return bool(np.array_equal(x.astype(np.float32).astype(float), x) and np.all(bits & 0xFFFF == 0))


def precision_hint(layers) -> str:
    """'' or a hint that every returned factor entry is exactly a float16 / bfloat16 number: the
    implementation computed (or stored) in half precision, whose rounding moves every coordinate
    by up to 2^-11 (float16) / 2^-8 (bfloat16) of its value -- not a mask that leaks.

    Parameters
    ----------
    layers : list of tuple of ndarray
        The returned ``[(B_l, A_l)]``.

    Returns
    -------
    str
    """
    values = [np.asarray(X, float) for pair in layers for X in pair]
    if sum(v.size for v in values) < 8:
        return ""
    for half, unit in (("float16", 2.0 ** -11), ("bfloat16", 2.0 ** -8)):
        if all(_representable(v, half) for v in values):
            return (f": every returned entry is exactly a {half} number, so the factors went through {half} (rounding "
                    f"moves every coordinate by up to {unit:.2g} x its value, unselected ones included): compute in the "
                    f"dtype you declare (impl.dtype float32 or float64), not in half precision")
    return ""


def aggregation_weights_hint(task, weights, uploads=None) -> str:
    """Why a round is not the average: ``weights[i]`` is the fraction of client i's own change that made it
    into the round (1/N each for FSLoRA), measured on the client's own block of the round.

    Parameters
    ----------
    task : RoundTask
        The round (its starting factors).
    weights : array_like, shape (N,)
        The measured fractions.
    uploads : list, optional
        The clients' uploads, if the implementation returned them.

    Returns
    -------
    str
    """
    N = task.n_clients
    w = np.asarray(weights, float)
    shown = "[" + ", ".join(f"{x:.4g}" for x in w) + "]"
    close = lambda a, b: bool(np.all(np.abs(np.asarray(a) - np.asarray(b)) <= 1e-3 * np.max(np.abs(b))))  # noqa: E731
    if N >= 2 and close(w, np.full(N, 1.0 / (N - 1))):
        return (f"; each client's change enters the round with weight {w[0]:.4g} = 1/(N - 1) instead of 1/N = "
                f"{1 / N:.4g}: the sum is divided by N - 1 = {N - 1} (an off-by-one in the average), not a server "
                f"learning rate")
    dropped = np.flatnonzero(np.abs(w) < 1e-3 / N)
    if 0 < dropped.size < N:
        rest = np.delete(w, dropped)
        divisor = f"N - {dropped.size}" if close(rest, np.full(rest.size, 1.0 / (N - dropped.size))) else "N"
        return (f"; client(s) {[int(task.client_ids[i]) for i in dropped]} of {N} left no trace in the round (weights "
                f"{shown}), the others are averaged over {divisor}: a client was dropped (e.g. a loop over "
                f"range(N - 1), or an off-by-one in a client slice)")
    budgets = np.asarray(task.budgets, float)
    if N >= 2 and len(set(task.budgets)) > 1 and close(w, budgets / budgets.sum()):
        return (f"; client i's change enters with weight k_i / sum(k) (weights {shown}, k = {tuple(task.budgets)}): a "
                f"budget-weighted average; FSLoRA averages the clients' changes with weight 1/N = {1 / N:.4g} each")
    if N >= 2 and not close(w, np.full(N, 1.0 / N)):
        return (f"; the clients' changes enter the round with weights {shown} instead of 1/N = {1 / N:.4g} each (a "
                f"weighted or chunked average? every client's change must count 1/N)")
    return ""
