"""Hostile, malformed, truncated, foreign and old-pickle checkpoint files for the loader tests.

Every payload that a pickle-based loader would execute creates ``marker`` (opens it for
writing); a test passes only if ``marker`` still does not exist after our loader refused the
file. ``payload_runs`` shows the payload is live: unpickled, it does create its marker.
"""
from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np


class Payload:
    """Unpickling this opens ``marker`` for writing: code execution, made visible."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_runs(marker) -> bool:
    """Control: the payload really executes when unpickled (as the old loader did)."""
    pickle.loads(pickle.dumps(Payload(marker))).close()
    return marker.exists()


def _object_npy(marker) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _rezip(valid: bytes, replace: dict) -> bytes:
    """A copy of the zip ``valid`` with members replaced (name -> bytes) or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(valid)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, replace.pop(info.filename, src.read(info)))
        for name, data in replace.items():
            dst.writestr(name, data)
    return out.getvalue()


def _npy_with_declared_shape(shape) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * 64


def hostile_files(valid: bytes, marker) -> dict:
    """name -> bytes of a file that must be refused; ``valid`` is a real checkpoint's bytes."""
    header = json.loads(zipfile.ZipFile(io.BytesIO(valid)).read("header.json"))
    old_style = {"version": 1, "algorithm": "fslora", "config": header["config"], "next_round": 1,
                 "state": Payload(marker), "history": None}
    numpy_objects = io.BytesIO()
    np.savez(numpy_objects, state=np.array([Payload(marker)], dtype=object))
    nan_header = json.dumps(header).replace('"next_round": 1', '"next_round": NaN')
    missing_ref = dict(header, tree={"state": {"layers": [{"__tuple__": [{"__array__": "zz"}, 1]}], "extra": {}},
                                     "history": {}})
    return {
        "old pickle": pickle.dumps(old_style),
        "pickle under an extra key": pickle.dumps(dict(old_style, state={"layers": [], "extra": {"x": Payload(marker)}})),
        "numpy object archive": numpy_objects.getvalue(),
        "object array inside a valid checkpoint": _rezip(valid, {"arrays/a0.npy": _object_npy(marker)}),
        "declared shape larger than the file": _rezip(valid, {"arrays/a0.npy": _npy_with_declared_shape((10**12,))}),
        "NaN in the header": _rezip(valid, {"header.json": nan_header.encode()}),
        "reference to a missing array": _rezip(valid, {"header.json": json.dumps(missing_ref).encode()}),
        "truncated": valid[: len(valid) // 2],
        "empty": b"",
        "foreign zip": _zip({"hello.txt": b"hi"}),
        "json": json.dumps({"format": "fslora-checkpoint"}).encode(),
        "png": b"\x89PNG\r\n\x1a\n" + b"\0" * 32,
    }


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
