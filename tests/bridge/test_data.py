"""Synthetic families, Dirichlet partition, and the commonsense JSON loader."""
import json

import numpy as np
import pytest

from llm_bridge import data
from llm_bridge.finetune import finetune

from helpers import finetune_args


def test_partition_is_seeded_and_non_iid():
    a = data.dirichlet_partition(6, list(data.FAMILIES), 40, 0.1, seed=2)
    assert a == data.dirichlet_partition(6, list(data.FAMILIES), 40, 0.1, seed=2)
    assert a != data.dirichlet_partition(6, list(data.FAMILIES), 40, 0.1, seed=3)
    assert all(len(c) == 40 for c in a)
    # small alpha: most clients are dominated by one family
    top = [max(np.mean([e.family == f for e in c]) for f in data.FAMILIES) for c in a]
    assert np.median(top) > 0.7
    iid = data.dirichlet_partition(6, list(data.FAMILIES), 40, 100.0, seed=2)
    assert np.median([max(np.mean([e.family == f for e in c]) for f in data.FAMILIES) for c in iid]) < 0.5


def test_families_are_correct_and_not_constant():
    held = data.held_out_set(list(data.FAMILIES), 50, seed=0)
    for e in held:
        text = e.prompt.split("### Input:\n")[1].split("\n")[0]
        if e.family == "addition":
            a, b = text.split(" + ")
            assert e.answer == str(int(a) + int(b))
        elif e.family == "sort3":
            assert e.answer == ", ".join(map(str, sorted(int(x) for x in text.split(", "))))
        elif e.family == "uppercase":
            assert e.answer == text.upper()
    assert max(data.constant_answer_rate(held).values()) <= 0.15
    train_words = {e.answer for c in data.dirichlet_partition(3, ["uppercase"], 60, 1.0, 0) for e in c}
    assert not train_words & {e.answer for e in held if e.family == "uppercase"}


def test_exact_match_scoring():
    e = data.Example("addition", "p", "42")
    assert e.is_correct(" 42\n### extra") and not e.is_correct("The answer is 42") and not e.is_correct("421")


def test_answer_extraction():
    assert data.extract_answer("the correct answer is Answer3.", "answer") == "answer3"
    assert data.extract_answer("the correct answer is true", "boolean") == "true"
    assert data.extract_answer("ending2 is right", "ending") == "ending2"
    assert data.extract_answer("no label here", "option") is None
    assert data.answer_kind("Solution2") == "solution" and data.answer_kind("maybe") is None


def write(path, records):
    path.write_text(json.dumps(records))
    return str(path)


def boolq(n, rng):
    recs = []
    for _ in range(n):
        ans = "true" if rng.random() < 0.7 else "false"
        recs.append({"instruction": "Is the sky blue?\n\nAnswer format: true/false", "input": "",
                     "output": f"the correct answer is {ans}", "answer": ans})
    return recs


def test_commonsense_loader_rates(tmp_path):
    rng = np.random.default_rng(0)
    arc = [{"instruction": "Pick one. Answer1: a Answer2: b Answer3: c Answer4: d", "input": "",
            "output": "the correct answer is answer2", "answer": "answer2" if i % 4 else "answer1"} for i in range(20)]
    exs = data.load_commonsense(write(tmp_path / "arc.json", arc)) + data.load_commonsense(write(tmp_path / "boolq.json", boolq(40, rng)))
    rates = data.reference_rates(exs)
    assert rates["arc"] == {"majority": 0.75, "chance": 0.25}
    assert rates["boolq"]["chance"] == 0.5 and rates["boolq"]["majority"] >= 0.5
    assert exs[1].is_correct("The correct answer is answer2") and not exs[1].is_correct("answer3")
    with pytest.raises(ValueError, match="record 1"):
        data.load_commonsense(write(tmp_path / "x.json", [arc[0], {"instruction": "q", "output": "o"}]))
    with pytest.raises(FileNotFoundError, match="nope.json"):
        data.load_commonsense(str(tmp_path / "nope.json"))


def test_finetune_on_commonsense_reports_majority_and_chance(tmp_path):
    rng = np.random.default_rng(1)
    train = write(tmp_path / "boolq_train.json", boolq(30, rng))
    test = write(tmp_path / "boolq.json", boolq(12, rng))
    hist = finetune(finetune_args("--out", str(tmp_path / "o"), "--train-json", train, "--eval-json", test,
                                  "--rounds", "1", "--eval-per-family", "12", "--no-verify-adapter"))
    gold = [r["answer"] for r in json.load(open(test))]
    majority = max(gold.count("true"), gold.count("false")) / len(gold)
    assert hist["data"]["reference_rates"]["boolq"] == {"majority": majority, "chance": 0.5}
    assert sum(sum(c.values()) for c in hist["data"]["client_family_counts"]) == 30
