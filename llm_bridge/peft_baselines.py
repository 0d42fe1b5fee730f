"""The PEFT adapter of the baseline battery: check a server rule written on PEFT adapter state dicts
(as FLoRA's own code, ATP-1010/FederatedLLM ``fed_utils/model_aggregation.py``, aggregates
``torch.load``-ed ``adapter_model.bin`` files) against the reference baseline.

What a third party writes is one callable::

    def aggregate(server, clients, client_sizes, *, rank, scaling, options, merged) -> dict:
        # server:  {"<layer>.lora_A.weight": (r, in), "<layer>.lora_B.weight": (out, r)} torch tensors, the
        #          global adapter when the round started (PEFT layout: lora_A = B^T, lora_B = A^T)
        # clients: one such dict per client with its trained rank-k_i adapter
        # client_sizes: n_i;  rank: r;  scaling: s (the rank-r adapter's coefficient);  options: the variant
        # merged:  {"<layer>.merged_delta": (out, in)} FLoRA's update merged so far (zeros otherwise)
        # returns, for fedit / hetlora, the new global adapter {"<layer>.lora_A.weight", "<layer>.lora_B.weight"};
        #          for flexlora / flora, {"<layer>.merged_delta": (out, in)}, the global model's update
        #          (W = W0 + merged_delta in torch's (out, in) layout; FLoRA: including ``merged``)

    from llm_bridge.peft_baselines import PeftStateDictBaseline
    impl = PeftStateDictBaseline(aggregate, "fedit", options={"weighting": "data_size"})

then ``check_baseline(impl, "fedit")`` or ``fslora crosscheck --algorithm fedit my_module:impl``. Only the
aggregation checks apply: whole rounds (``run_rounds``) are not offered by this adapter, so
``rounds_match_reference`` is inconclusive (exit code 3 when everything else passes).
"""
from __future__ import annotations

import numpy as np
import torch

from fslora_ref.conformance.baselines.protocol import FACTOR_ALGORITHMS

PREFIX = "base_model.model.model.layers.{l}.self_attn.q_proj"   # a PEFT Llama layer's name


def _tensor(x, dtype) -> torch.Tensor:
    return torch.tensor(np.ascontiguousarray(x), dtype=dtype)


class PeftStateDictBaseline:
    """Adapter: a baseline's ``aggregate(task)`` through a state-dict server rule.

    Parameters
    ----------
    aggregate : callable
        The server rule on PEFT state dicts: ``aggregate(server, clients, client_sizes, *, rank,
        scaling, options, merged) -> state dict``.
    algorithm : str
        The baseline it implements.
    options : dict, optional
        The baseline's variant options.
    name : str, optional
        Its display name (default from ``algorithm`` and the rule's name).
    dtype : torch.dtype, default torch.float64
        The tensors' dtype.
    """

    def __init__(self, aggregate, algorithm: str, options: dict | None = None, name: str | None = None,
                 dtype: torch.dtype = torch.float64):
        self.rule, self.algorithm, self.options = aggregate, algorithm, dict(options or {})
        self.name = name or f"PEFT state-dict {algorithm} ({getattr(aggregate, '__name__', 'rule')})"
        self.torch_dtype = dtype
        self.dtype = np.float64 if dtype == torch.float64 else np.float32

    def _adapter(self, pairs) -> dict:
        out = {}
        for l, (B, A) in enumerate(pairs):
            out[f"{PREFIX.format(l=l)}.lora_A.weight"] = _tensor(np.asarray(B, float).T, self.torch_dtype)
            out[f"{PREFIX.format(l=l)}.lora_B.weight"] = _tensor(np.asarray(A, float).T, self.torch_dtype)
        return out

    def aggregate(self, task):
        """The rule's result for one aggregation task, as arrays.

        Parameters
        ----------
        task : AggregationTask
            The server factors, the clients' trained factors, sizes, rank, scaling and options.

        Returns
        -------
        list
            ``[(B_l, A_l)]`` for a factor algorithm, else the merged dense update per layer,
            shape (m_l, n_l).
        """
        merged = {f"{PREFIX.format(l=l)}.merged_delta": _tensor(np.asarray(M, float).T, self.torch_dtype)
                  for l, M in enumerate(task.merged)}
        result = self.rule(self._adapter(task.layers), [self._adapter(client) for client in task.trained],
                           list(task.client_sizes), rank=task.rank, scaling=task.lora_scaling,
                           options=dict(task.options), merged=merged)
        if task.algorithm in FACTOR_ALGORITHMS:
            return [(_numpy(result[f"{PREFIX.format(l=l)}.lora_A.weight"]).T,
                     _numpy(result[f"{PREFIX.format(l=l)}.lora_B.weight"]).T) for l in range(task.n_layers)]
        return [_numpy(result[f"{PREFIX.format(l=l)}.merged_delta"]).T for l in range(task.n_layers)]


def _numpy(t) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, float)
