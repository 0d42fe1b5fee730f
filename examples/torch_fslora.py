"""FSLoRA written the way a PyTorch user would: a full-size masked client training a PEFT model.

Every client starts from the global LoRA weights, draws one index set I per LoRA layer
(torch.randperm, keyed on (seed, round, client)), applies the sketch diag(S) = (r/k) 1_I by a
forward hook on lora_A's output (so W = W0 + s B S A and unselected rows of lora_A / columns
of lora_B get zero gradient), takes H plain SGD steps, and the server averages the changes over
all clients. Checked by the conformance battery through the PEFT adapter:

    fslora crosscheck examples/torch_fslora.py:impl
"""
from __future__ import annotations

import numpy as np
import torch
from peft.tuners.lora.layer import Linear as LoraLinear

from llm_bridge.peft_conformance import PeftAdapter


def client_generator(seed: int, round_index: int, client: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, round_index, client]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def draw_index_set(rank: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """I: k distinct indices of range(rank), uniform among the k-subsets."""
    return torch.randperm(rank, generator=gen)[:k]


def sample_sketch(rank: int, k: int, seed: int):
    """diag(S) of one draw (for the battery's sampler checks)."""
    d = torch.zeros(rank, dtype=torch.float64)
    d[draw_index_set(rank, k, torch.Generator().manual_seed(seed))] = rank / k
    return d.numpy()


def train_round(model, clients, *, lr, local_steps, round_index, seed, scale_fn=lambda r, k: r / k):
    """One FSLoRA round on ``model`` (a peft.PeftModel); leaves the new global weights in it."""
    r = model.peft_config["default"].r
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    start = {n: p.detach().clone() for n, p in lora.items()}
    total = {n: torch.zeros_like(p) for n, p in lora.items()}
    for client in clients:
        with torch.no_grad():
            for n, p in lora.items():
                p.copy_(start[n])
        gen = client_generator(seed, round_index, client.id)
        hooks = []
        for layer in layers:
            index = draw_index_set(r, client.budget, gen)
            diag = torch.zeros(r, dtype=start[next(iter(start))].dtype)
            diag[index] = scale_fn(r, client.budget)
            hooks.append(layer.lora_A["default"].register_forward_hook(lambda _m, _x, out, d=diag: out * d))
        opt = torch.optim.SGD(list(lora.values()), lr=lr)
        for _ in range(local_steps):
            opt.zero_grad()
            client.loss(model).backward()
            opt.step()
        for h in hooks:
            h.remove()
        for n, p in lora.items():
            total[n] += p.detach() - start[n]
    with torch.no_grad():
        for n, p in lora.items():
            p.copy_(start[n] + total[n] / len(clients))


impl = PeftAdapter(train_round, name="examples/torch_fslora (PEFT, masked client)", sample_sketch=sample_sketch)
