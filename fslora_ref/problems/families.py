"""Built-in client problem families with controllable heterogeneity, noise and client sizes.

Every family is a :class:`~fslora_ref.problems.base.Problem`; data are generated from the
``problem`` stream of the run seed, so a (family, arguments, seed) triple is a complete recipe.

Heterogeneity: client i's target weight is W0 + Delta_shared + heterogeneity * Delta_i with
low-rank Delta's, so clients disagree about the optimum when heterogeneity > 0.

Held-out data: with ``eval_size > 0`` each client also gets ``eval_size`` fresh samples of its
own distribution D_i, drawn from the client's ``eval`` stream (round -1, client i), so the
training data are bit-identical with and without a held-out split. They are exposed as
``problem.held_out``, a Problem over the same base weights whose client i is that held-out set.
"""
from __future__ import annotations

import numpy as np

from ..seeding import SERVER, stream
from ..validation import MAX_CLIENTS, MAX_DIM, check_allocation, check_int, check_real
from .base import ClientData, Problem

MAX_SIZE_SPREAD = 3.0      # client sizes mean_size * exp(spread * N(0,1)): 3 already spans 4 orders of magnitude
MAX_NOISE = 1e3            # noise, heterogeneity: larger values only overflow the targets
MAX_MEAN_SIZE = 1 << 24


def _client_sizes(n_clients: int, mean_size: int, size_spread: float, rng, dims) -> list:
    """Unequal client sizes: mean_size * exp(spread * N(0,1)), at least 4 samples; the data
    they imply (sum of sizes x (input + output) floats) must stay within MAX_FLOATS."""
    raw = mean_size * np.exp(size_spread * rng.standard_normal(n_clients))
    sizes = [max(4, int(round(s))) for s in raw]
    check_allocation("the clients' data", sum(sizes) * sum(dims), "n_clients, mean_size, size_spread or the dimensions")
    return sizes


def _base_weights(shapes, rng) -> list:
    """The frozen base weights W0_l ~ N(0, 1/m_l), the first draws of a family's problem stream."""
    return [rng.standard_normal((m, n)) / np.sqrt(m) for m, n in shapes]


def _low_rank(m, n, rank, scale, rng):
    return scale * (rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))) / np.sqrt(rank * m)


def _held_out_sample(seed: int, client: int, eval_size: int, m: int, targets) -> ClientData:
    """``eval_size`` fresh samples of client ``client``'s distribution: inputs x ~ N(0, I_m),
    targets(X, rng) from the client's labelling rule, all from its own ``eval`` stream."""
    rng = stream(seed, round=-1, client=client, purpose="eval")
    X = rng.standard_normal((eval_size, m))
    return ClientData(X, targets(X, rng))


def _with_held_out(problem: Problem, held: list) -> Problem:
    if held:
        problem.held_out = Problem(problem.name + ":held_out", problem.base_weights, held, link=problem.link)
    return problem


def _check_common(n_clients, dims, target_rank, mean_size, noise, heterogeneity, size_spread, eval_size=0):
    """Range checks, and the weights' and expected data size within MAX_FLOATS, before any allocation.
    Returns the arguments as plain Python numbers (NumPy scalars are accepted and converted,
    so that no size below is computed in a NumPy integer type that could wrap around):
    (n_clients, dims, target_rank, mean_size, noise, heterogeneity, size_spread, eval_size)."""
    n_clients = check_int("n_clients", n_clients, low=1, high=MAX_CLIENTS)
    eval_size = check_int("eval_size", eval_size, low=0, high=MAX_MEAN_SIZE)
    dims = {name: check_int(name, d, low=1, high=MAX_DIM) for name, d in dims.items()}
    target_rank = check_int("target_rank", target_rank, low=1, high=MAX_DIM)
    mean_size = check_int("mean_size", mean_size, low=4, high=MAX_MEAN_SIZE)
    noise = check_real("noise", noise, low=0.0, high=MAX_NOISE)
    heterogeneity = check_real("heterogeneity", heterogeneity, low=0.0, high=MAX_NOISE)
    size_spread = check_real("size_spread", size_spread, low=0.0, high=MAX_SIZE_SPREAD)
    sizes = list(dims.values())
    check_allocation("the base weights", sum(a * b for a, b in zip(sizes, sizes[1:])), "the dimensions")
    check_allocation("the low-rank targets", target_rank * sum(sizes) * 2, "target_rank or the dimensions")
    check_allocation("the clients' data", n_clients * mean_size * sum(sizes), "n_clients, mean_size or the dimensions")
    check_allocation("the held-out data", n_clients * eval_size * sum(sizes), "n_clients, eval_size or the dimensions")
    return n_clients, dims, target_rank, mean_size, noise, heterogeneity, size_spread, eval_size


def least_squares(n_clients: int = 8, m: int = 24, n: int = 16, *, target_rank: int = 4,
                  mean_size: int = 64, size_spread: float = 0.3, noise: float = 0.1,
                  heterogeneity: float = 0.5, batch_size: int | None = None, seed: int = 0,
                  eval_size: int = 0) -> Problem:
    """Federated least squares ``f_i(W) = (1/2 n_i) ||X_i W - Y_i||_F^2``, W of shape (m, n).

    ``Y_i = X_i (W0 + D + heterogeneity * D_i) + noise * E_i``, with rank-``target_rank`` D, D_i.

    Parameters
    ----------
    n_clients : int
        N.
    m, n : int
        The weight's shape.
    target_rank : int
        The rank of the shared and per-client target perturbations.
    mean_size : int
        The clients' mean number of samples (sizes mean_size * exp(size_spread * N(0, 1)), at
        least 4).
    size_spread : float
        The spread of client sizes, in [0, 3].
    noise : float
        The standard deviation of the target noise E_i.
    heterogeneity : float
        The scale of each client's own perturbation of the target (0: identical clients).
    batch_size : int or None
        Minibatch size of the local steps (None: full batch).
    seed : int
        The data come from this seed's ``"problem"`` stream.
    eval_size : int
        Held-out samples per client (``problem.held_out``; 0: none).

    Returns
    -------
    Problem

    Examples
    --------
    >>> from fslora_ref import least_squares
    >>> problem = least_squares(n_clients=3, m=6, n=4, seed=1)
    >>> problem.n_clients, problem.layer_shapes, problem.link
    (3, [(6, 4)], 'squared')
    """
    n_clients, dims, target_rank, mean_size, noise, heterogeneity, size_spread, eval_size = _check_common(
        n_clients, {"m": m, "n": n}, target_rank, mean_size, noise, heterogeneity, size_spread, eval_size)
    m, n = dims["m"], dims["n"]
    rng = stream(seed, round=-1, client=SERVER, purpose="problem")
    W0, = _base_weights([(m, n)], rng)
    shared = _low_rank(m, n, target_rank, 1.0, rng)
    clients, held = [], []
    for i, size in enumerate(_client_sizes(n_clients, mean_size, size_spread, rng, (m, n))):
        X = rng.standard_normal((size, m))
        W_i = W0 + shared + heterogeneity * _low_rank(m, n, target_rank, 1.0, rng)

        def targets(X, rng, W_i=W_i):
            return X @ W_i + noise * rng.standard_normal((X.shape[0], n))
        clients.append(ClientData(X, targets(X, rng)))
        if eval_size:
            held.append(_held_out_sample(seed, i, eval_size, m, targets))
    return _with_held_out(Problem("least_squares", [W0], clients, link="squared", batch_size=batch_size), held)


def logistic(n_clients: int = 8, m: int = 24, n_classes: int = 6, *, target_rank: int = 4,
             mean_size: int = 96, size_spread: float = 0.3, noise: float = 0.5,
             heterogeneity: float = 0.5, batch_size: int | None = None, seed: int = 0,
             eval_size: int = 0) -> Problem:
    """Multinomial logistic regression on a LoRA-adapted weight W of shape (m, n_classes).

    Labels are drawn from softmax(x W_i / temperature) with temperature = max(noise, 1e-3);
    W_i = W0 + D + heterogeneity * D_i, so clients' label maps differ.

    Parameters
    ----------
    n_clients : int
        N.
    m : int
        The input dimension.
    n_classes : int
        The number of classes.
    target_rank : int
        The rank of the shared and per-client target perturbations.
    mean_size : int
        The clients' mean number of samples (sizes mean_size * exp(size_spread * N(0, 1)), at
        least 4).
    size_spread : float
        The spread of client sizes, in [0, 3].
    noise : float
        The softmax temperature of the labels (at least 1e-3).
    heterogeneity : float
        The scale of each client's own perturbation of the target (0: identical clients).
    batch_size : int or None
        Minibatch size of the local steps (None: full batch).
    seed : int
        The data come from this seed's ``"problem"`` stream.
    eval_size : int
        Held-out samples per client (``problem.held_out``; 0: none).

    Returns
    -------
    Problem
    """
    n_clients, dims, target_rank, mean_size, noise, heterogeneity, size_spread, eval_size = _check_common(
        n_clients, {"m": m, "n_classes": n_classes}, target_rank, mean_size, noise, heterogeneity, size_spread,
        eval_size)
    m, n_classes = dims["m"], dims["n_classes"]
    rng = stream(seed, round=-1, client=SERVER, purpose="problem")
    W0, = _base_weights([(m, n_classes)], rng)
    shared = _low_rank(m, n_classes, target_rank, 3.0, rng)
    temperature = max(noise, 1e-3)
    clients, held = [], []
    for i, size in enumerate(_client_sizes(n_clients, mean_size, size_spread, rng, (m, n_classes))):
        X = rng.standard_normal((size, m))
        W_i = W0 + shared + heterogeneity * _low_rank(m, n_classes, target_rank, 3.0, rng)

        def targets(X, rng, W_i=W_i):
            logits = X @ W_i / temperature
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            return np.array([rng.choice(n_classes, p=row) for row in p])
        clients.append(ClientData(X, targets(X, rng)))
        if eval_size:
            held.append(_held_out_sample(seed, i, eval_size, m, targets))
    return _with_held_out(Problem("logistic", [W0], clients, link="softmax", batch_size=batch_size), held)


def two_layer(n_clients: int = 8, m: int = 16, hidden: int = 24, n: int = 8, *, target_rank: int = 3,
              mean_size: int = 64, size_spread: float = 0.3, noise: float = 0.05,
              heterogeneity: float = 0.5, batch_size: int | None = None, seed: int = 0,
              eval_size: int = 0) -> Problem:
    """Two LoRA-adapted layers: ``f_i = (1/2 n_i) ||tanh(X_i W_1) W_2 - Y_i||^2``.

    W_1 of shape (m, hidden), W_2 of shape (hidden, n); each layer gets its own sketch. Targets
    come from a teacher network whose layers are perturbed per client.

    Parameters
    ----------
    n_clients : int
        N.
    m, hidden, n : int
        The layer widths.
    target_rank : int
        The rank of the shared and per-client target perturbations.
    mean_size : int
        The clients' mean number of samples (sizes mean_size * exp(size_spread * N(0, 1)), at
        least 4).
    size_spread : float
        The spread of client sizes, in [0, 3].
    noise : float
        The standard deviation of the target noise.
    heterogeneity : float
        The scale of each client's own perturbation of the target (0: identical clients).
    batch_size : int or None
        Minibatch size of the local steps (None: full batch).
    seed : int
        The data come from this seed's ``"problem"`` stream.
    eval_size : int
        Held-out samples per client (``problem.held_out``; 0: none).

    Returns
    -------
    Problem
    """
    n_clients, dims, target_rank, mean_size, noise, heterogeneity, size_spread, eval_size = _check_common(
        n_clients, {"m": m, "hidden": hidden, "n": n}, target_rank, mean_size, noise, heterogeneity, size_spread,
        eval_size)
    m, hidden, n = dims["m"], dims["hidden"], dims["n"]
    rng = stream(seed, round=-1, client=SERVER, purpose="problem")
    W01, W02 = _base_weights([(m, hidden), (hidden, n)], rng)
    D1, D2 = _low_rank(m, hidden, target_rank, 1.0, rng), _low_rank(hidden, n, target_rank, 1.0, rng)
    clients, held = [], []
    for i, size in enumerate(_client_sizes(n_clients, mean_size, size_spread, rng, (m, n))):
        X = rng.standard_normal((size, m))
        T1 = W01 + D1 + heterogeneity * _low_rank(m, hidden, target_rank, 1.0, rng)
        T2 = W02 + D2 + heterogeneity * _low_rank(hidden, n, target_rank, 1.0, rng)

        def targets(X, rng, T1=T1, T2=T2):
            return np.tanh(X @ T1) @ T2 + noise * rng.standard_normal((X.shape[0], n))
        clients.append(ClientData(X, targets(X, rng)))
        if eval_size:
            held.append(_held_out_sample(seed, i, eval_size, m, targets))
    return _with_held_out(Problem("two_layer", [W01, W02], clients, link="squared", batch_size=batch_size), held)


FAMILIES = {"least_squares": least_squares, "logistic": logistic, "two_layer": two_layer}
# per family: (link, layer shapes from its dimension arguments); hidden=24 is two_layer's default
BASE_MODELS = {"least_squares": ("squared", lambda m=24, n=16: [(m, n)]),
               "logistic": ("softmax", lambda m=24, n_classes=6: [(m, n_classes)]),
               "two_layer": ("squared", lambda m=16, hidden=24, n=8: [(m, hidden), (hidden, n)])}


def base_model(family: str, seed: int = 0, **dims) -> tuple:
    """The frozen model of a family's problem without any client's data: what a federated
    server holds (the clients' samples stay on their nodes).

    Parameters
    ----------
    family : {"least_squares", "logistic", "two_layer"}
        One of ``FAMILIES``.
    seed : int, default 0
        The recipe's seed (as in :func:`make_problem`).
    **dims
        The family's dimension arguments (``m``, ``n``; ``n_classes`` for logistic; ``hidden``
        for two_layer); others of its arguments do not change the base weights.

    Returns
    -------
    link : str
        "squared" or "softmax".
    base_weights : list of ndarray
        W0_l, shape (m_l, n_l): bit-identical to ``make_problem(family, seed=seed, **dims).base_weights``.

    Examples
    --------
    >>> from fslora_ref.problems.families import base_model, make_problem
    >>> link, W = base_model("two_layer", seed=3, m=4, n=3)
    >>> link, [w.shape for w in W]
    ('squared', [(4, 24), (24, 3)])
    >>> all((a == b).all() for a, b in zip(W, make_problem("two_layer", n_clients=2, seed=3, m=4, n=3).base_weights))
    True
    """
    if not isinstance(family, str) or family not in BASE_MODELS:
        raise ValueError(f"family must be one of {sorted(BASE_MODELS)}, got {family!r}")
    link, shapes = BASE_MODELS[family]
    return link, _base_weights(shapes(**dims), stream(seed, round=-1, client=SERVER, purpose="problem"))


def make_problem(family: str, **kwargs) -> Problem:
    """Build a problem of ``family`` from keyword arguments.

    Parameters
    ----------
    family : {"least_squares", "logistic", "two_layer"}
        One of ``FAMILIES``.
    **kwargs
        The family function's arguments.

    Returns
    -------
    Problem

    Examples
    --------
    >>> from fslora_ref import make_problem
    >>> make_problem("two_layer", n_clients=2, m=4, hidden=5, n=3).layer_shapes
    [(4, 5), (5, 3)]
    """
    if not isinstance(family, str) or family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    return FAMILIES[family](**kwargs)
