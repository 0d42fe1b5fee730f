"""FSLoRA written the way Hugging Face users write federated fine-tuning, checked through the PEFT
adapter without touching the model's ``forward``.

Each client gets a copy of the global PEFT model (``copy.deepcopy``), registers its sketch as a
forward hook on every ``lora_A`` (diag(S) = (r/k) 1_I, one index set per LoRA layer, drawn from a
generator keyed on (seed, round, client id)), and runs a Trainer-like inner loop over its own
dataloader: ``loss = model(**batch).loss; loss.backward(); optimizer.step()`` with
``torch.optim.AdamW``. The server averages the clients' LoRA changes and takes one
``torch.optim.Adam`` step on the pseudo-gradient (minus that average), as the paper's public code
does by default. The adapter is told which optimisers these are:

    fslora crosscheck examples/hf_fslora.py:impl          # 8/8 (black-box + sampler), exit 0

(The battery runs every round from the same global state, so the server optimiser is built fresh
in each round here; a training loop would keep it across rounds.)
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from peft.tuners.lora.layer import Linear as LoraLinear

from llm_bridge.peft_conformance import PeftAdapter

CLIENT_ADAMW = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}   # TrainingArguments defaults
SERVER_LR = 1e-2


def client_generator(seed: int, round_index: int, client: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, round_index, client]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def add_sketch_hooks(model, budget: int, generator: torch.Generator) -> list:
    """One random-k sketch per LoRA layer, applied to lora_A's output: W = W0 + s B S A."""
    hooks = []
    for module in model.modules():
        if isinstance(module, LoraLinear):
            lora_a = module.lora_A["default"]
            r = lora_a.out_features
            diag = torch.zeros(r, dtype=lora_a.weight.dtype)
            diag[torch.randperm(r, generator=generator)[:budget]] = r / budget
            hooks.append(lora_a.register_forward_hook(lambda _m, _x, out, d=diag: out * d))
    return hooks


def train_locally(model, dataloader, lr: float) -> None:
    """A Trainer-like inner loop: one optimiser step per batch."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, **CLIENT_ADAMW)
    model.train()
    for batch in dataloader:
        outputs = model(**batch)
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def train_round(model, clients, *, lr, local_steps, round_index, seed):
    """One FSLoRA round on ``model`` (a peft.PeftModel); leaves the new global weights in it."""
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    mean_change = {n: torch.zeros_like(p) for n, p in trainable.items()}
    for client in clients:
        local = copy.deepcopy(model)
        hooks = add_sketch_hooks(local, client.budget, client_generator(seed, round_index, client.id))
        train_locally(local, client.dataloader, lr)
        for h in hooks:
            h.remove()
        for n, p in local.named_parameters():
            if n in mean_change:
                mean_change[n] += (p.detach() - trainable[n].detach()) / len(clients)
    server = torch.optim.Adam(list(trainable.values()), lr=SERVER_LR)
    for n, p in trainable.items():
        p.grad = -mean_change[n]            # the pseudo-gradient
    server.step()


def sample_sketch(rank: int, k: int, seed: int):
    """diag(S) of one draw (for the battery's sampler checks)."""
    d = torch.zeros(rank, dtype=torch.float64)
    d[torch.randperm(rank, generator=torch.Generator().manual_seed(seed))[:k]] = rank / k
    return d.numpy()


impl = PeftAdapter(train_round, name="examples/hf_fslora (HF-style loop, AdamW client, Adam server)",
                   sample_sketch=sample_sketch,
                   optimizers={"client": "adamw", **CLIENT_ADAMW, "server": "adam", "server_lr": SERVER_LR})
