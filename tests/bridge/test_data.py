"""Synthetic families and the Dirichlet partition (commonsense JSON: test_commonsense.py)."""
import numpy as np

from llm_bridge import data


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
