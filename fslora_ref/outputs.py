"""Writing results safely: checked output paths, atomic files, strict JSON.

Every command that writes files goes through here, so that

* a bad ``--out`` / ``--json`` is a one-line ``ValueError`` *before* any computation
  (an existing file where a directory is wanted, a directory under a file, no write permission);
* a file is either the old one or the complete new one, never half-written (temp file in the
  same directory, fsync, ``os.replace``; ``atomic_directory`` does the same for a directory such
  as a PEFT adapter), and a temp file or directory orphaned by a kill is removed the next time
  the directory is prepared;
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
import tempfile

TMP_PREFIX = ".tmp-fslora-"


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


def prepare_output_dir(path, option: str = "--out") -> str:
    """Check that ``path`` can hold our outputs, create it, and remove temp files orphaned by an
    earlier killed run. Call it before any long computation.

    Parameters
    ----------
    path : str or os.PathLike
        The output directory.
    option : str, default "--out"
        The option named in an error message.

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
    remove_stale_temp_files(path)
    return path


def check_output_file(path, option: str = "--json") -> str:
    """Check (without writing) that a file can be written at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    option : str, default "--json"
        The option named in an error message.

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
    return path


def remove_stale_temp_files(directory) -> list:
    """Delete ``.tmp-fslora-*`` files and directories left in ``directory`` by a killed writer.

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
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent)
    try:
        yield tmp
        _honour_umask(tmp)
        old = None
        if os.path.isdir(path) and not os.path.islink(path):
            old = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent)
            os.replace(path, os.path.join(old, "previous"))
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=directory)
    try:
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
