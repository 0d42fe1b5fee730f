"""Writing results safely: checked output paths, atomic files, strict JSON.

Every command that writes files goes through here, so that

* a bad ``--out`` / ``--json`` is a one-line ``ValueError`` *before* any computation
  (an existing file where a directory is wanted, a directory under a file, no write permission);
* a file is either the old one or the complete new one, never half-written (temp file in the
  same directory, fsync, ``os.replace``; ``atomic_directory`` does the same for a directory such
  as a PEFT adapter), and a temp file or directory orphaned by a kill is removed the next time
  the directory is prepared;
* one process writes to an output at a time (output_lock.py): preparing a directory, or
  checking a file, that a live process is writing is a one-line error naming it, before
  anything is touched; temp files carry their writer's PID and start time, and only those of
  dead writers are ever removed;
* files get the permissions the user's umask asks for (``mkstemp`` alone would give 0600);
* JSON is strict (no ``NaN`` / ``Infinity``).
"""
from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import shutil
import re
import tempfile

from . import output_lock

TMP_PREFIX = ".tmp-fslora-"
_TMP_OWNER = re.compile(re.escape(TMP_PREFIX) + r"(\d+-\d+)-")


def private_temp_prefix() -> str:
    """The prefix of this process's temp files, which says which process writes them.

    :func:`remove_stale_temp_files` reads the PID and start time back and removes a temp file
    only when that process is gone.

    Returns
    -------
    str
        ``".tmp-fslora-<pid>-<start time>-"``.
    """
    return f"{TMP_PREFIX}{output_lock.identity_tag()}-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _first_existing_ancestor(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _check_creatable_dir(path: str, option: str) -> None:
    """Raise ValueError unless ``path`` is, or can be created as, a writable directory."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"{option} must be a directory, but {path!r} is an existing file")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{option}: directory {path!r} is not writable")
        return
    ancestor = _first_existing_ancestor(path)
    if not os.path.isdir(ancestor):
        raise ValueError(f"{option}: cannot create {path!r}: {ancestor!r} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot create {path!r}: {ancestor!r} is not writable")


def prepare_output_dir(path, option: str = "--out", *, lock: bool = True) -> str:
    """Check that ``path`` can hold our outputs, create it, lock it for this process (a live
    writer there is a one-line :class:`~fslora_ref.output_lock.OutputLocked`) and remove temp
    files orphaned by killed writers. Returns the path. Call it before any long computation.
    The lock is released by :func:`fslora_ref.output_lock.release_all` (or at exit).

    Parameters
    ----------
    path : str or os.PathLike
        The output directory.
    option : str, default "--out"
        The option named in an error message.
    lock : bool, default True
        Take the directory's writer lock for this process.

    Returns
    -------
    str
        The path.
    """
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{option} must name a directory, got an empty string")
    _check_creatable_dir(path, option)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{option}: cannot create directory {path!r}: {exc.strerror}") from None
    if lock:
        output_lock.acquire(path, option, what=repr(path))
    remove_stale_temp_files(path)
    return path


def check_output_file(path, option: str = "--json", *, lock: bool = True) -> str:
    """Check that a file can be written at ``path`` and (``lock``) lock it for this process:
    its directory is created and holds ``.fslora-lock-<name>`` until the command ends; a live
    writer of that file, or of that directory (``--out``), is a one-line error. Returns the path.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    option : str, default "--json"
        The option named in an error message.
    lock : bool, default True
        Take the file's writer lock for this process.

    Returns
    -------
    str
        The path.
    """
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{option} must name a file, got an empty string")
    if os.path.isdir(path):
        raise ValueError(f"{option} must be a file path, but {path!r} is a directory")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ValueError(f"{option}: file {path!r} is not writable")
    parent = os.path.dirname(os.path.abspath(path))
    ancestor = _first_existing_ancestor(parent)
    if not os.path.isdir(ancestor):
        raise ValueError(f"{option}: cannot write {path!r}: {ancestor!r} is a file, not a directory")
    _check_creatable_dir(parent, option)
    if lock:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"{option}: cannot create directory {parent!r}: {exc.strerror}") from None
        output_lock.check_unlocked(parent, option, repr(parent))
        output_lock.acquire(parent, option, name=os.path.basename(path), what=repr(path))
    return path


def _writer_alive(name: str) -> bool:
    owner = _TMP_OWNER.match(name)
    tag = output_lock.parse_tag(owner.group(1)) if owner else None
    return tag is not None and output_lock.process_alive(*tag)


def check_output_names(directory, files=(), directories=(), option: str = "--out") -> None:
    """Check, before any computation, that the names a run will write in ``directory`` are free for it.

    Without this check a directory, named pipe or device named e.g. ``history.json`` would only fail
    the run once it has computed everything.

    Parameters
    ----------
    directory : str or os.PathLike
        The output directory.
    files : iterable of str, default ()
        Names of the files the run writes: each must be absent or a regular file.
    directories : iterable of str, default ()
        Names of the directories the run writes: each must be absent or a directory.
    option : str, default "--out"
        The command-line option that named ``directory``, the start of the message.

    Raises
    ------
    ValueError
        One line naming the first path of the wrong kind.
    """
    for name in files:
        path = os.path.join(os.fspath(directory), name)
        if os.path.lexists(path) and not os.path.isfile(path):
            kind = "a directory" if os.path.isdir(path) else "not a regular file"
            raise ValueError(f"{option}: {path} is {kind}, but the run writes the file {name} there; "
                             f"remove or rename it, or choose another {option}")
    for name in directories:
        path = os.path.join(os.fspath(directory), name)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise ValueError(f"{option}: {path} is a file, but the run writes the directory {name} there; "
                             f"remove or rename it, or choose another {option}")


def remove_stale_temp_files(directory) -> list:
    """Delete ``.tmp-fslora-*`` files and directories left in ``directory`` by writers that are
    gone (their name's PID and start time match no live process; a name without them is from
    an older fslora); a live writer's temp files are left alone. Returns the removed paths.

    Parameters
    ----------
    directory : str or os.PathLike

    Returns
    -------
    list of str
        What was removed.
    """
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(os.fspath(directory)), TMP_PREFIX + "*")):
        if _writer_alive(os.path.basename(tmp)):
            continue
        try:
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp)
            else:
                os.unlink(tmp)
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _honour_umask(directory: str) -> None:
    """Give ``directory``, and everything written into it, the modes a plain ``open`` /
    ``mkdir`` would (some writers, e.g. safetensors, create their files 0600)."""
    mask = _umask()
    for root, dirs, files in os.walk(directory):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def atomic_directory(path):
    """``with atomic_directory(path) as tmp:`` fill ``tmp``; on success it replaces ``path``.

    A previous ``path`` directory is removed; the directory and its files get the modes the
    umask asks for (``mkdtemp`` alone gives 0700, some writers 0600). On an error the temp
    directory is removed; one orphaned by a kill is removed by the next :func:`prepare_output_dir`.

    Parameters
    ----------
    path : str or os.PathLike
        The directory to create or replace.

    Yields
    ------
    str
        The temporary directory to fill.
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    with _one_line_os_errors(path):
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=private_temp_prefix(), dir=parent)
    try:
        with _one_line_os_errors(path):
            yield tmp
            _honour_umask(tmp)
            old = None
            if os.path.isdir(path) and not os.path.islink(path):
                old = tempfile.mkdtemp(prefix=private_temp_prefix(), dir=parent)
                os.replace(path, os.path.join(old, "previous"))
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class OutputWriteError(OSError):
    """Writing an output failed in the operating system (disk full, quota, permissions, a
    directory where the file goes): one line naming the file (``errno`` kept); the old file, if
    any, is intact. An OSError, so API callers catch it as before; `fslora` prints it as one line."""


@contextlib.contextmanager
def _one_line_os_errors(path):
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        error = OutputWriteError(f"cannot write {path}: {reason}" + (f" (errno {exc.errno})" if exc.errno else ""))
        error.errno = exc.errno
        raise error from None


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``.

    The file gets mode 0666 & ~umask, like any file the user creates.

    Parameters
    ----------
    path : str or os.PathLike
    data : bytes
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    with _one_line_os_errors(path):
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=private_temp_prefix(), dir=directory)
    try:
        with _one_line_os_errors(path):  # e.g. ENOSPC: the temp file goes, the old file stays
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dumps_json(obj, indent: int | None = 1) -> str:
    """Strict JSON text (``allow_nan=False``): a non-finite number is a ValueError, never ``NaN``.

    Parameters
    ----------
    obj : object
        JSON values.
    indent : int or None, default 1
        As ``json.dumps``.

    Returns
    -------
    str
    """
    try:
        return json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"refusing to write non-finite numbers as JSON ({exc})") from None


def write_json(path, obj, indent: int | None = 1) -> None:
    """Strict JSON (:func:`dumps_json`), written atomically.

    Parameters
    ----------
    path : str or os.PathLike
    obj : object
        JSON values.
    indent : int or None, default 1
        As ``json.dumps``.
    """
    atomic_write_bytes(path, (dumps_json(obj, indent) + "\n").encode())


def write_figure(path, fig, **savefig_kwargs) -> None:
    """Render a matplotlib figure to PNG and write it atomically.

    Parameters
    ----------
    path : str or os.PathLike
    fig : matplotlib.figure.Figure
    **savefig_kwargs
        Passed to ``fig.savefig``.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **savefig_kwargs)
    atomic_write_bytes(path, buf.getvalue())
