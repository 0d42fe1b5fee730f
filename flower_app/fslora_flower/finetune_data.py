"""The server's side of node-local finetune data: what the SuperNodes announced of their partitions.

A node started with ``data=<its partition file>`` answers the discovery query with its number of
examples, family counts, the sha256 of its examples and the recipe its file was made from
(llm_bridge/node_data.py). When every node did, the server plans and records with those and
never reads --train-json; a node without a file while others have one, or a file of another
recipe, stops the run naming the node (exit 2).
"""
from __future__ import annotations

from fslora_ref.safe_json import loads_bounded

DATA_KEYS = ("examples", "data-sha256")   # what flower.json records of each node's announced data


def gathered(answers: dict, nodes: dict, job):
    """The nodes' announced data (``llm_bridge.node_data.NodeData``), None if no node announced any.

    Parameters
    ----------
    answers : dict
        ``{client id: the node's discovery answer}``.
    nodes : dict
        ``{client id: Flower node id}`` (named in errors).
    job : FinetuneJob
        The run's job (its data recipe).

    Returns
    -------
    NodeData or None

    Raises
    ------
    ValueError
        One line naming the node whose announcement is missing or does not fit the job.
    """
    from llm_bridge.node_data import NodeData, recipe_digest
    have = {c: "examples" in a for c, a in answers.items()}
    if not any(have.values()):
        return None
    silent = sorted(c for c, yes in have.items() if not yes)
    if silent:
        raise ValueError(f"partition-id {silent[0]} (node {nodes[silent[0]]}) has no partition file while other "
                         f"nodes do: start every SuperNode with data=<its partition file> in --node-config, or none")
    digest = recipe_digest(job)
    sizes, counts, digests = [], [], []
    for c in sorted(answers):
        a, who = answers[c], f"partition-id {c} (node {nodes[c]})"
        if a.get("data-recipe") != digest:
            raise ValueError(f"{who} holds a partition made for another job (its recipe differs from the run's)")
        n = a.get("examples")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{who} announced examples={n!r}, not an integer >= 1")
        fc = loads_bounded(str(a.get("family-counts", "")), f"{who}'s family-counts", max_depth=1)
        if not isinstance(fc, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                               for v in fc.values()) or sum(fc.values()) != n:
            raise ValueError(f"{who} announced family counts {str(fc)[:80]} that do not add up to its {n} examples")
        sha = str(a.get("data-sha256", ""))
        if len(sha) != 64:
            raise ValueError(f"{who} announced no sha256 of its data")
        sizes.append(n)
        counts.append(fc)
        digests.append(sha)
    return NodeData(tuple(sizes), tuple(counts), tuple(digests))
