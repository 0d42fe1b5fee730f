"""ClientApp side of `fslora flower simulate`: the reference's client_update on this node's data.

The node trains on its own partition only (partition.py): the file named by its node config's
``data``, or the one it made from the job's recipe in its node-local cache during the discovery
query. A training message reads that one file, so its cost does not depend on N; nothing but the
plan and the upload crosses the wire.
"""
from __future__ import annotations

import os

import numpy as np

from fslora_ref.algorithms import get_algorithm

from .partition import load_partition, recipe_digest, write_partitions


def cache_dir() -> str:
    """``$FSLORA_NODE_DATA_CACHE``, else ``$FSLORA_CACHE/flower-partitions`` (default
    ``~/.cache/fslora/flower-partitions``)."""
    if os.environ.get("FSLORA_NODE_DATA_CACHE"):
        return os.environ["FSLORA_NODE_DATA_CACHE"]
    root = os.environ.get("FSLORA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fslora")
    return os.path.join(root, "flower-partitions")


def partition_path(job, node_config, client: int) -> str:
    """The node's data file: its node config's ``data``, else its cache file for this recipe."""
    given = node_config.get("data") if node_config is not None else None
    if given:
        return os.path.abspath(os.path.expanduser(str(given)))
    return os.path.join(cache_dir(), recipe_digest(job), f"partition-{client}.npz")


def prepare(job, node_config=None, client: int | None = None) -> dict:
    """Check the SimulateJob can run here and that this node has its partition (the discovery query).

    The job gets the same one-line errors as `fslora simulate`. A ``data`` file named in the node
    config is checked to be this client's of this recipe; otherwise the node's cache gets the
    recipe's partition files, built once per machine.

    Parameters
    ----------
    job : SimulateJob
        The run's job.
    node_config : Mapping, optional
        The SuperNode's node config (its optional ``data`` path is read).
    client : int, optional
        This node's partition-id (None: only check that the recipe builds).

    Returns
    -------
    dict
        What the node announces of its data: ``client-size`` (its number of samples n_i) and
        ``data-sha256`` (the digest of its samples); empty when ``client`` is None.

    Raises
    ------
    ValueError
        One line, for a bad job option or a partition file that is not this client's of this recipe.
    """
    from fslora_ref.simulate import build
    job.check_options()
    if client is None:
        build(job)
        return {}
    local = local_partition(job, node_config, client)
    return {"client-size": local.size, "data-sha256": local.digest()}


def local_partition(job, node_config, client: int):
    """This node's data: its ``data`` file, else its cache file (made from the recipe if missing,
    e.g. on a node restarted after the discovery query).

    Parameters
    ----------
    job : SimulateJob
        The run's job.
    node_config : dict or None
        The SuperNode's --node-config.
    client : int
        This node's partition-id.

    Returns
    -------
    LocalPartition
    """
    path = partition_path(job, node_config, client)
    if not (node_config is not None and node_config.get("data")) and not os.path.exists(path):
        _make_cache(job, os.path.dirname(path), path)
    return load_partition(path, client, recipe_digest(job))


def _make_cache(job, directory: str, path: str) -> None:
    """Build the recipe once and write every client's partition file into ``directory`` (a lock
    makes the many virtual nodes of one machine, e.g. on Flower's simulation engine, build it once
    between them instead of once each: O(N) in all, not O(N^2))."""
    import fcntl
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(path):
            write_partitions(job, directory)


def train(plan, meta, job, node_config=None):
    """Run the algorithm's own ``client_update`` on this node's partition only.

    A node without a ``data`` file whose cache lacks its partition (it missed the query, e.g. it was
    restarted) prepares it first.

    Parameters
    ----------
    plan : ClientPlan
        The client's plan (:func:`fslora_flower.records.record_to_plan`).
    meta : dict
        The plan's ConfigRecord (its ``algorithm`` and ``round`` are read).
    job : SimulateJob
        The run's job (H, lr, seed, optimiser, scaling; the budget is the plan's).
    node_config : Mapping, optional
        The SuperNode's node config (its optional ``data`` path).

    Returns
    -------
    upload : Upload
        The client's result of local training.
    dtype : type
        ``numpy.float64``, the float type to send it in.

    Raises
    ------
    ValueError
        If the plan's algorithm is not one of the job's, or the partition file is not this client's.
    """
    from fslora_ref.simulate import fed_config
    names = job.algorithm_names()
    if meta["algorithm"] not in names:
        raise ValueError(f"plan for algorithm {meta['algorithm']!r}, not one of this job's {names}")
    problem = local_partition(job, node_config, plan.client)
    config = fed_config(job)    # client_update reads H, lr, seed, optimiser and scaling; the budget is the plan's
    upload = get_algorithm(meta["algorithm"]).client_update(plan, problem, config, int(meta["round"]))
    return upload, np.float64


def evaluate(content, job, node_config, client: int):
    """The reply content to an EVALUATE message (evaluation.py), computed on this node's partition only.

    Parameters
    ----------
    content : RecordDict
        The message content.
    job : SimulateJob
        The run's job (its recipe identifies the partition).
    node_config : dict
        The SuperNode's --node-config.
    client : int
        This node's partition-id.

    Returns
    -------
    RecordDict
        The reply content (evaluation.evaluate_here).
    """
    from .evaluation import evaluate_here
    return evaluate_here(content, local_partition(job, node_config, client))


__all__ = ["evaluate", "prepare", "train", "write_partitions"]
