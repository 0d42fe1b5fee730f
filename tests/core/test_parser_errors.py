"""Every `fslora` parser's own errors are one line, ``fslora <command>: error: ...``, exit 2 (no
usage block), and an integer option written as a float (``--rounds 1e29``) reaches the command's
check, which names the option's allowed range."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from fslora_cli.main import COMMANDS, main
from fslora_cli.parser import MAX_DIGITS, CommandParser, integer

from .clitools import one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_error(capsys, argv) -> str:
    """``fslora argv`` must stop in its parser: SystemExit(2) and one stderr line naming the command."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "usage:" not in err, err
    return err.strip()


def test_integer_takes_exact_float_forms_only():
    assert integer("12") == 12 and integer("-3") == -3 and integer("1_000") == 1000
    assert integer("1e3") == 1000 and integer("2.0") == 2 and integer(" 7 ") == 7
    assert integer("1e29") == 10**29          # exact, not the nearest double (99999999999999991611392)
    for text in ("1.5", "1e-3", "nan", "inf", "-inf", "abc", "", "0x10"):
        with pytest.raises(ValueError):
            integer(text)
    with pytest.raises(argparse.ArgumentTypeError, match=f"no option takes more than {MAX_DIGITS}"):
        integer("1e400000000")                # refused unexpanded (a 400-million-digit int would hang)


@pytest.mark.parametrize("argv,words", [
    (["simulate", "--rounds", "1e29"], "--rounds must be an integer in [0, 1000000], got 1" + "0" * 29),
    (["simulate", "-T", "1e29"], "--rounds must be an integer in [0, 1000000]"),
    (["simulate", "--local-steps", "1e9"], "--local-steps must be an integer in [1, 100000], got 1000000000"),
    (["finetune", "--rank", "1e9"], "--rank must be an integer in [1, 1024], got 1000000000"),
    (["finetune", "--clients", "1e9"], "--clients must be an integer in [1, 10000]"),
    (["claims", "--quick", "--seeds", "1e5"], "--seeds must be an integer in [2, 1000]"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_float_form_integers_get_the_options_range(argv, words, capsys, tmp_path):
    out = tmp_path / "o"
    err = one_line_error(capsys, argv + ["--out", str(out)])
    assert words in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv,words", [
    (["simulate", "--rounds", "1.5"],
     "fslora simulate: error: argument --rounds/-T: must be an integer in [0, 1000000], got '1.5'"),
    (["simulate", "--rounds", "1e400"], "fslora simulate: error: argument --rounds/-T: must be an integer in [0, 1000000], "
                                        "got '1e400' ('1e400' is an integer of 401 digits"),
    (["simulate", "--family", "nope"], "fslora simulate: error: argument --family: invalid choice: 'nope'"),
    (["finetune", "--rank", "abc"], "fslora finetune: error: argument --rank: must be an integer in [1, 1024], got 'abc'"),
    (["flower", "simulate", "--rounds", "1e3.5"],
     "fslora flower simulate: error: argument --rounds/-T: must be an integer in [0, 1000000]"),
    (["flower"], "fslora flower: error: the following arguments are required: JOB"),
    ([], "fslora: error: the following arguments are required: COMMAND"),
    (["nonsense"], "fslora: error: argument COMMAND: invalid choice: 'nonsense'"),
    (["crosscheck", "--seed", "x"], "fslora crosscheck: error: argument --seed: must be an integer in [0, 2147483647], "
                                    "got 'x'"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_parser_errors_are_one_line(argv, words, capsys):
    err = parse_error(capsys, argv)
    assert err.startswith(words), err


@pytest.mark.parametrize("argv", [[name, "--no-such-option"] for name in COMMANDS if name != "flower"]
                         + [["flower", job, "--no-such-option"] for job in ("simulate", "finetune", "bench")],
                         ids=" ".join)
def test_every_command_parser_is_one_line(argv, capsys):
    err = parse_error(capsys, argv)
    assert err == f"fslora {' '.join(argv[:-1])}: error: unrecognized arguments: --no-such-option", err


def test_the_console_command_prints_one_line(tmp_path):
    """The whole process, as a user runs it: exit 2 and a single stderr line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "flower_app")]))
    done = subprocess.run([sys.executable, "-m", "fslora_cli.main", "simulate", "--rounds", "2.5",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("fslora simulate: error: argument --rounds/-T: must be an integer in [0, 1000000], "
                                  "got '2.5'")


def test_subparsers_share_the_class():
    parser = CommandParser(prog="x")
    sub = parser.add_subparsers(dest="c")
    assert isinstance(sub.add_parser("y"), CommandParser)
