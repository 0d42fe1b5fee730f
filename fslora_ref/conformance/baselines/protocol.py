"""The adapter protocol of a baseline under test (``fslora crosscheck --algorithm fedit|hetlora|flexlora|flora``).

A baseline implementation is any object with

    aggregate(task: AggregationTask) -> new server state        # required: the server's rule
    run_rounds(task: RoundsTask) -> [model update per round]      # optional: whole rounds

and optionally ``options`` (dict: the variant it implements, e.g. ``{"aggregate": "delta"}``; omitted
options mean the reference defaults, the FSLoRA paper's rules, docs/spec.md §5), ``algorithm``
(str: which baseline; must agree with ``--algorithm``) and ``name``.

Conventions (docs/spec.md §8): a layer is x -> x W with W = W0 + c B A, B: (m, q) input side,
A: (q, n) output side. A rank-q adapter's coefficient c is s (``scaling="constant"``) or
s sqrt(r / q) (``scaling="rslora"``, PEFT's alpha/sqrt(q) with alpha = s sqrt(r)). Client weights w_i
are 1/N (``weighting="uniform"``) or n_i / sum_j n_j (``"data_size"``, n_i = task.client_sizes[i]).

What ``aggregate`` returns, per algorithm (every client of the task takes part):
  fedit, hetlora: the new rank-r server factors [(B_l: (m_l, r), A_l: (r, n_l))]
  flexlora:       the new global update [Delta W_l: (m_l, n_l)] (the model is W0 + Delta W)
  flora:          the new merged update [M_l: (m_l, n_l)] (the model is W0 + M), *including* task.merged
A dict {"layers": [(B, A)]} or {"delta_W": [arrays]} is accepted too.

What ``run_rounds`` runs: ``task.rounds`` rounds from the server state ``task.layers`` (the common LoRA
initialisation, A = 0; FLoRA's merged update starts at 0). In each round every client i starts from what
its algorithm gives it (FedIT: the server's factors; HetLoRA: their first k_i columns / rows; FlexLoRA:
round 0 the first k_i columns / rows of ``task.layers``, then the rank-k_i SVD truncation of the global
update split as declared; FLoRA: ``task.fresh_pairs[t][i]``), and takes ``task.local_steps`` full-batch
SGD steps with its coefficient c_i, both factors from the same W:

    W_l = W0_l + M_l + c_i B_l A_l,   [G_l] = task.oracles[i]([W_1, ...])
    B_l <- B_l - lr c_i G_l A_l^T,    A_l <- A_l - lr c_i B_l^T G_l

(M_l = 0 except FLoRA's merged update), then the server aggregates as ``aggregate`` does. It returns,
after each round t, the global model's update [W_l^t - W0_l] (a list of ``rounds`` lists of (m_l, n_l)
arrays). Server optimisers are not part of these tasks (a plain server step).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..protocol import TaskSizes

BASELINES = ("fedit", "hetlora", "flexlora", "flora")
FACTOR_ALGORITHMS = ("fedit", "hetlora")     # aggregate returns rank-r factors


@dataclass(frozen=True)
class AggregationTask(TaskSizes):
    """One server aggregation: the same uploads in, the server state out.

    An implementation's ``aggregate(task)`` returns what the module docstring lists per algorithm.

    Parameters
    ----------
    algorithm : str
        The baseline, one of BASELINES.
    options : dict
        Its declared variant, every option filled in (e.g. ``{"aggregate": "delta", ...}``).
    rank : int
        The global rank r.
    lora_scaling : float
        s (a rank-q adapter's coefficient is :func:`coefficient`).
    budgets : tuple of int
        k_i per client (FedIT: all r).
    client_sizes : tuple of int
        n_i per client, for data-size weights.
    layers : list of tuple of ndarray
        ``[(B_l: (m_l, r), A_l: (r, n_l))]``, the server's factors when the round started (FedIT and
        HetLoRA clients started from them; HetLoRA's "delta" rule reads them).
    merged : list of ndarray
        ``[M_l: (m_l, n_l)]``, FLoRA's update merged before this round (zeros for the others).
    trained : list of list of tuple of ndarray
        ``[client][layer]`` ``(B_i: (m_l, k_i), A_i: (k_i, n_l))``: each client's uploaded, trained
        factors.
    label : str, default ""
        Names the scenario in reports.
    """

    algorithm: str
    options: dict
    rank: int
    lora_scaling: float
    budgets: tuple
    client_sizes: tuple
    layers: list
    merged: list
    trained: list
    label: str = ""


@dataclass(frozen=True)
class RoundsTask(TaskSizes):
    """Whole rounds (see the module docstring for what a client does).

    An implementation's ``run_rounds(task)`` returns, after each round, ``[W_l^t - W0_l]``.

    Parameters
    ----------
    algorithm : str
        The baseline, one of BASELINES.
    options : dict
        Its declared variant, every option filled in.
    rank : int
        The global rank r.
    lora_scaling : float
        The LoRA scaling s.
    budgets : tuple of int
        k_i per client.
    client_sizes : tuple of int
        n_i per client, for data-size weights.
    layers : list of tuple of ndarray
        ``[(B_l: (m_l, r), A_l: (r, n_l))]``, the initial server factors (A_l = 0).
    base_weights : list of ndarray
        ``[W0_l: (m_l, n_l)]``, the frozen weights.
    oracles : list of callable
        Per client, ``oracle([W_l]) -> [dL/dW_l]`` (deterministic, full batch).
    lr : float
        The clients' SGD step size.
    local_steps : int
        Local SGD steps per round.
    rounds : int
        How many rounds to run.
    fresh_pairs : list, default []
        ``[round][client][layer]`` ``(B: (m_l, k_i), A: (k_i, n_l))``, the fresh pair a client starts
        from when its algorithm re-initialises (FLoRA); unused by the others.
    label : str, default ""
        Names the scenario in reports.
    """

    algorithm: str
    options: dict
    rank: int
    lora_scaling: float
    budgets: tuple
    client_sizes: tuple
    layers: list
    base_weights: list
    oracles: list
    lr: float
    local_steps: int
    rounds: int
    fresh_pairs: list = field(default_factory=list)
    label: str = ""


def coefficient(task, q: int) -> float:
    """The coefficient c of a rank-q adapter under the task's declared scaling.

    Parameters
    ----------
    task : AggregationTask or RoundsTask
        Its ``options["scaling"]`` (default ``"constant"``), ``lora_scaling`` s and ``rank`` r are read.
    q : int
        The adapter's rank (k_i for client i).

    Returns
    -------
    float
        s for ``"constant"``; s sqrt(r / q) for ``"rslora"``.
    """
    if task.options.get("scaling", "constant") == "rslora":
        return task.lora_scaling * float(np.sqrt(task.rank / q))
    return task.lora_scaling
