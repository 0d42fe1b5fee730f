"""What each claim that runs the implementation has been shown to catch: the power matrix, as data.

``tests/theory/power_matrix.py --write`` runs every shipped mutant (and the reference and the numpy
example) through every such claim of ``fslora verify --quick`` and writes ``power_catalogue.json``
next to this module; ``tests/theory/test_power.py`` checks that the file still matches live runs. The
report reads it: per claim, which defects it has been *shown* to catch (a claim with none says so,
instead of leaving the impression that it guards something).

    shown_to_catch("thm4.4.bound")   # {"caught": [...labels], "defective_rows": 26, "summary": "7 of 26 ..."}
"""
from __future__ import annotations

import functools
import json
import os

PATH = os.path.join(os.path.dirname(__file__), "power_catalogue.json")
DEFECTIVE = ("biased", "unbiased", "below_power", "wrong_variance")


def write(table: list, path: str = PATH):
    """Write the power matrix to the catalogue file.

    Parameters
    ----------
    table : list of dict
        One row per implementation: ``{"label", "target", "kind", "statuses": {claim id: status}}``.
    path : str, optional
        The file (default: ``power_catalogue.json`` next to this module).
    """
    with open(path, "w") as fh:
        json.dump({"profile": "quick", "generated_by": "python -m tests.theory.power_matrix --write",
                   "rows": table}, fh, indent=1)
        fh.write("\n")
    load.cache_clear()


@functools.lru_cache(maxsize=1)
def load(path: str = PATH) -> dict:
    """The power catalogue (cached).

    Parameters
    ----------
    path : str, optional
        The file (default: ``power_catalogue.json`` next to this module).

    Returns
    -------
    dict
        ``{"rows": [...], ...}``; ``{"rows": []}`` if the file is missing.
    """
    if not os.path.exists(path):
        return {"rows": []}
    with open(path) as fh:
        return json.load(fh)


def shown_to_catch(claim_id: str) -> dict:
    """What one claim that runs the implementation has been shown to catch.

    Parameters
    ----------
    claim_id : str
        The claim's id.

    Returns
    -------
    dict
        ``caught`` (labels of the defective rows it violates), ``defective_rows`` (how many it ran),
        ``correct_violated`` (correct implementations it violates: false alarms) and ``summary`` (text;
        "not in the power matrix" if the claim is absent).
    """
    rows = [r for r in load()["rows"] if claim_id in r["statuses"]]
    if not rows:
        return {"caught": [], "defective_rows": 0, "correct_violated": [], "summary": "not in the power matrix"}
    defective = [r for r in rows if r["kind"] in DEFECTIVE]
    caught = [r["label"] for r in defective if r["statuses"][claim_id] == "violated"]
    wrong = [r["label"] for r in rows if r["kind"] == "correct" and r["statuses"][claim_id] == "violated"]
    summary = (f"{len(caught)} of {len(defective)} defective implementations" if caught
               else f"none of {len(defective)} defective implementations")
    return {"caught": caught, "defective_rows": len(defective), "correct_violated": wrong, "summary": summary}
