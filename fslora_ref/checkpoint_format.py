"""Data-only checkpoint files: reading one never executes code, whatever it holds.

A checkpoint is a zip archive (stored, not compressed; ``.npz`` suffix) with

* ``header.json`` -- strict JSON (no NaN/Infinity): format name and version, the algorithm,
  the run's config and identity, the next round, and the saved objects as a JSON tree;
* ``arrays/<id>.npy`` -- one NumPy ``.npy`` member per array of that tree.

The tree is plain JSON except for four tagged objects: ``{"__array__": id}`` (a member of
``arrays/``), ``{"__scalar__": id}`` (a NumPy scalar, stored as a 0-d member),
``{"__tuple__": [...]}`` and ``{"__float__": "nan" | "inf" | "-inf"}``. Reading
parses JSON as data and reads arrays with ``allow_pickle=False`` after checking that their
dtype is numeric and that their declared size fits inside the file, so a hostile, foreign,
truncated or old pickle file is a one-line ``ValueError`` naming the file. Only a regular file
is opened (a named pipe or device is refused without blocking), and the header is read with a
size cap (:data:`MAX_HEADER_BYTES`) and bounded JSON (depth and container count: safe_json.py).

    write_archive(path, header, tree)           # atomic, permissions from the umask
    header, tree = read_archive(path)
    header = read_header(path)                  # without reading the arrays
"""
from __future__ import annotations

import io
import math
import os
import zipfile

import numpy as np

from .outputs import atomic_write_bytes, dumps_json
from .safe_json import loads_bounded, open_regular

HEADER_MEMBER = "header.json"
ARRAY_DIR = "arrays/"
TAGS = ("__array__", "__scalar__", "__tuple__", "__float__")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the same state always gives the same bytes
_NUMERIC_KINDS = "biufc"
MAX_HEADER_BYTES = 64 << 20           # a 10**5-round history is a few MB
MAX_HEADER_CONTAINERS = 1_000_000     # JSON objects/arrays in the header
MAX_HEADER_DEPTH = 32                 # ours nest < 10 deep


# -- the JSON tree ---------------------------------------------------------------------------
def encode(obj, arrays: dict):
    """``obj`` as a JSON-able tree; every array goes into ``arrays``.

    Parameters
    ----------
    obj : object
        None, bools, strings, numbers, numeric NumPy arrays and scalars, and lists, tuples and
        dicts (string keys not starting with ``__``) of these.
    arrays : dict
        Filled with ``{id: ndarray}``; the tree refers to each array by its id.

    Returns
    -------
    object
        JSON values; arrays, scalars, tuples and non-finite floats as one-key tagged dicts.

    Raises
    ------
    TypeError
        For anything else (it names the type).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if arr.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"checkpoint arrays must be numeric, got dtype {arr.dtype}")
        key = f"a{len(arrays)}"
        arrays[key] = arr
        return {"__scalar__" if isinstance(obj, np.generic) else "__array__": key}
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else {"__float__": repr(float(obj))}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(x, arrays) for x in obj]}
    if isinstance(obj, list):
        return [encode(x, arrays) for x in obj]
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str) or k.startswith("__"):
                raise TypeError(f"checkpoint dict keys must be strings not starting with '__', got {k!r}")
            out[k] = encode(v, arrays)
        return out
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint (arrays, numbers, strings, "
                    f"lists, tuples and dicts only)")


def decode(tree, arrays: dict, where: str = "state"):
    """Inverse of :func:`encode`.

    Parameters
    ----------
    tree : object
        A tree :func:`encode` wrote (as read back from JSON).
    arrays : dict
        ``{id: ndarray}`` the tree refers to.
    where : str, default "state"
        The tree's position, for messages.

    Returns
    -------
    object

    Raises
    ------
    ValueError
        Naming the position of anything malformed.
    """
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [decode(x, arrays, f"{where}[{i}]") for i, x in enumerate(tree)]
    if not isinstance(tree, dict):
        raise ValueError(f"{where}: unexpected {type(tree).__name__}")
    tagged = [k for k in tree if k.startswith("__")]
    if not tagged:
        return {k: decode(v, arrays, f"{where}.{k}") for k, v in tree.items()}
    if len(tree) != 1 or tagged[0] not in TAGS:
        raise ValueError(f"{where}: unknown tagged object with keys {sorted(tree)[:4]}")
    tag, value = tagged[0], tree[tagged[0]]
    if tag in ("__array__", "__scalar__"):
        if not isinstance(value, str) or value not in arrays:
            raise ValueError(f"{where}: refers to a missing array {value!r}")
        if tag == "__array__":
            return arrays[value]
        if arrays[value].ndim:
            raise ValueError(f"{where}: a scalar must be a 0-d array")
        return arrays[value][()]
    if tag == "__tuple__":
        if not isinstance(value, list):
            raise ValueError(f"{where}: a tuple must hold a list")
        return tuple(decode(x, arrays, f"{where}[{i}]") for i, x in enumerate(value))
    if value not in ("nan", "inf", "-inf"):
        raise ValueError(f"{where}: bad non-finite float {value!r}")
    return float(value)


def array_refs(tree) -> set:
    """Ids of every array the tree refers to.

    Parameters
    ----------
    tree : object
        An encoded tree.

    Returns
    -------
    set of str
    """
    if isinstance(tree, list):
        return set().union(*(array_refs(x) for x in tree)) if tree else set()
    if isinstance(tree, dict):
        if len(tree) == 1 and next(iter(tree)) in ("__array__", "__scalar__"):
            ref = next(iter(tree.values()))
            return {ref} if isinstance(ref, str) else set()
        return set().union(*(array_refs(v) for v in tree.values())) if tree else set()
    return set()


# -- the archive -----------------------------------------------------------------------------
def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.compress_type = zipfile.ZIP_STORED
    return info


def write_archive(path, header: dict, tree) -> None:
    """Write ``header`` with ``tree`` under key ``"tree"`` (atomically).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    header : dict
        JSON values.
    tree : object
        Anything :func:`encode` takes.
    """
    arrays = {}
    body = dict(header, tree=encode(tree, arrays))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(_member(HEADER_MEMBER), dumps_json(body, indent=None))  # C encoder: fast
        for key, arr in arrays.items():
            raw = io.BytesIO()
            np.lib.format.write_array(raw, arr, allow_pickle=False)
            zf.writestr(_member(f"{ARRAY_DIR}{key}.npy"), raw.getvalue())
    atomic_write_bytes(path, buf.getvalue())


def _sniff(path: str, fh) -> None:
    try:
        magic = fh.read(4)
        fh.seek(0)
    except OSError as exc:
        raise ValueError(f"checkpoint {path} cannot be read: {exc.strerror}") from None
    if magic[:1] == b"\x80":
        raise ValueError(f"checkpoint {path} is a pickle file (the old checkpoint format); pickles are never "
                         f"loaded because loading one can execute code: delete it and start afresh")
    if magic != b"PK\x03\x04":
        raise ValueError(f"checkpoint {path} is not an fslora checkpoint (not a zip archive)")


def _stored_member(zf: zipfile.ZipFile, name: str, file_size: int) -> zipfile.ZipInfo:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ValueError(f"has no member {name!r}") from None
    # stored members cannot inflate beyond the bytes the file really has (no zip bombs)
    if info.compress_type != zipfile.ZIP_STORED or info.file_size > file_size:
        raise ValueError(f"member {name!r} is compressed or larger than the file")
    return info


def _read_header(zf: zipfile.ZipFile, file_size: int) -> dict:
    info = _stored_member(zf, HEADER_MEMBER, file_size)
    if info.file_size > MAX_HEADER_BYTES:
        raise ValueError(f"header.json has {info.file_size:,} bytes, above the limit of {MAX_HEADER_BYTES:,}")
    with zf.open(info) as fh:
        data = fh.read(MAX_HEADER_BYTES + 1)
    if len(data) > MAX_HEADER_BYTES:
        raise ValueError(f"header.json is larger than {MAX_HEADER_BYTES:,} bytes")
    header = loads_bounded(data, "header.json", max_depth=MAX_HEADER_DEPTH, max_containers=MAX_HEADER_CONTAINERS)
    if not isinstance(header, dict):
        raise ValueError("header.json is not a JSON object")
    return header


def _read_array(zf: zipfile.ZipFile, key: str, file_size: int) -> np.ndarray:
    info = _stored_member(zf, f"{ARRAY_DIR}{key}.npy", file_size)
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"array {key}: unsupported .npy version {version}")
    if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"array {key}: dtype {dtype} is not numeric")
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise ValueError(f"array {key}: declared shape {shape} does not fit in its member")
    with zf.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _open(path, read_arrays: bool):
    path = os.fspath(path)
    with open_regular(path, "checkpoint") as fh:   # no FIFO, device or directory; one open file throughout
        _sniff(path, fh)
        return _parse(path, fh, os.fstat(fh.fileno()).st_size, read_arrays)


def _parse(path: str, fh, file_size: int, read_arrays: bool):
    try:
        with zipfile.ZipFile(fh) as zf:
            header = _read_header(zf, file_size)
            if not read_arrays:
                return header, None
            tree = header.pop("tree", None)
            arrays = {key: _read_array(zf, key, file_size) for key in sorted(array_refs(tree))}
        return header, decode(tree, arrays, "tree")
    except Exception as exc:  # data only: whatever went wrong, the file is not a checkpoint we can use
        raise ValueError(f"checkpoint {path} is damaged, truncated or not an fslora checkpoint "
                         f"({type(exc).__name__}: {exc})") from None


def read_header(path) -> dict:
    """The header of a checkpoint (its ``tree`` not decoded); arrays are not read.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
    """
    return _open(path, read_arrays=False)[0]


def read_archive(path):
    """Read a checkpoint written by :func:`write_archive`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    header : dict
    tree : object
        Decoded, arrays included.
    """
    return _open(path, read_arrays=True)
