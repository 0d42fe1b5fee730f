"""Argument checks with messages that name the parameter and its allowed range.

Every public entry point validates at the boundary so that bad input never surfaces
as a traceback from deep inside numpy.
"""
from __future__ import annotations

import numbers

import numpy as np

# Upper bounds that turn an absurd size into an error instead of a multi-GiB allocation attempt.
MAX_RANK = 1 << 16          # global rank r (a Sketch holds r floats; factors r(m+n))
MAX_DIM = 1 << 20           # any single dimension m, n, hidden
MAX_CLIENTS = 1 << 20       # number of clients N
MAX_FLOATS = 1 << 28        # floats one object may allocate (2 GiB of float64)


def _as_float(name: str, value) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        raise ValueError(f"{name} must be a finite number, got an integer of {len(str(abs(int(value))))} digits") from None


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as int; raise TypeError/ValueError naming ``name`` and ``[low, high]``.

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    value : object
        The value given (a bool or a non-integral number is refused).
    low, high : int, optional
        The allowed range, inclusive (None: unbounded).

    Returns
    -------
    int
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_show(value)} (a {type(value).__name__})")
    value = int(value)
    rng = _range_text(low, high)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer in {rng}, got {_show(value)}")
    return value


def check_positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float > 0 (or >= 0 with ``allow_zero``).

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    value : object
        The value given.
    allow_zero : bool, default False
        Accept 0.

    Returns
    -------
    float
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_show(value)}")
    value = _as_float(name, value)
    bound = ">= 0" if allow_zero else "> 0"
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_fraction(name: str, value) -> float:
    """Return ``value`` as a float in (0, 1].

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    value : object
        The value given.

    Returns
    -------
    float
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in (0, 1], got {_show(value)}")
    value = _as_float(name, value)
    if not (0.0 < value <= 1.0):
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return value


def check_betas(name: str, betas) -> tuple:
    """Return ``betas`` as a pair of floats (beta1, beta2), each in [0, 1) (Adam's moment decays).

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    betas : object
        The value given (a sequence of two numbers).

    Returns
    -------
    tuple of float
    """
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (beta1, beta2), got {betas!r}") from None
    for b in (b1, b2):
        if not (0.0 <= b < 1.0):
            raise ValueError(f"{name} must be two numbers in [0, 1), got {betas!r}")
    return (b1, b2)


def check_matrix(name: str, value, shape: tuple | None = None) -> np.ndarray:
    """Return ``value`` as a finite 2-D float array, optionally of ``shape``.

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    value : array_like
        The value given.
    shape : tuple of int, optional
        The required shape (None: any size).

    Returns
    -------
    ndarray, 2-D, float
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if shape is not None:
        for axis, (want, got) in enumerate(zip(shape, arr.shape)):
            if want is not None and want != got:
                raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {arr.shape} (axis {axis} differs)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    return arr


def check_real(name: str, value, *, low: float, high: float) -> float:
    """Return ``value`` as a float in [low, high] (finite); TypeError for non-numbers.

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    value : object
        The value given.
    low, high : float
        The allowed range, inclusive.

    Returns
    -------
    float
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [{low:g}, {high:g}], got {_show(value)}")
    value = _as_float(name, value)
    if not (low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value}")
    return value


def check_allocation(what: str, floats: int, hint: str) -> None:
    """Raise ValueError if ``floats`` (an exact int) exceed MAX_FLOATS.

    Parameters
    ----------
    what : str
        What would be allocated (the message's subject).
    floats : int
        Its size in floats.
    hint : str
        Names the arguments to reduce.
    """
    if floats > MAX_FLOATS:
        raise ValueError(f"{what} would hold {floats:,} floats ({floats * 8 / 2**30:.3g} GiB), above the limit of "
                         f"{MAX_FLOATS:,}; lower {hint}")


def check_choice(name: str, value, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ValueError naming them.

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    value : object
        The value given (an unhashable one is refused).
    choices : collection
        The allowed values.

    Returns
    -------
    object
        ``value``.
    """
    try:
        known = value in choices
    except TypeError:  # unhashable
        known = False
    if not known:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {_show(value)}")
    return value


def _range_text(low, high) -> str:
    lo = "-inf" if low is None else str(low)
    hi = "inf" if high is None else str(high)
    return f"[{lo}, {hi}]"


def _shape_text(shape) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
