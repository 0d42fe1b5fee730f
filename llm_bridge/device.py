"""Where and in which precision the bridge runs: ``--device auto|cpu|cuda[:i]`` and
``--dtype float32|bfloat16|float64``.

``auto`` is CUDA when torch sees a GPU, else the CPU. Only the CPU path is exercised by the
test suite (the machines it runs on have no GPU).
"""
from __future__ import annotations

import os
import re

DTYPES = ("float32", "bfloat16", "float64")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_spec(spec: str) -> str:
    """The spec itself if it is syntactically valid (no torch import); else a one-line ValueError.

    Parameters
    ----------
    spec : str
        "auto", "cpu", "cuda" or "cuda:<index>".

    Returns
    -------
    str
        ``spec``.
    """
    if not isinstance(spec, str) or not _DEVICE.match(spec):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:<index>, got {spec!r}")
    return spec


def resolve_device(spec: str):
    """torch.device for ``spec``; ValueError naming --device if CUDA is asked for but absent.

    Parameters
    ----------
    spec : str
        "auto", "cpu", "cuda" or "cuda:<index>".

    Returns
    -------
    torch.device
        "auto" is CUDA if available, else CPU.
    """
    import torch
    check_device_spec(spec)
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: CUDA is not available to this torch ({torch.__version__}); use cpu")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) (0..{torch.cuda.device_count() - 1})")
        # deterministic cuBLAS needs a fixed workspace (torch.use_deterministic_algorithms)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device(spec)


def torch_dtype(name: str):
    """torch dtype for one of ``DTYPES``.

    Parameters
    ----------
    name : {"float32", "bfloat16", "float64"}

    Returns
    -------
    torch.dtype
    """
    import torch
    if name not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, name)


def module_device(module):
    """The device a torch module's parameters live on (CPU for a parameterless module).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.device
    """
    import torch
    return next((p.device for p in module.parameters()), torch.device("cpu"))
