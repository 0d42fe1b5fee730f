"""Model and adapter directories are data: checked before transformers / PEFT read them.

A local ``--model`` directory (and the adapter directory the run reloads) must hold

* only regular files and sub-directories (a named pipe named ``tokenizer.json`` would hang the
  loader; a device could be endless);
* weights in safetensors only: a pickle-based weight file (``*.bin``, ``*.pt``, ``*.pth``,
  ``*.ckpt``, ``*.pkl``) is refused by name -- loading one can execute code, and transformers'
  ``weights_only`` unpickler answers a hostile one with a long traceback;
* JSON files (config, tokenizer, adapter config) of bounded size and nesting, and safetensors
  headers of bounded size that fit inside their file.

Every problem is a one-line ValueError naming the file.
"""
from __future__ import annotations

import os
import stat
import struct

from fslora_ref.safe_json import loads_bounded, open_regular, read_json_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_JSON_BYTES = 64 << 20           # tokenizer.json of a large vocabulary is ~20 MB
MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors library's own limit
MAX_ENTRIES = 10_000                # files in one model directory


def _entries(path: str, what: str) -> list:
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise ValueError(f"{what} {path!r} cannot be listed: {exc.strerror}") from None
    if len(names) > MAX_ENTRIES:
        raise ValueError(f"{what} {path!r} holds {len(names):,} entries, above the limit of {MAX_ENTRIES:,}")
    return names


def check_safetensors(path: str, what: str) -> None:
    """Check a safetensors file's header before the safetensors library reads it.

    The first 8 bytes (little-endian) give the JSON header's length, which must fit inside the file
    and within MAX_SAFETENSORS_HEADER; the header must be a JSON object nested at most 8 deep. The
    tensors themselves are not read.

    Parameters
    ----------
    path : str
        The ``*.safetensors`` file (a regular file).
    what : str
        What the directory is (``"--model"``, ``"adapter"``), the start of every message.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a regular file, is truncated, or its header is too long, outside the file, not
        valid JSON or not an object.
    """
    with open_regular(path, what) as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{what} {path} is truncated (no safetensors header)")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_SAFETENSORS_HEADER or 8 + length > size:
            raise ValueError(f"{what} {path}: safetensors header of {length:,} bytes does not fit the file "
                             f"({size:,} bytes) or the limit of {MAX_SAFETENSORS_HEADER:,}")
        header = loads_bounded(fh.read(length), f"{what} {path} (safetensors header)", max_depth=8)
    if not isinstance(header, dict):
        raise ValueError(f"{what} {path}: safetensors header is not a JSON object")


def check_weights_dir(path, what: str = "--model", config_name: str = "config.json") -> None:
    """Check a transformers model (or PEFT adapter) directory before anything loads it.

    Every entry must be a sub-directory or a regular file (sub-directories are not descended into);
    a pickle-based weight file (PICKLE_SUFFIXES) is refused by name; every ``*.safetensors`` file
    has its header checked (:func:`check_safetensors`) and every ``*.json`` file is read with bounded
    size and nesting; ``config_name`` must exist and hold a JSON object; at least one
    ``*.safetensors`` file must be there.

    Parameters
    ----------
    path : str or os.PathLike
        The directory (at most MAX_ENTRIES entries).
    what : str, default "--model"
        What the directory is, the start of every message.
    config_name : str, default "config.json"
        The configuration file the loader needs (``adapter_config.json`` for an adapter).

    Raises
    ------
    FileNotFoundError
        If ``config_name`` is missing.
    ValueError
        One line naming the file, for any of the problems above.
    """
    path = os.fspath(path)
    names = _entries(path, what)
    weights = []
    for name in names:
        full = os.path.join(path, name)
        try:
            mode = os.stat(full).st_mode
        except OSError as exc:
            raise ValueError(f"{what}: {full} cannot be read: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what}: {full} is not a regular file (a named pipe, device or socket)")
        lower = name.lower()
        if lower.endswith(PICKLE_SUFFIXES):
            raise ValueError(f"{what}: {full} is a pickle-based weight file; it is never loaded because loading one "
                             f"can execute code: convert the model to safetensors (save_pretrained does) and remove it")
        if lower.endswith(".safetensors"):
            check_safetensors(full, what)
            weights.append(name)
        elif lower.endswith(".json"):
            read_json_file(full, what, max_bytes=MAX_JSON_BYTES, max_depth=64)
    if config_name not in names:
        raise FileNotFoundError(f"{what} {path!r} has no {config_name}")
    if not isinstance(read_json_file(os.path.join(path, config_name), what, max_bytes=MAX_JSON_BYTES), dict):
        raise ValueError(f"{what}: {os.path.join(path, config_name)} is not a JSON object")
    if not weights:
        raise ValueError(f"{what} {path!r} holds no *.safetensors weights (only safetensors are loaded)")


def check_adapter_dir(path) -> None:
    """Check a PEFT adapter directory: adapter_config.json and safetensors weights, nothing pickled.

    :func:`check_weights_dir` with ``what="adapter"`` and ``config_name="adapter_config.json"``.

    Parameters
    ----------
    path : str or os.PathLike
        The adapter directory (as ``save_pretrained`` writes it).

    Raises
    ------
    FileNotFoundError
        If adapter_config.json is missing.
    ValueError
        As :func:`check_weights_dir`.
    """
    check_weights_dir(path, "adapter", config_name="adapter_config.json")
