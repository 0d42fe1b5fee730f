"""What the battery hands an implementation, and what it expects back (the adapter protocol).

An implementation under test is any object with one or more of these methods:

    white_box_round(task: RoundTask) -> RoundResult | [(B, A)]    # task.index_sets given
    black_box_round(task: RoundTask) -> RoundResult | [(B, A)]    # task.index_sets is None
    sample_sketch(rank: int, k: int, seed: int) -> (rank,) array   # diag(S) of one draw

and optionally ``name`` (str) and ``dtype`` (numpy dtype it computes in; default float64).

One round of FSLoRA, as every method must run it (docs/spec.md §3, row-vector convention):
for every client i (all N take part) and layer l, with index set I = I_il (k_i indices out of r)
and sigma = (r/k_i) 1_I, start from the global (B_l, A_l) and take H = task.local_steps steps

    W_l = W0_l + s B_l diag(sigma) A_l,        [G_l] = task.oracles[i]([W_1, ..., W_L])
    B_l <- B_l - lr (s G_l A_l^T diag(sigma) + wd B_l diag(1_I))
    A_l <- A_l - lr (s diag(sigma) B_l^T G_l + wd diag(1_I) A_l)

(both updates from the same W; wd = task.weight_decay acts on the selected coordinates only),
then return the start plus the average over all N clients of the trained factors' change
(B_new = B + (1/N) sum_i dB_i; unselected coordinates of a client count as 0). In black-box mode the
implementation draws each I itself: uniform among k_i-subsets, the same set for B and A of a
layer, fixed for the round, independent across clients, layers and rounds -- any valid way: per
client generators keyed on (task.seed, task.round_index, task.client_ids[i]), or one server
generator drawing for the clients in order. The battery reads the sets of the round with all
clients on each client's own block (black_box.py) and never requires a client's draws alone to
equal its draws in the joint round; calls with different task.round_index must draw independently.
Every input is a copy; an implementation must not write into it (inputs_unchanged_<mode>).

That is the default task (``client_optimizer='sgd'``, ``server_optimizer='average'``). An
implementation that declares other optimisers (``optimizers.py``) gets tasks that say so, and
the steps above become: AdamW on (B_I, A_I) (``optimizer_scope='selected'``) or on the full-size
factors (``'full'``: gradients are 0 outside I, decoupled weight decay is not), and the server
applies SGD or Adam (fresh state) to the pseudo-gradient -(1/N) sum_i dX_i.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..client import dense_factor_grads
from ..lora import LayerFactors
from ..validation import check_choice
from .optimizers import CLIENT_OPTIMIZERS, SCOPES, SERVER_RULES

# Relative tolerance of an implementation's round against the reference, by the dtype it
# computes in (relative to the largest reference change of the compared factor).
TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-4}
# A coordinate "moved" when it changed by more than this times the factor's largest entry:
# above the rounding of an average of unchanged copies, far below any real update.
MOVED = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-6}
# A moved column of B (row of A) is "decay-like" when its change is a multiple of its own value up
# to this relative residual (float32 rounding of a small multiple leaves ~1e-4); a sketched
# gradient step leaves a residual of order 1 (the battery checks that on the reference).
DECAY_RESIDUAL = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 2e-2}


def dtype_of(impl) -> np.dtype:
    """The dtype an implementation computes in (``impl.dtype``, default float64); validated.

    Parameters
    ----------
    impl : object
        The implementation under test.

    Returns
    -------
    numpy.dtype
        float32 or float64.
    """
    try:
        dt = np.dtype(getattr(impl, "dtype", np.float64))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B036 - a hostile attribute must not crash the battery
        raise TypeError(f"impl.dtype must be a numpy dtype (float32 or float64): {type(exc).__name__}: {exc}") from None
    if dt not in TOLERANCE:
        raise ValueError(f"impl.dtype must be one of {[str(d) for d in TOLERANCE]}, got {dt}")
    return dt


class QuadraticOracle:
    """Client objective f(W) = sum_l <C_l, W_l> + (mu/2) ||M_l * (W_l - center_l)||_F^2.

    grad_l = C_l + mu M_l * (W_l - center_l). With mu = 0 the gradient is the constant C_l.
    Simple enough to be written as a torch loss (see llm_bridge/peft_conformance.py), which is
    why black-box mode uses it. Calling the oracle with ``[W_l]`` returns ``[grad_l]``.

    Parameters
    ----------
    linear : list of array_like
        C_l, shape (m_l, n_l).
    mask : list of array_like, optional
        M_l, shape (m_l, n_l) (default ones).
    curvature : float, default 0.0
        mu.
    center : list of array_like, optional
        center_l, shape (m_l, n_l) (default zeros).
    """

    def __init__(self, linear, mask=None, curvature: float = 0.0, center=None):
        self.linear = [np.asarray(c, dtype=float) for c in linear]
        self.mask = [np.ones_like(c) for c in self.linear] if mask is None else [np.asarray(m, float) for m in mask]
        self.curvature = float(curvature)
        self.center = [np.zeros_like(c) for c in self.linear] if center is None else [np.asarray(c, float) for c in center]

    def loss(self, weights) -> float:
        """f(W).

        Parameters
        ----------
        weights : list of ndarray
            W_l, shape (m_l, n_l).

        Returns
        -------
        float
        """
        return float(sum(np.vdot(C, W) + 0.5 * self.curvature * np.sum((M * (W - Z)) ** 2)
                         for C, M, Z, W in zip(self.linear, self.mask, self.center, weights)))

    def __call__(self, weights) -> list:
        return [C + self.curvature * M * (np.asarray(W, float) - Z)
                for C, M, Z, W in zip(self.linear, self.mask, self.center, weights)]


class ProblemOracle:
    """Full-batch (deterministic) gradient over W of one client of a reference Problem.

    Calling the oracle with ``[W_l]`` returns ``[dL/dW_l]``.

    Parameters
    ----------
    problem : Problem
        A reference problem.
    client : int
        The client.
    """

    def __init__(self, problem, client: int):
        self.problem, self.client = problem, client

    def loss(self, weights) -> float:
        """The client's full-data loss f_i(W).

        Parameters
        ----------
        weights : list of ndarray
            W_l, shape (m_l, n_l).

        Returns
        -------
        float
        """
        return self.problem.loss(self.client, [np.asarray(W, float) for W in weights])

    def __call__(self, weights) -> list:
        return self.problem.loss_and_weight_grads(self.client, [np.asarray(W, float) for W in weights])[1]


class TaskSizes:
    """``n_clients`` / ``n_layers`` of a task that holds ``budgets`` (one per client) and ``layers``."""

    @property
    def n_clients(self) -> int:
        """N, the number of clients."""
        return len(self.budgets)

    @property
    def n_layers(self) -> int:
        """The number of adapted layers."""
        return len(self.layers)


@dataclass(frozen=True)
class RoundTask(TaskSizes):
    """One round handed to an implementation. Arrays are in the implementation's dtype.

    The defaults are Algorithm 1: an SGD client and a plain average.

    Parameters
    ----------
    layers : list of tuple of ndarray
        ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l): the global factors at the start of the round.
    base_weights : list of ndarray
        W0_l, shape (m_l, n_l).
    oracles : list of callable
        Per client, ``oracle([W_l]) -> [dL/dW_l]`` (deterministic).
    budgets : tuple of int
        k_i per client.
    rank : int
        r.
    lr : float
        gamma.
    local_steps : int
        H.
    lora_scaling : float, default 1.0
        s.
    weight_decay : float, default 0.0
        Weight decay on the selected coordinates (0 in black-box mode).
    index_sets : list of list of ndarray or None
        White-box: ``[client][layer]`` sorted index arrays (k_i of them); black-box: None.
    client_ids : tuple of int, optional
        Each client's identity (key per-client randomness on it, not on the position); default
        0..N-1.
    seed : int, default 0
        For the implementation's own sketch draws in black-box mode.
    round_index : int, default 0
        Likewise.
    label : str, optional
        Names the round in diagnoses.
    extra : dict, optional
        Further scenario data.
    client_optimizer : {"sgd", "adamw"}, default "sgd"
        The client optimiser.
    betas : tuple of float, default (0.9, 0.999)
        AdamW's betas.
    eps : float, default 1e-8
        AdamW's epsilon.
    optimizer_scope : {"selected", "full"}, default "selected"
        Which coordinates the client optimiser steps.
    server_optimizer : {"average", "sgd", "adam"}, default "average"
        The server rule.
    server_lr : float, default 1.0
        The server step size.
    server_betas : tuple of float, default (0.9, 0.999)
        The Adam server's betas.
    server_eps : float, default 1e-8
        The Adam server's epsilon.
    """

    layers: list
    base_weights: list
    oracles: list
    budgets: tuple
    rank: int
    lr: float
    local_steps: int
    lora_scaling: float = 1.0
    weight_decay: float = 0.0
    index_sets: list | None = None
    client_ids: tuple = ()
    seed: int = 0
    round_index: int = 0
    label: str = ""
    extra: dict = field(default_factory=dict)
    client_optimizer: str = "sgd"
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    optimizer_scope: str = "selected"
    server_optimizer: str = "average"
    server_lr: float = 1.0
    server_betas: tuple = (0.9, 0.999)
    server_eps: float = 1e-8

    def __post_init__(self):
        if not self.client_ids:
            object.__setattr__(self, "client_ids", tuple(range(len(self.budgets))))
        check_choice("client_optimizer", self.client_optimizer, CLIENT_OPTIMIZERS)
        check_choice("optimizer_scope", self.optimizer_scope, SCOPES)
        check_choice("server_optimizer", self.server_optimizer, SERVER_RULES)

    def only_client(self, i: int, **changes) -> "RoundTask":
        """The same round with client ``i`` alone (N = 1), keeping its identity.

        Parameters
        ----------
        i : int
            The client's position.
        **changes
            Further fields to change.

        Returns
        -------
        RoundTask
        """
        sets = None if self.index_sets is None else [self.index_sets[i]]
        return replace(self, oracles=[self.oracles[i]], budgets=(self.budgets[i],), index_sets=sets,
                       client_ids=(self.client_ids[i],), **changes)


@dataclass
class RoundResult:
    """What a round returns: the new global factors, and (optionally) the per-client uploads
    [client][layer] = (dB_I: (m_l, k_i), dA_I: (k_i, n_l)) in the order of ``index_sets``.

    An implementation may also return a plain [(B, A)] list, or a dict {"layers": ..., "uploads": ...}
    (so that code written without fslora imports can expose its uploads).

    Parameters
    ----------
    layers : list of tuple of ndarray
        ``[(B_l, A_l)]``, the new global factors.
    uploads : list of list of tuple of ndarray, optional
        ``[client][layer] = (dB_I, dA_I)``, shapes (m_l, k_i) and (k_i, n_l).
    """

    layers: list
    uploads: list | None = None


class OracleProblem:
    """A reference Problem view of per-client gradient oracles, so ``local_train`` can run on them.

    Every step is full batch; gradients w.r.t. the factors go through the dense W, exactly as
    Algorithm 1 writes them (``client.dense_factor_grads``).

    Parameters
    ----------
    base_weights : list of array_like
        W0_l, shape (m_l, n_l).
    oracles : list of callable
        One gradient oracle per client (with a ``loss`` method).
    """

    def __init__(self, base_weights, oracles):
        self.base_weights = [np.asarray(W, dtype=float) for W in base_weights]
        self.oracles = oracles

    @property
    def n_clients(self) -> int:
        return len(self.oracles)

    @property
    def n_layers(self) -> int:
        return len(self.base_weights)

    @property
    def layer_shapes(self) -> list:
        return [W.shape for W in self.base_weights]

    def sample_batch(self, client: int, rng) -> None:
        """Always the full batch (None).

        Parameters
        ----------
        client : int
        rng : numpy.random.Generator
            Unused.
        """
        return None

    def loss_and_weight_grads(self, client: int, weights, batch=None):
        """The client's loss and its oracle's gradients at dense weights.

        Parameters
        ----------
        client : int
        weights : list of ndarray
            W_l, shape (m_l, n_l).
        batch : None
            Unused (full batch).

        Returns
        -------
        loss : float
        grads : list of ndarray
            dL/dW_l, shape (m_l, n_l).
        """
        oracle = self.oracles[client]
        return oracle.loss(weights), oracle(weights)

    def loss_and_factor_grads(self, client: int, factors, batch=None):
        """The client's loss and its gradients w.r.t. each layer's (B, A), through the dense W.

        Parameters
        ----------
        client : int
        factors : list of tuple
            LayerFactors fields per layer.
        batch : None
            Unused (full batch).

        Returns
        -------
        loss : float
        grads : list of tuple of ndarray
            ``[(dB_l, dA_l)]``.
        """
        return dense_factor_grads(self, client, [LayerFactors(*f) for f in factors], batch)
