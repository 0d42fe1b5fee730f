"""FSLoRA and the paper's baselines behind one protocol (see protocol.py)."""
from .fedit import FedIT
from .flexlora import FlexLoRA
from .flora import FLoRA
from .fslora import FSLoRA, draw_round_sketches, sketched_factors
from .hetlora import HetLoRA
from .protocol import Algorithm, ClientPlan, ServerState, Upload, apply_server_step, scatter_mean

ALGORITHMS = {cls.name: cls for cls in (FSLoRA, FedIT, HetLoRA, FlexLoRA, FLoRA)}


def get_algorithm(name: str, **options) -> Algorithm:
    """An algorithm instance by name, with its variant options.

    Parameters
    ----------
    name : str
        One of ``ALGORITHMS``: ``"fslora"``, ``"fedit"``, ``"hetlora"``, ``"flexlora"``, ``"flora"``.
    **options
        The algorithm's variant options (see each class's ``OPTIONS``); omitted options take the
        defaults, the FSLoRA paper's rules.

    Returns
    -------
    Algorithm
        A new instance of ``ALGORITHMS[name]``.

    Raises
    ------
    ValueError
        If ``name`` is not a known algorithm (or an option is not one of the class's).

    Examples
    --------
    >>> from fslora_ref import get_algorithm
    >>> get_algorithm("fslora").name
    'fslora'
    >>> get_algorithm("hetlora", aggregate="matrix").name
    'hetlora'
    """
    if name not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {name!r}")
    return ALGORITHMS[name](**options)


__all__ = ["ALGORITHMS", "get_algorithm", "Algorithm", "ClientPlan", "ServerState", "Upload",
           "FSLoRA", "FedIT", "HetLoRA", "FlexLoRA", "FLoRA", "draw_round_sketches", "sketched_factors",
           "apply_server_step", "scatter_mean"]
