"""Client local training: H optimiser steps on the client's (sketched) loss.

One routine serves every algorithm: it trains LoRA factors ``B_l, A_l`` with fixed
``coeff_l`` (which carries the LoRA scaling and, for FSLoRA, the sketch) for ``steps``
minibatch steps and returns the trained factors. Minibatches come from the client's own
stream, so the masked and submatrix forms see the same batches in the same order.
"""
from __future__ import annotations

import math

import numpy as np

from .lora import LayerFactors


class DivergenceError(FloatingPointError):
    """A loss or parameter became non-finite; the message names the round and client."""


def local_train(problem, client: int, factors, *, steps: int, optimizer, rng: np.random.Generator,
                masks=None, round_index: int | None = None, batches=None):
    """Run ``steps`` optimiser steps on client ``client`` starting from ``factors``.

    Parameters
    ----------
    problem : Problem
        The clients' data and model.
    client : int
        The client's index.
    factors : list of LayerFactors
        Per layer: B, shape (m_l, q_l); A, shape (q_l, n_l); coeff, shape (q_l,), held fixed.
    steps : int
        The number of local steps H.
    optimizer : SGD or AdamW
        The client optimiser (``config.make_client_optimizer()``); its state starts fresh.
    rng : numpy.random.Generator or None
        The client's batch stream (None for a problem that draws no minibatches, see
        ``fslora_ref.algorithms.protocol.batch_stream``).
    masks : list of tuple of ndarray, optional
        None trains every coordinate through the low-rank path (cost ~ q_l). Given as
        ``[(col_mask_B, row_mask_A)]``, each of shape (q_l,), the client runs Algorithm 1 as
        written (full-size masked form): it forms W = W0 + B S A densely, takes G = grad_W loss
        and steps B <- B - lr G A^T S, A <- A - lr S B^T G, moving only masked coordinates.
    round_index : int, optional
        The round, named in a divergence message.
    batches : sequence of ndarray, optional
        The ``steps`` minibatches already drawn from the client's batch stream, one per step, in
        order (``fslora_ref.algorithms.protocol.reused_batches``); ``rng`` is then not read.

    Returns
    -------
    trained : list of tuple of ndarray
        ``[(B_l, A_l)]``, the trained factors, shapes as given.
    losses : list of float, length steps
        The minibatch loss at each step, before its update.

    Raises
    ------
    DivergenceError
        If a loss or parameter becomes non-finite.
    """
    params = [p for f in factors for p in (f.B, f.A)]
    full_masks = None
    if masks is not None:
        full_masks = []
        for (col, row), f in zip(masks, factors):
            full_masks += [np.broadcast_to(col[None, :], f.B.shape), np.broadcast_to(row[:, None], f.A.shape)]
    state = optimizer.init(params)
    losses = []
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below, by name
        for step in range(steps):
            current = [LayerFactors(params[2 * l], params[2 * l + 1], f.coeff, f.delta)
                       for l, f in enumerate(factors)]
            batch = problem.sample_batch(client, rng) if batches is None else batches[step]
            if masks is None:
                loss, grads = problem.loss_and_factor_grads(client, current, batch)
            else:
                loss, grads = dense_factor_grads(problem, client, current, batch)
            params, state = optimizer.update([g for pair in grads for g in pair], state, params, full_masks)
            if not np.isfinite(loss) or not _all_finite(params):
                where = "" if round_index is None else f"round {round_index}, "
                raise DivergenceError(f"{where}client {client}: non-finite loss or parameters at local step {step} "
                                      f"(loss={loss}); lower the client step size (lr, --lr; now {optimizer.lr:g})")
            losses.append(loss)
    return [(params[2 * l], params[2 * l + 1]) for l in range(len(factors))], losses


def _all_finite(arrays) -> bool:
    """Whether every entry of every array is finite: a finite sum proves it for an array in one
    reduction (a NaN or infinite entry makes the sum non-finite); only a non-finite sum, which an
    overflow of finite entries can also give, is checked entry by entry."""
    for a in arrays:
        if not math.isfinite(a.sum()) and not np.isfinite(a).all():
            return False
    return True


def dense_factor_grads(problem, client: int, factors, batch):
    """Gradients w.r.t. (B, A) through the dense weight, as Algorithm 1 writes them::

        W = W0 + delta + B diag(coeff) A,   G = grad_W loss(W),   dB = G A^T diag(coeff),  dA = diag(coeff) B^T G

    Parameters
    ----------
    problem : Problem
        The clients' data and model.
    client : int
        The client's index.
    factors : list of LayerFactors
        Per layer: B, shape (m_l, q_l); A, shape (q_l, n_l); coeff, shape (q_l,); delta (or None).
    batch : object
        A minibatch of the client (``problem.sample_batch``).

    Returns
    -------
    loss : float
        The batch loss at W.
    grads : list of tuple of ndarray
        ``[(dB_l, dA_l)]``, shapes (m_l, q_l) and (q_l, n_l).
    """
    weights = [W0 + (0.0 if f.delta is None else f.delta) + (f.B * f.coeff[None, :]) @ f.A
               for W0, f in zip(problem.base_weights, factors)]
    loss, G = problem.loss_and_weight_grads(client, weights, batch)
    return loss, [((g @ f.A.T) * f.coeff[None, :], f.coeff[:, None] * (f.B.T @ g)) for g, f in zip(G, factors)]


def trainable_state_floats(shapes, optimizer) -> int:
    """Client trainable-state memory in floats: parameters + gradients + optimiser state.

    Parameters
    ----------
    shapes : list of tuple of int
        ``[(m_l, q_l, n_l)]`` of the factors the client actually allocates.
    optimizer : SGD or AdamW
        The client optimiser (its ``state_floats_per_param``).

    Returns
    -------
    int
        sum_l q_l (m_l + n_l) * (2 + state floats per parameter).
    """
    n_params = sum(q * (m + n) for m, q, n in shapes)
    return n_params * (2 + optimizer.state_floats_per_param)
