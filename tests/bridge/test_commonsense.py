"""The commonsense JSON loader on files in the real data sets' layout and record format.

tests/bridge/data/commonsense/ holds LLM-Adapters style files (``boolq/train.json``,
``ARC-Easy/test.json``, ``openbookqa/...``, ``piqa``, ``winogrande``, ``hellaswag``, ``social_i_qa``)
covering every label vocabulary: true/false, answer1..5, option1/2, solution1/2, ending1..4.
"""
import glob
import json
import os
import re
import shutil
from collections import Counter

import numpy as np
import pytest

from fslora_cli.main import main
from llm_bridge import commonsense as cs
from llm_bridge.summary import summary
from fslora_cli.finetune import finetune
from llm_bridge.plots import history_figure

from helpers import finetune_args

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "commonsense")
KIND = {"boolq": "boolean", "ARC-Easy": "answer", "openbookqa": "answer", "social_i_qa": "answer",
        "piqa": "solution", "winogrande": "option", "hellaswag": "ending"}


def fx(*parts):
    return os.path.join(FIXTURES, *parts)


def write(path, records):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(records, fh)
    return str(path)


def boolq_records(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ans = "true" if rng.random() < 0.6 else "false"
        out.append({"instruction": f"Please answer the following question with true or false, question: is {i} even?"
                                   "\n\nAnswer format: true/false",
                    "input": "", "output": f"the correct answer is {ans}", "answer": ans})
    return out


def test_every_fixture_record_parses_and_the_baselines_are_right():
    paths = sorted(glob.glob(fx("*", "*.json")))
    assert {os.path.basename(os.path.dirname(p)) for p in paths} == set(KIND)
    named = set()
    for path in paths:
        (family, _), = cs.resolve_files([path], "--eval-json")
        assert family == os.path.basename(os.path.dirname(path))        # not "train" / "test"
        f = cs.read_file(path, family)
        raw = json.load(open(path))
        assert len(f.examples) == len(raw) and not f.contradictory
        assert {e.kind for e in f.examples} == {KIND[family]}
        assert [e.answer for e in f.examples] == [r["answer"] for r in raw]
        assert all(e.target == r["output"] and r["instruction"] in e.prompt for e, r in zip(f.examples, raw))
        # counted independently of the loader: options are the "Answer1:"-style headers
        gold = [r["answer"] for r in raw]
        options = [2 if KIND[family] == "boolean" else len(re.findall(r"\b(?:Answer|Option|Solution|Ending)\d:",
                                                                     r["instruction"])) for r in raw]
        rates = cs.reference_rates(f.examples)[family]
        assert rates["majority"] == max(Counter(gold).values()) / len(gold)
        assert rates["chance"] == pytest.approx(float(np.mean([1 / c for c in options])), rel=1e-12)
        named |= {lab for r in raw for lab in cs.named_labels(r, KIND[family])} | set(gold)
    assert named == {lab for labels in cs.LABELS.values() for lab in labels}   # every vocabulary covered


def test_family_comes_from_the_directory_of_split_files_or_from_NAME():
    specs = [fx("boolq", "train.json"), fx("ARC-Easy", "train.json"), "obqa=" + fx("openbookqa", "train.json")]
    assert [family for family, _ in cs.resolve_files(specs, "--train-json")] == ["boolq", "ARC-Easy", "obqa"]
    assert cs.family_of(os.path.join("data", "arc_easy.json")) == "arc_easy"
    with pytest.raises(ValueError, match="needs a path"):
        cs.parse_spec("boolq=")


def test_two_eval_files_of_one_family_are_refused(tmp_path):
    other = tmp_path / "mirror" / "boolq" / "test.json"
    other.parent.mkdir(parents=True)
    shutil.copy(fx("boolq", "test.json"), other)
    with pytest.raises(ValueError, match="both give family 'boolq'"):
        cs.resolve_files([fx("boolq", "test.json"), str(other)], "--eval-json", unique_families=True)
    named = cs.resolve_files(["a=" + fx("boolq", "test.json"), f"b={other}"], "--eval-json", unique_families=True)
    assert [f for f, _ in named] == ["a", "b"]
    with pytest.raises(ValueError, match="given twice"):
        cs.resolve_files([fx("boolq", "train.json"), fx("boolq", "train.json")], "--train-json")


def test_held_out_sample_is_a_seeded_random_sample_per_family(tmp_path):
    big = write(tmp_path / "big" / "test.json", boolq_records(60))
    files = cs.load_files([big], "--eval-json", unique_families=True)
    pool = files[0].examples
    sample = cs.held_out_sample(files, 10, seed=0)
    assert sample == cs.held_out_sample(files, 10, seed=0)
    assert sample != cs.held_out_sample(files, 10, seed=1)
    assert len(set(sample)) == 10 and sample != pool[:10]                 # not the head of the file
    rows = [pool.index(e) for e in sample]
    assert rows == sorted(rows)                                            # kept in file order
    # another evaluation file does not change this family's sample
    both = cs.load_files([big, fx("ARC-Easy", "test.json")], "--eval-json", unique_families=True)
    mixed = cs.held_out_sample(both, 10, seed=0)
    assert [e for e in mixed if e.family == "big"] == sample
    assert sum(e.family == "ARC-Easy" for e in mixed) == 10
    assert len(cs.held_out_sample(files, 500, seed=0)) == 60                # all records when fewer
    # uniform: each record's inclusion count over 300 seeds is Binomial(300, 1/6) (mean 50, sd 6.5);
    # 5 sd either side has a family-wise false-alarm rate below 1e-4 over the 60 records
    counts = Counter(pool.index(e) for seed in range(300) for e in cs.held_out_sample(files, 10, seed))
    assert all(50 - 5 * 6.45 < counts[j] < 50 + 5 * 6.45 for j in range(60)), counts


def test_answer_extraction_uses_whole_words():
    assert cs.extract_answer("the statement is untrue", "boolean") is None
    assert cs.extract_answer("untrue, so the correct answer is false", "boolean") == "false"
    assert cs.extract_answer("answer12 or rather answer2", "answer") == "answer2"
    assert cs.extract_answer("the correct answer is Answer3.", "answer") == "answer3"
    assert cs.extract_answer("ending2 is right", "ending") == "ending2"
    assert cs.extract_answer("no label here", "option") is None
    assert cs.answer_kind("Solution2") == "solution" and cs.answer_kind("maybe") is None
    gold_true = cs.read_file(fx("boolq", "test.json"), "boolq").examples[0]
    assert gold_true.answer == "true"
    assert not gold_true.is_correct("untrue") and gold_true.is_correct("The correct answer is true.")


def test_contradictory_records_are_reported_and_excluded(tmp_path):
    recs = json.load(open(fx("ARC-Easy", "test.json")))
    recs[1]["output"] = "the correct answer is answer4"                     # answer says answer2
    recs[3]["output"] = "Earth spins"                                       # names no label
    recs[6]["answer"] = recs[6]["output"] = "answer5"                       # only 4 options named
    f = cs.read_file(write(tmp_path / "arc" / "test.json", recs), "arc")
    assert [c["record"] for c in f.contradictory] == [1, 3, 6]
    assert "output says answer4, answer says answer2" in f.contradictory[0]["problem"]
    assert "names no" in f.contradictory[1]["problem"] and "not among the options" in f.contradictory[2]["problem"]
    assert len(f.examples) == len(recs) - 3
    assert cs.contradiction_warnings([f]) == [f"warning: {f.path}: 3 contradictory record(s) excluded "
                                              f"(record 1: {f.contradictory[0]['problem']})"]
    with pytest.raises(ValueError, match="all 1 records are contradictory"):
        cs.read_file(write(tmp_path / "bad.json", recs[1:2]), "bad")


def test_a_directory_given_as_a_data_file_is_named_as_such(tmp_path, capsys):
    with pytest.raises(ValueError, match="is a directory.*train.json"):
        cs.check_data_file(fx("boolq"), "--train-json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cs.check_data_file(fx("boolq", "dev.json"), "--eval-json")
    argv = ["finetune", "--model", "tiny", "--out", str(tmp_path / "o"), "--train-json", fx("boolq"),
            "--eval-json", fx("boolq", "test.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--train-json" in err and "is a directory" in err and "does not exist" not in err


def test_curves_show_majority_and_chance_lines_for_commonsense_runs():
    import matplotlib.pyplot as plt
    history = {"algorithm": "fslora", "model": "tiny", "config": {"budgets": [1, 2], "rank": 4}, "rounds": [],
               "eval": [{"round": r, "accuracy": {"boolq": a, "arc": b}, "mean": (a + b) / 2}
                        for r, a, b in ((0, 0.1, 0.0), (1, 0.5, 0.3))],
               "data": {"scoring": "accuracy", "reference_rates": {"boolq": {"majority": 0.6, "chance": 0.5},
                                                                   "arc": {"majority": 0.4, "chance": 0.25}}}}
    fig = history_figure(history)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    for fam, rates in history["data"]["reference_rates"].items():
        for what in ("majority", "chance"):
            assert set(lines[f"_{fam} {what}"].get_ydata()) == {100 * rates[what]}
        assert lines[f"_{fam} majority"].get_color() == lines[fam].get_color()
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["boolq", "arc", "mean", "majority class", "chance"]
    assert "accuracy" in fig.axes[0].get_ylabel()
    plt.close(fig)
    del history["data"]["reference_rates"]                                  # a synthetic run: no such lines
    fig = history_figure(history)
    assert not [ln for ln in fig.axes[0].get_lines() if "majority" in ln.get_label() or "chance" in ln.get_label()]
    plt.close(fig)


def test_finetune_on_the_real_layout(tmp_path, capsys):
    """boolq/ and ARC-Easy/ train+test files: both families are evaluated, on a seeded sample whose
    baselines are reported, scored as accuracy; a contradictory eval record is reported."""
    recs = json.load(open(fx("boolq", "test.json")))
    recs.append(dict(recs[0], output="the correct answer is false"))       # answer says true
    boolq_test = write(tmp_path / "data" / "boolq" / "test.json", recs)
    hist = finetune(finetune_args("--out", str(tmp_path / "o"), "--rounds", "1", "--eval-per-family", "6",
                                  "--no-verify-adapter",
                                  "--train-json", fx("boolq", "train.json"), fx("ARC-Easy", "train.json"),
                                  "--eval-json", boolq_test, fx("ARC-Easy", "test.json")))
    assert hist["eval"][0]["n"] == {"boolq": 6, "ARC-Easy": 6}
    assert {f for c in hist["data"]["client_family_counts"] for f in c} == {"boolq", "ARC-Easy"}
    # the baselines are those of exactly the evaluated sample, counted here from its answers
    evals = cs.load_files([boolq_test, fx("ARC-Easy", "test.json")], "--eval-json", unique_families=True)
    held = cs.held_out_sample(evals, 6, seed=0)
    for fam in ("boolq", "ARC-Easy"):
        answers = [e.answer for e in held if e.family == fam]
        assert len(answers) == 6
        assert hist["data"]["reference_rates"][fam]["majority"] == max(Counter(answers).values()) / 6
    assert hist["data"]["files"]["eval"][0] == {"path": boolq_test, "family": "boolq", "records": len(recs),
                                                "used": len(recs) - 1, "contradictory": 1}
    assert hist["data"]["contradictory"][boolq_test][0]["record"] == len(recs) - 1
    assert "warning:" in capsys.readouterr().err
    text = summary(hist)
    assert "(accuracy, 12 held-out prompts" in text and "exact match" not in text
    assert f"contradictory records excluded: 1 in {boolq_test}" in text
