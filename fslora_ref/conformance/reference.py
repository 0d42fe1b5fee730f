"""The reference implementation behind the adapter protocol (both modes and the sampler).

``impl`` is what ``fslora crosscheck fslora_ref.conformance.reference:impl`` checks. Its pieces
(``client_update``, ``aggregate``, ``draw_index_sets``) are the battery's expected values and the
hooks the mutants in tests/mutants override; all of them call the reference's own code
(``sketched_factors`` and ``local_train``, ``FSLoRA.aggregate``, ``draw_round_sketches``,
``sample_sketch``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..algorithms import FSLoRA
from ..algorithms.fslora import sketched_factors
from ..algorithms.protocol import ClientPlan, ServerState, Upload
from ..client import local_train
from ..config import FedConfig
from ..seeding import stream
from ..sketch import Sketch, sample_sketch
from ..validation import check_positive_float
from .protocol import OracleProblem, RoundResult, RoundTask


@dataclass(frozen=True)
class SGDW:
    """SGD with weight decay on the trainable coordinates: p <- p - lr (g + wd p) where mask.

    Same (init, update) interface as ``fslora_ref.optim``; with wd = 0 it is ``optim.SGD``.

    Parameters
    ----------
    lr : float
        The step size (> 0).
    weight_decay : float, default 0.0
        wd (>= 0).
    """

    lr: float
    weight_decay: float = 0.0

    def __post_init__(self):
        check_positive_float("lr", self.lr)
        check_positive_float("weight_decay", self.weight_decay, allow_zero=True)

    state_floats_per_param = 0

    def init(self, params):
        """No state.

        Parameters
        ----------
        params : list of ndarray

        Returns
        -------
        tuple
            Empty.
        """
        return ()

    def update(self, grads, state, params, mask=None):
        """One step on every parameter (only where ``mask``).

        Parameters
        ----------
        grads : list of ndarray
        state : tuple
        params : list of ndarray
        mask : list of ndarray of bool, optional

        Returns
        -------
        params : list of ndarray
        state : tuple
        """
        out = []
        for l, (p, g) in enumerate(zip(params, grads)):
            step = self.lr * (g + self.weight_decay * p)
            out.append(p - (step if mask is None else np.where(mask[l], step, 0.0)))
        return out, state


@dataclass(frozen=True)
class TaskConfig(FedConfig):
    """The FedConfig of a RoundTask: its declared optimisers (AdamW's betas/eps and the server's are
    FedConfig fields) run through the reference's algorithm code exactly (``fslora_ref.optim``).

    It exists for one choice only: an SGD client *with* weight decay on the selected coordinates
    (:class:`SGDW`), which the battery declares (``RoundTask.weight_decay`` with
    ``client_optimizer='sgd'``) but a run may not choose (FedConfig refuses SGD with weight decay:
    Algorithm 1 and the LLM bridge's SGD have none, so a run would silently ignore it).

    Parameters
    ----------
    rank, budgets, local_steps, lr, rounds, seed
        As :class:`fslora_ref.config.FedConfig`.
    lora_scaling, client_optimizer, weight_decay, client_fraction
        As FedConfig (an SGD client may have weight decay here).
    server_optimizer, server_lr, form, extra, betas, eps, server_betas, server_eps
        As FedConfig.
    """

    __hash__ = FedConfig.__hash__

    def make_client_optimizer(self):
        """SGDW for an SGD client (weight decay allowed), else FedConfig's.

        Returns
        -------
        SGDW or AdamW
        """
        if self.client_optimizer == "sgd":
            return SGDW(self.lr, self.weight_decay)
        return super().make_client_optimizer()


def task_config(task: RoundTask) -> TaskConfig:
    """The config that describes ``task`` (and its declared optimisers) to the reference's algorithm code.

    Parameters
    ----------
    task : RoundTask

    Returns
    -------
    TaskConfig
    """
    return _config(task.rank, tuple(int(k) for k in task.budgets), task.local_steps, task.lr, task.seed,
                   task.lora_scaling, task.client_optimizer, task.weight_decay, task.server_lr,
                   "none" if task.server_optimizer == "average" else task.server_optimizer, tuple(task.betas),
                   task.eps, tuple(task.server_betas), task.server_eps)


@lru_cache(maxsize=256)
def _config(rank, budgets, local_steps, lr, seed, lora_scaling, client_optimizer, weight_decay, server_lr,
            server_optimizer, betas, eps, server_betas, server_eps) -> TaskConfig:
    # cached: the black-box battery builds thousands of identical configs, each validated on construction
    return TaskConfig(rank=rank, budgets=budgets, local_steps=local_steps, lr=lr, seed=seed, lora_scaling=lora_scaling,
                      client_optimizer=client_optimizer, weight_decay=weight_decay, server_lr=server_lr,
                      server_optimizer=server_optimizer, betas=betas, eps=eps, server_betas=server_betas,
                      server_eps=server_eps)


def sketched_client_update(task: RoundTask, i: int, index_sets, *, scale=None, steps=None, layers=None) -> list:
    """Algorithm 1's client i for one round: H steps of the task's client optimiser with
    coefficient s * r/k_i on the selected coordinates. index_sets: [I_l].

    optimizer_scope 'selected' trains the submatrix (B_I, A_I) and returns [(dB_I: (m_l, k_i),
    dA_I: (k_i, n_l))]; 'full' trains the full-size factors with coefficient s diag(S) (zero
    gradient outside I, but weight decay everywhere) and returns full-size [(dB: (m_l, r), dA: (r, n_l))].

    scale (default r/k_i), steps (default H) and layers (default the task's global factors) exist
    so that tests/mutants can build their defects from this one routine.

    Parameters
    ----------
    task : RoundTask
        The round.
    i : int
        The client's position.
    index_sets : list of ndarray
        I_l per layer.
    scale : float, optional
        Replaces r/k_i.
    steps : int, optional
        Replaces H.
    layers : list of tuple of ndarray, optional
        Replaces the task's global factors.

    Returns
    -------
    list of tuple of ndarray
        The client's changes per layer (blocks or full-size, see above).
    """
    problem = OracleProblem(task.base_weights, task.oracles)
    config = task_config(task)
    layers = [(np.asarray(B, float), np.asarray(A, float)) for B, A in (task.layers if layers is None else layers)]
    sketches = [Sketch(task.rank, I) for I in index_sets]
    # FSLoRA's own client factors; the 'full' scope trains the masked form without its masks (weight
    # decay acts on every coordinate, see protocol.py)
    factors, _ = sketched_factors(layers, sketches, task.lora_scaling,
                                  "masked" if task.optimizer_scope == "full" else "submatrix")
    if scale is not None:  # a mutant's coefficient s * scale in place of s r/k_i, on the same coordinates
        factors = [f._replace(coeff=np.where(f.coeff != 0, task.lora_scaling * scale, 0.0)) for f in factors]
    trained, _ = local_train(problem, i, factors, steps=task.local_steps if steps is None else steps,
                             optimizer=config.make_client_optimizer(), rng=None)
    return [(B - f.B, A - f.A) for (B, A), f in zip(trained, factors)]


def average_over_clients(task: RoundTask, index_sets, uploads) -> list:
    """The reference server step (``FSLoRA.aggregate``): X + (1/N) sum_i scatter(upload_i), or the
    declared server optimiser on the pseudo-gradient -(1/N) sum_i scatter(upload_i), fresh state.
    An upload is a block at its index set, or full-size (r columns of B).

    Parameters
    ----------
    task : RoundTask
        The round.
    index_sets : list of list of ndarray
        ``[client][layer]`` index sets.
    uploads : list of list of tuple of ndarray
        ``[client][layer] = (dB, dA)``.

    Returns
    -------
    list of tuple of ndarray
        The new global ``[(B_l, A_l)]``.
    """
    state = ServerState([(np.asarray(B, float), np.asarray(A, float)) for B, A in task.layers])
    plans = []
    for i, (sets, up) in enumerate(zip(index_sets, uploads)):
        where = [np.arange(task.rank) if np.shape(dB)[1] == task.rank and len(I) != task.rank else np.asarray(I)
                 for I, (dB, _) in zip(sets, up)]
        plans.append(ClientPlan(i, [], where))
    ups = [Upload(i, [], deltas, 0, 0, []) for i, deltas in enumerate(uploads)]
    return FSLoRA().aggregate(state, plans, ups, task_config(task)).layers


def reference_round(task: RoundTask, uploads=None) -> list:
    """The reference's new global factors for a task with ``index_sets`` given.

    Parameters
    ----------
    task : RoundTask
        A white-box round.
    uploads : list, optional
        The clients' reference updates, if already computed.

    Returns
    -------
    list of tuple of ndarray
        ``[(B_l, A_l)]``.
    """
    if uploads is None:
        uploads = [sketched_client_update(task, i, task.index_sets[i]) for i in range(task.n_clients)]
    return average_over_clients(task, task.index_sets, uploads)


class ReferenceImplementation:
    """Algorithm 1 behind the adapter protocol; subclass and override a hook to build a mutant."""

    name = "reference"
    dtype = np.float64

    def client_update(self, task: RoundTask, i: int, index_sets) -> list:
        """Client i's changes (hook; :func:`sketched_client_update`).

        Parameters
        ----------
        task : RoundTask
            The round.
        i : int
            The client's position.
        index_sets : list of ndarray
            I_l per layer.

        Returns
        -------
        list of tuple of ndarray
        """
        return sketched_client_update(task, i, index_sets)

    def aggregate(self, task: RoundTask, index_sets, uploads) -> list:
        """The server step (hook; :func:`average_over_clients`).

        Parameters
        ----------
        task : RoundTask
            The round.
        index_sets : list of list of ndarray
            ``[client][layer]``.
        uploads : list of list of tuple of ndarray
            ``[client][layer]``.

        Returns
        -------
        list of tuple of ndarray
        """
        return average_over_clients(task, index_sets, uploads)

    def draw_index_sets(self, task: RoundTask) -> list:
        """Index sets from the (round, client, layer) sketch streams.

        Parameters
        ----------
        task : RoundTask
            The round.

        Returns
        -------
        list of list of ndarray
            ``[client][layer]``.
        """
        # the streams of draw_round_sketches, keyed by the client's identity (not its position)
        return [[sample_sketch(task.rank, k, stream(task.seed, round=task.round_index, client=cid, layer=l,
                                                    purpose="sketch")).indices for l in range(task.n_layers)]
                for k, cid in zip(task.budgets, task.client_ids)]

    def _round(self, task: RoundTask, index_sets) -> RoundResult:
        uploads = [self.client_update(task, i, index_sets[i]) for i in range(task.n_clients)]
        return RoundResult(self.aggregate(task, index_sets, uploads), uploads)

    def white_box_round(self, task: RoundTask) -> RoundResult:
        """A round with the task's index sets.

        Parameters
        ----------
        task : RoundTask
            The round.

        Returns
        -------
        RoundResult
        """
        return self._round(task, task.index_sets)

    def black_box_round(self, task: RoundTask) -> RoundResult:
        """A round with index sets it draws itself (:meth:`draw_index_sets`).

        Parameters
        ----------
        task : RoundTask
            The round.

        Returns
        -------
        RoundResult
        """
        return self._round(task, self.draw_index_sets(task))

    def sample_sketch(self, rank: int, k: int, seed: int) -> np.ndarray:
        """diag(S) of one random-k draw keyed by ``seed``.

        Parameters
        ----------
        rank : int
        k : int
        seed : int

        Returns
        -------
        ndarray, shape (rank,)
        """
        return sample_sketch(rank, k, stream(seed, round=0, client=0, purpose="sketch")).diagonal()


impl = ReferenceImplementation()
