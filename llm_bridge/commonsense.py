"""Commonsense reasoning data in the field's JSON format (docs/spec.md section 6).

A data file is a JSON list of LLM-Adapters records ``{"instruction", "input", "output", "answer"}``
(BoolQ, PIQA, SIQA, HellaSwag, WinoGrande, ARC-Easy/Challenge, OpenBookQA). The training target is
``output``; the gold label is ``answer``, one of true/false, answer1..5, option1/2, solution1/2,
ending1..4.

    train = load_files(["data/boolq/train.json", "arc=data/ARC-Easy/train.json"], "--train-json")
    evals = load_files(["data/boolq/test.json", "arc=data/ARC-Easy/test.json"], "--eval-json",
                       unique_families=True)
    held = held_out_sample(evals, per_family=50, seed=0)

Family names: ``NAME=PATH`` names a file's family explicitly; otherwise the family is the file's
stem, or its parent directory's name when the stem is a split name (``boolq/train.json`` is
family ``boolq``). Two evaluation files may not share a family.

Scoring ("accuracy"): the first label of the record's kind that occurs as a whole word in the
generation (case-insensitive) must equal ``answer``; "untrue" does not contain the label "true".

Consistency: a record whose ``output`` names no label or another label than ``answer``, or whose
``answer`` is not among the options its instruction names, is contradictory. It is excluded and
reported (``CommonsenseFile.contradictory``), never trained or scored on.
"""
from __future__ import annotations

import os
import re
import zlib
from collections import Counter
from typing import NamedTuple

import numpy as np

from fslora_ref.safe_json import read_json_file
from fslora_ref.seeding import SERVER, stream
from fslora_ref.validation import check_int

from .data import alpaca

SCORING = "accuracy"
SCORING_RULE = ("accuracy: the first answer label (true/false, answer1..5, option1/2, solution1/2, ending1..4) "
                "found as a whole word in the generation equals the record's answer")

LABELS = {  # answer kind -> the labels a prediction may take
    "boolean": ("true", "false"),
    "answer": tuple(f"answer{i}" for i in range(1, 6)),
    "option": ("option1", "option2"),
    "solution": ("solution1", "solution2"),
    "ending": tuple(f"ending{i}" for i in range(1, 5)),
}
_PATTERNS = {kind: re.compile(r"\b(" + "|".join(labels) + r")\b") for kind, labels in LABELS.items()}

# file stems that name a split, not a data set: such a file takes its directory's name
MAX_DATA_BYTES = 1 << 30     # 1 GiB of JSON records (the LLM-Adapters files are < 100 MB)
MAX_DATA_DEPTH = 16          # a list of flat records
SPLIT_NAMES = {"train", "test", "dev", "val", "valid", "validation", "eval", "evaluation"}


class CommonsenseExample(NamedTuple):
    """One commonsense record as a training / evaluation example.

    Parameters
    ----------
    family : str
        Its family (data set).
    prompt : str
        The Alpaca-style prompt.
    target : str
        The training target (the record's ``output``).
    answer : str
        The gold label.
    kind : str
        The answer kind (a key of ``LABELS``).
    choices : int
        How many options the record offers.
    """

    family: str
    prompt: str
    target: str          # training target (the record's "output")
    answer: str          # the gold label
    kind: str
    choices: int

    def is_correct(self, generated: str) -> bool:
        """Whether the first label of ``kind`` in ``generated`` is the gold answer.

        Parameters
        ----------
        generated : str
            A generated continuation.

        Returns
        -------
        bool
        """
        return extract_answer(generated, self.kind) == self.answer


class CommonsenseFile(NamedTuple):
    """One parsed data file.

    Parameters
    ----------
    family : str
        Its family.
    path : str
        The file.
    examples : list of CommonsenseExample
        Its usable records (contradictory ones excluded).
    contradictory : list of dict
        ``{"record": j, "answer": ..., "problem": ...}`` per excluded record.
    """

    family: str
    path: str
    examples: list           # [CommonsenseExample], contradictory records excluded
    contradictory: list      # [{"record": j, "answer": ..., "problem": ...}]

    def describe(self) -> dict:
        """Path, family and record counts (all, used, contradictory).

        Returns
        -------
        dict
        """
        return {"path": self.path, "family": self.family, "records": len(self.examples) + len(self.contradictory),
                "used": len(self.examples), "contradictory": len(self.contradictory)}


def answer_kind(answer: str) -> str | None:
    """Which label family an answer word belongs to.

    Parameters
    ----------
    answer : str
        A gold answer, e.g. "true" or "option2".

    Returns
    -------
    str or None
        A key of ``LABELS``, or None if none.
    """
    a = answer.strip().lower()
    for kind, labels in LABELS.items():
        if a in labels:
            return kind
    return None


def extract_answer(text: str, kind: str) -> str | None:
    """The first label of ``kind`` that occurs as a whole word in ``text`` (case-insensitive).

    Parameters
    ----------
    text : str
    kind : str
        A key of ``LABELS``.

    Returns
    -------
    str or None
    """
    match = _PATTERNS[kind].search(text.lower())
    return match.group(1) if match else None


def named_labels(record: dict, kind: str) -> list:
    """The labels of ``kind`` that a record's instruction/input name (whole words), in label order.

    Parameters
    ----------
    record : dict
        A data record (``instruction``, ``input``, ``output``, ``answer``).
    kind : str
        The answer kind (a key of ``LABELS``).

    Returns
    -------
    list of str
    """
    text = (record.get("instruction", "") + " " + (record.get("input", "") or "")).lower()
    found = set(_PATTERNS[kind].findall(text))
    return [lab for lab in LABELS[kind] if lab in found]


def n_choices(record: dict, kind: str) -> int:
    """How many options a record offers: the labels named in its instruction/input, or the
    family's size when the text names fewer than two (true/false always 2).

    Parameters
    ----------
    record : dict
        A data record (``instruction``, ``input``, ``output``, ``answer``).
    kind : str
        The answer kind (a key of ``LABELS``).

    Returns
    -------
    int
    """
    if kind == "boolean":
        return 2
    named = named_labels(record, kind)
    return len(named) if len(named) >= 2 else len(LABELS[kind])


def family_of(path: str) -> str:
    """A file's default family name: its stem, or its directory's name if the stem is a split name.

    Parameters
    ----------
    path : str

    Returns
    -------
    str
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.lower() in SPLIT_NAMES:
        parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
        return parent or stem
    return stem


def parse_spec(spec: str) -> tuple:
    """The family and path of a ``PATH`` or ``NAME=PATH`` spec (an existing file named ``a=b.json``
    is a path).

    Parameters
    ----------
    spec : str

    Returns
    -------
    tuple of str
        ``(family, path)``.
    """
    name, sep, path = spec.partition("=")
    if sep and not os.path.exists(spec) and name and os.sep not in name and "/" not in name:
        if not path:
            raise ValueError(f"{spec!r}: NAME=PATH needs a path after '='")
        return name, path
    return family_of(spec), spec


def check_data_file(path: str, option: str) -> None:
    """One-line errors for a data path that is missing or is not a regular file.

    Parameters
    ----------
    path : str
    option : str
        The option named in the error.
    """
    if os.path.isdir(path):
        inside = sorted(f for f in os.listdir(path) if f.endswith(".json"))[:4]
        hint = f"; it holds {', '.join(inside)}" if inside else ""
        raise ValueError(f"{option}: {path} is a directory, not a JSON data file{hint}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{option}: data file {path!r} does not exist")
    if not os.path.isfile(path):
        raise ValueError(f"{option}: {path} is not a regular file")


def resolve_files(specs, option: str, unique_families: bool = False) -> list:
    """The files of ``specs``, checked: every file exists, no file twice.

    Parameters
    ----------
    specs : list of str
        ``PATH`` or ``NAME=PATH`` each.
    option : str
        The option named in an error (``--train-json`` / ``--eval-json``).
    unique_families : bool, default False
        Refuse two files of one family (they would be merged into one evaluation family and
        the per-family sample would mix them).

    Returns
    -------
    list of tuple of str
        ``[(family, path)]``.
    """
    out, by_family, seen = [], {}, set()
    for spec in specs:
        family, path = parse_spec(spec)
        check_data_file(path, option)
        real = os.path.realpath(path)
        if real in seen:
            raise ValueError(f"{option}: {path} is given twice")
        seen.add(real)
        if unique_families and family in by_family:
            raise ValueError(f"{option}: {by_family[family]} and {path} both give family {family!r}; "
                             f"name them explicitly, e.g. {option} {family}_a={by_family[family]} {family}_b={path}")
        by_family[family] = path
        out.append((family, path))
    return out


def read_file(path: str, family: str) -> CommonsenseFile:
    """Parse one data file; errors name the file and the record.

    Parameters
    ----------
    path : str
        A JSON list of records.
    family : str
        The family its examples belong to.

    Returns
    -------
    CommonsenseFile
    """
    # a regular file of bounded size and JSON nesting (a named pipe, a device or [[[[...]]]] is one line)
    records = read_json_file(path, "data file", max_bytes=MAX_DATA_BYTES, max_depth=MAX_DATA_DEPTH)
    if not isinstance(records, list) or not records:
        raise ValueError(f"data file {path} must hold a non-empty JSON list of records")
    examples, contradictory = [], []
    for j, rec in enumerate(records):
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("instruction", "output", "answer")):
            raise ValueError(f"data file {path}, record {j}: needs string fields 'instruction', 'output', 'answer'")
        if rec.get("input") is not None and not isinstance(rec["input"], str):
            raise ValueError(f"data file {path}, record {j}: field 'input' must be a string (or absent), "
                             f"got a {type(rec['input']).__name__}")
        answer = rec["answer"].strip().lower()
        kind = answer_kind(answer)
        if kind is None:
            raise ValueError(f"data file {path}, record {j}: answer {rec['answer']!r} is not one of true/false, "
                             f"answer1..5, option1/2, solution1/2, ending1..4")
        problem = contradiction(rec, answer, kind)
        if problem:
            contradictory.append({"record": j, "answer": answer, "problem": problem})
            continue
        examples.append(CommonsenseExample(family, alpaca(rec["instruction"], rec.get("input", "") or ""),
                                           rec["output"], answer, kind, n_choices(rec, kind)))
    if not examples:
        raise ValueError(f"data file {path}: all {len(records)} records are contradictory "
                         f"(first: record {contradictory[0]['record']}: {contradictory[0]['problem']})")
    return CommonsenseFile(family, path, examples, contradictory)


def contradiction(record: dict, answer: str, kind: str) -> str | None:
    """Why ``record`` contradicts itself: its output must name ``answer`` (first label of
    ``kind``, the scoring rule), and ``answer`` must be among the options the instruction names.

    Parameters
    ----------
    record : dict
        A data record.
    answer : str
        Its gold label.
    kind : str
        The answer kind (a key of ``LABELS``).

    Returns
    -------
    str or None
        The reason, or None if the record is consistent.
    """
    said = extract_answer(record["output"], kind)
    if said is None:
        return f"output {record['output'][:60]!r} names no {'/'.join(LABELS[kind][:2])}... label"
    if said != answer:
        return f"output says {said}, answer says {answer}"
    named = named_labels(record, kind)
    if kind != "boolean" and len(named) >= 2 and answer not in named:
        return f"answer {answer} is not among the options the instruction names ({', '.join(named)})"
    return None


def load_files(specs, option: str, unique_families: bool = False) -> list:
    """The parsed files of ``PATH`` / ``NAME=PATH`` specs (see :func:`resolve_files`).

    Parameters
    ----------
    specs : list of str
        ``PATH`` or ``NAME=PATH`` each.
    option : str
        The option named in an error (``--train-json`` / ``--eval-json``).
    unique_families : bool, default False
        Refuse two files of one family (they would be merged into one evaluation family and
        the per-family sample would mix them).

    Returns
    -------
    list of CommonsenseFile
    """
    return [read_file(path, family) for family, path in resolve_files(specs, option, unique_families)]


def pools(files) -> list:
    """One example pool per family, in order of first appearance (files of one family merged).

    Parameters
    ----------
    files : list of CommonsenseFile

    Returns
    -------
    list of list of CommonsenseExample
    """
    merged = {}
    for f in files:
        merged.setdefault(f.family, []).extend(f.examples)
    return list(merged.values())


def held_out_sample(files, per_family: int, seed: int) -> list:
    """Evaluation examples: per family, a uniform random sample of ``per_family`` records without
    replacement (all of them if fewer), kept in file order. The generator is the server's
    ``eval`` stream keyed by the family's name, so a family's sample depends only on (seed,
    family, its records), not on which other files are evaluated.

    Parameters
    ----------
    files : list of CommonsenseFile
    per_family : int
        Records per family.
    seed : int
        The run's seed.

    Returns
    -------
    list of CommonsenseExample
    """
    per_family = check_int("eval_per_family", per_family, low=1)
    out = []
    for exs in pools(files):
        rng = stream(seed, round=-1, client=SERVER, layer=zlib.crc32(exs[0].family.encode()), purpose="eval")
        rows = np.sort(rng.choice(len(exs), size=min(per_family, len(exs)), replace=False))
        out += [exs[int(j)] for j in rows]
    return out


def reference_rates(examples) -> dict:
    """Majority-class and chance accuracy of commonsense examples, per family: what a model
    that only learned the answer format can score.

    Parameters
    ----------
    examples : list of CommonsenseExample

    Returns
    -------
    dict
        ``{family: {"majority": rate, "chance": rate}}``.
    """
    out = {}
    for fam in sorted({e.family for e in examples}):
        exs = [e for e in examples if e.family == fam]
        majority = Counter(e.answer for e in exs).most_common(1)[0][1] / len(exs)
        out[fam] = {"majority": majority, "chance": float(np.mean([1.0 / e.choices for e in exs]))}
    return out


def run_info(train, evals, held) -> dict:
    """What a run records about its commonsense data: scoring rule, baselines of the held-out
    sample, each file's family and record counts, and the first contradictory records per file.

    Parameters
    ----------
    train : list of CommonsenseFile
        The training files.
    evals : list of CommonsenseFile
        The held-out files.
    held : list of CommonsenseExample
        The held-out sample.

    Returns
    -------
    dict
    """
    return {"scoring": SCORING, "scoring_rule": SCORING_RULE, "reference_rates": reference_rates(held),
            "files": {"train": [f.describe() for f in train], "eval": [f.describe() for f in evals]},
            "contradictory": {f.path: f.contradictory[:20] for f in list(train) + list(evals) if f.contradictory}}


def contradiction_warnings(files) -> list:
    """One line per file with contradictory records (count and the first one).

    Parameters
    ----------
    files : list of CommonsenseFile

    Returns
    -------
    list of str
    """
    return [f"warning: {f.path}: {len(f.contradictory)} contradictory record(s) excluded "
            f"(record {f.contradictory[0]['record']}: {f.contradictory[0]['problem']})"
            for f in files if f.contradictory]
