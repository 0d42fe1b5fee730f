"""Run configuration and per-client rank budgets, validated at construction."""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .optim import ServerOptimizer, make_client_optimizer
from .seeding import SERVER, stream
from .validation import (MAX_CLIENTS, MAX_LOCAL_STEPS, MAX_RANK, MAX_ROUNDS, check_betas, check_choice, check_fraction,
                         check_int,
                         check_positive_float, check_real)

BUDGET_DISTRIBUTIONS = ("uniform", "normal", "heavy_tail_low")


@functools.lru_cache(maxsize=64)
def _client_optimizer(name, lr, weight_decay, betas, eps):
    # built (and validated) once per configuration: a client update asks for one every round
    return make_client_optimizer(name, lr, weight_decay, betas, eps)


def draw_budgets(n_clients: int, r_min: int, r_max: int, distribution: str, seed: int) -> list:
    """Per-client rank budgets k_i in [r_min, r_max] (the public implementation's options).

    Parameters
    ----------
    n_clients : int
        The number of clients N (1 <= N <= MAX_CLIENTS).
    r_min, r_max : int
        The smallest and largest budget, 1 <= r_min <= r_max <= MAX_RANK.
    distribution : {"uniform", "normal", "heavy_tail_low"}
        uniform: integers uniform on [r_min, r_max]; normal: mean (a+b)/2, sd (b-a)/6, clipped
        and rounded; heavy_tail_low: r_min + (r_max - r_min) * Beta(0.5, 3), rounded (most
        clients near r_min, a few large).
    seed : int
        The run's seed (the draw uses its ``"budget"`` stream).

    Returns
    -------
    list of int, length n_clients
        The budgets k_i.
    """
    n_clients = check_int("n_clients", n_clients, low=1, high=MAX_CLIENTS)
    r_min = check_int("r_min", r_min, low=1, high=MAX_RANK)
    r_max = check_int("r_max", r_max, low=r_min, high=MAX_RANK)
    check_choice("distribution", distribution, BUDGET_DISTRIBUTIONS)
    rng = stream(seed, round=-1, client=SERVER, purpose="budget")
    if distribution == "uniform":
        raw = rng.integers(r_min, r_max + 1, size=n_clients).astype(float)
    elif distribution == "normal":
        raw = rng.normal((r_min + r_max) / 2, max((r_max - r_min) / 6, 1e-12), size=n_clients)
    else:
        raw = r_min + (r_max - r_min) * rng.beta(0.5, 3.0, size=n_clients)
    return [int(v) for v in np.clip(np.rint(raw), r_min, r_max)]


def budgets_from_ratios(rank: int, ratios, n_clients: int) -> list:
    """k_i = round(ratio * r), cycling through ``ratios`` over the clients (at least 1).

    Parameters
    ----------
    rank : int
        The global rank r.
    ratios : sequence of float
        Ratios in (0, 1]; client i takes ``ratios[i % len(ratios)]``.
    n_clients : int
        The number of clients N.

    Returns
    -------
    list of int, length n_clients
        The budgets k_i, each >= 1.

    Examples
    --------
    >>> from fslora_ref import budgets_from_ratios
    >>> budgets_from_ratios(8, [0.25, 1.0], 3)
    [2, 8, 2]
    """
    rank = check_int("rank", rank, low=1, high=MAX_RANK)
    n_clients = check_int("n_clients", n_clients, low=1, high=MAX_CLIENTS)
    if isinstance(ratios, (str, bytes)) or not hasattr(ratios, "__len__"):
        raise TypeError(f"ratios must be a sequence of numbers in (0, 1], got {ratios!r}")
    if len(ratios) == 0:
        raise ValueError("ratios must hold at least one ratio in (0, 1], got none")
    checked = []
    for j, ratio in enumerate(ratios):
        ratio = check_real(f"ratios[{j}]", ratio, low=0.0, high=1.0)
        if ratio == 0.0:
            raise ValueError(f"ratios[{j}] must be in (0, 1], got 0.0")
        checked.append(ratio)
    return [max(1, int(round(checked[i % len(checked)] * rank))) for i in range(n_clients)]


@dataclass(frozen=True)
class FedConfig:
    """Everything a federated LoRA run needs besides the problem (validated at construction).

    Parameters
    ----------
    rank : int
        The global rank r.
    budgets : sequence of int
        The sketch size (rank budget) k_i of each client, 1 <= k_i <= r; its length is the
        number of clients.
    local_steps : int, default 5
        H, the client's local steps per round.
    lr : float, default 0.05
        The client step size gamma.
    rounds : int, default 30
        The number of rounds T.
    seed : int, default 0
        The run's seed (every random stream is keyed from it).
    lora_scaling : float, default 1.0
        s in W = W0 + s B A.
    client_optimizer : {"sgd", "adamw"}, default "sgd"
        The client optimiser (SGD is Algorithm 1's).
    weight_decay : float, default 0.0
        AdamW's weight decay (must be 0 with SGD).
    client_fraction : float, default 1.0
        The fraction of clients taking part in each round, in (0, 1].
    server_optimizer : {"none", "sgd", "adam"}, default "none"
        The server step on the averaged update ("none": apply it as is, Algorithm 1).
    server_lr : float, default 1.0
        The server optimiser's step size.
    form : {"submatrix", "masked"}, default "submatrix"
        How FSLoRA's clients hold their sketched factors (same iterates; "masked" is Algorithm 1
        as written, full-size).
    extra : dict, optional
        JSON values recorded with the run (part of its checkpoint identity).
    betas : tuple of float, default (0.9, 0.999)
        The AdamW client's betas.
    eps : float, default 1e-8
        The AdamW client's epsilon.
    server_betas : tuple of float, default (0.9, 0.99)
        The Adam server's betas.
    server_eps : float, default 1e-6
        The Adam server's epsilon.

    Notes
    -----
    betas, eps, server_betas and server_eps are written by :meth:`to_json` (history, checkpoint
    identity) only when they differ from these defaults, so every run recorded before they
    existed keeps its identity.

    Examples
    --------
    >>> from fslora_ref import FedConfig
    >>> config = FedConfig(rank=8, budgets=(2, 4, 8), rounds=10)
    >>> config.n_clients, config.participants(0)
    (3, [0, 1, 2])
    >>> config.replace(lr=0.1).lr
    0.1
    """

    rank: int
    budgets: tuple
    local_steps: int = 5
    lr: float = 0.05
    rounds: int = 30
    seed: int = 0
    lora_scaling: float = 1.0
    client_optimizer: str = "sgd"
    weight_decay: float = 0.0
    client_fraction: float = 1.0
    server_optimizer: str = "none"
    server_lr: float = 1.0
    form: str = "submatrix"
    extra: dict = field(default_factory=dict)
    betas: tuple = (0.9, 0.999)      # the defaults of fslora_ref.optim's AdamW and ServerOptimizer
    eps: float = 1e-8
    server_betas: tuple = (0.9, 0.99)
    server_eps: float = 1e-6

    def __post_init__(self):
        check_int("rank", self.rank, low=1, high=MAX_RANK)
        if isinstance(self.budgets, (str, bytes)) or not hasattr(self.budgets, "__iter__"):
            raise TypeError(f"budgets must be a sequence of integers (one per client), got {self.budgets!r}")
        budgets = tuple(self.budgets)
        if not budgets:
            raise ValueError("budgets must hold one rank budget per client (n_clients >= 1), got none")
        if len(budgets) > MAX_CLIENTS:
            raise ValueError(f"budgets must list at most {MAX_CLIENTS} clients, got {len(budgets)}")
        for i, k in enumerate(budgets):
            check_int(f"budgets[{i}]", k, low=1, high=self.rank)
        object.__setattr__(self, "budgets", tuple(int(k) for k in budgets))
        # checked values are stored as plain Python numbers (a NumPy scalar would not survive to_json)
        checked = dict(rank=check_int("rank", self.rank, low=1, high=MAX_RANK),
                       local_steps=check_int("local_steps", self.local_steps, low=1, high=MAX_LOCAL_STEPS),
                       lr=check_positive_float("lr", self.lr),
                       rounds=check_int("rounds", self.rounds, low=0, high=MAX_ROUNDS),
                       seed=check_int("seed", self.seed, low=0),
                       lora_scaling=check_positive_float("lora_scaling", self.lora_scaling),
                       weight_decay=check_positive_float("weight_decay", self.weight_decay, allow_zero=True),
                       client_fraction=check_fraction("client_fraction", self.client_fraction),
                       server_lr=check_positive_float("server_lr", self.server_lr))
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        check_choice("client_optimizer", self.client_optimizer, ("sgd", "adamw"))
        check_choice("server_optimizer", self.server_optimizer, ("none", "sgd", "adam"))
        check_choice("form", self.form, ("submatrix", "masked"))
        object.__setattr__(self, "betas", check_betas("betas", self.betas))
        check_positive_float("eps", self.eps)
        object.__setattr__(self, "server_betas", check_betas("server_betas", self.server_betas))
        check_positive_float("server_eps", self.server_eps)
        if not isinstance(self.extra, dict):
            raise TypeError(f"extra must be a dict, got {type(self.extra).__name__}")
        try:  # extra is part of the run's identity in checkpoints: strict JSON only
            json.dumps(self.extra, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"extra must hold only JSON values (finite numbers, strings, lists, dicts): {exc}") from None
        self.make_client_optimizer()

    @property
    def n_clients(self) -> int:
        """The number of clients, ``len(budgets)``."""
        return len(self.budgets)

    def make_client_optimizer(self):
        """The client optimiser of this configuration.

        Returns
        -------
        SGD or AdamW
            ``fslora_ref.optim.make_client_optimizer`` of client_optimizer, lr, weight_decay,
            betas, eps. Both are frozen and keep their state outside (``init`` / ``update``), so
            one instance per configuration serves every client and round.
        """
        return _client_optimizer(self.client_optimizer, self.lr, self.weight_decay, self.betas, self.eps)

    def make_server_optimizer(self):
        """A new server optimiser of this configuration.

        Returns
        -------
        ServerOptimizer
            Of server_optimizer, server_lr, server_betas, server_eps.
        """
        return ServerOptimizer(self.server_optimizer, self.server_lr, self.server_betas[0], self.server_betas[1],
                               self.server_eps)

    def participants(self, round_index: int) -> list:
        """Clients taking part in ``round_index``.

        Parameters
        ----------
        round_index : int
            The round (its ``"participation"`` stream draws the sample).

        Returns
        -------
        list of int
            Sorted client indices: all of them, or a uniform sample of
            max(1, round(client_fraction * N)).
        """
        n = self.n_clients
        if self.client_fraction >= 1.0:
            return list(range(n))
        size = max(1, int(round(self.client_fraction * n)))
        rng = stream(self.seed, round=round_index, client=SERVER, purpose="participation")
        return sorted(int(i) for i in rng.choice(n, size=size, replace=False))

    def to_json(self) -> dict:
        """The configuration as JSON values.

        Returns
        -------
        dict
            Every field (budgets as a list), except the optimiser hyperparameters left at their
            defaults (``OPTIMIZER_DEFAULTS``).
        """
        d = asdict(self)
        d["budgets"] = list(self.budgets)
        for name, default in OPTIMIZER_DEFAULTS.items():  # only when set: older records keep their identity
            if d[name] == default:
                del d[name]
            elif isinstance(default, tuple):
                d[name] = list(d[name])
        return d

    @classmethod
    def from_json(cls, d: dict) -> "FedConfig":
        """The configuration :meth:`to_json` wrote.

        Parameters
        ----------
        d : dict
            Field values (missing optional fields take their defaults).

        Returns
        -------
        FedConfig
        """
        return cls(**dict(d, budgets=tuple(d["budgets"])))

    def replace(self, **changes) -> "FedConfig":
        """A copy with some fields changed (validated again).

        Parameters
        ----------
        **changes
            New field values by name.

        Returns
        -------
        FedConfig
        """
        return FedConfig(**dict(self.to_json(), **changes))

    def __hash__(self):
        return hash(json.dumps(self.to_json(), sort_keys=True))


# the optimiser hyperparameters to_json writes only when they differ from these defaults
OPTIMIZER_DEFAULTS = {f.name: f.default for f in fields(FedConfig)
                      if f.name in ("betas", "eps", "server_betas", "server_eps")}
