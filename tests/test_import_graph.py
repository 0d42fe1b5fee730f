"""The project's import graph, read from the sources with ``ast`` (nothing is imported).

Every ``import`` and ``from ... import`` counts, including those inside functions (a lazy import
is still an arrow). Module names are what the code imports: ``fslora_ref.*``, ``theory.*``,
``llm_bridge.*``, ``fslora_cli.*`` and, from ``flower_app/``, ``fslora_flower.*``.

    python tests/test_import_graph.py      # the figures: files, arrows, depth and circles per package

What the tests below hold is what is true today: ``theory/`` has no circles and its rooms form
layers (exact <- paper, ours <- the harness that runs them), and ``fslora_ref`` imports none of the
packages built on it. The CLI rules of issue 17 (nothing outside ``fslora_cli`` imports it, no
circles anywhere) are not asserted here: they are another branch's work.
"""
from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = {"fslora_ref": "fslora_ref", "theory": "theory", "llm_bridge": "llm_bridge",
            "fslora_cli": "fslora_cli", "fslora_flower": os.path.join("flower_app", "fslora_flower")}


def modules(root: str = ROOT) -> dict:
    """{dotted module name: path} of every .py file in the project's packages."""
    out = {}
    for top, rel in PACKAGES.items():
        base = os.path.join(root, rel)
        for folder, _, files in os.walk(base):
            parts = [top] + os.path.relpath(folder, base).split(os.sep)
            parts = [p for p in parts if p != "."]
            for f in files:
                if f.endswith(".py"):
                    name = parts if f == "__init__.py" else parts + [f[:-3]]
                    out[".".join(name)] = os.path.join(folder, f)
    return out


def _targets(node, here: str, is_package: bool, known: set) -> list:
    """Project modules named by one import statement of module ``here``."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            package = here.split(".") if is_package else here.split(".")[:-1]
            package = package[:len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for name in names:
        while name and name not in known:     # `import a.b.c` of a package: the deepest module that exists
            name = name.rpartition(".")[0]
        if name and name != here:
            out.append(name)
    return out


def import_graph(root: str = ROOT) -> dict:
    """{module: set of project modules it imports}."""
    mods = modules(root)
    known = set(mods)
    graph = {}
    for name, path in mods.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        is_package = path.endswith("__init__.py")
        graph[name] = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                       for t in _targets(node, name, is_package, known)}
    return graph


def restrict(graph: dict, prefix: str) -> dict:
    """The subgraph of the modules under ``prefix`` (package ``__init__`` files left out: they are empty
    or re-export, and a package importing its own children is not an arrow between rooms)."""
    inside = {m for m in graph if m.startswith(prefix + ".") and not _is_init(m, graph)}
    return {m: {t for t in graph[m] if t in inside} for m in inside}


def _is_init(name: str, graph: dict) -> bool:
    return any(other.startswith(name + ".") for other in graph)


def circles(graph: dict) -> list:
    """Strongly connected components with more than one module (or a self-import), sorted."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def depth(graph: dict) -> int:
    """Modules on the longest import chain (a module importing nothing has depth 1); the modules of
    a circle count as one."""
    where = {m: "+".join(c) for c in circles(graph) for m in c}
    condensed = {}
    for m, targets in graph.items():
        node = where.get(m, m)
        condensed.setdefault(node, set()).update(where.get(t, t) for t in targets if where.get(t, t) != node)
    memo = {}

    def d(v):
        if v not in memo:
            memo[v] = 1 + max((d(w) for w in condensed.get(v, ())), default=0)
        return memo[v]
    return max((d(v) for v in condensed), default=0)


def rooms(graph: dict, prefix: str) -> dict:
    """The graph of ``prefix``'s rooms: a subpackage is one room, a top-level module is one room."""
    def room(m):
        parts = m[len(prefix) + 1:].split(".")
        return parts[0]
    out = {}
    for m, targets in restrict(graph, prefix).items():
        out.setdefault(room(m), set()).update(room(t) for t in targets if room(t) != room(m))
    return out


def figures(prefix: str = "theory", root: str = ROOT) -> dict:
    g = restrict(import_graph(root), prefix)
    r = rooms(import_graph(root), prefix)
    flat = circles(g)
    return {"files": len(g), "imports": sum(len(t) for t in g.values()), "circles": flat,
            "depth": depth(g),
            "rooms": len(r), "room_imports": sum(len(t) for t in r.values()), "room_circles": circles(r),
            "room_depth": depth(r)}


# -- what holds ---------------------------------------------------------------------------------
THEORY_LAYERS = {"exact": 0, "paper": 2, "ours": 2, "empirical": 0}   # higher may import lower, not the reverse
HARNESS_BASE = {"result", "experiment", "implementations", "figures"}  # what paper/ and ours/ may use
HARNESS_TOP = {"claims", "report", "profiles", "cli"}                 # the verify harness that runs them


def _layer(module: str) -> int:
    room = module.split(".")[1]
    if room in THEORY_LAYERS:
        return THEORY_LAYERS[room]
    return 1 if room in HARNESS_BASE else 3


def test_theory_has_no_import_circles():
    assert circles(restrict(import_graph(), "theory")) == []


def test_theory_rooms_form_layers():
    """exact/ imports nothing above it; paper/ and ours/ import exact/ and the harness's base (result,
    experiment, implementations), never the harness modules that run them (claims, report)."""
    graph = restrict(import_graph(), "theory")
    upward = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts if _layer(t) > _layer(m))
    assert upward == []


def test_fslora_ref_imports_nothing_built_on_it():
    graph = import_graph()
    above = ("theory", "llm_bridge", "fslora_flower", "fslora_cli")
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if m.startswith("fslora_ref")
                 for t in ts if t.split(".")[0] in above)
    assert bad == []


def test_the_graph_sees_relative_lazy_and_package_imports(tmp_path):
    """The reader must find the arrows it is meant to count (else the tests above pass on nothing)."""
    pkg = tmp_path / "theory"
    (pkg / "exact").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "exact" / "__init__.py").write_text("")
    (pkg / "exact" / "a.py").write_text("def f():\n    from ..claims import X\n")     # lazy, two levels up
    (pkg / "claims.py").write_text("from .exact import a\nimport theory.exact.a\n")
    graph = import_graph(str(tmp_path))
    assert graph["theory.claims"] == {"theory.exact.a"}
    assert graph["theory.exact.a"] == {"theory.claims"}
    assert circles(restrict(graph, "theory")) == [["theory.claims", "theory.exact.a"]]
    assert [f"{m} -> {t}" for m, ts in restrict(graph, "theory").items() for t in ts if _layer(t) > _layer(m)] \
        == ["theory.exact.a -> theory.claims"]


if __name__ == "__main__":
    for name, value in figures().items():
        print(f"theory {name}: {value}")
    everything = import_graph()
    print("project circles:", circles(everything))
