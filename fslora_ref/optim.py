"""Optimisers as (init, update) pairs on lists of arrays, in the spirit of optax.

``update(grads, state, params) -> (new_params, new_state)``. A ``mask`` (same shapes,
boolean) restricts both the step and the optimiser state to the selected coordinates, which
is what makes the full-size masked client identical to the submatrix client under AdamW.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validation import check_positive_float


@dataclass(frozen=True)
class SGD:
    """Plain gradient descent, p <- p - lr g (Algorithm 1's client step).

    Parameters
    ----------
    lr : float
        The step size (> 0).
    """

    lr: float

    def __post_init__(self):
        check_positive_float("lr", self.lr)

    state_floats_per_param = 0

    def init(self, params):
        """The optimiser state of ``params``.

        Parameters
        ----------
        params : list of ndarray
            The parameters to optimise.

        Returns
        -------
        tuple
            Empty: SGD keeps no state.
        """
        return ()

    def update(self, grads, state, params, mask=None):
        """One step on every parameter.

        Parameters
        ----------
        grads : list of ndarray
            The gradients, shaped as ``params``.
        state : tuple
            The optimiser state.
        params : list of ndarray
            The parameters.
        mask : list of ndarray of bool, optional
            Per parameter, where it may move (elsewhere parameter unchanged).

        Returns
        -------
        params : list of ndarray
            The stepped parameters.
        state : tuple
            The new state.
        """
        new = []
        for p, g, mk in zip(params, grads, _masks(mask, params)):
            step = self.lr * g
            new.append(p - (step if mk is None else np.where(mk, step, 0.0)))
        return new, state


@dataclass(frozen=True)
class AdamW:
    """AdamW with bias correction and decoupled weight decay.

    Parameters
    ----------
    lr : float
        The step size (> 0).
    beta1, beta2 : float, default 0.9, 0.999
        The moment decay rates, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment.
    weight_decay : float, default 0.0
        Decoupled weight decay (>= 0).
    """

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self):
        check_positive_float("lr", self.lr)
        check_positive_float("weight_decay", self.weight_decay, allow_zero=True)
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not (0.0 <= v < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {v}")

    state_floats_per_param = 2

    def init(self, params):
        """The optimiser state of ``params``.

        Parameters
        ----------
        params : list of ndarray
            The parameters to optimise.

        Returns
        -------
        dict
            ``{"t": 0, "m": zeros, "v": zeros}`` (first and second moments per parameter).
        """
        return {"t": 0, "m": [np.zeros_like(p) for p in params], "v": [np.zeros_like(p) for p in params]}

    def update(self, grads, state, params, mask=None):
        """One step on every parameter.

        Parameters
        ----------
        grads : list of ndarray
            The gradients, shaped as ``params``.
        state : dict
            The optimiser state.
        params : list of ndarray
            The parameters.
        mask : list of ndarray of bool, optional
            Per parameter, where it may move (elsewhere parameters and moments unchanged).

        Returns
        -------
        params : list of ndarray
            The stepped parameters.
        state : dict
            The new state.
        """
        t = state["t"] + 1
        new_p, new_m, new_v = [], [], []
        c1, c2 = 1.0 - self.beta1 ** t, 1.0 - self.beta2 ** t
        for p, g, m, v, mk in zip(params, grads, state["m"], state["v"], _masks(mask, params)):
            m2 = self.beta1 * m + (1.0 - self.beta1) * g
            v2 = self.beta2 * v + (1.0 - self.beta2) * g * g
            direction = (m2 / c1) / (np.sqrt(v2 / c2) + self.eps)
            if self.weight_decay:   # x + 0.0 * p is x for a finite p, to the sign of a zero step (p - step agrees)
                direction = direction + self.weight_decay * p
            step = self.lr * direction
            if mk is None:
                new_p.append(p - step)
                new_m.append(m2)
                new_v.append(v2)
            else:
                new_p.append(np.where(mk, p - step, p))
                new_m.append(np.where(mk, m2, m))
                new_v.append(np.where(mk, v2, v))
        return new_p, {"t": t, "m": new_m, "v": new_v}


def _masks(mask, params):
    return [None] * len(params) if mask is None else mask


def make_client_optimizer(name: str, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8):
    """The client optimiser by name.

    Parameters
    ----------
    name : {"sgd", "adamw"}
        SGD (Algorithm 1) or AdamW (the public implementation's client optimiser).
    lr : float
        The step size.
    weight_decay : float, default 0.0
        AdamW's weight decay (must be 0 for SGD).
    betas : tuple of float, default (0.9, 0.999)
        AdamW's betas.
    eps : float, default 1e-8
        AdamW's epsilon.

    Returns
    -------
    SGD or AdamW
    """
    if name == "sgd":
        if weight_decay:
            raise ValueError("weight_decay must be 0 with client_optimizer='sgd' (use 'adamw')")
        return SGD(lr)
    if name == "adamw":
        return AdamW(lr, betas[0], betas[1], eps, weight_decay)
    raise ValueError(f"client_optimizer must be one of ['adamw', 'sgd'], got {name!r}")


@dataclass
class ServerOptimizer:
    """Server step on the pseudo-gradient g = -(average client delta).

    kind 'none' applies the average delta as is (Algorithm 1); 'sgd' takes X - lr * g;
    'adam' takes an Adam step with bias correction (state kept in the server state).

    Parameters
    ----------
    kind : {"none", "sgd", "adam"}, default "none"
        The server step.
    lr : float, default 1.0
        Its step size (> 0).
    beta1, beta2 : float, default 0.9, 0.99
        Adam's moment decay rates.
    eps : float, default 1e-6
        Adam's epsilon.
    """

    kind: str = "none"
    lr: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-6

    def __post_init__(self):
        if self.kind not in ("none", "sgd", "adam"):
            raise ValueError(f"server_optimizer must be one of ['adam', 'none', 'sgd'], got {self.kind!r}")
        check_positive_float("server_lr", self.lr)

    def init(self, params):
        """The optimiser state of ``params``.

        Parameters
        ----------
        params : list of ndarray
            The parameters to optimise.

        Returns
        -------
        tuple or dict
            Empty unless ``kind`` is "adam" (then AdamW's state).
        """
        if self.kind != "adam":
            return ()
        return AdamW(self.lr, self.beta1, self.beta2, self.eps).init(params)

    def apply(self, params, deltas, state):
        """One server step from the averaged client deltas.

        Parameters
        ----------
        params : list of ndarray
            The server's parameters X.
        deltas : list of ndarray
            The average client delta per parameter (the pseudo-gradient is its negative).
        state : tuple or dict
            The optimiser state (:meth:`init`).

        Returns
        -------
        params : list of ndarray
            The new parameters.
        state : tuple or dict
            The new state.
        """
        if self.kind == "none":
            return [p + d for p, d in zip(params, deltas)], state
        pseudo_grads = [-d for d in deltas]
        if self.kind == "sgd":
            return SGD(self.lr).update(pseudo_grads, state, params)
        return AdamW(self.lr, self.beta1, self.beta2, self.eps).update(pseudo_grads, state, params)
