"""A ``fslora_ref`` squared-error problem as a torch model + task, for number-for-number
comparison of a bridge round with the reference round.

The model is a stack of bias-free ``nn.Linear`` layers (weights W0_l^T, tanh between layers,
exactly the reference's network) wrapped by PEFT LoRA; the task draws minibatches with the
problem's own ``sample_batch`` and the loss is the reference's (1/2b) ||out - Y||_F^2.
"""
from __future__ import annotations

import numpy as np


def torch_model_for(problem, rank: int, scaling: float, dtype=None):
    """PEFT-wrapped torch copy of ``problem``'s network: LoRA rank r, lora_alpha = s r (so PEFT's
    scaling equals the reference's s).

    Parameters
    ----------
    problem : Problem
        A squared-error reference problem.
    rank : int
        The LoRA rank r.
    scaling : float
        The reference's LoRA scaling s.
    dtype : torch.dtype, optional
        Default torch.float64.

    Returns
    -------
    peft.PeftModel
    """
    import torch
    from torch import nn

    from .peft_layers import add_lora
    if problem.link != "squared":
        raise ValueError(f"problem.link must be 'squared' for the torch copy, got {problem.link!r}")
    dtype = dtype or torch.float64

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList()
            for W0 in problem.base_weights:
                lin = nn.Linear(W0.shape[0], W0.shape[1], bias=False, dtype=dtype)
                lin.weight = nn.Parameter(torch.tensor(W0.T, dtype=dtype), requires_grad=False)
                self.layers.append(lin)

        def forward(self, x):
            for l, lin in enumerate(self.layers):
                x = lin(x)
                if l < len(self.layers) - 1:
                    x = torch.tanh(x)
            return x

    names = [f"layers.{l}" for l in range(problem.n_layers)]
    return add_lora(Net(), rank, scaling * rank, names)


class ProblemTask:
    """The bridge task of a reference problem: same batches, same squared-error loss.

    Parameters
    ----------
    problem : Problem
        A squared-error reference problem.
    dtype : torch.dtype, optional
        Default torch.float64.
    """

    def __init__(self, problem, dtype=None):
        import torch
        self.problem = problem
        dtype = dtype or torch.float64
        self.X = [torch.tensor(c.X, dtype=dtype) for c in problem.clients]
        self.Y = [torch.tensor(c.targets, dtype=dtype) for c in problem.clients]

    @property
    def client_sizes(self) -> list:
        """The clients' numbers of samples."""
        return self.problem.client_sizes

    def sample_batch(self, client: int, rng: np.random.Generator):
        """One minibatch, drawn by the problem's own ``sample_batch``.

        Parameters
        ----------
        client : int
            The client.
        rng : numpy.random.Generator
            Its batch stream.

        Returns
        -------
        tuple
            ``(client, row indices or None)``.
        """
        return client, self.problem.sample_batch(client, rng)

    def loss(self, model, batch):
        """The reference's squared-error loss ``(1/2b) ||model(X) - Y||_F^2`` on one batch.

        Parameters
        ----------
        model : torch.nn.Module
            The PEFT-wrapped network (:func:`torch_model_for`).
        batch : tuple
            What :meth:`sample_batch` returned.

        Returns
        -------
        torch.Tensor
            A scalar.
        """
        client, rows = batch
        X, Y = (self.X[client], self.Y[client]) if rows is None else (self.X[client][rows], self.Y[client][rows])
        out = model(X) - Y
        return 0.5 * (out * out).sum() / X.shape[0]
