"""Argument checks with messages that name the parameter and its allowed range.

Every public entry point validates at the boundary so that bad input never surfaces
as a traceback from deep inside numpy. NumPy scalars are checked like Python numbers
(``np.uint16(65535)`` is the integer 65535, ``np.float32('nan')`` is not finite) and the
checks return plain Python ``int`` / ``float``: callers compute sizes from the returned
values, so a NumPy integer type cannot wrap around in a size product.
"""
from __future__ import annotations

import math
import numbers
import os

import numpy as np

# Upper bounds that turn an absurd size into an error instead of a multi-GiB allocation attempt.
MAX_RANK = 1 << 16          # global rank r (a Sketch holds r floats; factors r(m+n))
MAX_DIM = 1 << 20           # any single dimension m, n, hidden
MAX_CLIENTS = 1 << 20       # number of clients N
MAX_FLOATS = 1 << 28        # floats one object may allocate (2 GiB of float64)
MAX_ROUNDS = 1_000_000      # rounds T of one run (a history row each)
MAX_LOCAL_STEPS = 100_000   # local steps H per round
THREADS_PER_CORE = 4        # threads / worker processes: at most this many per core


def max_threads() -> int:
    """The most threads or worker processes a command may start: THREADS_PER_CORE x the cores.

    Returns
    -------
    int
        ``THREADS_PER_CORE * os.cpu_count()`` (one core when the count is unknown).
    """
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def check_threads(name: str, value) -> int:
    """A thread or worker count in [1, max_threads()].

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    value : object
        The count given (an integer; a bool is refused).

    Returns
    -------
    int

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If it is outside [1, max_threads()].
    """
    return check_int(name, value, low=1, high=max_threads())


MAX_TIME_LIMIT = 7 * 24 * 3600.0   # seconds: a week


def check_time_limit(name: str, value) -> float | None:
    """A time limit in seconds: a finite number in [0, MAX_TIME_LIMIT], 0 meaning no limit.

    NaN, inf and negative values are refused (NaN used to mean no limit).

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    value : object
        The limit given, in seconds.

    Returns
    -------
    float or None
        The limit, or None for 0 (no limit).

    Raises
    ------
    TypeError
        If ``value`` is not a real number.
    ValueError
        If it is outside [0, MAX_TIME_LIMIT] or not finite.
    """
    value = check_real(name, value, low=0.0, high=MAX_TIME_LIMIT)
    return None if value == 0 else value


def check_workers(name: str, value, units: int) -> int:
    """Worker processes to start for ``units`` units of work.

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    value : object
        The worker count asked for, checked like :func:`check_threads`.
    units : int
        How many independent units of work there are (no more workers than that are started).

    Returns
    -------
    int
        ``min(value, units)``, at least 1.

    Raises
    ------
    TypeError, ValueError
        As :func:`check_threads`.
    """
    return max(1, min(check_threads(name, value), int(units)))


def _as_float(name: str, value) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        raise ValueError(f"{name} must be a finite number, got an integer of {len(str(abs(int(value))))} digits") from None


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def check_int(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as a Python int; raise TypeError/ValueError naming ``name`` and ``[low, high]``.
    Python and NumPy integers are accepted (not bools).

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
    if type(value) is not int:  # a plain int (the common case, in hot loops) needs no conversion
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
            raise TypeError(f"{name} must be an integer, got {_show(value)} (a {type(value).__name__})")
        value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        shown = _show(value) if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
        raise ValueError(f"{name} must be an integer in {_range_text(low, high)}, got {shown}")
    return value


def check_count(name: str, value, *, low: int = 0, high: int) -> int:
    """An integer count in [low, high], given as an int or as a float with an integer value.

    A float such as ``1e9`` (from a command line or a JSON file) is accepted when it is integral.

    Parameters
    ----------
    name : str
        The parameter's name, used in the message.
    value : object
        The count given: an integer, or a finite float with an integer value.
    low : int, default 0
        The smallest allowed count.
    high : int
        The largest allowed count.

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    TypeError
        If ``value`` is neither an integer nor an integral float.
    ValueError
        If it is outside [low, high].
    """
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        if not (low <= value <= high):
            raise ValueError(f"{name} must be an integer in {_range_text(low, high)}, got {float(value):g}")
        value = int(value)
    return check_int(name, value, low=low, high=high)


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
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
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
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
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
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number in [{low:g}, {high:g}], got {_show(value)}")
    value = _as_float(name, value)
    if not (low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}], got {value}")
    return value


def check_allocation(what: str, floats: int, hint: str) -> None:
    """Raise ValueError if ``floats`` (an exact Python int: compute it from checked values, never
    from NumPy integers, whose products wrap around) exceed MAX_FLOATS; ``hint`` names the arguments.

    Parameters
    ----------
    what : str
        What would be allocated (the message's subject).
    floats : int
        Its size in floats.
    hint : str
        Names the arguments to reduce.
    """
    if isinstance(floats, np.integer):
        raise TypeError(f"{what}: the size must be computed in Python integers (got {type(floats).__name__})")
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
