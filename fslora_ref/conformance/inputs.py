"""Checks that the implementation leaves its inputs alone.

Every task is handed over as a copy (``session.copy_task``) and compared afterwards with the
battery's own; what the implementation wrote into it is recorded per mode. Registered after the
mode's other checks, so they see every call of the mode (run alone, they make the mode's calls).
"""
from __future__ import annotations

from .black_box import black_box_run
from .registry import check
from .session import CheckFailed, CheckInconclusive, Session, session_for
from .white_box import white_box_rounds


def _report(s: Session, mode: str) -> str:
    calls, found = s.calls[mode], s.mutations[mode]
    if calls == 0 or (s.returned[mode] == 0 and not found):
        raise CheckInconclusive(f"no call of the implementation in {mode}-box mode returned a well-formed result "
                                f"({calls} calls): no completed call whose inputs could be watched")
    if found:
        label, n_clients, changed = found[0]
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        raise CheckFailed(f"{len(found)} of {calls} calls wrote into their inputs; first: round {label!r} (N = "
                          f"{n_clients}): {', '.join(changed[:3])}{more}: the implementation modifies the task it is "
                          f"handed (a caller's factors, index sets or data would change under it; copy before "
                          f"updating in place)")
    return f"{calls} calls: factors, base weights, index sets and oracle data handed over were left unchanged"


@check("white")
def check_inputs_unchanged_white(impl, session=None) -> str:
    """white_box_round leaves every input unchanged (factors, base weights, index sets, oracle data).

    Parameters
    ----------
    impl : object
        The implementation under test.
    session : Session, optional
        The rounds shared by the checks, with the per-call time limit (default: a new one).

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis.
    """
    s = session_for(impl, session)
    if s.calls["white"] == 0:
        for task in white_box_rounds(s):
            try:
                s.run_round("white", task, key=(task.label, "all"))
            except CheckFailed:
                pass   # a malformed result is another check's business; the call was watched
    return _report(s, "white")


@check("black")
def check_inputs_unchanged_black(impl, session=None) -> str:
    """black_box_round leaves every input unchanged (factors, base weights, oracle data).

    Parameters
    ----------
    impl : object
        The implementation under test.
    session : Session, optional
        The rounds shared by the checks, with the per-call time limit (default: a new one).

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis.
    """
    s = session_for(impl, session)
    if s.calls["black"] == 0:
        try:
            black_box_run(s)
        except CheckFailed:
            pass
    return _report(s, "black")
