"""Conformance battery for the baselines: ``check_baseline(impl, "hetlora")`` holds a third party's
FedIT / HetLoRA / FlexLoRA / FLoRA against the reference baseline with the variant it declares.

    from fslora_ref.conformance.baselines import check_baseline
    table = check_baseline(my_hetlora, "hetlora")        # options from my_hetlora.options
    print(table.format()); assert table.ok

The adapter protocol is in ``protocol.py`` (``aggregate(task)``, optionally ``run_rounds(task)``);
examples: examples/numpy_{fedit,hetlora,flexlora,flora}.py. ``fslora crosscheck --algorithm hetlora
TARGET`` is the command-line front end (same report and exit codes as the FSLoRA battery).
"""
from __future__ import annotations

import time

import numpy as np

from ...algorithms import get_algorithm
from ..battery import CheckResult, ResultTable
from ..protocol import dtype_of
from ..session import CheckFailed, CheckInconclusive, describe, describe_exception
from .checks import BASELINE_CHECKS, Probe
from .protocol import BASELINES, AggregationTask, RoundsTask

MODES = {"rounds_match_reference": "round"}   # the other checks hand the server uploads: "server"


def declared_options(impl, algorithm: str, options=None) -> dict:
    """The complete variant: the reference defaults, then ``impl.options``, then ``options``.

    Parameters
    ----------
    impl : object
        The implementation (its ``algorithm`` and ``options``, if declared).
    algorithm : str
        A baseline: one of ``BASELINES``.
    options : dict, optional
        Overrides.

    Returns
    -------
    dict
        ``{option: value}``.

    Raises
    ------
    ValueError
        Naming a bad algorithm or option.
    """
    if algorithm not in BASELINES:
        raise ValueError(f"--algorithm must be one of {['fslora', *BASELINES]}, got {algorithm!r}")
    own = getattr(impl, "algorithm", None)
    if isinstance(own, str) and own != algorithm:
        raise ValueError(f"the implementation declares algorithm {own!r}, not {algorithm!r}")
    declared = getattr(impl, "options", None) or {}
    if not isinstance(declared, dict):
        raise TypeError(f"impl.options must be a dict of the variant's options, got {type(declared).__name__}")
    return dict(get_algorithm(algorithm, **{**declared, **dict(options or {})}).options)


def check_baseline(impl, algorithm: str, options=None, expected_failed=None) -> ResultTable:
    """Run the baseline battery on ``impl`` (see protocol.py) as ``algorithm`` with its declared variant.

    Parameters
    ----------
    impl : object
        The implementation (``aggregate(task)`` and / or ``run_rounds(task)``).
    algorithm : str
        A baseline: one of ``BASELINES``.
    options : dict, optional
        Overrides ``impl.options``.
    expected_failed : dict, optional
        ``{check: reason}``, run and reported but not counted.

    Returns
    -------
    ResultTable
        ``.ok``, ``.verdict``, ``.exit_code``, ``.format()``.
    """
    options = declared_options(impl, algorithm, options)
    expected_failed = {**dict(getattr(impl, "expected_failed", None) or {}), **dict(expected_failed or {})}
    unknown = sorted(set(expected_failed) - set(BASELINE_CHECKS))
    if unknown:
        raise ValueError(f"expected_failed names unknown checks {unknown}; baseline checks are {list(BASELINE_CHECKS)}")
    if not callable(getattr(impl, "aggregate", None)):
        raise TypeError(f"{describe(impl)} has no aggregate(task); see fslora_ref/conformance/baselines/protocol.py")
    probe = Probe(impl, algorithm, options, dtype_of(impl))
    table = ResultTable()
    table.implementation = f"{describe(impl)} as {algorithm} ({', '.join(f'{k}={v}' for k, v in options.items())})"
    for check in BASELINE_CHECKS.values():
        if algorithm not in check.algorithms:
            continue
        start = time.perf_counter()
        try:
            outcome, diagnosis = "pass", check.func(probe)
        except CheckFailed as exc:
            outcome, diagnosis = "fail", str(exc)
        except CheckInconclusive as exc:
            outcome, diagnosis = "inconclusive", str(exc)
        except (ValueError, TypeError, IndexError, np.linalg.LinAlgError) as exc:   # malformed input to the reference
            outcome, diagnosis = "fail", f"the result could not be compared: {describe_exception(exc)}"
        table.append(CheckResult(check.name, MODES.get(check.name, "server"), outcome, expected_failed.get(check.name), diagnosis,
                                 time.perf_counter() - start))
    return table


def list_checks(algorithm: str) -> list:
    """The checks that apply to ``algorithm``.

    Parameters
    ----------
    algorithm : str
        A baseline: one of ``BASELINES``.

    Returns
    -------
    list of tuple of str
        ``[(name, description)]``.
    """
    return [(c.name, c.description) for c in BASELINE_CHECKS.values() if algorithm in c.algorithms]


__all__ = ["AggregationTask", "RoundsTask", "BASELINES", "BASELINE_CHECKS", "check_baseline", "declared_options",
           "list_checks"]
