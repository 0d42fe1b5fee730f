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
    """A binary file object for ``path``, which must be a regular file (symlinks to one are
    fine); ValueError naming ``what`` otherwise. Never blocks on a FIFO."""
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
    """ValueError unless ``path`` is a regular file (checked without opening it)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {os.fspath(path)} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{what} {os.fspath(path)} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"{what} {os.fspath(path)} is {_kind(mode)}, not a regular file")


def nesting_depth(data: bytes) -> int:
    """Upper bound on the JSON nesting depth of ``data`` (brackets inside strings count too)."""
    codes = np.frombuffer(data, dtype=np.uint8)
    steps = np.zeros(codes.shape, dtype=np.int32)
    steps[(codes == ord("[")) | (codes == ord("{"))] = 1
    steps[(codes == ord("]")) | (codes == ord("}"))] = -1
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def check_json_shape(data: bytes, what: str, *, max_depth: int = MAX_DEPTH, max_containers: int = MAX_CONTAINERS):
    """ValueError if ``data`` holds more than ``max_containers`` objects/arrays or nests them
    deeper than ``max_depth`` (both counted conservatively, before parsing)."""
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
    """Parse JSON ``data`` (bytes or str) within the limits; ``strict``: NaN/Infinity refused.
    ValueError naming ``what`` for anything wrong."""
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
    """JSON from the regular file ``path``, at most ``max_bytes`` long, within the limits."""
    with open_regular(path, what) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{what} {os.fspath(path)} is larger than {max_bytes:,} bytes")
    return loads_bounded(data, f"{what} {os.fspath(path)}", strict=strict, **limits)
