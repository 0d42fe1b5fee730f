"""Loading the implementation a ``MODULE:ATTR`` target names (``fslora crosscheck``, ``fslora verify --impl``).

MODULE is a dotted module importable from the current directory (``tests.mutants.no_sketch``)
or a path to a .py file (``examples/torch_fslora.py``); ATTR names the implementation object,
or a class / zero-argument factory that builds it. A target that cannot be loaded (SyntaxError,
missing dependency, an exception or sys.exit at import or in its factory) is a one-line error.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback

from .session import MODES, describe_exception


def _where(exc: BaseException, path: str | None) -> str:
    """' (at file.py:12)': the innermost frame in ``path`` (the target file), else the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (at {exc.filename}:{exc.lineno})"
    mine = [f for f in frames if path and os.path.abspath(f.filename) == os.path.abspath(path)]
    frame = (mine or frames or [None])[-1]
    return f" (at {frame.filename}:{frame.lineno})" if frame else ""


def _import_file(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"target file {path!r} does not exist")
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem
    existing = sys.modules.get(name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") != os.path.abspath(path):
        name = f"_fslora_target_{stem}"   # never shadow an unrelated module of the same name
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:   # as `python file.py` would: the file's own imports find its neighbours
        sys.path.append(folder)
    sys.modules[name] = module   # registered while executing: dataclasses and pickling look it up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import(module_name: str, is_file: bool):
    try:
        if is_file:
            return _import_file(module_name)
        if os.getcwd() not in sys.path:  # the console script's sys.path lacks the working directory;
            sys.path.append(os.getcwd())  # last, so a stray module there never shadows an installed one
        return importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except FileNotFoundError:
        raise
    except ModuleNotFoundError as exc:
        if not is_file and exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ValueError(f"cannot import module {module_name!r} from {os.getcwd()}: {exc}") from None
        raise ValueError(f"importing {module_name!r} failed: {describe_exception(exc)}{_where(exc, module_name)}: a "
                         f"missing dependency? install it in this environment") from None
    except SyntaxError as exc:
        raise ValueError(f"importing {module_name!r} failed: SyntaxError: {exc.msg}{_where(exc, module_name)}") from None
    except BaseException as exc:  # noqa: B036 - SystemExit at import is a load failure, not a verdict
        raise ValueError(f"importing {module_name!r} raised {describe_exception(exc)}{_where(exc, module_name)}; a "
                         f"target must import without side effects") from None


def load_target(target: str):
    """The object named by MODULE:ATTR (instantiated if it is a class or a factory).

    Any failure to import or build it (including SystemExit) is a one-line ValueError /
    FileNotFoundError.

    Parameters
    ----------
    target : str
        ``MODULE:ATTR`` or ``path/to/file.py:ATTR``.

    Returns
    -------
    object
        The implementation.
    """
    if not isinstance(target, str):
        raise TypeError(f"target must be a string MODULE:ATTR, got {type(target).__name__}")
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target must look like MODULE:ATTR (e.g. fslora_ref.conformance.reference:impl), got {target!r}")
    is_file = module_name.endswith(".py") or os.sep in module_name or "/" in module_name
    module = _import(module_name, is_file)
    try:
        found = hasattr(module, attr)
        obj = getattr(module, attr) if found else None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B036
        raise ValueError(f"reading {attr!r} from {module_name!r} raised {describe_exception(exc)}") from None
    if not found:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    try:
        is_factory = isinstance(obj, type) or (callable(obj) and not any(callable(getattr(obj, m, None))
                                                                         for m in MODES.values()))
        if is_factory:
            obj = obj()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B036
        raise ValueError(f"{target}: building the implementation by calling {attr}() raised "
                         f"{describe_exception(exc)}{_where(exc, module_name if is_file else None)}") from None
    return obj
