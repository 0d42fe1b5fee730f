"""``fslora claims --impl MODULE:ATTR``: the FSLoRA arms run another implementation.

The target (the ``verify`` / ``crosscheck`` syntax, loaded by
``fslora_ref.conformance.targets.load_target``) must be an ``fslora_ref.algorithms.Algorithm``
(an instance, a class or a zero-argument factory): the claims run minibatch rounds through
``fslora_ref.federation.run_round``, so a conformance-protocol object (full-batch W oracles) cannot
run them. It replaces the reference FSLoRA in every FSLoRA arm; the baselines stay the reference's.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from fslora_ref.algorithms.protocol import Algorithm


@dataclass(frozen=True)
class Implementation:
    """A picklable zero-argument factory: each run gets its own copy of the loaded algorithm.

    Parameters
    ----------
    target : str
        The MODULE:ATTR it was loaded from (recorded in the report and in every run's fingerprint).
    algorithm : Algorithm
        The loaded instance.
    """

    target: str
    algorithm: Algorithm

    @property
    def name(self) -> str:
        cls = type(self.algorithm)
        return f"{self.target} ({cls.__module__}.{cls.__qualname__})"

    def __call__(self) -> Algorithm:
        return copy.deepcopy(self.algorithm)


def load_implementation(target: str) -> Implementation:
    """The FSLoRA implementation named by ``target``, as a picklable factory.

    Parameters
    ----------
    target : str
        ``MODULE:ATTR`` (the ``verify`` / ``crosscheck`` syntax).

    Returns
    -------
    Implementation

    Raises
    ------
    ValueError
        One line, when it cannot be loaded or is not an ``fslora_ref.algorithms.Algorithm``.
    """
    from fslora_ref.conformance.targets import load_target
    obj = load_target(target)
    if not isinstance(obj, Algorithm):
        raise ValueError(f"--impl {target}: fslora claims runs an fslora_ref.algorithms.Algorithm through run_round "
                         f"(minibatch rounds); got {type(obj).__module__}.{type(obj).__qualname__}")
    return Implementation(target, obj)
