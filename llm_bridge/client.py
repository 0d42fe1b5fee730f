"""Local training of one client on a torch model: the bridge's ``client_update``.

The client installs its plan's factors (a rank-k_i copy for FSLoRA/HetLoRA/FlexLoRA/FLoRA,
rank r for FedIT or the masked form) as the only trainable parameters, runs H steps of SGD
(Algorithm 1) or AdamW (the public implementation's choice) on minibatches drawn from the
(round, client) ``batch`` stream, and uploads the change of what it trained.
"""
from __future__ import annotations

import math

from fslora_ref.algorithms import Upload
from fslora_ref.client import DivergenceError, trainable_state_floats
from fslora_ref.seeding import stream


def make_torch_optimizer(params, config):
    """torch SGD or AdamW with the reference's hyper-parameters (the config's betas and eps,
    decoupled weight decay), so float64 runs match ``fslora_ref.optim`` to rounding.

    Parameters
    ----------
    params : list of torch.Tensor
        The trainable LoRA parameters.
    config : FedConfig
        The client optimiser and its hyper-parameters.

    Returns
    -------
    torch.optim.Optimizer
    """
    import torch
    if config.client_optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr)
    return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)


def allocated_trainable_floats(params, optimizer) -> int:
    """Floats actually held for training: parameters + their gradients + optimiser state
    tensors of parameter shape (AdamW's exp_avg, exp_avg_sq; the scalar step count is not
    counted). Measured on the tensors, to check :func:`fslora_ref.client.trainable_state_floats`.

    Parameters
    ----------
    params : list of torch.Tensor
        The trained parameters.
    optimizer : torch.optim.Optimizer
        Their optimiser (after at least one step for its state to exist).

    Returns
    -------
    int
    """
    total = 0
    for p in params:
        total += p.numel() + (0 if p.grad is None else p.grad.numel())
        for v in optimizer.state.get(p, {}).values():
            if hasattr(v, "shape") and tuple(v.shape) == tuple(p.shape):
                total += v.numel()
    return int(total)


def train_client(layers, task, plan, config, round_index: int, keep=None) -> Upload:
    """H local steps of client ``plan.client`` in round ``round_index``.

    Parameters
    ----------
    layers : LoraLayers
        The model's LoRA layers; the plan's factors are installed into them.
    task : object
        With ``sample_batch(client, rng)`` and ``loss(model, batch)`` (see task.py).
    plan : ClientPlan
        What the client received.
    config : FedConfig
        Local steps and the client optimiser.
    round_index : int
        The round (keys the client's batch stream).
    keep : dict, optional
        Receives the live params and optimiser (tests, accounting).

    Returns
    -------
    Upload
        As the reference's ``client_update`` returns it (factors as float64 arrays).

    Raises
    ------
    DivergenceError
        On a non-finite loss.
    """
    import torch
    params = layers.install(plan.factors, trainable=True)
    start = [p.detach().clone() for p in params]
    optimizer = make_torch_optimizer(params, config)
    masks = None
    if plan.masks is not None:  # masked form: only I may move (weight decay would move the rest)
        masks = []
        for col, row in plan.masks:
            masks += [torch.tensor(col, device=params[0].device)[:, None], torch.tensor(row, device=params[0].device)[None, :]]
    rng = stream(config.seed, round=round_index, client=plan.client, purpose="batch")
    losses = []
    for step in range(config.local_steps):
        optimizer.zero_grad(set_to_none=False)
        loss = task.loss(layers.model, task.sample_batch(plan.client, rng))
        value = float(loss.detach())
        if not math.isfinite(value):
            raise DivergenceError(f"round {round_index}, client {plan.client}: non-finite loss at local step {step} "
                                  f"(loss={value}); lower the step size")
        loss.backward()
        optimizer.step()
        if masks is not None:
            with torch.no_grad():
                for p, p0, mk in zip(params, start, masks):
                    p.copy_(torch.where(mk, p, p0))
        losses.append(value)
    if keep is not None:
        keep.update(params=params, optimizer=optimizer)
    trained, deltas = [], []
    for l in range(len(layers)):
        a, b = params[2 * l].detach(), params[2 * l + 1].detach()
        trained.append((a.cpu().double().numpy().T.copy(), b.cpu().double().numpy().T.copy()))
        # the change is taken in the model's dtype, so an untouched coordinate uploads exactly 0
        deltas.append(((a - start[2 * l]).cpu().double().numpy().T.copy(),
                       (b - start[2 * l + 1]).cpu().double().numpy().T.copy()))
    if plan.masks is not None:  # masked form uploads only the selected block, like the reference
        deltas = [(dB[:, I], dA[I, :]) for (dB, dA), I in zip(deltas, plan.indices)]
    shapes = [(f.B.shape[0], f.B.shape[1], f.A.shape[1]) for f in plan.factors]
    return Upload(plan.client, trained, deltas, upload_floats=int(sum(dB.size + dA.size for dB, dA in deltas)),
                  memory_floats=trainable_state_floats(shapes, config.make_client_optimizer()), losses=losses)

