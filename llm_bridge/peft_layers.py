"""PEFT LoRA layers seen through the reference's convention, and rank-k client copies.

PEFT computes base(x) + lora_B(lora_A(x)) * scaling with lora_A.weight (r, in) and
lora_B.weight (out, r). In the row-vector convention of docs/spec.md §8, x -> x W the same layer is
W = W0 + B diag(coeff) A with

    B = lora_A.weight^T  (in, r)      A = lora_B.weight^T  (r, out)     coeff = scaling * ones(r)

so a sketch's index set I selects rows of lora_A and columns of lora_B. A rank-k client copy
simply *replaces* the two weights by k-row / k-column parameters (B_I^T, A_I^T) and sets the
scaling to the plan's coefficient (s r/k for FSLoRA): nothing of size r is trainable, so
parameters, gradients and optimiser state scale with k.
"""
from __future__ import annotations

import numpy as np

ADAPTER = "default"


def add_lora(model, rank: int, alpha: float, target_modules, use_rslora: bool = False):
    """Wrap ``model`` with a PEFT LoRA adapter of rank r on ``target_modules`` (no dropout).

    Parameters
    ----------
    model : torch.nn.Module
        The base model.
    rank : int
        The LoRA rank r.
    alpha : float
        LoRA alpha (scaling alpha / r, or alpha / sqrt(r) with ``use_rslora``).
    target_modules : iterable of str
        The module names to adapt.
    use_rslora : bool, default False
        rsLoRA's scaling.

    Returns
    -------
    peft.PeftModel
    """
    import warnings

    from peft import LoraConfig, get_peft_model
    # a transformers deprecation notice triggered inside PEFT; nothing the user can act on
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.0,
                     use_rslora=use_rslora, bias="none")
    return get_peft_model(model, cfg)


class LoraLayers:
    """The LoRA-wrapped Linear layers of a PEFT model, in module order, with read/install.

    ``names[l]`` is the PEFT module name of layer l; shapes are (m_l, n_l) = (in, out).

    Parameters
    ----------
    peft_model : peft.PeftModel
        A model with one LoRA adapter; all its layers must share one rank and scaling.

    Raises
    ------
    ValueError
        If the model has no LoRA Linear layers, or their ranks or scalings differ.
    """

    def __init__(self, peft_model):
        from peft.tuners.lora.layer import Linear as LoraLinear
        self.model = peft_model
        self.names, self.modules = [], []
        for name, mod in peft_model.named_modules():
            if isinstance(mod, LoraLinear) and ADAPTER in mod.lora_A:
                self.names.append(name)
                self.modules.append(mod)
        if not self.modules:
            raise ValueError("model has no PEFT LoRA Linear layers; check target_modules")
        scalings = {float(m.scaling[ADAPTER]) for m in self.modules}
        ranks = {int(m.r[ADAPTER]) for m in self.modules}
        if len(scalings) != 1 or len(ranks) != 1:
            raise ValueError(f"all LoRA layers must share one rank and scaling (got ranks {sorted(ranks)}, "
                             f"scalings {sorted(scalings)}); rank_pattern/alpha_pattern are not supported")
        self.scaling, self.rank = scalings.pop(), ranks.pop()
        self._base = None        # original W0 (out, in) per layer, kept only once a dense offset is used
        self._hooks = []

    def __len__(self):
        return len(self.modules)

    @property
    def layer_shapes(self) -> list:
        """``[(m_l, n_l)]`` = (in, out) per layer."""
        return [(m.in_features, m.out_features) for m in self.modules]

    @property
    def dtype(self):
        """The LoRA weights' torch dtype."""
        return self.modules[0].lora_A[ADAPTER].weight.dtype

    def base_weights(self) -> list:
        """The frozen base weights in the row convention.

        Returns
        -------
        list of ndarray
            W0_l, shape (m_l, n_l), float64 copies.
        """
        src = self._base or [m.base_layer.weight.detach() for m in self.modules]
        # nn.Linear stores (out, in); GPT-2 style Conv1D (PEFT's fan_in_fan_out) stores (in, out)
        return [w.cpu().double().numpy().copy() if m.fan_in_fan_out else w.cpu().double().numpy().T.copy()
                for w, m in zip(src, self.modules)]

    def read(self) -> list:
        """What the layers currently hold.

        Returns
        -------
        list of tuple of ndarray
            ``[(B_l, A_l)]``, shapes (m_l, q) and (q, n_l), float64 copies.
        """
        return [(m.lora_A[ADAPTER].weight.detach().cpu().double().numpy().T.copy(),
                 m.lora_B[ADAPTER].weight.detach().cpu().double().numpy().T.copy()) for m in self.modules]

    def install(self, factors, trainable: bool) -> list:
        """Put ``factors`` into the layers as fresh parameters of rank q.

        A uniform coeff becomes PEFT's scalar scaling; a non-uniform one (the full-size masked
        form, coeff = s diag(S)) is applied by a hook on lora_A's output. A non-None delta
        is added to the frozen base weight (FLoRA's merged stack).

        Parameters
        ----------
        factors : list of LayerFactors
            One per layer: B, shape (m, q); A, shape (q, n); coeff, shape (q,); delta, shape
            (m, n), or None.
        trainable : bool
            Whether the new parameters require gradients.

        Returns
        -------
        list of torch.nn.Parameter
            ``[lora_A_0, lora_B_0, lora_A_1, ...]``.
        """
        import torch
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if len(factors) != len(self.modules):
            raise ValueError(f"factors must have one entry per LoRA layer ({len(self.modules)}), got {len(factors)}")
        if self._base is None and any(f.delta is not None for f in factors):
            self._base = [m.base_layer.weight.detach().clone() for m in self.modules]
        params = []
        for l, (mod, f) in enumerate(zip(self.modules, factors)):
            dtype, device = self.dtype, mod.base_layer.weight.device
            lin_a, lin_b = mod.lora_A[ADAPTER], mod.lora_B[ADAPTER]
            lin_a.weight = torch.nn.Parameter(torch.tensor(f.B.T, dtype=dtype, device=device), requires_grad=trainable)
            lin_b.weight = torch.nn.Parameter(torch.tensor(f.A.T, dtype=dtype, device=device), requires_grad=trainable)
            lin_a.out_features = lin_b.in_features = f.B.shape[1]
            coeff = np.asarray(f.coeff, dtype=float)
            if coeff.size and np.all(coeff == coeff[0]):
                mod.scaling[ADAPTER] = float(coeff[0])
            else:
                mod.scaling[ADAPTER] = 1.0
                c = torch.tensor(coeff, dtype=dtype, device=device)
                self._hooks.append(lin_a.register_forward_hook(lambda _m, _i, out, c=c: out * c))
            if self._base is not None:
                base = self._base[l]
                delta = None if f.delta is None else (f.delta if mod.fan_in_fan_out else f.delta.T)
                extra = 0.0 if delta is None else torch.tensor(delta, dtype=base.dtype, device=base.device)
                mod.base_layer.weight.data = base + extra
            params += [lin_a.weight, lin_b.weight]
        return params
