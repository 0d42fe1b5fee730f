"""Run one check, with a time limit on every call into the implementation, and turn what happened
into an outcome.

Outcomes: "pass" (the check verified its property), "fail" (it found a violation, or the
implementation raised, returned something malformed, or one call did not finish within the time
limit) and "inconclusive" (it had nothing to test, or could not judge: never a pass).

Time limit: it bounds each single call of the implementation (``Session.call``), not the check, so
a check that makes a thousand quick calls is not failed for their sum, and where a deadline lands
does not depend on how loaded the machine is overall. The check runs in a daemon worker thread;
the main thread watches the call in progress. When one call has run ``time_limit`` seconds it
raises ``Deadline`` inside the worker (``PyThreadState_SetAsyncExc``), which
stops pure-Python code at its next bytecode. Code blocked in C (``time.sleep``, a lock, a long
native kernel) or that swallows BaseException cannot be stopped that way: its thread is left
running in the background. Either way the battery stops calling the implementation (the
remaining checks report "not run") so a hung call never runs concurrently with another one, and
the process can still exit (daemon thread). A subprocess per check could kill any hang, but it
would need a picklable implementation and would lose the shared per-battery cache; ``os._exit``
or a segfault inside the implementation still ends the whole process.
"""
from __future__ import annotations

import ctypes
import threading
import time
import traceback
from dataclasses import dataclass

from .session import CheckFailed, CheckInconclusive, Deadline, ImplementationError, Session, describe_exception

GRACE_SECONDS = 1.0   # how long a stopped worker gets to unwind


@dataclass
class Outcome:
    """What running one check gave.

    Parameters
    ----------
    outcome : {"pass", "fail", "inconclusive"}
    diagnosis : str
        What the check found (or why it could not judge).
    seconds : float
        Its run time.
    traceback : str or None
        The last frames of an exception the implementation raised.
    """

    outcome: str                 # "pass" | "fail" | "inconclusive"
    diagnosis: str
    seconds: float
    traceback: str | None = None


def _stop(thread: threading.Thread) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(Deadline))


def _capture(fn, box: dict) -> None:
    try:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: B036 - every outcome is classified by the main thread
            box["exc"] = exc
    except BaseException:  # noqa: B036 - a Deadline landing after fn returned
        pass


POLL_SECONDS = 0.02


def _run(fn, limit: float | None, session: Session) -> tuple:
    """(box, timed_out, stopped, running): fn's value or exception; timed_out when one call into the
    implementation ran ``limit`` seconds (running: how long it had run when stopped)."""
    box: dict = {}
    if limit is None:
        _capture(fn, box)
        return box, False, True, 0.0
    worker = threading.Thread(target=_capture, args=(fn, box), daemon=True, name="fslora-crosscheck")
    worker.start()
    while True:
        worker.join(POLL_SECONDS if session.in_call == 0 else
                    max(POLL_SECONDS, min(limit - (time.perf_counter() - session.call_started), 1.0)))
        if not worker.is_alive():
            return box, False, True, 0.0
        if session.in_call > 0:
            running = time.perf_counter() - session.call_started
            if running >= limit:
                break
    _stop(worker)
    worker.join(min(GRACE_SECONDS, limit))
    return box, True, not worker.is_alive(), running


def run_check(check, session: Session) -> Outcome:
    """Run ``check`` on the session's implementation; never raises except KeyboardInterrupt.

    Parameters
    ----------
    check : Check
        The registered check.
    session : Session
        The implementation and its shared rounds, with the per-call time limit.

    Returns
    -------
    Outcome
    """
    session.current_check = check.name
    start = time.perf_counter()
    box, timed_out, stopped, running = _run(lambda: check.func(session.impl, session), session.options.time_limit,
                                            session)
    seconds = time.perf_counter() - start
    if timed_out:
        fate = "was stopped" if stopped else "is still running in a background thread"
        session.refused = f"a call of the implementation exceeded the time limit in check {check.name}"
        return Outcome("fail", f"a call of the implementation did not finish within the time limit of "
                               f"{session.options.time_limit:g} s per call: it had been running for {running:.1f} s and "
                               f"{fate}; the remaining checks do not call it again (raise --time-limit if it is just "
                               f"slow)", seconds)
    exc = box.get("exc")
    if exc is None:
        diagnosis = box.get("value")
        if not isinstance(diagnosis, str):
            return Outcome("inconclusive", f"battery error: check returned {type(diagnosis).__name__}", seconds)
        return Outcome("pass", diagnosis, seconds)
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    if isinstance(exc, CheckFailed):
        return Outcome("fail", str(exc), seconds)
    if isinstance(exc, CheckInconclusive):
        return Outcome("inconclusive", str(exc), seconds)
    if isinstance(exc, ImplementationError):
        first = session.shown.setdefault(exc.signature, check.name)
        if first != check.name:
            return Outcome("fail", f"{exc} (same exception as in check {first}; traceback shown there)", seconds)
        return Outcome("fail", str(exc), seconds, exc.frames or None)
    # anything else came from the battery's own code: never blame the implementation for it
    frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)[-3:])).rstrip()
    return Outcome("inconclusive", f"the battery itself raised {describe_exception(exc)} (a bug in fslora's "
                                   f"conformance battery, not in the implementation; please report it)", seconds,
                   frames)
