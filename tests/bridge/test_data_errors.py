"""Commonsense data files are data: nesting that would exhaust the parser, a named pipe, or a
record whose ``input`` is not a string is one line naming the file (and the record)."""
import json
import os

import pytest

from llm_bridge.commonsense import read_file
from tests.core.clitools import one_line_error

GOOD = {"instruction": "Is the sky blue? Answer true or false.", "input": "", "output": "true", "answer": "true"}


def test_input_that_is_not_a_string_names_file_and_record(tmp_path):
    path = tmp_path / "boolq.json"
    path.write_text(json.dumps([GOOD, dict(GOOD, input=7)]))
    with pytest.raises(ValueError, match=f"data file {path}, record 1: field 'input' must be a string .*got a int"):
        read_file(str(path), "boolq")
    path.write_text(json.dumps([GOOD, dict(GOOD, input=None)]))   # absent / null input is fine
    assert len(read_file(str(path), "boolq").examples) == 2


def test_nested_json_and_pipes_are_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    good = tmp_path / "eval.json"
    good.write_text(json.dumps([GOOD]))
    err = one_line_error(capsys, ["finetune", "--model", "tiny", "--out", str(tmp_path / "o"), "--train-json", str(deep),
                                  "--eval-json", str(good), "--rounds", "1", "--clients", "1", "--ratios", "1"])
    assert str(deep) in err and "levels deep" in err, err
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="named pipe"):
        read_file(str(fifo), "fifo")
