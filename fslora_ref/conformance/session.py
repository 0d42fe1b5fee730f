"""Running an implementation for the checks: validated options, the exceptions that decide a
check's outcome, calls into the implementation (every exception it raises is its failure, named),
a per-battery cache that also remembers failures, and validation of what the implementation returns."""
from __future__ import annotations

import copy
import math
import types
import numbers
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from ..validation import check_int
from .optimizers import as_optimizers
from .protocol import DECAY_RESIDUAL, MOVED, TOLERANCE, RoundResult, RoundTask, dtype_of

MODES = {"white": "white_box_round", "black": "black_box_round", "sampler": "sample_sketch"}
DEFAULT_TIME_LIMIT = 120.0   # seconds per call of the implementation; a bundled example's calls take well under 1


class CheckFailed(AssertionError):
    """A check found a violation; the message is the diagnosis (which client, layer, index,
    expected vs got)."""


class CheckInconclusive(AssertionError):
    """A check had nothing to test (or could not judge); the message says why. Never a pass."""


class Deadline(BaseException):
    """Raised asynchronously in a check's thread when it exceeds the time limit."""


class ImplementationError(Exception):
    """The implementation raised ``original`` (any BaseException but KeyboardInterrupt).

    Parameters
    ----------
    original : BaseException
        What the implementation raised.
    """

    def __init__(self, original: BaseException):
        self.original = original
        frames = traceback.extract_tb(original.__traceback__)[1:]   # drop Session.call's own frame
        self.frames = "".join(traceback.format_list(frames[-3:])).rstrip()
        last = frames[-1] if frames else None
        self.signature = (type(original).__name__, str(original), last and (last.filename, last.lineno))
        super().__init__(f"implementation raised {describe_exception(original)}")


def describe_exception(exc: BaseException) -> str:
    """One line naming an exception, e.g. 'RuntimeError: boom' or 'SystemExit(0) (sys.exit was called)'.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str
    """
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) (sys.exit was called)"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _real(name: str, value, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    if not (low < float(value) < high):
        raise ValueError(f"{name} must be in ({low:g}, {high:g}), got {value!r}")
    return float(value)


@dataclass
class Options:
    """Battery settings, validated on construction (the battery's errors are never blamed on the
    implementation).

    Parameters
    ----------
    rounds : int or None
        The statistical black-box scenario's joint rounds (None: as many as the budget's power
        target needs; else at least 20).
    alpha : float, default 1e-3
        The family-wise false-alarm rate of each statistical check, in (0, 0.5).
    sampler_draws : int, default 3000
        Draws per (r, k) in the sampler checks (at least 500).
    seed : int, default 0
        The battery's seed (every randomised scenario, sampler seed and ``task.seed`` derive from it).
    time_limit : float or None, default DEFAULT_TIME_LIMIT
        Seconds per call of the implementation (None: no limit).
    budget : {"quick", "default", "thorough"}, default "default"
        How many randomised scenarios and how much power the black-box frequency test gets
        (``scenarios.BUDGETS``).
    """

    rounds: int | None = None
    alpha: float = 1e-3
    sampler_draws: int = 3000
    seed: int = 0
    time_limit: float | None = DEFAULT_TIME_LIMIT
    budget: str = "default"

    def __post_init__(self):
        from .scenarios import BUDGETS
        for name, low in (("rounds", 20), ("sampler_draws", 500)):
            value = getattr(self, name)
            if name == "rounds" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {list(BUDGETS)}, got {self.budget!r}")
        self.alpha = _real("alpha, the false-alarm rate (--false-alarm-rate),", self.alpha, 0.0, 0.5)
        self.seed = check_int("seed", self.seed, low=0, high=2**31 - 1)
        if self.time_limit is not None:
            self.time_limit = _real("time_limit (seconds)", self.time_limit, 0.0, math.inf)


@dataclass
class _Failure:
    """A cached failure: re-raised when another check needs the same computation."""

    exc: BaseException
    check: str | None

    def again(self, current: str | None) -> BaseException:
        if isinstance(self.exc, CheckFailed) and self.check and self.check != current:
            return CheckFailed(f"{self.exc} (the same result failed check {self.check})")
        return self.exc


_MISSING = object()


@dataclass
class Session:
    """What the checks of one battery run share: the implementation, its declared optimisers, the
    rounds it returned (cached), its time in calls, and what it wrote into its inputs.

    Parameters
    ----------
    impl : object
        The implementation under test.
    options : Options, optional
        The battery's settings.
    cache : dict, optional
        Computed results by key (failures too).
    optimizers : Optimizers or dict, optional
        The declaration (None: ``impl.optimizers``, else SGD + average).
    """

    impl: object
    options: Options = field(default_factory=Options)
    cache: dict = field(default_factory=dict)
    optimizers: object = None     # the declaration; None: impl.optimizers, else SGD + average

    def __post_init__(self):
        self.dtype = dtype_of(self.impl)
        self.tol = TOLERANCE[self.dtype]
        self.moved_tol = MOVED[self.dtype]
        self.decay_tol = DECAY_RESIDUAL[self.dtype]
        declared = self.optimizers if self.optimizers is not None else safe_getattr(self.impl, "optimizers")
        self.optimizers = as_optimizers(declared, "the implementation's optimizers")
        self.current_check = None
        self.in_call = 0             # > 0 while the implementation is running
        self.call_started = 0.0
        self.impl_seconds = 0.0
        self.refused = None          # set after a time-out: the implementation is not called again
        self.shown = {}              # exception signature -> the check whose row shows its traceback
        self.calls = {m: 0 for m in MODES}
        self.returned = {m: 0 for m in MODES}   # calls that returned a well-formed result
        self.mutations = {m: [] for m in MODES}   # mode -> [what the implementation wrote into its inputs]
        self.scenarios = {}          # label -> one-line description of every round handed out
        self.power = {}              # check name -> what it can detect (filled by the statistical checks)

    def task(self, task: RoundTask) -> RoundTask:
        """``task`` with the declared optimisers written in (what the implementation and the reference run).

        Parameters
        ----------
        task : RoundTask

        Returns
        -------
        RoundTask
        """
        return replace(task, **self.optimizers.task_fields())

    def require(self, mode: str):
        """The implementation's method for ``mode`` (:func:`require`).

        Parameters
        ----------
        mode : {"white", "black", "sampler"}

        Returns
        -------
        callable
        """
        return require(self.impl, mode)

    def call(self, mode: str, *args):
        """The implementation's ``mode`` method on ``args``; whatever it raises becomes ImplementationError.

        Parameters
        ----------
        mode : {"white", "black", "sampler"}
        *args
            The method's arguments.

        Returns
        -------
        object
            What the method returned.
        """
        if self.refused:
            raise CheckInconclusive(f"not run: {self.refused}")
        method = self.require(mode)
        self.in_call += 1
        self.calls[mode] += 1
        start = self.call_started = time.perf_counter()
        try:
            return method(*args)
        except (KeyboardInterrupt, Deadline):
            raise
        except BaseException as exc:  # noqa: B036 - SystemExit from the implementation is its failure too
            raise ImplementationError(exc) from None
        finally:
            self.in_call -= 1
            self.impl_seconds += time.perf_counter() - start

    def memo(self, key, compute):
        """``compute()`` cached under ``key``; a failure is cached too and re-raised, not recomputed.

        Parameters
        ----------
        key : hashable
        compute : callable
            Without arguments.

        Returns
        -------
        object
            ``compute()``'s value.
        """
        hit = self.cache.get(key, _MISSING)
        if isinstance(hit, _Failure):
            raise hit.again(self.current_check)
        if hit is not _MISSING:
            return hit
        try:
            value = compute()
        except (ImplementationError, CheckFailed) as exc:
            self.cache[key] = _Failure(exc, self.current_check)
            raise
        self.cache[key] = value
        return value

    def run_round(self, mode: str, task: RoundTask, key=None) -> RoundResult:
        """The implementation's result for ``task`` (cached under ``key``), validated.

        Parameters
        ----------
        mode : {"white", "black"}
        task : RoundTask
        key : hashable, optional
            The cache key (None: not cached).

        Returns
        -------
        RoundResult
            Normalised (float64 arrays).
        """
        def compute():
            # the implementation gets its own copy of every input, so nothing it writes can move the
            # start point or the index sets the battery computes its expected values from; writing
            # into them is recorded (the check inputs_unchanged_<mode> fails on it)
            handed = copy_task(task)
            self.scenarios.setdefault(task.label, describe_task(task))
            try:
                result = normalise_result(self.call(mode, handed), task)
                self.returned[mode] += 1
            finally:
                changed = changed_inputs(task, handed)
                if changed:
                    self.mutations[mode].append((task.label, task.n_clients, changed))
            return result
        return compute() if key is None else self.memo(key, compute)


def session_for(impl, session=None) -> "Session":
    """The session a check runs in: the one given, else a new one for ``impl``.

    Parameters
    ----------
    impl : object
        The implementation under test (protocol object or ``Algorithm`` subclass).
    session : Session, optional
        A session shared by several checks, so their runs are computed once.

    Returns
    -------
    Session
        ``session`` if given, else ``Session(impl)``.
    """
    return session if session is not None else Session(impl)


def copy_task(task: RoundTask) -> RoundTask:
    """``task`` with every array (factors, base weights, index sets, the oracles' data) copied.

    Parameters
    ----------
    task : RoundTask

    Returns
    -------
    RoundTask
    """
    sets = None if task.index_sets is None else [[np.array(I) for I in per] for per in task.index_sets]
    return replace(task, layers=[(np.array(B), np.array(A)) for B, A in task.layers],
                   base_weights=[np.array(W) for W in task.base_weights], index_sets=sets,
                   oracles=[copy.deepcopy(o) for o in task.oracles], extra=copy.deepcopy(task.extra))


def _same(a, b, depth: int = 0) -> bool:
    """Equal contents (arrays bitwise, containers and plain objects recursively, to depth 4)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if depth > 4:
        return True
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y, depth + 1) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k], depth + 1) for k in a)
    if hasattr(a, "__dict__") and not isinstance(a, (types.FunctionType, types.MethodType, type, types.ModuleType)):
        # public state only: private attributes are the object's own caches and workspaces
        public = lambda o: {k: v for k, v in vars(o).items() if not k.startswith("_")}  # noqa: E731
        return type(a) is type(b) and _same(public(a), public(b), depth + 1)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an uncomparable attribute is not evidence of a write
        return True


def changed_inputs(task: RoundTask, handed: RoundTask) -> list:
    """What the implementation wrote into the copy it was handed.

    Parameters
    ----------
    task : RoundTask
        The battery's own task.
    handed : RoundTask
        The copy the implementation was given.

    Returns
    -------
    list of str
        E.g. ``['task.layers[0] B', ...]``.
    """
    out = []
    for l, ((B, A), (hB, hA)) in enumerate(zip(task.layers, handed.layers)):
        out += [f"task.layers[{l}] {name}" for name, x, h in (("B", B, hB), ("A", A, hA)) if not _same(np.asarray(x), h)]
    out += [f"task.base_weights[{l}]" for l, (W, h) in enumerate(zip(task.base_weights, handed.base_weights))
            if not _same(np.asarray(W), h)]
    if task.index_sets is not None:
        for i, (per, hper) in enumerate(zip(task.index_sets, handed.index_sets)):
            for l, (I, h) in enumerate(zip(per, hper)):
                if not _same(np.asarray(I), h):
                    out.append(f"task.index_sets[{i}][{l}] (given {fmt_set(I)}, left as {fmt_set(np.ravel(h))})")
    out += [f"task.oracles[{i}] (its data)" for i, (o, h) in enumerate(zip(task.oracles, handed.oracles))
            if not _same(o, h)]
    if not _same(task.extra, handed.extra):
        out.append("task.extra")
    return out


def describe_task(task: RoundTask) -> str:
    """One scenario, for the report, e.g. 'N=6, r=16, k=(1, 4, ...), H=3, layers (12, 7) (9, 20)'.

    Parameters
    ----------
    task : RoundTask

    Returns
    -------
    str
    """
    shapes = " ".join(f"({np.shape(B)[0]}, {np.shape(A)[1]})" for B, A in task.layers)
    return (f"N={task.n_clients}, r={task.rank}, k={tuple(int(k) for k in task.budgets)}, H={task.local_steps}, "
            f"layers {shapes}" + (f", wd={task.weight_decay:g}" if task.weight_decay else ""))


def safe_getattr(obj, name: str, default=None):
    """getattr that turns anything an attribute lookup raises into a TypeError naming it.

    Parameters
    ----------
    obj : object
    name : str
    default : object, optional

    Returns
    -------
    object
    """
    try:
        return getattr(obj, name, default)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B036
        raise TypeError(f"reading the implementation's attribute {name!r} raised {describe_exception(exc)}") from None


def require(impl, mode: str):
    """impl's method for ``mode``; TypeError naming it if missing.

    Parameters
    ----------
    impl : object
    mode : {"white", "black", "sampler"}

    Returns
    -------
    callable
    """
    method = MODES[mode]
    found = safe_getattr(impl, method)
    if not callable(found):
        raise TypeError(f"{describe(impl)} has no {method}(...) method, which {mode} checks need "
                        f"(see fslora_ref/conformance/protocol.py)")
    return found


def describe(impl) -> str:
    """The implementation's name (``impl.name``, else its type's name).

    Parameters
    ----------
    impl : object

    Returns
    -------
    str
    """
    name = safe_getattr(impl, "name")
    return str(name) if isinstance(name, str) and name else type(impl).__name__


def real_array(value, what: str) -> np.ndarray:
    """``value`` as a float64 array; CheckFailed naming ``what`` if it is not real numbers.

    Parameters
    ----------
    value : object
    what : str
        Names the value in the diagnosis.

    Returns
    -------
    ndarray of float64
    """
    if value is None:
        raise CheckFailed(f"{what} is None; expected an array of real numbers")
    try:
        arr = np.asarray(value)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B036 - e.g. a torch tensor that requires grad, a hostile __array__
        raise CheckFailed(f"{what} is not an array ({describe_exception(exc)})") from None
    if arr.dtype.kind not in "biuf":
        raise CheckFailed(f"{what} has dtype {arr.dtype} ({type(value).__name__}); expected real numbers")
    return arr.astype(float)


def normalise_result(result, task: RoundTask) -> RoundResult:
    """RoundResult with float64 arrays; raises CheckFailed naming what is malformed (including
    anything that reading the returned object raises: it is the implementation's object).

    Parameters
    ----------
    result : RoundResult, list or dict
        What the implementation returned.
    task : RoundTask
        The round it was handed.

    Returns
    -------
    RoundResult
    """
    try:
        return _normalise(result, task)
    except (KeyboardInterrupt, Deadline, CheckFailed):
        raise
    except BaseException as exc:  # noqa: B036
        raise CheckFailed(f"round {task.label!r}: reading the returned result raised {describe_exception(exc)}") from None


def _normalise(result, task: RoundTask) -> RoundResult:
    where = f"round {task.label!r}"
    if isinstance(result, Mapping):
        result = RoundResult(result.get("layers"), result.get("uploads"))
    elif not isinstance(result, RoundResult):
        result = RoundResult(result)
    try:
        layers = list(result.layers)
    except TypeError:
        raise CheckFailed(f"{where}: implementation returned {type(result.layers).__name__}, expected a list of "
                          f"(B, A) per layer or a RoundResult") from None
    if len(layers) != task.n_layers:
        raise CheckFailed(f"{where}: implementation returned {len(layers)} layers, expected {task.n_layers}")
    out = []
    for l, (pair, (B0, A0)) in enumerate(zip(layers, task.layers)):
        try:
            B, A = pair
        except (TypeError, ValueError):
            raise CheckFailed(f"{where}, layer {l}: returned {type(pair).__name__}, expected a pair (B, A)") from None
        B, A = real_array(B, f"{where}, layer {l}: B"), real_array(A, f"{where}, layer {l}: A")
        if B.shape != B0.shape or A.shape != A0.shape:
            raise CheckFailed(f"{where}, layer {l}: returned B {B.shape}, A {A.shape}; "
                              f"expected B {B0.shape}, A {A0.shape}")
        if not (np.all(np.isfinite(B)) and np.all(np.isfinite(A))):
            alone = (f" in a round of a single client (N = 1, client {task.client_ids[0]} alone; if rounds with N > 1 "
                     f"are finite: a division by N - 1, or by the number of other clients?)" if task.n_clients == 1
                     else f" (N = {task.n_clients})")
            raise CheckFailed(f"{where}, layer {l}: returned non-finite factors{alone}")
        out.append((B, A))
    return RoundResult(out, result.uploads)


def read_uploads(result: RoundResult, task: RoundTask) -> list | None:
    """The result's uploads as [client][layer] = (dB, dA) float64 arrays (None if it exposes none);
    CheckFailed if they are malformed or reading them raises.

    Parameters
    ----------
    result : RoundResult
        The implementation's (normalised) result.
    task : RoundTask
        The round handed out.

    Returns
    -------
    list or None
    """
    if result.uploads is None:
        return None
    where = f"round {task.label!r}: uploads"
    try:
        uploads = [list(per) for per in result.uploads]
        if len(uploads) != task.n_clients or any(len(per) != task.n_layers for per in uploads):
            raise CheckFailed(f"{where} must be [client][layer] = (dB, dA) for {task.n_clients} clients and "
                              f"{task.n_layers} layers, got {[len(per) for per in uploads]} layers per client")
        out = []
        for i, per in enumerate(uploads):
            out.append([])
            for l, pair in enumerate(per):
                dB, dA = pair
                dB, dA = real_array(dB, f"{where}[{i}][{l}] dB"), real_array(dA, f"{where}[{i}][{l}] dA")
                if dB.ndim != 2 or dA.ndim != 2:
                    raise CheckFailed(f"{where}[{i}][{l}]: dB {dB.shape} and dA {dA.shape} must be matrices")
                out[-1].append((dB, dA))
        return out
    except (KeyboardInterrupt, Deadline, CheckFailed):
        raise
    except BaseException as exc:  # noqa: B036
        raise CheckFailed(f"{where} are not [client][layer] = (dB, dA): reading them raised "
                          f"{describe_exception(exc)}") from None


def deltas(task: RoundTask, result: RoundResult) -> list:
    """The round's changes per layer, float64.

    Parameters
    ----------
    task : RoundTask
        The round handed out.
    result : RoundResult
        The implementation's (normalised) result.

    Returns
    -------
    list of tuple of ndarray
        ``[(B_new - B, A_new - A)]``.
    """
    return [(B - np.asarray(B0, float), A - np.asarray(A0, float)) for (B, A), (B0, A0) in zip(result.layers, task.layers)]


def moved_sets(session: Session, task: RoundTask, result: RoundResult, rows=None, cols=None) -> list:
    """[(moved B columns, moved A rows)] per layer; B read on ``rows`` and A on ``cols`` if given
    ([per layer index arrays]).

    Parameters
    ----------
    session : Session
        The implementation's session (its tolerances).
    task : RoundTask
        The round handed out.
    result : RoundResult
        The implementation's (normalised) result.
    rows : list of ndarray, optional
        Per layer, the B rows to read.
    cols : list of ndarray, optional
        Per layer, the A columns to read.

    Returns
    -------
    list of tuple of ndarray
        ``[(moved B columns, moved A rows)]``.
    """
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


@dataclass
class Moves:
    """How one layer's factors moved in a round. Every moved B column (A row) is either
    "gradient-like" (its change is not a multiple of its own start value: what a sketched
    gradient step does) or "decay-like" (a multiple c of its own value: weight decay, a rescaling).

    Parameters
    ----------
    grad_B, grad_A : ndarray of int
        Moved B columns / A rows of the first kind.
    decay_B, decay_A : ndarray of int
        Those of the second kind.
    factor_B, factor_A : ndarray
        Their multiples c.
    size_B, size_A : ndarray, shape (r,)
        The largest change of each column / row, relative to the largest entry of B / A.
    """

    grad_B: np.ndarray
    grad_A: np.ndarray
    decay_B: np.ndarray
    decay_A: np.ndarray
    factor_B: np.ndarray
    factor_A: np.ndarray
    size_B: np.ndarray
    size_A: np.ndarray

    @property
    def gradient_set(self):
        """The index set, if B and A agree on it (else None)."""
        return self.grad_B if np.array_equal(self.grad_B, self.grad_A) else None


def _split(session, D, X, axis) -> tuple:
    """(gradient-like, decay-like, decay factors, sizes) of the slices of D along ``axis`` (1: columns)."""
    D, X = (D, X) if axis == 1 else (D.T, X.T)
    size = np.max(np.abs(D), axis=0, initial=0.0) / max(np.max(np.abs(X)), 1e-300)
    moved = size > session.moved_tol
    xx = np.sum(X * X, axis=0)
    c = np.sum(D * X, axis=0) / np.maximum(xx, 1e-300)
    resid = np.linalg.norm(D - c * X, axis=0) / np.maximum(np.linalg.norm(D, axis=0), 1e-300)
    decay = moved & (xx > 0) & (resid <= session.decay_tol)
    return np.flatnonzero(moved & ~decay), np.flatnonzero(decay), c[decay], size


def classify_moves(session: Session, task: RoundTask, result: RoundResult) -> list:
    """How each layer of ``result`` moved against the task's start.

    Parameters
    ----------
    session : Session
        The implementation's session (its tolerances).
    task : RoundTask
        The round handed out.
    result : RoundResult
        The implementation's (normalised) result.

    Returns
    -------
    list of Moves
    """
    out = []
    for (dB, dA), (B0, A0) in zip(deltas(task, result), task.layers):
        gB, dBj, fB, sB = _split(session, dB, np.asarray(B0, float), 1)
        gA, dAj, fA, sA = _split(session, dA, np.asarray(A0, float), 0)
        out.append(Moves(gB, gA, dBj, dAj, fB, fA, sB, sA))
    return out


def fmt_set(indices) -> str:
    """An index set as ``[i j k]``.

    Parameters
    ----------
    indices : iterable of int

    Returns
    -------
    str
    """
    return "[" + " ".join(str(int(i)) for i in indices) + "]"
