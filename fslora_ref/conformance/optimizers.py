"""What optimisers an implementation declares: the settings the battery runs the reference with.

Algorithm 1 trains clients with plain SGD and averages their changes; real code often uses an
AdamW client and a server optimiser on the pseudo-gradient (spec section 3, "Options found in
the public implementation"). An implementation declares what its code does::

    impl.optimizers = {"client": "adamw", "weight_decay": 0.01, "server": "adam", "server_lr": 1e-2}

(a dict, so from-scratch code needs no fslora import; or an ``Optimizers``). The battery writes
the declaration into every RoundTask it hands out (``task.client_optimizer``, ``task.betas``, ...)
and computes its expected values with the reference's own optimisers (``fslora_ref.optim``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..validation import check_betas, check_choice, check_positive_float

CLIENT_OPTIMIZERS = ("sgd", "adamw")
SERVER_RULES = ("average", "sgd", "adam")
SCOPES = ("selected", "full")


@dataclass(frozen=True)
class Optimizers:
    """A declared client optimiser and server rule.

    Parameters
    ----------
    client : {"sgd", "adamw"}, default "sgd"
        SGD (Algorithm 1) or AdamW (decoupled weight decay, bias-corrected moments).
    lr : float or None
        The client step size the code uses; None: it uses ``task.lr`` (the battery's).
    betas : tuple of float, default (0.9, 0.999)
        AdamW's (torch.optim.AdamW defaults).
    eps : float, default 1e-8
        AdamW's.
    weight_decay : float or None
        None: the code uses ``task.weight_decay``; a number: it is fixed in the code.
    scope : {"selected", "full"}, default "selected"
        "selected": the optimiser (state and weight decay) acts on the selected coordinates only
        (the rank-k submatrix client); "full": on the full-size factors (a masked client whose
        weight decay also shrinks unselected coordinates).
    server : {"average", "sgd", "adam"}, default "average"
        X + mean delta (Algorithm 1), X + server_lr * mean delta, or an Adam step on the
        pseudo-gradient -mean delta (fresh state every round).
    server_lr : float, default 1.0
        The server optimiser's step size.
    server_betas : tuple of float, default (0.9, 0.999)
        The Adam server's (torch.optim.Adam defaults).
    server_eps : float, default 1e-8
        The Adam server's.
    """

    client: str = "sgd"
    lr: float | None = None
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float | None = None
    scope: str = "selected"
    server: str = "average"
    server_lr: float = 1.0
    server_betas: tuple = (0.9, 0.999)
    server_eps: float = 1e-8

    def __post_init__(self):
        check_choice("optimizers.client", self.client, CLIENT_OPTIMIZERS)
        check_choice("optimizers.scope", self.scope, SCOPES)
        check_choice("optimizers.server", self.server, SERVER_RULES)
        if self.lr is not None:
            object.__setattr__(self, "lr", check_positive_float("optimizers.lr", self.lr))
        if self.weight_decay is not None:
            object.__setattr__(self, "weight_decay",
                               check_positive_float("optimizers.weight_decay", self.weight_decay, allow_zero=True))
        object.__setattr__(self, "betas", check_betas("optimizers.betas", self.betas))
        object.__setattr__(self, "server_betas", check_betas("optimizers.server_betas", self.server_betas))
        object.__setattr__(self, "eps", check_positive_float("optimizers.eps", self.eps))
        object.__setattr__(self, "server_eps", check_positive_float("optimizers.server_eps", self.server_eps))
        object.__setattr__(self, "server_lr", check_positive_float("optimizers.server_lr", self.server_lr))

    def task_fields(self) -> dict:
        """The RoundTask fields that carry this declaration (lr / weight_decay only if fixed).

        Returns
        -------
        dict
        """
        out = {"client_optimizer": self.client, "betas": self.betas, "eps": self.eps, "optimizer_scope": self.scope,
               "server_optimizer": self.server, "server_lr": self.server_lr, "server_betas": self.server_betas,
               "server_eps": self.server_eps}
        if self.lr is not None:
            out["lr"] = self.lr
        if self.weight_decay is not None:
            out["weight_decay"] = self.weight_decay
        return out

    def describe(self) -> str:
        """One line for the result table, e.g. 'client AdamW(...), server Adam(lr=0.01, ...)'.

        Returns
        -------
        str
        """
        lr = "lr from the battery" if self.lr is None else f"lr={self.lr:g}"
        wd = "weight decay from the battery" if self.weight_decay is None else f"weight_decay={self.weight_decay:g}"
        where = "on the selected coordinates" if self.scope == "selected" else "on the full-size factors"
        if self.client == "sgd":
            client = f"SGD({lr}, {wd}, {where})"
        else:
            client = f"AdamW({lr}, betas={self.betas}, eps={self.eps:g}, {wd}, state {where})"
        server = {"average": "average of the changes (Algorithm 1)",
                  "sgd": f"SGD on the pseudo-gradient (server_lr={self.server_lr:g})",
                  "adam": f"Adam on the pseudo-gradient (server_lr={self.server_lr:g}, betas={self.server_betas}, "
                          f"eps={self.server_eps:g}, fresh state each round)"}[self.server]
        return f"client {client}; server {server}"

    def to_json(self) -> dict:
        """Every field as JSON values (pairs as lists).

        Returns
        -------
        dict
        """
        d = asdict(self)
        d["betas"], d["server_betas"] = list(self.betas), list(self.server_betas)
        return d


DEFAULT = Optimizers()
FIELDS = tuple(f.name for f in fields(Optimizers))


def as_optimizers(value, where: str = "optimizers") -> Optimizers:
    """An Optimizers from None (SGD + average), a dict of its fields, or an Optimizers.

    Parameters
    ----------
    value : None, dict or Optimizers
    where : str, default "optimizers"
        Names the value in an error.

    Returns
    -------
    Optimizers
    """
    if value is None:
        return DEFAULT
    if isinstance(value, Optimizers):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise ValueError(f"{where} has unknown keys {unknown}; allowed: {list(FIELDS)}")
        return Optimizers(**value)
    raise TypeError(f"{where} must be a dict of {list(FIELDS)} or an Optimizers, got {type(value).__name__}")


def parse_optimizers(spec: str) -> Optimizers:
    """Parse the --optimizers option.

    Parameters
    ----------
    spec : str
        ``KEY=VALUE,KEY=VALUE``; pairs such as betas as ``0.9/0.999``.

    Returns
    -------
    Optimizers

    Examples
    --------
    >>> from fslora_ref.conformance.optimizers import parse_optimizers
    >>> opt = parse_optimizers("client=adamw,betas=0.9/0.99,server=adam,server_lr=0.01")
    >>> opt.client, opt.betas, opt.server, opt.server_lr
    ('adamw', (0.9, 0.99), 'adam', 0.01)
    """
    out = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in FIELDS:
            raise ValueError(f"--optimizers takes KEY=VALUE pairs with KEY in {list(FIELDS)}, got {item!r}")
        value = value.strip()
        if key in ("client", "scope", "server"):
            out[key] = value
        elif key in ("betas", "server_betas"):
            out[key] = tuple(_number(key, v) for v in value.split("/"))
        else:
            out[key] = _number(key, value)
    return as_optimizers(out, "--optimizers")


def _number(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--optimizers {key} must be a number, got {text!r}") from None
