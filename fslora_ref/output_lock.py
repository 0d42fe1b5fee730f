"""One writer per output: a lock file naming its holder, taken before anything is touched.

``acquire(directory)`` puts ``<directory>/.fslora-lock`` (``acquire(directory, name)``:
``<directory>/.fslora-lock-<name>``, for a single output file such as ``--json``) in place
atomically: the holder's record (PID, the process's start time from ``/proc/<pid>/stat``,
host, command line) is written to a private temp file and hard-linked to the lock name, which
fails if a lock is already there, so a lock file is never seen half-written.

A lock whose holder is alive is a one-line :class:`OutputLocked` (a ValueError) naming the
PID and command. A lock whose holder is gone (no such PID, a zombie, or a *different* process
that reuses the PID: its start time differs) is taken over; the takeover is serialised by an
``flock`` on the directory so two newcomers cannot both break it. A lock written on another
host cannot be checked and is never taken over (the message says how to remove it).

A process holding a lock exports its identity in ``FSLORA_OUTPUT_LOCK_HOLDER``; a child that
works on its behalf (the Flower ServerApp of ``fslora flower``) is let in as a delegate.
Locks are released by :func:`release_all` (``fslora`` calls it when a command ends) and, as a
last resort, at interpreter exit.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import json
import os
import socket
import stat
import sys
import tempfile

LOCK_NAME = ".fslora-lock"
HOLDER_ENV = "FSLORA_OUTPUT_LOCK_HOLDER"
_RECORD_LIMIT = 8192          # bytes of a lock record we read (a bigger file is not ours)
_HELD: dict = {}              # lock path -> our record, for release
COMMAND_LINE = None           # what `fslora` was asked to do (set by fslora_cli.main), for the record


class OutputLocked(ValueError):
    """Another live process writes to this output."""


# -- processes -------------------------------------------------------------------------------
def process_start(pid: int) -> str | None:
    """The start time of process ``pid``, which tells it apart from a later process with the same PID.

    Parameters
    ----------
    pid : int
        A process id.

    Returns
    -------
    str or None
        Field 22 of ``/proc/<pid>/stat`` (clock ticks since boot), as text; None if the process does
        not exist, is a zombie, or ``/proc`` is unavailable.
    """
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()   # the command name may hold spaces and ')'
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has finished writing
        return None
    return fields[19]


def process_alive(pid, start) -> bool:
    """Is ``pid`` the very process that started at ``start`` (a reused PID is not)?

    Parameters
    ----------
    pid : int
        The process id from a lock record (anything but a positive int is not alive).
    start : str or None
        Its start time as :func:`process_start` gives it; None: any process with that PID matches.

    Returns
    -------
    bool
        True if the process runs and its start time matches. Without ``/proc`` only existence is
        checked (``os.kill(pid, 0)``; a process we may not signal counts as alive).
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if os.path.isdir("/proc/self"):
        actual = process_start(pid)
        return actual is not None and (start is None or str(start) == actual)
    try:  # no /proc: existence only
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def my_identity() -> tuple:
    """This process's identity, as a lock record holds it.

    Returns
    -------
    tuple of (int, str or None)
        ``(os.getpid(), process_start(os.getpid()))``.
    """
    return os.getpid(), process_start(os.getpid())


def identity_tag() -> str:
    """This process's identity as text, for temp-file names and the ``FSLORA_OUTPUT_LOCK_HOLDER`` variable.

    Returns
    -------
    str
        ``"<pid>-<start>"`` (``<start>`` is 0 when the start time is unknown); :func:`parse_tag`
        reads it back.
    """
    pid, start = my_identity()
    return f"{pid}-{start or 0}"


def parse_tag(text: str):
    """Read back the text of :func:`identity_tag`.

    Parameters
    ----------
    text : str
        ``"<pid>-<start>"``.

    Returns
    -------
    tuple of (int, str or None) or None
        ``(pid, start)``, start None for ``0``; None if ``text`` is not of that form.

    Examples
    --------
    >>> from fslora_ref.output_lock import parse_tag
    >>> parse_tag("4242-987654"), parse_tag("4242-0"), parse_tag("not-a-tag")
    ((4242, '987654'), (4242, None), None)
    """
    pid, _, start = text.partition("-")
    if not (pid.isdigit() and start.isdigit()):
        return None
    return int(pid), (None if start == "0" else start)


# -- records ---------------------------------------------------------------------------------
def _command_line() -> str:
    program = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else sys.executable + " -c"
    text = COMMAND_LINE or " ".join([os.path.basename(program)] + sys.argv[1:])
    return text if len(text) <= 200 else text[:197] + "..."


def _my_record() -> dict:
    pid, start = my_identity()
    return {"pid": pid, "start": start, "host": socket.gethostname(), "command": _command_line(),
            "since": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}


def read_record(path) -> dict | None:
    """The holder's record in a lock file.

    The file is opened without following a symlink and without blocking; at most 8192 bytes are read.

    Parameters
    ----------
    path : str or os.PathLike
        The lock file.

    Returns
    -------
    dict or None
        The record (``pid``, ``start``, ``host``, ``command``, ``since``); None if there is no such
        file; ``{}`` if it cannot be read, is not a regular file or does not hold a JSON object.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return {}
            record = json.loads(fh.read(_RECORD_LIMIT).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _is_mine(record) -> bool:
    pid, start = my_identity()
    return bool(record) and record.get("pid") == pid and record.get("start") == start


def _is_delegate_of(record) -> bool:
    """Is this process working for the lock's holder (it exported its identity to us)?"""
    tag = parse_tag(os.environ.get(HOLDER_ENV, ""))
    return bool(record) and tag is not None and record.get("pid") == tag[0] and record.get("start") == tag[1]


def _holder_alive(record) -> bool:
    if not record:
        return False  # unreadable: not written by us (ours appear whole), so nobody holds it
    if record.get("host") not in (None, socket.gethostname()):
        return True   # cannot be checked from here
    return process_alive(record.get("pid"), record.get("start"))


def _refusal(what: str, option: str, path: str, record: dict) -> OutputLocked:
    where = "" if record.get("host") in (None, socket.gethostname()) else f" on host {record.get('host')}"
    command = " ".join(str(record.get("command", "?")).split())
    hint = (f"if that run is gone, delete {path}" if where else "wait for it to finish or choose another output")
    return OutputLocked(f"{option}: {what} is in use by PID {record.get('pid')}{where} ({command}), "
                        f"since {record.get('since', '?')}; {hint}")


# -- acquire / release -----------------------------------------------------------------------
@contextlib.contextmanager
def _directory_flock(directory: str):
    """Serialise lock takeovers in ``directory`` (released by the kernel if we die)."""
    try:
        import fcntl
        fd = os.open(directory, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _place(lock_path: str, record: dict) -> bool:
    """Put our record at ``lock_path`` unless a lock is there (atomic). True if placed."""
    directory = os.path.dirname(lock_path)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-fslora-{identity_tag()}-", suffix=".lock", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, lock_path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, then write
            try:
                lfd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(lfd, "w") as fh:
                json.dump(record, fh)
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def acquire(directory, option: str = "--out", name: str | None = None, what: str | None = None) -> str:
    """Take the lock on ``directory`` (or on the file ``name`` in it) before writing there.

    The lock is placed atomically; a lock already held by this process, or by the process this one
    works for (``FSLORA_OUTPUT_LOCK_HOLDER``), is accepted; a stale lock on this host (its holder is
    gone) is taken over; a lock held by a live process, or written on another host, is refused.

    Parameters
    ----------
    directory : str or os.PathLike
        The output directory (it must exist); the lock file is created in it.
    option : str, default "--out"
        The command-line option that named the output, the start of the refusal message.
    name : str, optional
        Lock a single output file of that name in ``directory`` (``.fslora-lock-<name>``) instead of
        the whole directory (``.fslora-lock``); a name longer than 100 characters is shortened with a hash.
    what : str, optional
        How the message names the output (default: the directory's absolute path).

    Returns
    -------
    str
        The lock file's path; :func:`release_all` removes it.

    Raises
    ------
    OutputLocked
        One line naming the holder's PID, host, command and since when, if a live process holds the
        lock, or if the lock kept changing hands over five attempts.
    """
    directory = os.path.abspath(os.fspath(directory))
    if name is not None and len(name) > 100:  # keep the lock's name within NAME_MAX
        name = f"{name[:80]}-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"
    lock_path = os.path.join(directory, LOCK_NAME if name is None else f"{LOCK_NAME}-{name}")
    what = what or directory
    if lock_path in _HELD:
        return lock_path
    record = _my_record()
    for _ in range(5):
        if _place(lock_path, record):
            _held(lock_path, record)
            return lock_path
        holder = read_record(lock_path)
        if holder is None:
            continue  # released just now: try again
        if _is_mine(holder) or _is_delegate_of(holder):
            return lock_path  # ours already, or our parent's
        if _holder_alive(holder):
            raise _refusal(what, option, lock_path, holder)
        with _directory_flock(directory):  # stale: break it, one newcomer at a time
            if read_record(lock_path) == holder:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock_path)
    raise OutputLocked(f"{option}: could not lock {what} ({lock_path} keeps changing hands)")


def check_unlocked(directory, option: str, what: str) -> None:
    """Refuse an output directory that another live process has locked, without taking the lock.

    Parameters
    ----------
    directory : str or os.PathLike
        The directory whose own lock (``.fslora-lock``) is checked.
    option : str
        The command-line option that named it, the start of the message.
    what : str
        How the message names the output.

    Raises
    ------
    OutputLocked
        If a live process other than this one (or the one it works for) holds the lock.
    """
    holder = read_record(os.path.join(os.path.abspath(os.fspath(directory)), LOCK_NAME))
    if holder and not (_is_mine(holder) or _is_delegate_of(holder)) and _holder_alive(holder):
        raise _refusal(what, option, os.path.join(directory, LOCK_NAME), holder)


def _held(lock_path: str, record: dict) -> None:
    if not _HELD:
        atexit.register(release_all)
    _HELD[lock_path] = record
    os.environ[HOLDER_ENV] = identity_tag()   # children we start work for us


def release_all() -> None:
    """Remove every lock this process holds (only if the file is still ours)."""
    for lock_path in list(_HELD):
        _HELD.pop(lock_path)
        if _is_mine(read_record(lock_path)):
            with contextlib.suppress(OSError):
                os.unlink(lock_path)


def held_locks() -> list:
    """The locks this process holds.

    Returns
    -------
    list of str
        Their paths, in the order they were taken.
    """
    return list(_HELD)
