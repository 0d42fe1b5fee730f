"""Per-seed records of ``fslora claims --llm``: one JSON data file per seed (and one per tuning
seed), so seeds accumulate across runs (``--resume``) and can be committed as evidence.

``<out>/seeds/seed0003.json`` holds ``{"version", "kind": "evaluation", "config", "seed", "runs":
{algorithm: run}}``; ``<out>/tuning/seed1000.json`` the same with ``kind: "tuning"`` and runs keyed
``"<algorithm>@<lr>"``. ``config`` is everything that defines a run but the seed (model and recipe,
the declared plan, the tuning grid and seeds, for evaluation records the tuned steps): a record whose
config differs from the run's is refused with one line, never mixed in. Files are data (strict JSON
read with size and depth bounds), written atomically after every finished run.
"""
from __future__ import annotations

import json
import math
import os
import re

from fslora_ref.outputs import write_json
from fslora_ref.safe_json import read_json_file

RECORD_VERSION = 1
MAX_RECORD_BYTES = 16 << 20
MAX_RECORD_DEPTH = 16
KINDS = {"evaluation": "seeds", "tuning": "tuning"}
_NAME = re.compile(r"^seed(\d{4,})\.json$")
RUN_KEYS = {"algorithm", "seed", "lr", "budgets", "rounds", "upload_floats", "heldout", "accuracy", "diverged",
            "seconds"}


def canonical(obj):
    """``obj`` as it reads back from JSON (tuples become lists), so configs compare equal.

    Parameters
    ----------
    obj : object
        JSON values.

    Returns
    -------
    object
    """
    return json.loads(json.dumps(obj))


def record_path(out: str, kind: str, seed: int) -> str:
    """Where the record of ``seed`` lives.

    Parameters
    ----------
    out : str
        The output directory.
    kind : {"evaluation", "tuning"}
    seed : int

    Returns
    -------
    str
        ``<out>/seeds/seedNNNN.json`` or ``<out>/tuning/seedNNNN.json``.
    """
    return os.path.join(out, KINDS[kind], f"seed{seed:04d}.json")


def write_record(out: str, kind: str, config: dict, seed: int, runs: dict) -> str:
    """Write (atomically) the record of one seed.

    Parameters
    ----------
    out : str
    kind : {"evaluation", "tuning"}
    config : dict
        What the runs share (see the module docstring).
    seed : int
    runs : dict
        ``{key: run}``, each run as :func:`check_run` accepts.

    Returns
    -------
    str
        The file written.
    """
    path = record_path(out, kind, seed)
    write_json(path, {"version": RECORD_VERSION, "kind": kind, "config": canonical(config), "seed": int(seed),
                      "runs": {k: runs[k] for k in sorted(runs)}})
    return path


def load_records(out: str, kind: str, config: dict, keys) -> dict:
    """Every stored record of ``kind`` in ``out``, checked against ``config``.

    Parameters
    ----------
    out : str
    kind : {"evaluation", "tuning"}
    config : dict
        The run's config; a record with another is refused.
    keys : collection of str
        The run keys a record may hold (algorithms, or ``algorithm@lr``).

    Returns
    -------
    dict
        ``{seed: {key: run}}`` (possibly partial: an interrupted seed's finished runs).

    Raises
    ------
    ValueError
        One line naming the file and what is wrong with it.
    """
    folder = os.path.join(out, KINDS[kind])
    if not os.path.isdir(folder):
        return {}
    want, keys, found = canonical(config), set(keys), {}
    for name in sorted(os.listdir(folder)):
        match = _NAME.match(name)
        if not match:
            continue
        path = os.path.join(folder, name)
        try:
            data = read_json_file(path, "seed record", max_bytes=MAX_RECORD_BYTES, max_depth=MAX_RECORD_DEPTH)
        except OSError as exc:
            raise ValueError(f"--resume: cannot read {path} ({exc.strerror})") from None
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION or data.get("kind") != kind:
            raise ValueError(f"--resume: {path} is not a {kind} seed record of version {RECORD_VERSION}")
        seed = int(match.group(1))
        if data.get("seed") != seed:
            raise ValueError(f"--resume: {path} holds seed {data.get('seed')!r}, its name says {seed}")
        if data.get("config") != want:
            raise ValueError(f"--resume: {path} was recorded with a different config ({config_difference(data.get('config'), want)}); "
                             "use the same options or another --out")
        runs = data.get("runs")
        if not isinstance(runs, dict) or not set(runs) <= keys:
            raise ValueError(f"--resume: {path}: runs must be keyed by {sorted(keys)}, got "
                             f"{sorted(runs) if isinstance(runs, dict) else type(runs).__name__}")
        for key, run in runs.items():
            check_run(run, path, key, seed)
        found[seed] = runs
    return found


def config_difference(recorded, current) -> str:
    """The first field where two configs differ, as ``field: recorded X, this run Y``.

    Parameters
    ----------
    recorded : object
    current : dict

    Returns
    -------
    str
    """
    if not isinstance(recorded, dict):
        return f"config is {type(recorded).__name__}, not an object"
    for k in sorted(set(recorded) | set(current)):
        if recorded.get(k, "<missing>") != current.get(k, "<missing>"):
            return f"{k}: recorded {_short(recorded.get(k, '<missing>'))}, this run {_short(current.get(k, '<missing>'))}"
    return "identical"


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_run(run, path: str, key: str, seed: int) -> None:
    """One-line error unless ``run`` is a well-formed run of ``seed``.

    Parameters
    ----------
    run : object
        A stored run: ``algorithm``, ``seed``, ``lr``, ``budgets``, ``rounds``, ``upload_floats``,
        ``heldout`` (one per round, finite positive), ``accuracy`` (``{family: [0, 1]}``, or None
        if diverged), ``diverged`` (None or ``{"round", "reason"}``), ``seconds``.
    path : str
    key : str
    seed : int
    """
    where = f"--resume: {path}: run {key}"
    if not isinstance(run, dict) or set(run) != RUN_KEYS:
        raise ValueError(f"{where} must have exactly the fields {sorted(RUN_KEYS)}")
    if run["seed"] != seed or not key.startswith(str(run["algorithm"])):
        raise ValueError(f"{where} names seed {run['seed']!r} / algorithm {run['algorithm']!r}")
    series = (run["rounds"], run["upload_floats"], run["heldout"])
    if not all(isinstance(s, list) for s in series) or len({len(s) for s in series}) != 1 or not run["rounds"]:
        raise ValueError(f"{where}: rounds, upload_floats and heldout must be equally long non-empty lists")
    if run["diverged"] is None:
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in run["heldout"]):
            raise ValueError(f"{where}: heldout must be finite positive numbers")
        acc = run["accuracy"]
        if not isinstance(acc, dict) or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in acc.values()):
            raise ValueError(f"{where}: accuracy must map families to numbers in [0, 1]")
    elif not isinstance(run["diverged"], dict) or set(run["diverged"]) != {"round", "reason"}:
        raise ValueError(f"{where}: diverged must be null or {{round, reason}}")
