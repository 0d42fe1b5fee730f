"""What a saved server state must hold, checked before a resumed run uses any of it.

A checkpoint can be edited, truncated or forged; :func:`check_server_state` holds every part of
the state against the run's config, so that a state that would silently change the results
(Adam moments replaced by scalars, a step count of 10**400, a missing merged weight) is a
one-line ValueError naming the part, never a different run.

The schema, per algorithm and variant (``options``: the algorithm's OPTIONS, saved in the
checkpoint's identity; L layers of shapes (m_l, n_l), global rank r, N clients, T = the rounds
the checkpoint holds):

* every algorithm -- ``layers``: L pairs B: (m_l, q), A: (q, n_l), float, finite, 1 <= q <= r
  (checked by checkpoint.py);
* a server step on the mean delta (fslora, fedit, hetlora with aggregate=delta) --
  ``server_opt``, present iff T >= 1: ``()`` for ``server_optimizer`` none / sgd; for adam
  ``{"t", "m", "v"}`` with t an int in [1, T] and m, v lists of 2L finite float arrays shaped and
  typed like [B_1, A_1, B_2, ...], v >= 0;
* ``client_sizes`` (flexlora; fedit and flora with weighting=data_size): N ints >= 0, not all 0,
  equal to the run's client sizes when the run states them;
* flora -- ``merged``: L finite float arrays (m_l, n_l); ``stacked_rank``: int in
  [0, sum of the budgets];
* flexlora -- ``delta_W``, present iff T >= 1: L finite float arrays (m_l, n_l);
* hetlora with aggregate=matrix -- nothing else.

Any other key is refused too. An algorithm not listed here (a plug-in) gets the layer checks
and a generic one: every array in ``extra`` numeric and finite.
"""
from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
KNOWN_ALGORITHMS = ("fslora", "fedit", "hetlora", "flora", "flexlora")


def extra_keys(algorithm_name: str, options: dict) -> set:
    """The keys of ``state.extra`` that an algorithm's variant keeps (see the schema above).

    Parameters
    ----------
    algorithm_name : str
        One of KNOWN_ALGORITHMS.
    options : dict
        The variant's options with the defaults filled in (:func:`variant_options`); ``aggregate``
        (hetlora) and ``weighting`` (fedit, flora) are read.

    Returns
    -------
    set of str
        Subset of ``{"server_opt", "client_sizes", "merged", "stacked_rank", "delta_W"}``.

    Examples
    --------
    >>> from fslora_ref.state_schema import extra_keys
    >>> sorted(extra_keys("flora", {"weighting": "data_size"}))
    ['client_sizes', 'merged', 'stacked_rank']
    >>> sorted(extra_keys("hetlora", {"aggregate": "matrix"}))
    []
    """
    keys = set()
    if algorithm_name in ("fslora", "fedit") or (algorithm_name == "hetlora" and options["aggregate"] == "delta"):
        keys.add("server_opt")
    if algorithm_name == "flexlora" or options.get("weighting") == "data_size":
        keys.add("client_sizes")
    if algorithm_name == "flora":
        keys |= {"merged", "stacked_rank"}
    if algorithm_name == "flexlora":
        keys.add("delta_W")
    return keys


def variant_options(algorithm_name: str, options) -> dict:
    """Every option of the algorithm's variant: ``options`` as saved, with the defaults filled in.

    Parameters
    ----------
    algorithm_name : str
        A registered algorithm name.
    options : dict or None
        The options saved in the checkpoint (None: all defaults).

    Returns
    -------
    dict
        ``get_algorithm(algorithm_name, **options).options``.

    Raises
    ------
    ValueError
        One line, if ``options`` is not a dict or names an unknown option or value.
    """
    from .algorithms import get_algorithm
    if options is None:
        options = {}
    if not isinstance(options, dict):
        _fail("algorithm_options", f"must be a table of options, got a {type(options).__name__}")
    return dict(get_algorithm(algorithm_name, **options).options)


def _fail(where: str, what: str):
    raise ValueError(f"state.extra.{where}: {what}")


def check_float_array(where: str, value, shape, dtype=None) -> np.ndarray:
    """Check that a part of the state is a finite float array of the expected shape.

    Parameters
    ----------
    where : str
        The part's path in ``state.extra`` (e.g. ``"merged[0]"``), used in the message.
    value : object
        The part as loaded.
    shape : tuple of int
        Its required shape, e.g. ``(m_l, n_l)``.
    dtype : numpy.dtype, optional
        Its required dtype (None: float16, float32 or float64).

    Returns
    -------
    ndarray, shape ``shape``
        ``value`` itself.

    Raises
    ------
    ValueError
        If it is not an ndarray, or has another dtype or shape, or holds NaN / inf.
    """
    if not isinstance(value, np.ndarray):
        _fail(where, f"must be an array of shape {tuple(shape)}, got a {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES or (dtype is not None and value.dtype != dtype):
        _fail(where, f"must have dtype {dtype or 'float'}, got {value.dtype}")
    if value.shape != tuple(shape):
        _fail(where, f"must have shape {tuple(shape)}, got {value.shape}")
    if not np.all(np.isfinite(value)):
        _fail(where, "holds non-finite values")
    return value


def check_count(where: str, value, low: int, high: int) -> int:
    """Check that a part of the state is an integer (Python or NumPy, not bool) in [low, high].

    Parameters
    ----------
    where : str
        The part's path in ``state.extra`` (e.g. ``"server_opt.t"``), used in the message.
    value : object
        The part as loaded.
    low, high : int
        The allowed range, inclusive.

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    ValueError
        If it is not an integer or is out of range.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        _fail(where, f"must be an integer in [{low}, {high}], got a {type(value).__name__}")
    if not low <= int(value) <= high:
        text = str(int(value)) if abs(int(value)) < 10**30 else f"an integer of {len(str(abs(int(value))))} digits"
        _fail(where, f"must be an integer in [{low}, {high}], got {text}")
    return int(value)


def _check_list(where: str, value, length: int) -> list:
    if not isinstance(value, list) or len(value) != length:
        got = f"{len(value)} entries" if isinstance(value, list) else f"a {type(value).__name__}"
        _fail(where, f"must be a list of {length} entries, got {got}")
    return value


def check_server_optimizer_state(opt_state, layers, config, next_round: int) -> None:
    """Check ``server_opt`` against what :class:`fslora_ref.optim.ServerOptimizer` keeps after ``next_round`` steps.

    For ``server_optimizer`` none / sgd it must be ``()``; for adam a dict ``{"t", "m", "v"}`` with t
    in [1, next_round] and m, v lists of 2L finite arrays shaped and typed like
    ``[B_1, A_1, B_2, A_2, ...]``, v >= 0.

    Parameters
    ----------
    opt_state : object
        ``state.extra["server_opt"]`` as loaded.
    layers : list of tuple of ndarray
        The checked layers ``[(B_l: (m_l, q), A_l: (q, n_l))]``.
    config : FedConfig
        The run's config (its ``server_optimizer`` is used).
    next_round : int
        The rounds the checkpoint holds (the most Adam steps taken).

    Raises
    ------
    ValueError
        Naming the first part that does not fit.
    """
    if config.server_optimizer != "adam":
        if opt_state != ():
            _fail("server_opt", f"must be empty for server_optimizer {config.server_optimizer!r}")
        return
    if not isinstance(opt_state, dict) or set(opt_state) != {"t", "m", "v"}:
        keys = sorted(opt_state) if isinstance(opt_state, dict) else type(opt_state).__name__
        _fail("server_opt", f"must be Adam's {{t, m, v}}, got {keys}")
    check_count("server_opt.t", opt_state["t"], 1, next_round)
    params = [p for pair in layers for p in pair]
    for key in ("m", "v"):
        moments = _check_list(f"server_opt.{key}", opt_state[key], len(params))
        for i, (moment, param) in enumerate(zip(moments, params)):
            check_float_array(f"server_opt.{key}[{i}]", moment, param.shape, param.dtype)
    if any(np.any(v < 0) for v in opt_state["v"]):
        _fail("server_opt.v", "Adam's second moments must be >= 0")


def check_server_state(algorithm_name: str, state, config, layer_shapes, next_round: int,
                       client_sizes=None, options=None) -> None:
    """Hold ``state.extra`` against the schema above (``state.layers`` already checked).

    Parameters
    ----------
    algorithm_name : str
        The checkpoint's algorithm.
    state : ServerState
        With ``layers`` [(B: (m_l, q), A: (q, n_l))] and an ``extra`` dict.
    config : FedConfig
        The run's config (its rank, budgets and server optimiser are used).
    layer_shapes : list of tuple of int
        ``[(m_l, n_l)]`` per layer.
    next_round : int
        The rounds the checkpoint holds.
    client_sizes : sequence of int, optional
        The run's client sizes, if known (a saved ``client_sizes`` must equal them).
    options : dict, optional
        The algorithm's variant options as saved (None: the defaults, the FSLoRA paper's rules).

    Raises
    ------
    ValueError
        Naming the first part that does not fit.
    """
    extra = state.extra
    if algorithm_name not in KNOWN_ALGORITHMS:
        _check_generic(extra)
        return
    options = variant_options(algorithm_name, options)
    known = extra_keys(algorithm_name, options)
    unknown = sorted(set(extra) - known)
    if unknown:
        _fail(unknown[0], f"is not part of {algorithm_name}'s state (expected only {sorted(known) or 'nothing'})")
    shapes = [tuple(s) for s in layer_shapes]
    if "server_opt" in known:
        if next_round >= 1 and "server_opt" not in extra:
            _fail("server_opt", "is missing (every round takes a server step)")
        if "server_opt" in extra:
            check_server_optimizer_state(extra["server_opt"], state.layers, config, next_round)
    if "client_sizes" in known:
        if "client_sizes" not in extra:
            _fail("client_sizes", "is missing")
        sizes = _check_list("client_sizes", extra["client_sizes"], config.n_clients)
        for i, size in enumerate(sizes):
            check_count(f"client_sizes[{i}]", size, 0, 2**62)
        if not any(sizes):
            _fail("client_sizes", "every client is empty")
        if client_sizes is not None and [int(s) for s in sizes] != [int(s) for s in client_sizes]:
            _fail("client_sizes", "differ from this run's client sizes")
    if algorithm_name == "flora":
        for key in ("merged", "stacked_rank"):
            if key not in extra:
                _fail(key, "is missing")
        for l, M in enumerate(_check_list("merged", extra["merged"], len(shapes))):
            check_float_array(f"merged[{l}]", M, shapes[l])
        check_count("stacked_rank", extra["stacked_rank"], 0, int(sum(config.budgets)))
    if algorithm_name == "flexlora":
        if next_round >= 1 and "delta_W" not in extra:
            _fail("delta_W", "is missing (FlexLoRA keeps the averaged products after every round)")
        if "delta_W" in extra:
            for l, dW in enumerate(_check_list("delta_W", extra["delta_W"], len(shapes))):
                check_float_array(f"delta_W[{l}]", dW, shapes[l])


def _check_generic(tree, where: str = "") -> None:
    if isinstance(tree, np.ndarray) or isinstance(tree, np.generic):
        arr = np.asarray(tree)
        if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "f" and not np.all(np.isfinite(arr))):
            _fail(where or "?", f"must be finite real numbers, got dtype {arr.dtype}")
    elif isinstance(tree, dict):
        for k, v in tree.items():
            _check_generic(v, f"{where}.{k}" if where else str(k))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            _check_generic(v, f"{where}[{i}]")
