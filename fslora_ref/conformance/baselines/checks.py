"""The baseline checks: each takes a Probe (the implementation, its algorithm and declared variant),
returns a one-line account of what it verified, and raises CheckFailed with a diagnosis (which task,
layer, expected vs got, and which known variant or defect the result matches) or CheckInconclusive.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from ..protocol import TOLERANCE
from ..session import CheckFailed, CheckInconclusive, describe_exception
from .protocol import FACTOR_ALGORITHMS, AggregationTask, RoundsTask
from .reference import (describe_variant, first_client_only, other_variants, reference_aggregate,
                        reference_rounds)
from .scenarios import aggregation_task, rounds_task


@dataclass(frozen=True)
class BaselineCheck:
    """A registered baseline check, as the battery lists and runs it.

    Parameters
    ----------
    name : str
        The check's name (its function's name without ``check_``).
    algorithms : tuple of str
        The baselines it applies to.
    func : callable
        ``func(probe) -> str``, the check itself.
    description : str
        The first paragraph of the function's docstring, one line (shown by ``crosscheck --list``).
    """

    name: str
    algorithms: tuple
    func: object
    description: str


BASELINE_CHECKS: dict = {}


def baseline_check(*algorithms):
    """Register the decorated function as a baseline check for ``algorithms`` in BASELINE_CHECKS.

    Its name is the function's without ``check_``; its description is the first paragraph of its
    docstring, so that paragraph must say what the check verifies.

    Parameters
    ----------
    *algorithms : str
        The baselines the check applies to.

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.
    """
    def register(func):
        name = func.__name__.removeprefix("check_")
        first = " ".join((func.__doc__ or name).strip().split("\n\n")[0].split())
        BASELINE_CHECKS[name] = BaselineCheck(name, algorithms, func, first)
        return func
    return register


@dataclass
class Probe:
    """The implementation under test, its baseline and declared (complete) options.

    Parameters
    ----------
    impl : object
        The adapter: ``aggregate(task)`` and optionally ``run_rounds(task)``.
    algorithm : str
        The baseline it implements.
    options : dict
        Its declared variant, every option filled in.
    dtype : numpy.dtype, default float64
        The dtype it computes in; sets the tolerance (``TOLERANCE[dtype]``).
    """

    impl: object
    algorithm: str
    options: dict
    dtype: np.dtype = np.dtype(np.float64)

    @property
    def tol(self) -> float:
        return TOLERANCE[self.dtype]

    def call(self, method: str, task):
        """Call the implementation's ``method`` on ``task``; whatever it raises is its failure.

        Parameters
        ----------
        method : str
            ``"aggregate"`` or ``"run_rounds"``.
        task : AggregationTask or RoundsTask

        Returns
        -------
        object
            What the implementation returned, unchecked.

        Raises
        ------
        CheckFailed
            Naming the task and the exception, if the call raised (a KeyboardInterrupt propagates).
        """
        try:
            return getattr(self.impl, method)(task)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B036 - whatever the implementation raises is its failure
            raise CheckFailed(f"task {task.label!r}: {method} raised {describe_exception(exc)}") from None

    def aggregate(self, task: AggregationTask) -> dict:
        """The implementation's aggregation of ``task``, validated (:func:`normalise_state`).

        Parameters
        ----------
        task : AggregationTask

        Returns
        -------
        dict
            ``{"layers": [(B_l, A_l)]}`` or ``{"delta_W": [dW_l]}``, float arrays.

        Raises
        ------
        CheckFailed
            If the call raises or the result has the wrong structure, shape or values.
        """
        return normalise_state(self.call("aggregate", task), task)

    def run_rounds(self, task: RoundsTask) -> list:
        """The implementation's whole rounds on ``task``, validated (:func:`normalise_rounds`).

        Parameters
        ----------
        task : RoundsTask

        Returns
        -------
        list of list of ndarray
            ``[round][layer]`` ``W_l^t - W0_l``, shape (m_l, n_l), float.

        Raises
        ------
        CheckFailed
            If the call raises or the result has the wrong structure, shape or values.
        """
        return normalise_rounds(self.call("run_rounds", task), task)


def _array(x, what) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - the implementation's object
        raise CheckFailed(f"{what} is not an array ({describe_exception(exc)})") from None
    if arr.dtype.kind not in "biuf":
        raise CheckFailed(f"{what} has dtype {arr.dtype}; expected real numbers")
    arr = arr.astype(float)
    if not np.all(np.isfinite(arr)):
        raise CheckFailed(f"{what} is not finite")
    return arr


def normalise_state(result, task: AggregationTask) -> dict:
    """What an implementation's ``aggregate`` returned, validated and in one form.

    A list per layer, or a dict holding it under ``"layers"`` (FedIT, HetLoRA) or ``"delta_W"``
    (FlexLoRA, FLoRA), is accepted.

    Parameters
    ----------
    result : object
        The implementation's return value.
    task : AggregationTask
        The task it was given (its algorithm, layer count and shapes).

    Returns
    -------
    dict
        ``{"layers": [(B_l: (m_l, r), A_l: (r, n_l))]}`` (FedIT, HetLoRA) or
        ``{"delta_W": [dW_l: (m_l, n_l)]}`` (FlexLoRA, FLoRA), float arrays.

    Raises
    ------
    CheckFailed
        If it is not a list per layer, has the wrong number of layers or shapes, or holds
        non-numeric or non-finite values.
    """
    where = f"task {task.label!r}: aggregate"
    if isinstance(result, Mapping):
        key = "layers" if task.algorithm in FACTOR_ALGORITHMS else "delta_W"
        result = result.get(key)
    try:
        items = list(result)
    except TypeError:
        raise CheckFailed(f"{where} returned {type(result).__name__}; expected a list per layer") from None
    if len(items) != task.n_layers:
        raise CheckFailed(f"{where} returned {len(items)} layers, expected {task.n_layers}")
    if task.algorithm in FACTOR_ALGORITHMS:
        out = []
        for l, (item, (B0, A0)) in enumerate(zip(items, task.layers)):
            try:
                B, A = item
            except (TypeError, ValueError):
                raise CheckFailed(f"{where}, layer {l}: expected a pair (B, A) of rank-{task.rank} server factors") from None
            B, A = _array(B, f"{where}, layer {l}: B"), _array(A, f"{where}, layer {l}: A")
            if B.shape != np.shape(B0) or A.shape != np.shape(A0):
                raise CheckFailed(f"{where}, layer {l}: B {B.shape}, A {A.shape}; expected {np.shape(B0)}, {np.shape(A0)}")
            out.append((B, A))
        return {"layers": out}
    out = []
    for l, (item, (B0, A0)) in enumerate(zip(items, task.layers)):
        dW = _array(item, f"{where}, layer {l}")
        if dW.shape != (np.shape(B0)[0], np.shape(A0)[1]):
            raise CheckFailed(f"{where}, layer {l}: shape {dW.shape}, expected the dense update "
                              f"{(np.shape(B0)[0], np.shape(A0)[1])}")
        out.append(dW)
    return {"delta_W": out}


def normalise_rounds(result, task: RoundsTask) -> list:
    """What an implementation's ``run_rounds`` returned, validated.

    Parameters
    ----------
    result : object
        The implementation's return value: per round, per layer, the model update.
    task : RoundsTask
        The task it was given (its rounds, layer count and base weights' shapes).

    Returns
    -------
    list of list of ndarray
        ``[round][layer]`` ``W_l^t - W0_l``, shape (m_l, n_l), float.

    Raises
    ------
    CheckFailed
        If the number of rounds or layers, a shape, or a value (non-numeric, non-finite) is wrong.
    """
    try:
        rounds = [list(r) for r in result]
    except TypeError:
        raise CheckFailed(f"task {task.label!r}: run_rounds returned {type(result).__name__}; expected a list "
                          f"of per-layer model updates for each round") from None
    if len(rounds) != task.rounds:
        raise CheckFailed(f"task {task.label!r}: run_rounds returned {len(rounds)} rounds, expected {task.rounds}")
    out = []
    for t, layers in enumerate(rounds):
        if len(layers) != task.n_layers:
            raise CheckFailed(f"task {task.label!r}, round {t}: {len(layers)} layers, expected {task.n_layers}")
        row = []
        for l, (x, W0) in enumerate(zip(layers, task.base_weights)):
            dW = _array(x, f"task {task.label!r}, round {t}, layer {l}")
            if dW.shape != np.shape(W0):
                raise CheckFailed(f"task {task.label!r}, round {t}, layer {l}: shape {dW.shape}, expected {np.shape(W0)}")
            row.append(dW)
        out.append(row)
    return out


def _flat(state: dict) -> list:
    return [x for pair in state["layers"] for x in pair] if "layers" in state else list(state["delta_W"])


def _names(task, state: dict) -> list:
    if "layers" in state:
        return [f"layer {l} {w}" for l in range(task.n_layers) for w in ("B", "A")]
    return [f"layer {l} update" for l in range(task.n_layers)]


def mismatch(expected: list, got: list, names: list, tol: float) -> str | None:
    """The first array that differs from its expected value beyond a relative tolerance.

    An array agrees when ``max |got - expected| <= tol * max |expected|``.

    Parameters
    ----------
    expected : list of ndarray
        The reference's arrays.
    got : list of ndarray
        The implementation's, in the same order.
    names : list of str
        One name per array, for the message (e.g. ``"layer 0 B"``).
    tol : float
        The relative tolerance.

    Returns
    -------
    str or None
        None if every array agrees; else one line naming the first array that does not, its worst
        entry (expected vs got) and the error, or its shape if the shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> from fslora_ref.conformance.baselines.checks import mismatch
    >>> mismatch([np.ones((2, 2))], [np.ones((2, 2))], ["layer 0 update"], 1e-12) is None
    True
    >>> mismatch([np.ones((2, 2))], [np.array([[1.0, 1.0], [1.0, 1.5]])], ["layer 0 update"], 1e-12)
    'layer 0 update[1, 1]: expected 1, got 1.5 (max error 0.5 x the largest entry, tolerance 1e-12)'
    """
    for name, e, g in zip(names, expected, got):
        if np.shape(e) != np.shape(g):
            return f"{name}: expected shape {np.shape(e)}, got {np.shape(g)}"
        err = float(np.max(np.abs(g - e), initial=0.0)) / max(float(np.max(np.abs(e), initial=0.0)), 1e-300)
        if err > tol:
            pos = np.unravel_index(np.argmax(np.abs(g - e)), e.shape)
            return (f"{name}{list(map(int, pos))}: expected {e[pos]:.6g}, got {g[pos]:.6g} "
                    f"(max error {err:.3g} x the largest entry, tolerance {tol:g})")
    return None


def aggregation_hint(probe: Probe, task: AggregationTask, got: dict) -> str:
    """Which known defect or other variant an aggregation result matches, for a diagnosis.

    Tried in order: FedIT keeping only the first client (:func:`~.reference.first_client_only`),
    then every other variant of the algorithm, fewest differences first.

    Parameters
    ----------
    probe : Probe
        The implementation, its declared variant and tolerance.
    task : AggregationTask
        The task it aggregated.
    got : dict
        Its validated result (:func:`normalise_state`).

    Returns
    -------
    str
        ``"; it ..."`` naming the first match, to append to a failure message; ``""`` if none matches.
    """
    flat = _flat(got)
    for candidate in first_client_only(task):
        if mismatch(_flat(candidate), flat, _names(task, got), probe.tol) is None:
            return ("; it equals the first client's upload alone (scaled by its weight): the other clients are "
                    "dropped, like the misspelt `weighted_sindgle_weights` in ATP-1010/FederatedLLM's FedAvg")
    for variant in other_variants(probe.algorithm, probe.options):
        if mismatch(_flat(reference_aggregate(task, variant)), flat, _names(task, got), probe.tol) is None:
            return f"; it matches the reference with {describe_variant(probe.options, variant)}"
    return ""


def _compare_aggregation(probe: Probe, task: AggregationTask, what: str) -> None:
    expected = reference_aggregate(task)
    got = probe.aggregate(task)
    problem = mismatch(_flat(expected), _flat(got), _names(task, expected), probe.tol)
    if problem:
        raise CheckFailed(f"task {task.label!r}: {what}: {problem}{aggregation_hint(probe, task, got)}")


ALL = ("fedit", "hetlora", "flexlora", "flora")


@baseline_check(*ALL)
def check_aggregation_matches_reference(probe: Probe) -> str:
    """The server state the implementation aggregates from given uploads equals the reference's
    (declared variant; heterogeneous budgets, unequal data sizes, two layers).

    Parameters
    ----------
    probe : Probe
        The implementation under test, its baseline and declared variant.

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis (task, layer, expected vs got, and the known variant or defect the result
        matches, if any).
    """
    tasks = [aggregation_task(probe.algorithm, probe.options, tag) for tag in (1, 2)]
    for task in tasks:
        _compare_aggregation(probe, task, "the aggregated server state differs from the reference")
    return f"{len(tasks)} aggregations equal the reference ({_variant(probe)}) within {probe.tol:g} relative"


@baseline_check(*ALL)
def check_no_op_round(probe: Probe) -> str:
    """Uploads equal to what the clients started from (learning rate 0): the server's model must not
    move (FedIT, HetLoRA's delta rule, FLoRA) or must move exactly to the weighted average of the
    clients' rank-k_i truncations (FlexLoRA), as the declared variant implies.

    Parameters
    ----------
    probe : Probe
        The implementation under test, its baseline and declared variant.

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis (task, layer, expected vs got, and the known variant or defect the result
        matches, if any).
    """
    task = aggregation_task(probe.algorithm, probe.options, tag=3, untrained=True)
    expected = reference_aggregate(task)
    got = probe.aggregate(task)
    problem = mismatch(_flat(expected), _flat(got), _names(task, expected), probe.tol)
    if problem:
        rule = ("the weighted average of the rank-k_i truncations" if probe.algorithm == "flexlora" else
                "a fixed point" if _is_fixed_point(task, expected) else "the declared variant's result")
        raise CheckFailed(f"task {task.label!r}: a round in which no client trained should give {rule}: "
                          f"{problem}{aggregation_hint(probe, task, got)}")
    kind = ("moved to the re-truncation" if probe.algorithm == "flexlora" else
            "kept the model" if _is_fixed_point(task, expected) else "gave the declared variant's result")
    return f"a learning-rate-0 round {kind}, as the reference ({_variant(probe)})"


def _is_fixed_point(task: AggregationTask, expected: dict) -> bool:
    if "layers" in expected:
        return all(np.allclose(B, B0, rtol=0, atol=1e-14) and np.allclose(A, A0, rtol=0, atol=1e-14)
                   for (B, A), (B0, A0) in zip(expected["layers"], task.layers))
    return all(np.allclose(M, M0, rtol=0, atol=1e-14) for M, M0 in zip(expected["delta_W"], task.merged))


@baseline_check(*ALL)
def check_every_client_counts(probe: Probe) -> str:
    """Changing the last client's upload changes the result exactly as the reference's does (an
    aggregation that keeps only the first client fails this).

    Parameters
    ----------
    probe : Probe
        The implementation under test, its baseline and declared variant.

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis (task, layer, expected vs got, and the known variant or defect the result
        matches, if any).
    """
    task = aggregation_task(probe.algorithm, probe.options, tag=4)
    rng = np.random.default_rng([20, 5])
    last = [(B + rng.standard_normal(np.shape(B)), A + rng.standard_normal(np.shape(A))) for B, A in task.trained[-1]]
    moved = replace(task, trained=task.trained[:-1] + [last], label=task.label + "+last-client-moved")
    want = [b - a for a, b in zip(_flat(reference_aggregate(task)), _flat(reference_aggregate(moved)))]
    got0, got1 = probe.aggregate(task), probe.aggregate(moved)
    change = [b - a for a, b in zip(_flat(got0), _flat(got1))]
    if all(np.max(np.abs(c), initial=0.0) == 0.0 for c in change):
        raise CheckFailed(f"task {moved.label!r}: changing client {task.n_clients - 1}'s upload did not change the "
                          f"result at all: the aggregation ignores that client (e.g. it keeps only the first "
                          f"client, like the misspelt `weighted_sindgle_weights` in ATP-1010/FederatedLLM's FedAvg)")
    problem = mismatch(want, change, _names(task, got0), probe.tol)
    if problem:
        raise CheckFailed(f"task {moved.label!r}: the result's response to client {task.n_clients - 1}'s upload "
                          f"differs from the reference's: {problem}{aggregation_hint(probe, moved, got1)}")
    return f"client {task.n_clients - 1}'s upload moves the result as the reference's weight says"


@baseline_check("fedit", "flexlora", "flora")
def check_weights_as_declared(probe: Probe) -> str:
    """Swapping the clients' data sizes (same uploads) leaves a uniformly weighted result unchanged and
    moves a data-size-weighted one exactly as the reference's does.

    Parameters
    ----------
    probe : Probe
        The implementation under test, its baseline and declared variant.

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis (task, layer, expected vs got, and the known variant or defect the result
        matches, if any).
    """
    task = aggregation_task(probe.algorithm, probe.options, tag=6)
    swapped = replace(task, client_sizes=tuple(reversed(task.client_sizes)), label=task.label + "+sizes-reversed")
    got0, got1 = probe.aggregate(task), probe.aggregate(swapped)
    want0, want1 = reference_aggregate(task), reference_aggregate(swapped)
    declared = probe.options["weighting"]
    problem = mismatch(_flat(want1), _flat(got1), _names(task, want1), probe.tol)
    if problem:
        other = "data_size" if declared == "uniform" else "uniform"
        alt = reference_aggregate(swapped, dict(probe.options, weighting=other))
        hint = ""
        if mismatch(_flat(alt), _flat(got1), _names(task, alt), probe.tol) is None:
            rule = "weights clients by data size" if other == "data_size" else "ignores the data sizes"
            hint = f"; it matches weighting={other!r} ({rule}) though it declares {declared!r}"
        elif declared == "uniform" and mismatch(_flat(got0), _flat(got1), _names(task, got0), probe.tol) is not None:
            hint = "; the result depends on the clients' data sizes though it declares uniform weights"
        raise CheckFailed(f"task {swapped.label!r}: {problem}{hint}")
    moved = mismatch(_flat(want0), _flat(want1), _names(task, want0), probe.tol) is not None
    return (f"weighting={declared!r}: " + ("the result follows the data sizes as the reference's" if moved else
                                           "the result does not depend on the data sizes"))


@baseline_check(*ALL)
def check_rounds_match_reference(probe: Probe) -> str:
    """Three whole rounds (client starts, local SGD, aggregation) give the reference's global model after
    every round (catches a FLoRA that does not re-initialise, a FlexLoRA that splits the SVD otherwise...).

    Parameters
    ----------
    probe : Probe
        The implementation under test, its baseline and declared variant.

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis (task, layer, expected vs got, and the known variant or defect the result
        matches, if any).
    CheckInconclusive
        If the adapter offers no ``run_rounds``.
    """
    if not callable(getattr(probe.impl, "run_rounds", None)):
        raise CheckInconclusive("the adapter offers no run_rounds(task): whole rounds (what clients start from) "
                                "were not checked")
    task = rounds_task(probe.algorithm, probe.options)
    expected = reference_rounds(task)
    got = probe.run_rounds(task)
    for t, (e, g) in enumerate(zip(expected, got)):
        names = [f"round {t} layer {l} model update" for l in range(task.n_layers)]
        problem = mismatch(e, g, names, probe.tol)
        if problem:
            raise CheckFailed(f"task {task.label!r}: {problem}{_rounds_hint(probe, task, got)}")
    return f"{task.rounds} rounds give the reference's model after every round ({_variant(probe)})"


def _rounds_hint(probe: Probe, task: RoundsTask, got: list) -> str:
    def same(rows):
        return all(mismatch(e, g, [""] * len(e), probe.tol) is None for e, g in zip(rows, got))
    if probe.algorithm == "flora" and same(reference_rounds(task, defect="no_reinit")):
        return ("; it matches a FLoRA whose clients continue from last round's trained pair instead of a fresh "
                "one: it forgets to re-initialise (last round's update, already merged, is counted again)")
    for variant in other_variants(probe.algorithm, probe.options):
        if same(reference_rounds(task, variant)):
            return f"; it matches the reference with {describe_variant(probe.options, variant)}"
    return ""


def _variant(probe: Probe) -> str:
    return ", ".join(f"{k}={v}" for k, v in probe.options.items()) or "no options"
