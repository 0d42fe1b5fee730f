"""Reading files that are data: regular files only, bounded size, bounded JSON.

* :func:`open_regular` opens a path without blocking and refuses anything but a regular file
  (a named pipe would hang a reader for ever, a device could be endless);
* :func:`loads_bounded` parses strict JSON after checking, at C speed, that the text has at
  most ``max_containers`` objects/arrays and nests them at most ``max_depth`` deep: a 100 MB
  ``[{},{},...]`` or ``[[[[...]]]]`` is a one-line ValueError instead of gigabytes of dicts or
  a RecursionError;
* :func:`read_json_file` does both for a JSON file.
"""
from __future__ import annotations

import json
import os
import stat

import numpy as np

MAX_DEPTH = 64                # our files nest < 10 deep
MAX_CONTAINERS = 2_000_000    # objects + arrays in one document (~0.2 GB of Python dicts at most)
MAX_JSON_BYTES = 256 << 20    # 256 MiB


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path, what: str):
    """Open ``path`` for binary reading if it is a regular file (a symlink to one is fine).

    The file is opened non-blocking, checked with ``fstat`` and only then switched back to
    blocking reads, so a named pipe is refused instead of hanging the reader.

    Parameters
    ----------
    path : str or os.PathLike
        The file to open.
    what : str
        What the file is (e.g. ``"--config"``), the start of every error message.

    Returns
    -------
    file object
        Open in ``"rb"`` mode; the caller closes it.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is a directory, a pipe, a device or a socket, or cannot be read.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise ValueError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what} {path} is {_kind(mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path, what: str) -> None:
    """Check that ``path`` is a regular file, without opening it (``os.stat``).

    Parameters
    ----------
    path : str or os.PathLike
        The file to check (a symlink to a regular file passes).
    what : str
        What the file is, the start of every error message.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a regular file or cannot be read.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {os.fspath(path)} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{what} {os.fspath(path)} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{what} {os.fspath(path)} is {_kind(mode)}, not a regular file")


def nesting_depth(data: bytes) -> int:
    """An upper bound on the JSON nesting depth of ``data``.

    The running count of opening minus closing brackets, computed with numpy; brackets inside
    JSON strings count too, so the bound may exceed the true depth but never falls below it.

    Parameters
    ----------
    data : bytes
        The JSON text, encoded.

    Returns
    -------
    int
        The largest number of ``[`` / ``{`` open at once (0 for no container).

    Examples
    --------
    >>> from fslora_ref.safe_json import nesting_depth
    >>> nesting_depth(b'[[1], {"a": [2]}]'), nesting_depth(b'"[["')
    (3, 2)
    """
    codes = np.frombuffer(data, dtype=np.uint8)
    steps = np.zeros(codes.shape, dtype=np.int32)
    steps[(codes == ord("[")) | (codes == ord("{"))] = 1
    steps[(codes == ord("]")) | (codes == ord("}"))] = -1
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def check_json_shape(data: bytes, what: str, *, max_depth: int = MAX_DEPTH, max_containers: int = MAX_CONTAINERS):
    """Refuse JSON text with too many objects/arrays or too deep a nesting, before parsing it.

    Both counts are conservative (brackets inside strings count too): a document over a limit is
    always refused; one whose strings hold many brackets may be refused below it.

    Parameters
    ----------
    data : bytes
        The JSON text, encoded.
    what : str
        What the text is, the start of every error message.
    max_depth : int, default MAX_DEPTH
        The deepest nesting allowed.
    max_containers : int, default MAX_CONTAINERS
        The most ``[`` plus ``{`` allowed.

    Raises
    ------
    ValueError
        If either limit is exceeded.
    """
    containers = data.count(b"[") + data.count(b"{")
    if containers > max_containers:
        raise ValueError(f"{what} holds {containers:,} JSON objects/arrays, above the limit of {max_containers:,}")
    if containers > max_depth:
        depth = nesting_depth(data)
        if depth > max_depth:
            raise ValueError(f"{what} nests JSON {depth} levels deep, above the limit of {max_depth}")


def _reject_constant(name):
    raise ValueError(f"non-finite number {name} in strict JSON")


def loads_bounded(data, what: str, *, max_depth: int = MAX_DEPTH, max_containers: int = MAX_CONTAINERS,
                  strict: bool = True):
    """Parse JSON text after checking its size and nesting (:func:`check_json_shape`).

    Parameters
    ----------
    data : bytes or str
        The JSON text (bytes are decoded as UTF-8).
    what : str
        What the text is, the start of every error message.
    max_depth : int, default MAX_DEPTH
        The deepest nesting allowed.
    max_containers : int, default MAX_CONTAINERS
        The most objects plus arrays allowed.
    strict : bool, default True
        Refuse ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's json accepts).

    Returns
    -------
    object
        The parsed document (dict, list, str, int, float, bool or None).

    Raises
    ------
    ValueError
        If a limit is exceeded, the text is not UTF-8 or not valid JSON, or (``strict``) it holds a
        non-finite number.

    Examples
    --------
    >>> from fslora_ref.safe_json import loads_bounded
    >>> loads_bounded(b'{"rounds": [1, 2]}', "report")
    {'rounds': [1, 2]}
    >>> loads_bounded("[[[0]]]", "report", max_depth=2)
    Traceback (most recent call last):
    ...
    ValueError: report nests JSON 3 levels deep, above the limit of 2
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    check_json_shape(raw, what, max_depth=max_depth, max_containers=max_containers)
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant) if strict else json.loads(text)
    except RecursionError:
        raise ValueError(f"{what} nests JSON too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from None


def read_json_file(path, what: str, *, max_bytes: int = MAX_JSON_BYTES, strict: bool = True, **limits):
    """Read and parse a JSON file that is data: a regular file, bounded in size and nesting.

    Parameters
    ----------
    path : str or os.PathLike
        The file (:func:`open_regular` refuses anything but a regular file).
    what : str
        What the file is, the start of every error message (followed by the path).
    max_bytes : int, default MAX_JSON_BYTES
        The largest file size read.
    strict : bool, default True
        Refuse non-finite numbers, as :func:`loads_bounded`.
    **limits
        ``max_depth`` and ``max_containers``, passed to :func:`loads_bounded`.

    Returns
    -------
    object
        The parsed document.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a regular file, is larger than ``max_bytes`` or is not acceptable JSON.
    """
    with open_regular(path, what) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{what} {os.fspath(path)} is larger than {max_bytes:,} bytes")
    return loads_bounded(data, f"{what} {os.fspath(path)}", strict=strict, **limits)
