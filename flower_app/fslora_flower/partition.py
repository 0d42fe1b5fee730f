"""A node's own data: one client's partition of a NumPy reference problem, in a file of its own.

A SuperNode gets its data from its ``--node-config``: ``data="/path/partition-3.npz"`` names a file
holding only that client's samples (and the frozen base weights, which every client shares);
``fslora flower partition`` writes such files from a benchmark recipe. Without ``data`` the node
makes the file itself, once, from the recipe (``prepare``, during the discovery query) in its
node-local cache. Either way a training message reads one small file: its cost does not depend
on the number of clients N. Files are plain ``.npz`` (no pickle) and carry the sha256 of the job's
recipe, so a file made for another job is refused by name.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from fslora_ref.problems.base import ClientData, Problem

FORMAT = "fslora-partition-1"
RECIPE_FIELDS = ("family", "clients", "m", "n", "seed", "batch_size")   # what the generated data depends on


def _read_npz(path: str, what: str, kind: str) -> tuple:
    """(meta, base weights, ClientData) of a partition or held-out file, read as data (no pickle).

    Parameters
    ----------
    path : str
        The ``.npz`` file.
    what : str
        How an error names the file.
    kind : str
        The kind of file an error says was expected ("partition", "held-out").

    Returns
    -------
    tuple
        ``(meta: dict, weights: list of ndarray, data: ClientData)``.

    Raises
    ------
    ValueError
        One line naming the file, if it cannot be read as such a file.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            weights = [np.array(z[f"W0_{l}"]) for l in range(int(meta["layers"]))]
            return meta, weights, ClientData(np.array(z["X"]), np.array(z["targets"]))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{what}: not an fslora {kind} file ({' '.join(str(exc).split())})") from None


def recipe_digest(job) -> str:
    """A fingerprint of the fields of a job that determine the clients' data.

    Parameters
    ----------
    job : SimulateJob
        Its RECIPE_FIELDS (family, clients, m, n, seed, batch_size) are read.

    Returns
    -------
    str
        The sha256 (hex) of those fields as sorted JSON; a partition file carries it.
    """
    recipe = {k: getattr(job, k) for k in RECIPE_FIELDS}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def save_partition(path: str, problem: Problem, client: int, digest: str) -> None:
    """Write one client's data of ``problem``, and the shared base weights, to a partition file.

    The ``.npz`` holds ``X``, ``targets``, ``W0_<l>`` per layer and a JSON ``meta`` (format, client,
    number of clients, problem name, link, batch size, layers, recipe digest); it is written to a
    temporary name and renamed into place.

    Parameters
    ----------
    path : str
        The file to write.
    problem : Problem
        The whole problem (built from the job's recipe).
    client : int
        Which client's data, in [0, problem.n_clients).
    digest : str
        The recipe's :func:`recipe_digest`.
    """
    data = problem.clients[client]
    arrays = {"X": data.X, "targets": data.targets, "meta": np.array(json.dumps(
        {"format": FORMAT, "client": int(client), "n-clients": problem.n_clients, "name": problem.name,
         "link": problem.link, "batch-size": problem.batch_size, "layers": problem.n_layers, "recipe": digest}))}
    arrays.update({f"W0_{l}": W for l, W in enumerate(problem.base_weights)})
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def write_partitions(job, directory: str, problem: Problem | None = None) -> list:
    """Write one partition file per client of ``job`` into ``directory`` (``fslora flower partition``).

    Parameters
    ----------
    job : SimulateJob
        The recipe.
    directory : str
        Where to write (created if missing).
    problem : Problem, optional
        The problem the recipe builds, if already built (default: built here).

    Returns
    -------
    list of str
        ``<directory>/partition-<i>.npz`` for i = 0 .. N-1.
    """
    if problem is None:
        from fslora_ref.simulate import build
        problem = build(job)[0]
    os.makedirs(directory, exist_ok=True)
    digest = recipe_digest(job)
    paths = []
    for i in range(problem.n_clients):
        paths.append(os.path.join(directory, f"partition-{i}.npz"))
        save_partition(paths[-1], problem, i, digest)
    return paths


class LocalPartition:
    """What ``client_update`` reads of a Problem, for one client only.

    The client id the plans use maps to the single client held; asking for another client is an
    error. The methods are the :class:`fslora_ref.problems.base.Problem` methods of the same name.

    Parameters
    ----------
    problem : Problem
        A problem holding only this client's data (one ClientData) and the base weights.
    client : int
        The client id the plans use for it.

    Attributes
    ----------
    client : int
        The client held.
    base_weights : list of ndarray
        W0_l, shape (m_l, n_l).
    layer_shapes : list of tuple of int
        ``[(m_l, n_l)]``.
    n_layers : int
        The number of layers L.
    """

    def __init__(self, problem: Problem, client: int):
        self._problem, self.client = problem, int(client)
        self.own = problem        # the one-client Problem: client ``client`` is its client 0
        self.base_weights = problem.base_weights
        self.layer_shapes = problem.layer_shapes
        self.n_layers = problem.n_layers

    def _own(self, client: int) -> int:
        if int(client) != self.client:
            raise ValueError(f"this node holds the data of client {self.client}, not of client {client}")
        return 0

    @property
    def size(self) -> int:
        """The number of samples n_i this node holds."""
        return self._problem.clients[0].size

    def digest(self) -> str:
        """SHA-256 of this node's samples.

        Returns
        -------
        str
            :func:`fslora_ref.checkpoint.client_data_digest` of the client's data.
        """
        from fslora_ref.checkpoint import client_data_digest
        return client_data_digest(self._problem.clients[0])

    def sample_batch(self, client, rng):
        """Row indices of one minibatch of the client held.

        Parameters
        ----------
        client : int
            Must be the client held.
        rng : numpy.random.Generator
            The client's batch stream.

        Returns
        -------
        ndarray of int, shape (batch_size,), or None
            As :meth:`fslora_ref.problems.base.Problem.sample_batch`.

        Raises
        ------
        ValueError
            If ``client`` is another client.
        """
        return self._problem.sample_batch(self._own(client), rng)

    def loss_and_factor_grads(self, client, factors, batch=None):
        """Loss of the client held on ``batch`` and its gradients w.r.t. each layer's (B, A).

        Parameters
        ----------
        client : int
            Must be the client held.
        factors : list of LayerFactors
            Per layer: B, shape (m_l, q_l); A, shape (q_l, n_l); coeff, shape (q_l,).
        batch : ndarray of int, optional
            Row indices (None: the full data).

        Returns
        -------
        loss : float
        grads : list of tuple of ndarray
            ``[(dB_l, dA_l)]``, shapes (m_l, q_l) and (q_l, n_l).

        Raises
        ------
        ValueError
            If ``client`` is another client.
        """
        return self._problem.loss_and_factor_grads(self._own(client), factors, batch)

    def loss_and_weight_grads(self, client, weights, batch=None):
        """Loss of the client held at dense weights and its gradients w.r.t. them.

        Parameters
        ----------
        client : int
            Must be the client held.
        weights : list of ndarray
            W_l, shape (m_l, n_l).
        batch : ndarray of int, optional
            Row indices (None: the full data).

        Returns
        -------
        loss : float
        grads : list of ndarray
            dL/dW_l, shape (m_l, n_l).

        Raises
        ------
        ValueError
            If ``client`` is another client.
        """
        return self._problem.loss_and_weight_grads(self._own(client), weights, batch)


def load_partition(path: str, client: int, digest: str) -> LocalPartition:
    """Read a partition file, checked to be client ``client``'s of the recipe ``digest``.

    Read with ``allow_pickle=False``.

    Parameters
    ----------
    path : str
        The file (:func:`save_partition`'s format).
    client : int
        This node's partition id.
    digest : str
        The job's :func:`recipe_digest`.

    Returns
    -------
    LocalPartition
        The client's data and the base weights.

    Raises
    ------
    ValueError
        One line naming the file, if it cannot be read as a partition file, has another format,
        holds another client or was made for another recipe.
    """
    meta, weights, data = _read_npz(path, f"node data {path}", "partition")
    if meta.get("format") != FORMAT:
        raise ValueError(f"node data {path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta["client"] != client:
        raise ValueError(f"node data {path} holds client {meta['client']}, but this node is partition-id {client}")
    if meta["recipe"] != digest:
        raise ValueError(f"node data {path} was made for another job (family, clients, m, n, seed or batch size differ)")
    problem = Problem(meta["name"], weights, [data], link=meta["link"], batch_size=meta["batch-size"])
    return LocalPartition(problem, client)


HELD_OUT_FORMAT = "fslora-held-out-1"


def write_held_out(job, path: str, size: int) -> str:
    """A server-side held-out set for ``job``: ``size`` fresh samples of each client's distribution
    (the families' ``eval`` streams, disjoint from the training data), pooled in one file.

    Parameters
    ----------
    job : SimulateJob
        The job (its recipe: family, clients, dimensions, seed).
    path : str
        The ``.npz`` to write (plain arrays: X, targets, the base weights, a JSON header).
    size : int
        Samples per client (>= 1).

    Returns
    -------
    str
        ``path``.
    """
    from fslora_ref.problems import make_problem
    dims = {"m": job.m, "n_classes": job.n} if job.family == "logistic" else {"m": job.m, "n": job.n}
    held = make_problem(job.family, n_clients=job.clients, seed=job.seed, eval_size=int(size), **dims).held_out
    X = np.concatenate([c.X for c in held.clients])
    targets = np.concatenate([c.targets for c in held.clients])
    arrays = {"X": X, "targets": targets, "meta": np.array(json.dumps(
        {"format": HELD_OUT_FORMAT, "name": held.name, "link": held.link, "layers": held.n_layers,
         "recipe": recipe_digest(job), "per-client": int(size)}))}
    arrays.update({f"W0_{l}": W for l, W in enumerate(held.base_weights)})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)
    return path


def load_held_out(path: str, job, base_weights) -> Problem:
    """The server's held-out set in ``path`` as a one-client Problem over ``base_weights``.

    Parameters
    ----------
    path : str
        A file of :func:`write_held_out` (or any file of that format: X (s, m_1), targets (s, n_L)
        or (s,) integer labels, the base weights W0_l (m_l, n_l)).
    job : SimulateJob
        The run's job (the file must be made for its recipe).
    base_weights : list of ndarray
        The server's model W0_l, shape (m_l, n_l): the file's must be equal.

    Returns
    -------
    Problem
        One client, its data the held-out samples.

    Raises
    ------
    ValueError
        One line naming the file: not such a file, another job's, or another model's.
    """
    what = f"run config 'server-eval-data' {path}"
    meta, weights, data = _read_npz(path, what, "held-out")
    if meta.get("format") != HELD_OUT_FORMAT:
        raise ValueError(f"{what}: format {meta.get('format')!r}, expected {HELD_OUT_FORMAT!r}")
    if meta.get("recipe") != recipe_digest(job):
        raise ValueError(f"{what} was made for another job (family, clients, m, n, seed or batch size differ)")
    if len(weights) != len(base_weights) or not all(np.array_equal(a, b) for a, b in zip(weights, base_weights)):
        raise ValueError(f"{what}: its base weights are not the server's model")
    return Problem(meta["name"], list(base_weights), [data], link=meta["link"])
