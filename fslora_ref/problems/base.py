"""Federated client objectives over LoRA-adapted layers, with exact gradients.

A problem is a small network of LoRA-adapted linear layers (row-vector convention
``x -> x W``) with tanh between layers and a final link (squared error or softmax
cross-entropy). Each client i owns a private data set (X_i, targets_i); its objective is

    f_i(W_1..W_L) = mean over its samples of loss(network(x), target)

Gradients with respect to the LoRA factors are computed at the cost of the factors' rank
(as PEFT does): the frozen base output of the first layer is cached per client, and the
low-rank path x -> x B -> (x B) diag(coeff) A is never formed as a dense matrix.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..lora import LayerFactors
from ..validation import check_int, check_matrix

LINKS = ("squared", "softmax")


@dataclass
class ClientData:
    """One client's private data set.

    Parameters
    ----------
    X : ndarray, shape (n_i, m_1)
        Inputs, one sample per row.
    targets : ndarray, shape (n_i, n_L) or (n_i,)
        Real targets (squared link), or integer class labels (softmax link).
    """

    X: np.ndarray        # (n_i, m_1) inputs
    targets: np.ndarray  # (n_i, n_L) real targets, or (n_i,) int class labels for softmax

    @property
    def size(self) -> int:
        """The number of samples n_i."""
        return int(self.X.shape[0])


@dataclass
class Problem:
    """N clients' objectives over L LoRA-adapted weights W_l of shape (m_l, n_l).

    Parameters
    ----------
    name : str
        The problem's family name (recorded in checkpoints).
    base_weights : list of ndarray
        The frozen W0_l, shape (m_l, n_l); consecutive layers must chain (n_l = m_{l+1}).
    clients : list of ClientData
        One per client (at least one).
    link : {"squared", "softmax"}, default "squared"
        The final link: squared error or softmax cross-entropy.
    batch_size : int or None, default None
        Minibatch size of the local steps (None: full-batch, deterministic local gradients).
    held_out : Problem or None, optional
        The same clients' held-out samples, if any.

    Examples
    --------
    >>> import numpy as np
    >>> from fslora_ref.problems.base import ClientData, Problem
    >>> rng = np.random.default_rng(0)
    >>> W0 = np.zeros((3, 2))
    >>> data = [ClientData(rng.standard_normal((5, 3)), rng.standard_normal((5, 2))) for _ in range(2)]
    >>> problem = Problem("mine", [W0], data)
    >>> problem.n_clients, problem.layer_shapes, problem.client_sizes
    (2, [(3, 2)], [5, 5])
    >>> expected = np.mean([0.5 * np.sum(c.targets ** 2) / 5 for c in data])
    >>> bool(np.isclose(problem.global_loss([W0]), expected))
    True
    """

    name: str
    base_weights: list            # [W0_l: (m_l, n_l)]
    clients: list                 # [ClientData]
    link: str = "squared"
    batch_size: int | None = None  # None: full-batch (deterministic) local gradients
    _base_out: list = field(default_factory=list, repr=False)
    _workspace: dict = field(default_factory=dict, repr=False)  # reused per-step buffers (one client at a time)
    held_out: "Problem | None" = field(default=None, repr=False)  # same clients' held-out samples, if any

    def __post_init__(self):
        if not self.clients:
            raise ValueError("n_clients must be >= 1, got 0 clients")
        if self.link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {self.link!r}")
        for l, W0 in enumerate(self.base_weights):
            check_matrix(f"base_weights[{l}]", W0)
            if l and W0.shape[0] != self.base_weights[l - 1].shape[1]:
                raise ValueError(f"base_weights[{l}] must have {self.base_weights[l - 1].shape[1]} rows, got {W0.shape[0]}")
        if not self.base_weights:
            raise ValueError("base_weights must hold at least one layer's weight, got none")
        m, n_out = self.base_weights[0].shape[0], self.base_weights[-1].shape[1]
        for i, c in enumerate(self.clients):
            check_matrix(f"clients[{i}].X", c.X, (None, m))
            if c.X.shape[0] == 0:
                raise ValueError(f"clients[{i}] is empty (X has 0 rows): every client needs at least one sample")
            if self.link == "squared":
                check_matrix(f"clients[{i}].targets", c.targets, (c.X.shape[0], n_out))
            else:
                labels = np.asarray(c.targets)
                if labels.shape != (c.X.shape[0],) or labels.dtype.kind not in "iu" or (
                        labels.size and (labels.min() < 0 or labels.max() >= n_out)):
                    raise ValueError(f"clients[{i}].targets must be {c.X.shape[0]} integer labels in [0, {n_out - 1}]")
        if self.batch_size is not None:
            self.batch_size = check_int("batch_size", self.batch_size, low=1, high=min(self.client_sizes))
        # The frozen base's first-layer output is fixed per client, so it is computed once. For a
        # single squared-error layer the cache holds the base residual X_i W0 - Y_i instead,
        # which removes two full-size passes from every step.
        self._fused_residual = self.link == "squared" and self.n_layers == 1
        self._base_out = [c.X @ self.base_weights[0] - (c.targets if self._fused_residual else 0.0)
                          for c in self.clients]

    # -- shape information ------------------------------------------------------------------
    @property
    def n_clients(self) -> int:
        return len(self.clients)

    @property
    def n_layers(self) -> int:
        return len(self.base_weights)

    @property
    def layer_shapes(self) -> list:
        return [W.shape for W in self.base_weights]

    @property
    def client_sizes(self) -> list:
        return [c.size for c in self.clients]

    # -- sampling ---------------------------------------------------------------------------
    def sample_batch(self, client: int, rng: np.random.Generator) -> np.ndarray | None:
        """Row indices of one minibatch of client ``client``.

        Uniform, without replacement within the batch, independent across steps.

        Parameters
        ----------
        client : int
            The client.
        rng : numpy.random.Generator
            The client's batch stream.

        Returns
        -------
        ndarray of int, shape (batch_size,), or None
            Sorted row indices; None (full data set) when ``batch_size`` is None.
        """
        if self.batch_size is None:
            return None
        return np.sort(rng.choice(self.clients[client].size, size=self.batch_size, replace=False))

    # -- objectives -------------------------------------------------------------------------
    def loss_and_factor_grads(self, client: int, factors, batch=None):
        """Loss of ``client`` on ``batch`` and its gradients w.r.t. each layer's (B, A).

        Parameters
        ----------
        client : int
            The client.
        factors : list of LayerFactors
            Per layer: B, shape (m_l, q_l); A, shape (q_l, n_l); coeff, shape (q_l,).
        batch : ndarray of int, optional
            Row indices (None: the full data).

        Returns
        -------
        loss : float
        grads : list of tuple of ndarray
            ``[(dB_l, dA_l)]``, shapes (m_l, q_l) and (q_l, n_l).
        """
        loss, grads, _ = self._forward_backward(client, factors, batch, want_weight_grads=False)
        return loss, grads

    def loss_and_weight_grads(self, client: int, weights, batch=None):
        """Loss of ``client`` at dense weights and its gradients w.r.t. them.

        Parameters
        ----------
        client : int
            The client.
        weights : list of ndarray
            W_l, shape (m_l, n_l).
        batch : ndarray of int, optional
            Row indices (None: the full data).

        Returns
        -------
        loss : float
        grads : list of ndarray
            dL/dW_l, shape (m_l, n_l).
        """
        factors = [self._dense_as_factors(l, W) for l, W in enumerate(weights)]
        loss, _, wgrads = self._forward_backward(client, factors, batch, want_weight_grads=True)
        return loss, wgrads

    def loss(self, client: int, weights, batch=None) -> float:
        """f_i at dense weights on the full data (or ``batch``).

        Parameters
        ----------
        client : int
            The client i.
        weights : list of ndarray
            W_l, shape (m_l, n_l).
        batch : ndarray of int, optional
            Row indices (None: the full data).

        Returns
        -------
        float
        """
        factors = [self._dense_as_factors(l, W) for l, W in enumerate(weights)]
        return self._forward(client, factors, batch)[0]

    def global_loss(self, weights) -> float:
        """f = (1/N) sum_i f_i at dense weights, on the full data.

        Parameters
        ----------
        weights : list of ndarray
            W_l, shape (m_l, n_l) (e.g. ``algorithm.global_weights(state, problem, config)``).

        Returns
        -------
        float
        """
        return float(np.mean([self.loss(i, weights) for i in range(self.n_clients)]))

    def global_weight_grads(self, weights):
        """grad f = (1/N) sum_i grad f_i w.r.t. dense weights, full data.

        Parameters
        ----------
        weights : list of ndarray
            W_l, shape (m_l, n_l).

        Returns
        -------
        list of ndarray
            Per layer, shape (m_l, n_l).
        """
        total = None
        for i in range(self.n_clients):
            _, g = self.loss_and_weight_grads(i, weights)
            total = g if total is None else [a + b for a, b in zip(total, g)]
        return [g / self.n_clients for g in total]

    # -- internals --------------------------------------------------------------------------
    def _dense_as_factors(self, l: int, W) -> LayerFactors:
        m, n = self.base_weights[l].shape
        W = np.asarray(W, dtype=float)
        if W.shape != (m, n):
            raise ValueError(f"weights[{l}] must have shape {(m, n)}, got {W.shape}")
        return LayerFactors(np.zeros((m, 0)), np.zeros((0, n)), np.zeros(0), W - self.base_weights[l])

    def _buffer(self, name, shape):
        buf = self._workspace.get(name)
        if buf is None or buf.shape != shape:
            buf = self._workspace[name] = np.empty(shape)
        return buf

    def _gather(self, name, source, rows):
        # mode="clip" avoids the extra buffered copy numpy makes for out= with mode="raise";
        # batch indices come from sample_batch and are always in range.
        return source.take(rows, axis=0, out=self._buffer(name, (len(rows), source.shape[1])), mode="clip")

    def _forward(self, client, factors, batch):
        """Returns (loss, dout, caches); dL/d(output) = dout / b with b the batch size."""
        if len(factors) != len(self.base_weights):
            raise ValueError(f"factors must have one entry per layer ({self.n_layers}), got {len(factors)}")
        data = self.clients[client]
        rows = slice(None) if batch is None else batch
        x = data.X if batch is None else self._gather("x", data.X, batch)
        caches = []
        for l, f in enumerate(factors):
            h = (x @ f.B) * f.coeff[None, :]          # (b, q): the rank-q path, never a dense W
            if l == 0:  # (b, n) products go to reused buffers: fresh MB-sized arrays cost page faults
                out = np.matmul(h, f.A, out=self._buffer("out", (x.shape[0], f.A.shape[1])))
                out += self._base_out[client] if batch is None else self._gather("base", self._base_out[client], batch)
            else:
                out = h @ f.A
                out += x @ self.base_weights[l]
            if f.delta is not None:
                out += x @ f.delta
            caches.append((x, h))
            if l < len(factors) - 1:
                x = np.tanh(out)
        b = out.shape[0]
        if self._fused_residual:      # out already is the residual
            return 0.5 * float(np.vdot(out, out)) / b, out, caches
        targets = data.targets[rows]
        if self.link == "squared":
            out -= targets
            return 0.5 * float(np.vdot(out, out)) / b, out, caches
        z = out - out.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -float(np.mean(logp[np.arange(b), targets]))
        dout = np.exp(logp)
        dout[np.arange(b), targets] -= 1.0
        return loss, dout, caches

    def _forward_backward(self, client, factors, batch, want_weight_grads):
        loss, dout, caches = self._forward(client, factors, batch)
        inv_b = 1.0 / dout.shape[0]   # folded into the small (q-sized) products, not the (b, n) one
        n_layers = len(factors)   # == self.n_layers, checked by _forward
        grads = [None] * n_layers
        wgrads = [None] * n_layers
        for l in range(n_layers - 1, -1, -1):
            f = factors[l]
            x, h = caches[l]
            dA = (h.T @ dout) * inv_b
            dlow = (dout @ f.A.T) * f.coeff[None, :]   # (b, q), unscaled like dout
            dB = (x.T @ dlow) * inv_b
            grads[l] = (dB, dA)
            if want_weight_grads:
                wgrads[l] = (x.T @ dout) * inv_b
            if l > 0:
                W_rest = self.base_weights[l] if f.delta is None else self.base_weights[l] + f.delta
                dx = dout @ W_rest.T + dlow @ f.B.T
                dout = dx * (1.0 - x * x)   # x = tanh(previous pre-activation)
        return loss, grads, wgrads
