"""docs/spec.md is the project's own specification: every repository path and claim id it names
exists, the README links to it, and nothing in the repository points outside the clone."""
from __future__ import annotations

import fnmatch
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = os.path.join(ROOT, "docs", "spec.md")
TOP_DIRS = ("fslora_ref", "theory", "llm_bridge", "fslora_cli", "notebooks", "tests", "docs", "examples")
# the shared folder the specification was first written in is not part of a user's clone
OUTSIDE = re.compile(r"\.\./shared|/work/shared|shared/spec|FSLORA\.md")


def named_paths(text: str) -> list:
    """Repository paths in backticks (``fslora_ref/sketch.py: Sketch`` -> fslora_ref/sketch.py),
    with ``{a,b}`` alternatives expanded."""
    out = []
    for token in re.findall(r"`([^`]+)`", text):
        path = token.split(":")[0].split(" ")[0]
        if not path.startswith(tuple(d + "/" for d in TOP_DIRS)):
            continue
        alt = re.search(r"\{([^}]*)\}", path)
        out += [path[:alt.start()] + a + path[alt.end():] for a in alt.group(1).split(",")] if alt else [path]
    return out


def missing_paths(text: str) -> list:
    return [p for p in named_paths(text) if not os.path.exists(os.path.join(ROOT, p.rstrip("/")))]


def unknown_claims(text: str, claim_ids) -> list:
    """Claim ids (or patterns like ``alg1.*``) named in backticks that match no registered claim."""
    named = set()
    for token in re.findall(r"`([a-z0-9]+(?:\.[a-z0-9_*]+)+)`", text):
        if not token.endswith((".py", ".md", ".json", ".png")):
            named.add(token)
    return sorted(n for n in named if not fnmatch.filter(claim_ids, n))


def test_every_path_and_claim_the_spec_names_exists():
    from theory.claims import CLAIMS
    text = open(SPEC, encoding="utf-8").read()
    paths = named_paths(text)
    assert len(paths) >= 30 and missing_paths(text) == []
    ids = [c.id for c in CLAIMS]
    assert unknown_claims(text, ids) == []
    assert len(re.findall(r"`(?:def3\.1|identity|thm4\.4|cor4\.5|propD4|alg1)[.*\w]*`", text)) >= 8
    # the checks have teeth: a renamed module or a misspelt claim is reported
    assert missing_paths("see `fslora_ref/sketches.py: Sketch` and `theory/exact/{bounds,bound}.py`") == \
        ["fslora_ref/sketches.py", "theory/exact/bound.py"]
    assert unknown_claims("claims `thm4.4.bound`, `thm4.5.*`, `alg1.*`", ids) == ["thm4.5.*"]


def test_spec_covers_what_users_need():
    text = open(SPEC, encoding="utf-8").read()
    for needle in ("c_k = (r − k) / (k (r − 1))", "Algorithm 1", "Submatrix form", "Masked (full-size) form",
                   "Proposition D.4", "Theorem 4.4", "Corollary 4.5", "FedIT", "HetLoRA", "FlexLoRA", "FLoRA",
                   "lora_A.weight.T", "--client-fraction", "--server-optimizer", "--budget-distribution"):
        assert needle in text, needle


def test_readme_links_the_spec_and_nothing_points_outside_the_clone():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert "(docs/spec.md)" in readme
    offenders = []
    for top in TOP_DIRS + ("README.md", "Makefile", "pyproject.toml"):
        base = os.path.join(ROOT, top)
        walk = [(ROOT, [], [top])] if os.path.isfile(base) else os.walk(base)
        for folder, _, files in walk:
            for name in files:
                if name.endswith((".py", ".md", ".ipynb", ".toml", "Makefile")) and name != os.path.basename(__file__):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        if OUTSIDE.search(fh.read()):
                            offenders.append(os.path.relpath(path, ROOT))
    assert offenders == []
