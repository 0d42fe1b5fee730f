"""Checkpoints of a federated run: save after every round, resume only the very same run.

    path = checkpoint_path(out_dir, "fslora")                 # <out_dir>/checkpoint-fslora.npz
    save_checkpoint(path, "fslora", config, state, history, next_round, identity={...})
    state, history, next_round = load_checkpoint(path, "fslora", config, identity={...})

The file is data only (see checkpoint_format.py: a zip of a strict-JSON header and ``.npy``
arrays read with ``allow_pickle=False``); loading never executes code. The server state is
stored generically: ``layers`` [(B, A)] and ``extra`` (server-optimiser state such as Adam's
moments and step count, FLoRA's merged weights, FlexLoRA's averaged products, ...), whatever
arrays, numbers, strings, lists, tuples and dicts it holds.

A checkpoint resumes only the run that wrote it: the algorithm, every field of the config
except ``rounds`` (which may grow), and every field of the run's identity (problem family,
shapes, client sizes, batch size, a digest of the data, ...) must be equal, otherwise a
ValueError names each differing field with both values.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .algorithms.protocol import ServerState
from .checkpoint_format import read_archive, read_header, write_archive
from .history import HISTORY_KEYS, History
from .outputs import dumps_json
from .state_schema import check_server_state

FORMAT = "fslora-checkpoint"
VERSION = 2
SUFFIX = ".npz"
LEGACY_NAMES = ("checkpoint-{name}.pkl", "checkpoint.pkl")  # pickles of fslora <= 0.1; refused, never read
_MISSING = "<absent>"
# how a NumPy problem's data_sha256 is made (data_digest: a digest of per-client digests); a checkpoint
# whose identity lacks this field was written by an fslora that digested all the clients' data at once
DATA_DIGEST = "per-client"


def checkpoint_path(out_dir, algorithm_name: str) -> str:
    """Where a run of ``algorithm_name`` keeps its checkpoint in ``out_dir``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The run's output directory.
    algorithm_name : str
        The algorithm's name.

    Returns
    -------
    str
        ``<out_dir>/checkpoint-<algorithm_name><SUFFIX>``.
    """
    return os.path.join(os.fspath(out_dir), f"checkpoint-{algorithm_name}{SUFFIX}")


def find_checkpoint(out_dir, algorithm_name: str) -> str | None:
    """The checkpoint of ``algorithm_name`` in ``out_dir``, or None if there is none.

    An old pickle checkpoint there (and no new one) is a ValueError: pickles are never loaded.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The run's output directory.
    algorithm_name : str
        The algorithm's name.

    Returns
    -------
    str or None
        The checkpoint's path.
    """
    path = checkpoint_path(out_dir, algorithm_name)
    if os.path.lexists(path):
        return path
    for pattern in LEGACY_NAMES:
        legacy = os.path.join(os.fspath(out_dir), pattern.format(name=algorithm_name))
        if os.path.lexists(legacy):
            raise ValueError(f"checkpoint {legacy} is a pickle written by an older fslora; pickles are never loaded "
                             f"because loading one can execute code: delete it to start afresh")
    return None


def _array_digest(digest, arrays) -> None:
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())


def client_data_digest(data) -> str:
    """SHA-256 of one client's data set (its inputs and targets, with their dtypes and shapes).

    A federated client computes it on its own node and announces it, so the server can name the
    run's data (:func:`data_digest`) without holding any of it.

    Parameters
    ----------
    data : ClientData
        X: (n_i, m_1); targets: (n_i, n_L) or (n_i,).

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    _array_digest(digest, (data.X, data.targets))
    return digest.hexdigest()


def data_digest(base_weights, client_digests) -> str:
    """SHA-256 of a problem's base weights and its clients' data, from the per-client digests.

    Parameters
    ----------
    base_weights : list of ndarray
        W0_l, shape (m_l, n_l).
    client_digests : list of str
        :func:`client_data_digest` of each client, in client order.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    _array_digest(digest, base_weights)
    for d in client_digests:
        digest.update(str(d).encode())
    return digest.hexdigest()


def problem_identity(problem) -> dict:
    """What defines a ``fslora_ref`` problem.

    Parameters
    ----------
    problem : Problem
        Or an object with the same shape attributes whose ``client_digests`` lists each client's
        :func:`client_data_digest` (a federated server's view: the clients' data stay on their nodes).

    Returns
    -------
    dict
        Family, link, number of clients, layer shapes, client sizes, batch size, a SHA-256 of
        its base weights and client data (:func:`data_digest`) and how that digest is made
        (``data_digest``: ``"per-client"``; older checkpoints lack it and are refused by name).
    """
    clients = getattr(problem, "client_digests", None)
    if clients is None:
        clients = [client_data_digest(c) for c in problem.clients]
    return {"family": problem.name, "link": problem.link, "n_clients": problem.n_clients,
            "layer_shapes": [list(s) for s in problem.layer_shapes], "client_sizes": list(problem.client_sizes),
            "batch_size": problem.batch_size, "data_sha256": data_digest(problem.base_weights, clients),
            "data_digest": DATA_DIGEST}


def algorithm_identity(algorithm) -> dict:
    """What a checkpoint must match about the algorithm's variant.

    A run resumed with another variant is refused, naming the differing option.

    Parameters
    ----------
    algorithm : Algorithm

    Returns
    -------
    dict
        ``{"algorithm_options": {...}}`` for an algorithm with options (HetLoRA's aggregate,
        FlexLoRA's weighting, ...), else ``{}``.
    """
    options = getattr(algorithm, "options", None) or {}
    return {"algorithm_options": dict(options)} if options else {}


def save_checkpoint(path, algorithm_name, config, state, history, next_round, *, identity=None) -> None:
    """Write the run's state after ``next_round`` rounds (atomically; data only).

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file (rewritten).
    algorithm_name : str
        The algorithm's name.
    config : FedConfig
        The run's configuration.
    state : ServerState
        The server state after ``next_round`` rounds.
    history : History or dict
        The run's history (a JSON-able dict for the LLM bridge).
    next_round : int
        The number of rounds done.
    identity : dict, optional
        What a resumed run must match besides the config.
    """
    header = {"format": FORMAT, "version": VERSION, "algorithm": algorithm_name, "config": config.to_json(),
              "identity": _normalised(identity or {}), "next_round": int(next_round),
              "history_kind": "History" if isinstance(history, History) else "dict"}
    if isinstance(history, History):
        history = {"algorithm": history.algorithm, "config": history.config, "rows": history.rows,
                   "per_client_upload": history.per_client_upload, "peak_client_memory": history.peak_client_memory}
    write_archive(path, header, {"state": {"layers": state.layers, "extra": state.extra}, "history": history})


def checkpoint_header(path, algorithm_name, config, *, identity=None) -> dict:
    """Read and check a checkpoint's header only (cheap: arrays are not read).

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint.
    algorithm_name : str
        The algorithm it must belong to.
    config : FedConfig
        The run it must belong to (``rounds`` may have grown).
    identity : dict, optional
        What it must match besides the config.

    Returns
    -------
    dict
        The header.

    Raises
    ------
    ValueError
        Naming ``path``, if the file is not a current fslora checkpoint, belongs to another
        algorithm or run (every differing field is named), or already holds more rounds than
        ``config.rounds``.
    """
    return _check_header(path, read_header(path), algorithm_name, config, identity)


def load_checkpoint(path, algorithm_name, config, *, identity=None, layer_shapes=None):
    """(ServerState, history, next_round) from a checkpoint of the same run (see
    :func:`checkpoint_header` for the checks). layer_shapes [(m_l, n_l)], if given, must match
    the saved factors B: (m_l, r), A: (r, n_l). Every part of the server state is held against
    the algorithm's schema (state_schema.py: optimiser moments, step counts, merged weights,
    products) before anything runs.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint.
    algorithm_name : str
        The algorithm it must belong to.
    config : FedConfig
        The run it must belong to.
    identity : dict, optional
        What it must match besides the config.
    layer_shapes : list of tuple of int, optional
        ``[(m_l, n_l)]``; the saved factors must then be B_l of shape (m_l, r), A_l of shape
        (r, n_l).

    Returns
    -------
    state : ServerState
    history : History or dict
        As saved.
    next_round : int
        The first round still to run.

    Raises
    ------
    ValueError
        If the checkpoint is not of this run or is malformed.
    """
    header, tree = read_archive(path)
    header = _check_header(path, header, algorithm_name, config, identity)
    next_round = header["next_round"]
    try:
        state = _state(tree["state"], config.rank, layer_shapes)
        shapes = layer_shapes if layer_shapes is not None else [(B.shape[0], A.shape[1]) for B, A in state.layers]
        sizes = (identity or {}).get("client_sizes")
        check_server_state(algorithm_name, state, config, shapes, next_round,
                           client_sizes=sizes if isinstance(sizes, list) else None,
                           options=header["identity"].get("algorithm_options"))
        history = _history(tree["history"], header["history_kind"], next_round, config.n_clients)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise ValueError(f"checkpoint {path} is malformed: {exc}") from None
    return state, history, next_round


# -- checks ----------------------------------------------------------------------------------
def _normalised(obj):
    """``obj`` as it reads back from JSON (tuples become lists), so saved == current compares values."""
    return json.loads(dumps_json(obj, indent=None))


def _fields(config_json: dict, identity: dict) -> dict:
    fields = {k: v for k, v in config_json.items() if k not in ("rounds", "extra")}
    fields.update(config_json.get("extra") or {})
    fields.update(identity)
    return fields


def _short(value) -> str:
    text = "absent" if value is _MISSING else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def differing_fields(saved: dict, current: dict) -> list:
    """Every field whose values differ, for an error message.

    Parameters
    ----------
    saved : dict
        The checkpoint's fields.
    current : dict
        This run's.

    Returns
    -------
    list of str
        ``"name (saved in the checkpoint, current now)"`` each.
    """
    names = list(current) + [k for k in saved if k not in current]
    return [f"{k} ({_short(saved.get(k, _MISSING))} in the checkpoint, {_short(current.get(k, _MISSING))} now)"
            for k in names if saved.get(k, _MISSING) != current.get(k, _MISSING)]


def read_checkpoint_header(path, algorithm_name: str | None = None) -> dict:
    """The header of a checkpoint, checked to be a current fslora checkpoint.

    Cheap: the arrays are not read.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint.
    algorithm_name : str, optional
        The algorithm it must belong to.

    Returns
    -------
    dict
    """
    return _check_format(path, read_header(path), algorithm_name)


def _check_format(path, header: dict, algorithm_name) -> dict:
    if header.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not an fslora checkpoint (format {header.get('format')!r})")
    if header.get("version") != VERSION:
        raise ValueError(f"checkpoint {path} has format version {header.get('version')!r}; this fslora reads "
                         f"version {VERSION}: start afresh in another --out")
    if algorithm_name is not None and header.get("algorithm") != algorithm_name:
        raise ValueError(f"checkpoint {path} is for algorithm {header.get('algorithm')!r}, not {algorithm_name!r}")
    return header


def _check_header(path, header: dict, algorithm_name, config, identity) -> dict:
    _check_format(path, header, algorithm_name)
    saved_config, saved_identity = header.get("config"), header.get("identity")
    next_round = header.get("next_round")
    if (not isinstance(saved_config, dict) or not isinstance(saved_identity, dict) or isinstance(next_round, bool)
            or not isinstance(next_round, int) or next_round < 0 or header.get("history_kind") not in ("History", "dict")):
        raise ValueError(f"checkpoint {path} is malformed: bad config, identity, next_round or history_kind")
    _check_data_digest(path, saved_identity, identity or {})
    diffs = differing_fields(_fields(saved_config, saved_identity),
                             _fields(_normalised(config.to_json()), _normalised(identity or {})))
    if diffs:
        raise ValueError(f"checkpoint {path} belongs to a different run; differing fields: {'; '.join(diffs)}. "
                         f"Resume with the same settings, or start afresh (another --out, or without --resume)")
    if next_round > config.rounds:
        raise ValueError(f"checkpoint {path} already holds {next_round} rounds, more than rounds = {config.rounds}: "
                         f"resume with --rounds >= {next_round} (or start afresh in another --out)")
    return header


def _check_data_digest(path, saved: dict, current: dict) -> None:
    """Refuse, saying why, a checkpoint whose data digest was made the way an older fslora made it."""
    if "data_digest" in current and "data_digest" not in saved and "data_sha256" in saved:
        raise ValueError(f"checkpoint {path} was written by an older fslora: it does not say how its data digest "
                         f"(data_sha256) was made (before per-client digests, one hash over all the clients' data), "
                         f"so this fslora cannot check that it holds this run's data and will not resume it: finish "
                         f"that run with the fslora that wrote it, or start afresh (another --out, or without "
                         f"--resume)")


def _state(tree: dict, rank: int, layer_shapes) -> ServerState:
    layers, extra = tree["layers"], tree["extra"]
    if not isinstance(layers, list) or not isinstance(extra, dict) or not layers:
        raise ValueError("state.layers must be a non-empty list and state.extra a dict")
    if layer_shapes is not None and len(layers) != len(layer_shapes):
        raise ValueError(f"state has {len(layers)} layers, the model {len(layer_shapes)}")
    for l, pair in enumerate(layers):
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, np.ndarray) for x in pair)):
            raise ValueError(f"state.layers[{l}] must be a (B, A) pair of arrays")
        B, A = pair
        m, n = layer_shapes[l] if layer_shapes is not None else (B.shape[0], A.shape[-1])
        # FlexLoRA's SVD truncation may keep fewer than r components when min(m, n) < r
        q = B.shape[-1]
        if (B.shape != (m, q) or A.shape != (q, n) or not 1 <= q <= rank or B.dtype.kind != "f"
                or A.dtype.kind != "f"):
            raise ValueError(f"state.layers[{l}]: B {B.shape}, A {A.shape} ({B.dtype}); expected float B (m, q), "
                             f"A (q, n) with (m, n) = {(m, n)} and q <= r = {rank}")
        if not (np.all(np.isfinite(B)) and np.all(np.isfinite(A))):
            raise ValueError(f"state.layers[{l}] holds non-finite values")
    return ServerState(layers, extra)


def _history(tree, kind: str, next_round: int, n_clients: int):
    if kind == "dict":
        if not isinstance(tree, dict):
            raise ValueError("history must be a dict")
        return tree
    rows = tree["rows"]
    if set(rows) != set(HISTORY_KEYS) or any(len(rows[k]) != next_round + 1 for k in HISTORY_KEYS):
        raise ValueError(f"history rows must hold {HISTORY_KEYS} with {next_round + 1} entries each")
    if len(tree["per_client_upload"]) != next_round or len(tree["peak_client_memory"]) != n_clients:
        raise ValueError("history per-client records do not match the rounds and clients")
    return History(tree["algorithm"], tree["config"], {k: list(rows[k]) for k in HISTORY_KEYS},
                   list(tree["per_client_upload"]), list(tree["peak_client_memory"]))
