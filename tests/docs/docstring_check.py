"""Find public names whose docstring lacks a numpy-style ``Parameters`` / ``Returns`` section.

The public names of a module are the ones the API reference documents (``docs/_ext/fslora_api.py``:
``__all__`` if the module has one, else the functions and classes it defines whose names do not
start with ``_``). For each public function, each public class and each public method of a public
class (defined in that class, not inherited from outside the project):

- a callable taking parameters (other than ``self`` / ``cls``) needs a ``Parameters`` section naming
  every one of them (``*args`` / ``**kwargs`` may be written with or without their stars; a
  ``**kwargs`` is also documented by listing the keywords it takes, i.e. entries that are not
  named parameters); for a class these are its constructor's parameters, in the class docstring;
- a callable that returns a value needs a ``Returns`` section (a generator: ``Yields``). It returns a
  value when its return annotation says so (anything but ``None`` / ``NoReturn``); without an
  annotation, when its source has a ``return <value>`` (outside nested functions) or a ``yield``.

A method without a docstring of its own that overrides a documented method inherits that docstring
(``inspect.getdoc``, as autodoc shows it); its parameters are still checked against its own signature.
Properties are documented as attributes and not checked here.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for _path in (os.path.join(ROOT, "docs", "_ext"), os.path.join(ROOT, "flower_app"), ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import fslora_api  # noqa: E402  (the docs site's walker: one definition of "public")

SECTION = re.compile(r"^\s*-{3,}\s*$")
ENTRY = re.compile(r"^(?P<names>\*{0,2}[A-Za-z_][\w]*(?:\s*,\s*\*{0,2}[A-Za-z_][\w]*)*)\s*(?::.*)?$")


def sections(doc: str) -> dict:
    """{section title: [its lines]} of a numpy-style docstring (a title underlined with dashes)."""
    lines = textwrap.dedent(doc or "").splitlines()
    found, current = {}, None
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and SECTION.match(lines[i + 1]) and line.strip() and not SECTION.match(line):
            current = line.strip()
            found[current] = []
        elif current is not None and not SECTION.match(line):
            found[current].append(line)
    return found


def documented_parameters(section_lines: list) -> set:
    """Names of the entries of a Parameters section: the lines at the section's own indentation."""
    body = [line for line in section_lines if line.strip()]
    if not body:
        return set()
    indent = min(len(line) - len(line.lstrip()) for line in body)
    names = set()
    for line in body:
        if len(line) - len(line.lstrip()) != indent:
            continue
        match = ENTRY.match(line.strip())
        if match:
            names |= {n.strip().lstrip("*") for n in match.group("names").split(",")}
    return names


def signature_parameters(func, skip_first: bool) -> list:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return []
    if skip_first and params and params[0].name in ("self", "cls"):
        params = params[1:]
    params = [p for p in params if not p.name.startswith("_")]     # private fields are not documented
    return ["**" + p.name if p.kind is p.VAR_KEYWORD else p.name for p in params]


def _function_node(func):
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return node
    return None


def _own_nodes(node):
    """The nodes of a function body, not descending into nested functions, lambdas or classes."""
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
    stack = [n for n in node.body if not isinstance(n, nested)]
    while stack:
        current = stack.pop()
        yield current
        stack += [child for child in ast.iter_child_nodes(current) if not isinstance(child, nested)]


def output_kind(func):
    """``"Yields"``, ``"Returns"`` or None (returns nothing) for a function."""
    node = _function_node(func)
    if node is not None and any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own_nodes(node)):
        return "Yields"
    annotation = inspect.signature(func).return_annotation if _has_signature(func) else inspect.Signature.empty
    if annotation is not inspect.Signature.empty:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
        return None if text in ("None", "NoReturn", "Never", "NoneType") or annotation is None else "Returns"
    if node is None:
        return None
    for n in _own_nodes(node):
        if isinstance(n, ast.Return) and n.value is not None and not (
                isinstance(n.value, ast.Constant) and n.value.value is None):
            return "Returns"
    return None


def _has_signature(func) -> bool:
    try:
        inspect.signature(func)
        return True
    except (TypeError, ValueError):
        return False


def check_callable(qualname: str, func, doc: str, params: list, needs_output) -> list:
    """Problems (one line each) of one function's / method's / class's docstring."""
    if not doc:
        return [f"{qualname}: no docstring"]
    found = sections(doc)
    problems = []
    if params:
        if "Parameters" not in found:
            problems.append(f"{qualname}: no Parameters section (takes {', '.join(p.lstrip('*') for p in params)})")
        else:
            documented = documented_parameters(found["Parameters"])
            named = {p.lstrip("*") for p in params}
            missing = [p.lstrip("*") for p in params if p.lstrip("*") not in documented
                       and not (p.startswith("**") and documented - named)]
            if missing:
                problems.append(f"{qualname}: Parameters does not list {', '.join(missing)}")
    if needs_output and needs_output not in found and not (needs_output == "Returns" and "Yields" in found):
        problems.append(f"{qualname}: no {needs_output} section")
    return problems


def _project_init(cls):
    """The class's constructor if the project (not object / Exception / typing) defines it."""
    for base in cls.__mro__:
        if "__init__" in vars(base):
            init = vars(base)["__init__"]
            module = getattr(init, "__module__", None) or ""
            if base.__module__ in ("builtins", "typing", "typing_extensions", "abc") or module in (
                    "typing", "typing_extensions"):
                return None
            return init
    return None


def check_class(qualname: str, cls, package: str) -> list:
    problems = []
    init = _project_init(cls)
    params = signature_parameters(init, skip_first=True) if init is not None else []
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):     # a NamedTuple: its fields (via __new__)
        params = [f for f in cls._fields if not f.startswith("_")]
    problems += check_callable(qualname, cls, inspect.getdoc(cls), params, None)
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        func = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
        if not inspect.isfunction(func):
            continue                      # properties, constants, nested classes
        doc = inspect.getdoc(getattr(cls, name))
        skip_first = not isinstance(member, staticmethod)
        problems += check_callable(f"{qualname}.{name}", func, doc,
                                   signature_parameters(func, skip_first), output_kind(func))
    return problems


def public_objects(package: str):
    """(qualified name, object) of every public function and class of ``package``, each once, at the
    module that defines it."""
    seen = set()
    for module_name in fslora_api.walk(package):
        module = sys.modules[module_name]
        for name in fslora_api.public_names(module):
            obj = getattr(module, name, None)
            if not fslora_api.is_code(obj) or id(obj) in seen:
                continue
            home = getattr(obj, "__module__", "") or ""
            if not (home == package or home.startswith(package + ".")):
                continue                  # re-exported from elsewhere: checked (or not) at its home
            seen.add(id(obj))
            obj = obj if inspect.isclass(obj) else inspect.unwrap(obj)   # lru_cache & co: check the function
            yield f"{home}.{obj.__qualname__}", obj


def missing(package: str) -> list:
    """Every problem of ``package``'s public docstrings, one line each, sorted."""
    problems = []
    for qualname, obj in public_objects(package):
        if inspect.isclass(obj):
            problems += check_class(qualname, obj, package)
        else:
            problems += check_callable(qualname, obj, inspect.getdoc(obj),
                                       signature_parameters(obj, skip_first=False), output_kind(obj))
    return sorted(problems)


def summary(problems: list) -> dict:
    """{"Parameters": n, "Returns": n, "no docstring": n} of a list of problems."""
    return {"no docstring": sum("no docstring" in p for p in problems),
            "Parameters": sum("Parameters" in p for p in problems),
            "Returns": sum("no Returns" in p or "no Yields" in p for p in problems)}


if __name__ == "__main__":        # python tests/docs/docstring_check.py fslora_ref [-v]
    for pkg in [a for a in sys.argv[1:] if not a.startswith("-")] or list(fslora_api.PACKAGES):
        found = missing(pkg)
        print(pkg, len(found), summary(found))
        if "-v" in sys.argv:
            print("\n".join("  " + p for p in found))
