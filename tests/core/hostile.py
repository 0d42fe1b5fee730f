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


# -- a well-formed archive whose server state lies ---------------------------------------------
def _edited(valid: bytes, edit, tmp_dir) -> bytes:
    """``valid`` with its decoded tree passed through ``edit(tree)`` (in place), re-archived."""
    from fslora_ref.checkpoint_format import read_archive, write_archive
    src, dst = tmp_dir / "src.npz", tmp_dir / "dst.npz"
    src.write_bytes(valid)
    header, tree = read_archive(src)
    edit(tree)
    write_archive(dst, header, tree)
    return dst.read_bytes()


def _set(path, value):
    def edit(tree):
        node = tree["state"]["extra"]
        for key in path[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value(node[path[-1]]) if callable(value) else value
    return edit


_DELETE = object()


def lying_states(valid: dict, tmp_dir) -> dict:
    """(algorithm, name) -> bytes of an archive that is well-formed but whose server state does
    not fit the run. ``valid``: algorithm -> a real checkpoint's bytes (fslora with server Adam,
    flora, flexlora)."""
    adam = {
        "Adam moments replaced by scalars": _set(("server_opt", "m"), lambda m: [np.float64(0.0) for _ in m]),
        "Adam moments replaced by (1, 1) arrays": _set(("server_opt", "v"), lambda v: [np.zeros((1, 1)) for _ in v]),
        "Adam moments deleted": _set(("server_opt", "m"), _DELETE),
        "server optimiser state deleted": _set(("server_opt",), _DELETE),
        "one Adam moment missing": _set(("server_opt", "m"), lambda m: m[:-1]),
        "Adam moment of the wrong dtype": _set(("server_opt", "m"), lambda m: [x.astype(np.float32) for x in m]),
        "Adam moment holding NaN": _set(("server_opt", "m"), lambda m: [np.full_like(x, np.nan) for x in m]),
        "negative second moment": _set(("server_opt", "v"), lambda v: [-np.ones_like(x) for x in v]),
        "step count 10**400": _set(("server_opt", "t"), 10**400),
        "step count beyond the rounds held": _set(("server_opt", "t"), 99),
        "step count a float": _set(("server_opt", "t"), 1.0),
        "step count True": _set(("server_opt", "t"), True),
        "unknown extra key": _set(("injected",), np.zeros(3)),
    }
    flora = {
        "FLoRA merged weight deleted": _set(("merged",), _DELETE),
        "FLoRA merged weight of the wrong shape": _set(("merged",), lambda ms: [np.zeros((1, 1)) for _ in ms]),
        "FLoRA stacked rank 10**400": _set(("stacked_rank",), 10**400),
    }
    flexlora = {
        "FlexLoRA products deleted": _set(("delta_W",), _DELETE),
        "FlexLoRA product transposed": _set(("delta_W",), lambda ds: [d.T.copy() for d in ds]),
        "FlexLoRA product infinite": _set(("delta_W",), lambda ds: [np.full_like(d, np.inf) for d in ds]),
        "FlexLoRA client sizes all zero": _set(("client_sizes",), lambda s: [0] * len(s)),
        "FlexLoRA client sizes changed": _set(("client_sizes",), lambda s: [x + 1 for x in s]),
    }
    out = {}
    for algorithm, cases in (("fslora", adam), ("flora", flora), ("flexlora", flexlora)):
        for name, edit in cases.items():
            out[(algorithm, name)] = _edited(valid[algorithm], edit, tmp_dir)
    return out


def huge_headers(valid: bytes) -> dict:
    """name -> bytes of archives whose header.json is built to exhaust memory or the stack."""
    many = b"[" + b"{}," * (4 * 10**6) + b"{}]"                # 12 MB, 4 million dicts
    huge = b"[" + b"{}," * (35 * 10**6) + b"{}]"               # 105 MB (the case)
    deep = b"[" * 200_000 + b"]" * 200_000
    return {"100 MB header of [{},{},...]": _rezip(valid, {"header.json": huge}),
            "12 MB header of 4 million empty objects": _rezip(valid, {"header.json": many}),
            "header nested 200,000 deep": _rezip(valid, {"header.json": deep})}
