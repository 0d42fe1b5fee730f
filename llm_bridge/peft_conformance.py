"""The torch/PEFT adapter of the conformance battery: run black-box checks on an FSLoRA
implementation that trains a PEFT model.

What a third party writes is one callable::

    def train_round(model, clients, *, lr, local_steps, round_index, seed) -> None:
        # model:   a peft.PeftModel whose LoRA layers hold the global factors (rank r =
        #          model.peft_config["default"].r, scaling s = lora_alpha / r, no dropout); by default
        #          a one-layer random Llama (model.config is a LlamaConfig), LoRA on q_proj and v_proj
        # clients: [PeftClient(id, budget, loss, dataloader)], two views of the same training loss:
        #          client.dataloader   -- `local_steps` batches; model(**batch).loss is the loss
        #                                 (Hugging Face style: nothing to patch in `forward`)
        #          client.loss(model)  -- the same loss as a scalar tensor
        # Run one FSLoRA round: every client gets its own index set per LoRA layer (drawn per client, keyed
        # on seed, round_index and client.id, or by the server for all clients in order), trains from the global weights on its sketched loss with the
        # optimiser it declares (plain SGD with step `lr` unless `optimizers` says otherwise), and the
        # server combines the changes over all clients. Leave the new global LoRA weights in `model`
        # under the same parameter names.

    from llm_bridge.peft_conformance import PeftAdapter
    impl = PeftAdapter(train_round)                                   # model="mlp" for a bare nn.Sequential
    impl = PeftAdapter(train_round, optimizers={"client": "adamw", "server": "adam", "server_lr": 1e-2})

then ``check_implementation(impl)`` or ``fslora crosscheck my_module:impl``.

How it works: the adapter builds a small PEFT model, writes the battery's global (B, A) into
``<layer>.lora_A.default.weight`` = B^T and ``<layer>.lora_B.default.weight`` = A^T and the base
weight W0^T, hands the implementation one loss per client, and reads the LoRA weights back by
those parameter names. A client's loss evaluates each LoRA layer on the identity matrix,
Y_l = layer_l(I) = W0_l + s B_l S A_l (the layer's effective weight, through the
implementation's own forward and hooks), and returns the battery's objective
sum_l <C_l, Y_l> + (mu/2) ||M_l * (Y_l - W0_l)||^2, whose gradient over W_l is the oracle's.
The model's own ``forward(input_ids=..., attention_mask=..., labels=...)`` returns that loss for
the client whose token is in ``input_ids`` (the battery's batches), so ``model(**batch).loss``
works on the model and on any copy of it (``copy.deepcopy``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from fslora_ref.conformance.optimizers import as_optimizers
from fslora_ref.conformance.protocol import QuadraticOracle, RoundResult
from .peft_layers import ADAPTER, LoraLayers, add_lora

MODELS = ("tiny_llama", "mlp")
TORCH_TO_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
REGISTRY = "_fslora_client_losses"   # base-model attribute: client token -> loss(root module)


@dataclass
class PeftClient:
    """One client of a round: identity (key its randomness on it), rank budget k_i, and its
    training loss twice: ``loss(model)`` -> scalar tensor, and ``dataloader``, an iterable of
    ``local_steps`` batches with ``model(**batch).loss`` equal to that loss.

    Parameters
    ----------
    id : int
        The client's identity (key its randomness on it).
    budget : int
        Its rank budget k_i.
    loss : callable
        ``loss(model) -> scalar tensor``.
    dataloader : iterable, optional
        ``local_steps`` batches; ``model(**batch).loss`` is the same loss.
    """

    id: int
    budget: int
    loss: object          # loss(model) -> scalar tensor
    dataloader: object = None


class ClientBatches:
    """A re-iterable "dataloader" of ``steps`` identical full batches for one client:
    {"input_ids", "attention_mask", "labels"} of shape (1, 1), the token naming the client.

    Parameters
    ----------
    token : int
        The token naming the client.
    steps : int
        The number of batches.
    """

    def __init__(self, token: int, steps: int):
        self.token, self.steps = token, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            ids = torch.tensor([[self.token]], dtype=torch.long)
            yield {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def _battery_output(module, input_ids, kwargs):
    """The oracle loss of the client named in ``input_ids``, as a causal-LM style output."""
    from transformers.modeling_outputs import CausalLMOutputWithPast
    losses = getattr(module, REGISTRY, None)
    if input_ids is None:
        raise TypeError("the battery's model takes the battery's batches: model(**batch) with batch from "
                        "client.dataloader (input_ids names the client)")
    token = int(torch.as_tensor(input_ids).reshape(-1)[0])
    if not losses or token not in losses:
        raise ValueError(f"input_ids {token} names no client of the current round; pass the batches of "
                         f"client.dataloader unchanged")
    loss = losses[token](module)
    vocab = getattr(getattr(module, "config", None), "vocab_size", 1)
    logits = torch.zeros(tuple(torch.as_tensor(input_ids).shape) + (vocab,), dtype=loss.dtype)
    return CausalLMOutputWithPast(loss=loss, logits=logits)


class _OracleSequential(torch.nn.Sequential):
    """The 'mlp' model: a Sequential whose keyword call returns the battery's loss."""

    def forward(self, *args, **kwargs):
        if args and not kwargs:
            return super().forward(*args)
        return _battery_output(self, kwargs.pop("input_ids", args[0] if args else None), kwargs)


@lru_cache(maxsize=1)
def _oracle_llama_class():
    from transformers import LlamaForCausalLM

    class OracleLlama(LlamaForCausalLM):
        """A LlamaForCausalLM (config, modules, PEFT behaviour unchanged) whose forward returns
        the battery's loss for the battery's batches."""

        def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
            return _battery_output(self, input_ids, kwargs)
    return OracleLlama


DEFAULT_SHAPES = {"mlp": ((12, 10), (10, 9)), "tiny_llama": ((16, 16), (16, 8))}


def _llama(shapes, dtype):
    """A one-layer random Llama whose q_proj is (in, out) = shapes[0] and v_proj shapes[1]: hidden size
    h, head size 2, out_q / 2 attention heads and out_v / 2 key-value heads (the battery's 'llama'
    layout guarantees h is shared, both outs are even and out_v divides out_q)."""
    import torch as _torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from .models import CharTokenizer
    (h, q_out), (h2, v_out) = shapes
    if h != h2 or q_out % 2 or v_out % 2 or q_out % v_out:
        raise ValueError(f"tiny_llama takes layer shapes ((h, a d), (h, kv d)) with d = 2 and kv dividing a, got {shapes}")
    tok = CharTokenizer()
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=h, intermediate_size=2 * h, num_hidden_layers=1,
                      num_attention_heads=q_out // 2, num_key_value_heads=v_out // 2, head_dim=2,
                      max_position_embeddings=64, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    with _torch.random.fork_rng(devices=[]):
        _torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
    return model.to(dtype)


def _base_model(kind: str, dtype, shapes=None):
    shapes = tuple(tuple(int(x) for x in sh) for sh in (shapes or DEFAULT_SHAPES[kind]))
    if kind == "mlp":
        return _OracleSequential(*[torch.nn.Linear(m, n, bias=False) for m, n in shapes]).to(dtype), \
            [str(i) for i in range(len(shapes))]
    model = _llama(shapes, dtype)
    model.__class__ = _oracle_llama_class()   # same object and weights; only forward differs
    return model, ["q_proj", "v_proj"]


class PeftAdapter:
    """A black-box implementation (``black_box_round``) around a torch/PEFT ``train_round``.

    The battery chooses the layer sizes and the rank of every round (``layer_layout`` tells it
    which sizes the model can take: 'llama' = q_proj and v_proj share their input size); the
    model is rebuilt when they change.

    Parameters
    ----------
    train_round : callable
        ``train_round(model, clients, *, lr, local_steps, round_index, seed) -> None`` (see the
        module docstring).
    model : {"tiny_llama", "mlp"}, default "tiny_llama"
        LoRA on q_proj and v_proj of a one-layer random Llama (so code that reads
        ``model.config`` works), or on the Linear layers of a bare nn.Sequential (no ``config``).
    dtype : torch.dtype, default torch.float32
        torch.float32 or torch.float64.
    name : str, optional
        The implementation's name in reports (default: train_round's module and name).
    sample_sketch : callable, optional
        ``(rank, k, seed) -> diag(S)`` to also run the sampler checks (without it the report
        lists them as not run).
    optimizers : Optimizers or dict, optional
        What ``train_round`` uses (``fslora_ref.conformance.optimizers.Optimizers`` or a dict of
        its fields); default plain SGD with the battery's lr and a plain average.
    """

    def __init__(self, train_round, model: str = "tiny_llama", dtype=torch.float32, name: str | None = None,
                 sample_sketch=None, optimizers=None):
        if not callable(train_round):
            raise TypeError(f"train_round must be callable, got {train_round!r}")
        if model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
        if dtype not in TORCH_TO_NUMPY:
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.train_round, self.kind, self.torch_dtype = train_round, model, dtype
        self.dtype = TORCH_TO_NUMPY[dtype]
        self.optimizers = as_optimizers(optimizers, "PeftAdapter optimizers")
        self.name = name or f"{getattr(train_round, '__module__', '')}.{getattr(train_round, '__name__', 'train_round')}"
        if sample_sketch is not None:
            self.sample_sketch = sample_sketch
        self.layer_layout = "llama" if model == "tiny_llama" else "free"
        self.layer_shapes = [tuple(sh) for sh in DEFAULT_SHAPES[model]]   # until the battery asks for others
        self._model = self._layers = None
        self._key = None
        self._tensors = {}   # id(oracle) -> (oracle, its torch tensors), for the current round only

    def model_for(self, rank: int, scaling: float, shapes=None):
        """The PEFT model (built once per (rank, scaling, layer shapes)) and its LoraLayers.

        Parameters
        ----------
        rank : int
            The LoRA rank r.
        scaling : float
            The LoRA scaling s (lora_alpha = s r).
        shapes : list of tuple of int, optional
            ``[(m_l, n_l)]`` (default: the current ones).

        Returns
        -------
        model : peft.PeftModel
        layers : LoraLayers
        """
        shapes = [tuple(int(x) for x in sh) for sh in (shapes or self.layer_shapes)]
        if self._key != (rank, scaling, tuple(shapes)):
            self._base, self._targets = _base_model(self.kind, self.torch_dtype, shapes)
            self.layer_shapes = shapes
            self._model = add_lora(self._base, rank, scaling * rank, self._targets)
            self._layers = LoraLayers(self._model)
            if self._layers.layer_shapes != [tuple(s) for s in self.layer_shapes]:
                raise RuntimeError(f"LoRA layer order {self._layers.layer_shapes} != {self.layer_shapes}")
            ids = {id(m): n for n, m in self._model.get_base_model().named_modules()}
            self._base_names = [ids[id(m)] for m in self._layers.modules]   # names inside the base model
            self._key = (rank, scaling, tuple(shapes))
        return self._model, self._layers

    def param_names(self) -> list:
        """The PEFT parameter names read and written.

        Returns
        -------
        list of tuple of str
            ``(lora_A name, lora_B name)`` per layer.
        """
        return [(f"{n}.lora_A.{ADAPTER}.weight", f"{n}.lora_B.{ADAPTER}.weight") for n in self._layers.names]

    def write(self, task):
        """Write the task's global (B, A) as lora_A = B^T, lora_B = A^T, and W0 as the base weight
        (out, in).

        Parameters
        ----------
        task : RoundTask
            The battery's round (its layers, base weights, rank and scaling).
        """
        shapes = [(np.shape(B)[0], np.shape(A)[1]) for B, A in task.layers]
        model, layers = self.model_for(task.rank, task.lora_scaling, shapes)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for (na, nb), mod, (B, A), W0 in zip(self.param_names(), layers.modules, task.layers, task.base_weights):
                params[na].copy_(torch.tensor(np.asarray(B).T, dtype=self.torch_dtype))
                params[nb].copy_(torch.tensor(np.asarray(A).T, dtype=self.torch_dtype))
                mod.base_layer.weight.copy_(torch.tensor(np.asarray(W0).T, dtype=self.torch_dtype))

    def read(self) -> list:
        """The global factors, read back by PEFT parameter name.

        Returns
        -------
        list of tuple of ndarray
            ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l), float64.
        """
        params = dict(self._model.named_parameters())
        return [(params[na].detach().cpu().double().numpy().T.copy(), params[nb].detach().cpu().double().numpy().T.copy())
                for na, nb in self.param_names()]

    def _oracle_tensors(self, oracle: QuadraticOracle):
        hit = self._tensors.get(id(oracle))
        if hit is None or hit[0] is not oracle:
            dt = self.torch_dtype
            hit = (oracle, [torch.tensor(c, dtype=dt) for c in oracle.linear], [torch.tensor(m, dtype=dt) for m in oracle.mask],
                   [torch.tensor(z, dtype=dt) for z in oracle.center], [torch.eye(m, dtype=dt) for m, _ in self.layer_shapes])
            self._tensors[id(oracle)] = hit
        return hit[1:]

    def client_loss(self, oracle: QuadraticOracle, names=None):
        """``loss(root)`` with gradient over each LoRA layer's W equal to ``oracle``'s.

        Parameters
        ----------
        oracle : QuadraticOracle
            The client's objective.
        names : list of str, optional
            Where the layers are in ``root`` (default: the PEFT model's names, so root is the
            PeftModel).

        Returns
        -------
        callable
            ``loss(root) -> scalar tensor``.
        """
        names = list(self._layers.names if names is None else names)
        C, M, Z, eyes = self._oracle_tensors(oracle)
        mu = oracle.curvature

        def loss(root):
            total = 0.0
            for name, c, mk, z, eye in zip(names, C, M, Z, eyes):
                Y = root.get_submodule(name)(eye)       # (m, n) = W0 + s B S A, the effective weight
                total = total + (c * Y).sum() + 0.5 * mu * ((mk * (Y - z)) ** 2).sum()
            return total
        return loss

    def black_box_round(self, task) -> RoundResult:
        """Run one battery round through ``train_round``.

        Parameters
        ----------
        task : RoundTask
            The battery's round: global factors, clients' oracles and budgets, lr, steps, seed.

        Returns
        -------
        RoundResult
            The new global factors.

        Raises
        ------
        TypeError
            For an oracle other than a QuadraticOracle.
        ValueError
            If the task's weight decay is not the one the implementation declares.
        """
        for i, o in enumerate(task.oracles):
            if not isinstance(o, QuadraticOracle):
                raise TypeError(f"oracle {i} is a {type(o).__name__}; the PEFT adapter expresses QuadraticOracle only")
        fixed = self.optimizers.weight_decay or 0.0
        if task.weight_decay != fixed:
            raise ValueError(f"task.weight_decay is {task.weight_decay:g} but train_round takes no weight decay; declare "
                             f"the one the code uses (optimizers={{'weight_decay': ...}}, now {fixed:g})")
        self._tensors = {}   # the battery hands over fresh copies of the oracles every call
        self.write(task)
        base = self._model.get_base_model()
        setattr(base, REGISTRY, {t: self.client_loss(o, self._base_names) for t, o in enumerate(task.oracles)})
        clients = [PeftClient(int(cid), int(k), self.client_loss(o), ClientBatches(t, task.local_steps))
                   for t, (cid, k, o) in enumerate(zip(task.client_ids, task.budgets, task.oracles))]
        self.train_round(self._model, clients, lr=task.lr, local_steps=task.local_steps,
                         round_index=task.round_index, seed=task.seed)
        return RoundResult(self.read())
