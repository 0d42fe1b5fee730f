"""Running an implementation for the checks: validation of what it returns, and a per-battery
cache so that checks sharing a set of rounds (the black-box run) run it once."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .protocol import MOVED, TOLERANCE, RoundResult, RoundTask, dtype_of

MODES = {"white": "white_box_round", "black": "black_box_round", "sampler": "sample_sketch"}


class CheckFailed(AssertionError):
    """A check found a violation; the message is the diagnosis (which client, layer, index,
    expected vs got)."""


@dataclass
class Options:
    """Battery settings. rounds: black-box rounds; alpha: family-wise false-alarm rate of
    each statistical check; sampler_draws: draws per (r, k) in the sampler checks."""

    rounds: int = 200
    alpha: float = 1e-3
    sampler_draws: int = 3000
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.rounds, int) or self.rounds < 20:
            raise ValueError(f"rounds must be an integer >= 20, got {self.rounds!r}")
        if not (0.0 < self.alpha < 0.5):
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha!r}")
        if not isinstance(self.sampler_draws, int) or self.sampler_draws < 500:
            raise ValueError(f"sampler_draws must be an integer >= 500, got {self.sampler_draws!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")


@dataclass
class Session:
    impl: object
    options: Options = field(default_factory=Options)
    cache: dict = field(default_factory=dict)

    def __post_init__(self):
        self.dtype = dtype_of(self.impl)
        self.tol = TOLERANCE[self.dtype]
        self.moved_tol = MOVED[self.dtype]

    def require(self, mode: str):
        return require(self.impl, mode)

    def run_round(self, mode: str, task: RoundTask, key=None) -> RoundResult:
        """The implementation's result for ``task`` (cached under ``key``), validated."""
        if key is not None and key in self.cache:
            return self.cache[key]
        # the implementation gets its own copies: one that updates arrays in place must not
        # move the start point the battery measures changes from
        handed = replace(task, layers=[(np.array(B), np.array(A)) for B, A in task.layers],
                         base_weights=[np.array(W) for W in task.base_weights])
        result = normalise_result(self.require(mode)(handed), task)
        if key is not None:
            self.cache[key] = result
        return result


def require(impl, mode: str):
    """impl's method for ``mode``; TypeError naming it if missing."""
    method = MODES[mode]
    if not callable(getattr(impl, method, None)):
        raise TypeError(f"{describe(impl)} has no {method}(...) method, which {mode} checks need "
                        f"(see fslora_ref/conformance/protocol.py)")
    return getattr(impl, method)


def describe(impl) -> str:
    return str(getattr(impl, "name", None) or type(impl).__name__)


def normalise_result(result, task: RoundTask) -> RoundResult:
    """RoundResult with float64 arrays; raises CheckFailed naming what is malformed."""
    if not isinstance(result, RoundResult):
        result = RoundResult(result)
    layers = list(result.layers) if result.layers is not None else []
    if len(layers) != task.n_layers:
        raise CheckFailed(f"round {task.label!r}: implementation returned {len(layers)} layers, expected {task.n_layers}")
    out = []
    for l, (pair, (B0, A0)) in enumerate(zip(layers, task.layers)):
        B, A = (np.asarray(x, dtype=float) for x in pair)
        if B.shape != B0.shape or A.shape != A0.shape:
            raise CheckFailed(f"round {task.label!r}, layer {l}: returned B {B.shape}, A {A.shape}; "
                              f"expected B {B0.shape}, A {A0.shape}")
        if not (np.all(np.isfinite(B)) and np.all(np.isfinite(A))):
            raise CheckFailed(f"round {task.label!r}, layer {l}: returned non-finite factors")
        out.append((B, A))
    return RoundResult(out, result.uploads)


def deltas(task: RoundTask, result: RoundResult) -> list:
    """[(B_new - B, A_new - A)] per layer, float64."""
    return [(B - np.asarray(B0, float), A - np.asarray(A0, float)) for (B, A), (B0, A0) in zip(result.layers, task.layers)]


def moved_sets(session: Session, task: RoundTask, result: RoundResult, rows=None, cols=None) -> list:
    """[(moved B columns, moved A rows)] per layer; B read on ``rows`` and A on ``cols`` if given
    ([per layer index arrays])."""
    out = []
    for l, ((dB, dA), (B0, A0)) in enumerate(zip(deltas(task, result), task.layers)):
        if rows is not None:
            dB = dB[rows[l], :]
        if cols is not None:
            dA = dA[:, cols[l]]
        thr_B = session.moved_tol * max(np.max(np.abs(B0)), 1e-30)
        thr_A = session.moved_tol * max(np.max(np.abs(A0)), 1e-30)
        out.append((np.flatnonzero(np.max(np.abs(dB), axis=0, initial=0.0) > thr_B),
                    np.flatnonzero(np.max(np.abs(dA), axis=1, initial=0.0) > thr_A)))
    return out


def fmt_set(indices) -> str:
    return "[" + " ".join(str(int(i)) for i in indices) + "]"
