"""Generate the API reference pages from the package tree at build time (docs/api/generated/).

Every module of the documented packages gets one page (found by walking the packages, so a module
that is added, moved or renamed is picked up without editing the docs). A module's public names are
its ``__all__`` when it has one, else the functions, classes and constants it defines whose names do
not start with ``_``. A name that a parent package re-exports in its ``__all__`` is documented once,
at that public path (``fslora_ref.Sketch``, not ``fslora_ref.sketch.Sketch``).

Docstrings in the numpy style (a ``Parameters`` / ``Returns`` / ... section underlined with dashes)
are rendered by napoleon. Any other docstring is plain prose written for ``help()`` (ASCII math such
as ``|x - y|`` or ``q''``, indented examples): it is shown verbatim as a literal block rather than
misread as reStructuredText, so its text reaches the page unchanged.
"""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re

PACKAGES = ("fslora_ref", "theory", "llm_bridge", "fslora_flower")
OUT = os.path.join("api", "generated")


def walk(package: str) -> list:
    """[module name] of ``package`` and all its submodules, imported, in a stable order."""
    pkg = importlib.import_module(package)
    names = [package]
    if hasattr(pkg, "__path__"):
        for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                importlib.import_module(info.name)
                names.append(info.name)
    return sorted(names)


def is_code(obj) -> bool:
    """True for a function or class, including a function behind a decorator such as ``lru_cache``
    (found through ``__wrapped__``)."""
    return inspect.isfunction(inspect.unwrap(obj)) or inspect.isclass(obj) if obj is not None else False


def public_names(module) -> list:
    """The module's public API, in definition order where it has no ``__all__``."""
    if hasattr(module, "__all__"):
        return [n for n in module.__all__ if not inspect.ismodule(getattr(module, n, None))]
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if is_code(obj):
            if getattr(obj, "__module__", None) == module.__name__:
                out.append(name)
        elif name.isupper():             # a module-level constant (e.g. a registry or a tolerance)
            out.append(name)
    return out


def exported_by_parents(module_name: str) -> set:
    """Ids of the objects (not numbers or strings) a parent package re-exports in its ``__all__``
    (documented there)."""
    ids, parts = set(), module_name.split(".")
    for i in range(1, len(parts)):
        parent = importlib.import_module(".".join(parts[:i]))
        for name in getattr(parent, "__all__", ()):
            obj = getattr(parent, name, None)
            # small immutables (numbers, strings) may share an id with an unrelated constant
            if not inspect.ismodule(obj) and not isinstance(obj, (int, float, str, bytes, type(None))):
                ids.add(id(obj))
    return ids


def page(module_name: str, children: list) -> str:
    module = importlib.import_module(module_name)
    parents = exported_by_parents(module_name)
    names = [n for n in public_names(module) if id(getattr(module, n, None)) not in parents]
    lines = [module_name, "=" * len(module_name), "", f".. automodule:: {module_name}"]
    # functions and classes through automodule; constants (registries, tolerances) one by one, as
    # autodoc skips module data that another module defined even when it is named explicitly
    code = [n for n in names if is_code(getattr(module, n, None))]
    data = [n for n in names if n not in code]
    if code:
        lines += [f"   :members: {', '.join(code)}", "   :undoc-members:"]
    else:
        lines += ["   :no-members:"]
    for name in data:
        lines += ["", f".. autodata:: {module_name}.{name}", "   :no-value:"]
    if children:
        lines += ["", ".. rubric:: Modules", "", ".. toctree::", "   :maxdepth: 1", ""]
        lines += [f"   {c}" for c in children]
    return "\n".join(lines) + "\n"


def write_if_changed(path: str, text: str) -> None:
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def generate(srcdir: str, packages=PACKAGES) -> list:
    """Write one page per module into ``<srcdir>/api/generated``; returns the module names."""
    out_dir = os.path.join(srcdir, OUT)
    os.makedirs(out_dir, exist_ok=True)
    modules = [m for p in packages for m in walk(p)]
    for name in modules:
        children = [m for m in modules if m.rpartition(".")[0] == name]
        write_if_changed(os.path.join(out_dir, name + ".rst"), page(name, children))
    stale = {f for f in os.listdir(out_dir) if f.endswith(".rst")} - {m + ".rst" for m in modules}
    for f in stale:                      # a module that was moved or removed leaves no orphan page
        os.remove(os.path.join(out_dir, f))
    return modules


NUMPY_SECTION = re.compile(r"^\s*-{3,}\s*$")


def is_numpy_style(lines: list) -> bool:
    """True if the docstring has at least one numpy-style section (a title underlined with dashes)."""
    return any(NUMPY_SECTION.match(line) and lines[i - 1].strip() for i, line in enumerate(lines) if i)


def plain_text_verbatim(app, what, name, obj, options, lines: list) -> None:
    """autodoc-process-docstring: a docstring not in the numpy style becomes a literal block."""
    if lines and not is_numpy_style(lines):
        lines[:] = ["::", ""] + ["   " + line if line.strip() else "" for line in lines] + [""]


# a numpy type such as ``ndarray, shape (m, r)`` becomes a ``:type:`` field, whose every word Sphinx
# tries as a cross-reference: ``m`` or ``k`` would link to (or be ambiguous between) attributes of
# that name; a shape is notation, so it is kept as a literal (a type with markup is not split)
TYPE_SHAPE = re.compile(r"^(\s*:type [^:]+:.*?\bshape\s*)(\([^)]*\))")


def shapes_as_literals(app, what, name, obj, options, lines: list) -> None:
    """autodoc-process-docstring, after napoleon: ``shape (m, r)`` in a ``:type:`` field as a literal."""
    lines[:] = [TYPE_SHAPE.sub(lambda m: f"{m.group(1)}``{m.group(2)}``", line) for line in lines]


def setup(app):
    app.connect("builder-inited", lambda app: generate(app.srcdir))
    app.connect("autodoc-process-docstring", plain_text_verbatim, priority=100)   # before napoleon (500)
    app.connect("autodoc-process-docstring", shapes_as_literals, priority=600)     # after napoleon
    return {"parallel_read_safe": True, "parallel_write_safe": True}
