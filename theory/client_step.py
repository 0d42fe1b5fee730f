"""One client's round of FSLoRA for a *given* sketch, as the theory checks need it.

``fslora_client_delta`` is the reference: it is the core's submatrix client (gather the
(B_I, A_I) block, train it with coefficient s r/k by ``fslora_ref.client.local_train``,
scatter the change back). Checkers take a function with this signature so a broken client can
be held to them.
"""
from __future__ import annotations

import numpy as np

from fslora_ref.lora import LayerFactors, gather, scatter
from fslora_ref.client import local_train
from fslora_ref.optim import SGD


def fslora_client_delta(problem, client: int, layers, sketches, *, steps: int, lr: float, s: float, rng):
    """Full-size change [(dB: (m, r), dA: (r, n))] of client ``client`` after ``steps`` SGD steps
    with step size gamma = ``lr`` on f~_i(.; S), starting from X = ``layers`` = [(B, A)]; one
    :class:`fslora_ref.sketch.Sketch` per layer, fixed for the round; minibatches from ``rng``."""
    factors = [LayerFactors(*gather(B, A, S), s * S.scale * np.ones(S.k)) for (B, A), S in zip(layers, sketches)]
    trained, _ = local_train(problem, client, factors, steps=steps, optimizer=SGD(lr), rng=rng)
    return [scatter(B.shape, A.shape, tB - f.B, tA - f.A, S.indices)
            for (B, A), f, (tB, tA), S in zip(layers, factors, trained, sketches)]
