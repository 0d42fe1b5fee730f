"""The torch/PEFT adapter of the conformance battery: run black-box checks on an FSLoRA
implementation that trains a PEFT model.

What a third party writes is one callable::

    def train_round(model, clients, *, lr, local_steps, round_index, seed) -> None:
        # model:   a peft.PeftModel whose LoRA layers hold the global factors (rank r =
        #          model.peft_config["default"].r, scaling s = lora_alpha / r, no dropout)
        # clients: [PeftClient(id, budget, loss)]; client.loss(model) -> scalar tensor, the
        #          client's training loss on its (fixed, full) batch, for a model laid out like `model`
        # Run one FSLoRA round: every client draws its own index set per LoRA layer, takes
        # `local_steps` plain SGD steps (step size `lr`) from the global weights on its sketched
        # loss, and the server averages the changes over all clients. Leave the new global LoRA
        # weights in `model` under the same parameter names.

    from llm_bridge.peft_conformance import PeftAdapter
    impl = PeftAdapter(train_round)                  # or PeftAdapter(train_round, model="tiny_llama")

then ``check_implementation(impl)`` or ``fslora crosscheck my_module:impl``.

How it works: the adapter builds a small PEFT model (two LoRA Linear layers in a Sequential,
or q_proj/v_proj inside a one-layer random Llama), writes the battery's global (B, A) into
``<layer>.lora_A.default.weight`` = B^T and ``<layer>.lora_B.default.weight`` = A^T and the base
weight W0^T, hands the implementation one loss per client, and reads the LoRA weights back
by those parameter names. A client's loss evaluates each LoRA layer on the identity matrix,
Y_l = layer_l(I) = W0_l + s B_l S A_l (the layer's effective weight, through the
implementation's own forward and hooks), and returns the battery's objective
sum_l <C_l, Y_l> + (mu/2) ||M_l * (Y_l - W0_l)||^2, whose gradient over W_l is the oracle's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fslora_ref.conformance.protocol import QuadraticOracle, RoundResult
from .peft_layers import ADAPTER, LoraLayers, add_lora

MODELS = ("mlp", "tiny_llama")
TORCH_TO_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


@dataclass
class PeftClient:
    """One client of a round: identity (key its randomness on it), rank budget k_i, loss."""

    id: int
    budget: int
    loss: object          # loss(model) -> scalar tensor


def _base_model(kind: str, dtype):
    if kind == "mlp":
        return torch.nn.Sequential(torch.nn.Linear(12, 10, bias=False), torch.nn.Tanh(),
                                   torch.nn.Linear(10, 9, bias=False)).to(dtype), ["0", "2"]
    from .models import tiny_llama
    model, _ = tiny_llama(seed=0, dtype=dtype, hidden=16, layers=1)
    return model, ["q_proj", "v_proj"]


class PeftAdapter:
    """A black-box implementation (``black_box_round``) around a torch/PEFT ``train_round``.

    model: 'mlp' (LoRA on two Linear layers, (in, out) = (12, 10), (10, 9)) or 'tiny_llama'
    (LoRA on q_proj (16, 16) and v_proj (16, 8) of a one-layer random Llama).
    sample_sketch: optional ``(rank, k, seed) -> diag(S)`` to also run the sampler checks.
    """

    def __init__(self, train_round, model: str = "mlp", dtype=torch.float32, name: str | None = None,
                 sample_sketch=None):
        if not callable(train_round):
            raise TypeError(f"train_round must be callable, got {train_round!r}")
        if model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
        if dtype not in TORCH_TO_NUMPY:
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.train_round, self.kind, self.torch_dtype = train_round, model, dtype
        self.dtype = TORCH_TO_NUMPY[dtype]
        self.name = name or f"{getattr(train_round, '__module__', '')}.{getattr(train_round, '__name__', 'train_round')}"
        if sample_sketch is not None:
            self.sample_sketch = sample_sketch
        self._base, self._targets = _base_model(model, dtype)
        self.layer_shapes = [(m.in_features, m.out_features) for name, m in self._base.named_modules()
                             if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in self._targets]
        self._model = self._layers = None
        self._key = None

    def model_for(self, rank: int, scaling: float):
        """The PEFT model (built once per (rank, scaling)) and its LoraLayers."""
        if self._key != (rank, scaling):
            if self._model is not None:  # wrap a fresh base model rather than re-wrapping a PEFT one
                self._base, _ = _base_model(self.kind, self.torch_dtype)
            self._model = add_lora(self._base, rank, scaling * rank, self._targets)
            self._layers = LoraLayers(self._model)
            if self._layers.layer_shapes != [tuple(s) for s in self.layer_shapes]:
                raise RuntimeError(f"LoRA layer order {self._layers.layer_shapes} != {self.layer_shapes}")
            self._key = (rank, scaling)
        return self._model, self._layers

    def param_names(self) -> list:
        """[(lora_A name, lora_B name)] per layer: the PEFT parameter names read and written."""
        return [(f"{n}.lora_A.{ADAPTER}.weight", f"{n}.lora_B.{ADAPTER}.weight") for n in self._layers.names]

    def write(self, task):
        """Global (B, A) -> lora_A = B^T, lora_B = A^T; W0 -> base weight (out, in)."""
        model, layers = self.model_for(task.rank, task.lora_scaling)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for (na, nb), mod, (B, A), W0 in zip(self.param_names(), layers.modules, task.layers, task.base_weights):
                params[na].copy_(torch.tensor(np.asarray(B).T, dtype=self.torch_dtype))
                params[nb].copy_(torch.tensor(np.asarray(A).T, dtype=self.torch_dtype))
                mod.base_layer.weight.copy_(torch.tensor(np.asarray(W0).T, dtype=self.torch_dtype))

    def read(self) -> list:
        """[(B: (m, r), A: (r, n))] read back by PEFT parameter name."""
        params = dict(self._model.named_parameters())
        return [(params[na].detach().cpu().double().numpy().T.copy(), params[nb].detach().cpu().double().numpy().T.copy())
                for na, nb in self.param_names()]

    def client_loss(self, oracle: QuadraticOracle):
        """loss(model) with gradient over each LoRA layer's W equal to ``oracle``'s."""
        names = list(self._layers.names)
        dt = self.torch_dtype
        C = [torch.tensor(c, dtype=dt) for c in oracle.linear]
        M = [torch.tensor(m, dtype=dt) for m in oracle.mask]
        Z = [torch.tensor(z, dtype=dt) for z in oracle.center]
        eyes = [torch.eye(m, dtype=dt) for m, _ in self.layer_shapes]
        mu = oracle.curvature

        def loss(model):
            total = 0.0
            for name, c, mk, z, eye in zip(names, C, M, Z, eyes):
                Y = model.get_submodule(name)(eye)       # (m, n) = W0 + s B S A, the effective weight
                total = total + (c * Y).sum() + 0.5 * mu * ((mk * (Y - z)) ** 2).sum()
            return total
        return loss

    def black_box_round(self, task) -> RoundResult:
        for i, o in enumerate(task.oracles):
            if not isinstance(o, QuadraticOracle):
                raise TypeError(f"oracle {i} is a {type(o).__name__}; the PEFT adapter expresses QuadraticOracle only")
        if task.weight_decay:
            raise ValueError(f"weight_decay must be 0 for the PEFT adapter, got {task.weight_decay}")
        self.write(task)
        clients = [PeftClient(int(cid), int(k), self.client_loss(o))
                   for cid, k, o in zip(task.client_ids, task.budgets, task.oracles)]
        self.train_round(self._model, clients, lr=task.lr, local_steps=task.local_steps,
                         round_index=task.round_index, seed=task.seed)
        return RoundResult(self.read())
