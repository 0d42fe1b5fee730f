"""One CLI vocabulary (issue 24): every option of every command has help text and shows its default,
every integer option names its range when given a non-integer, ``fslora --version``, the deprecated
spellings still work (with a warning) and reach the same field, the options commands share are
defined once in docs/guides/cli.md, and tables wrap cells at words instead of cutting them."""
from __future__ import annotations

import argparse
import collections
import doctest
import json
import os
import random
import re
import tomllib
from types import SimpleNamespace

import pytest

from fslora_cli.main import COMMANDS, build_parser, main
from fslora_cli.parser import CommandParser, DeprecatedAlias, IntegerIn, _shown
from fslora_ref import text_table
from fslora_ref.text_table import format_table

from .clitools import one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HIDDEN = {"--stop-after"}   # finetune's test hook: deliberately left out of --help
NOT_OPTIONS = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def _walk(parser, path):
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + [name])


def command_parsers() -> list:
    """(command path, parser) of every command and subcommand (``flower simulate`` ...)."""
    found = []
    for name in COMMANDS:
        root = build_parser(name)
        sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
        found += list(_walk(sub.choices[name], [name]))
    return found


def arguments(parser) -> list:
    return [a for a in parser._actions if not isinstance(a, NOT_OPTIONS)]


def help_problems(path: str, parser) -> list:
    """What ``--help`` fails to say: an argument without help text, a default not shown."""
    problems = []
    formatter = parser._get_formatter()
    for action in arguments(parser):
        name = action.option_strings[0] if action.option_strings else action.dest
        if action.help == argparse.SUPPRESS:
            if name not in HIDDEN:
                problems.append(f"{path} {name}: hidden from --help")
            continue
        if not (action.help or "").strip():
            problems.append(f"{path} {name}: no help text")
            continue
        shown = " ".join(formatter._expand_help(action).split())    # as --help prints it, unwrapped
        default = action.default
        forms = {_shown(default)} | ({f"{default:g}"} if isinstance(default, float) else set())
        if (action.option_strings and action.nargs != 0 and default not in (None, argparse.SUPPRESS)
                and not any(form in shown for form in forms)):
            problems.append(f"{path} {name}: default {action.default!r} not shown")
    return problems


def test_every_option_of_every_command_has_help_and_shows_its_default():
    parsers = command_parsers()
    assert {p.split()[0] for p, _ in parsers} == set(COMMANDS)
    assert {"flower simulate", "flower finetune", "flower bench", "flower partition", "flower fab"} <= dict(parsers).keys()
    problems = [problem for path, parser in parsers for problem in help_problems(path, parser)]
    assert problems == []
    assert sum(len(arguments(p)) for _, p in parsers) > 200     # the walk saw the options (not a vacuous pass)


def test_the_help_check_catches_a_missing_help_text_and_a_hidden_default():
    """The check above on a parser with argparse's own formatter (no defaults) and an option without help."""
    bare = CommandParser(prog="x", formatter_class=argparse.HelpFormatter)
    bare.add_argument("--rounds", type=int, default=100, help="rounds T")
    bare.add_argument("--seed", type=int, default=0)
    bare.add_argument("--ratios", default=(0.5, 0.25), help="ratios")
    assert help_problems("x", bare) == ["x --rounds: default 100 not shown", "x --seed: no help text",
                                        "x --ratios: default (0.5, 0.25) not shown"]
    ours = CommandParser(prog="x")   # the formatter every fslora parser has
    ours.add_argument("--rounds", type=int, default=100, help="rounds T")
    ours.add_argument("--ratios", default=(0.5, 0.25), help="ratios")
    assert help_problems("x", ours) == []
    assert "rounds T (default: 100)" in ours.format_help() and "ratios (default: 0.5,0.25)" in ours.format_help()


@pytest.mark.parametrize("command,shown", [
    (["simulate"], ["number of clients N (default: 20)", "rounds T (default: 100)", "(default: 48)"]),
    (["bench"], ["global rank r (default: the paper's 64)", "(default 512)"]),
    (["finetune"], ["(default: 32.0)", "(default: q_proj,k_proj,v_proj,o_proj)"]),
    (["claims"], ["(default: 0.05)"]),
    (["crosscheck"], ["(default 0.001)"]),
], ids=lambda v: " ".join(v) if isinstance(v[0], str) and v[0] in COMMANDS else None)
def test_help_prints_the_defaults(command, shown, capsys):
    with pytest.raises(SystemExit) as exc:
        main(command + ["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in shown:
        assert words in text, words


def test_version_is_the_projects(capsys):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        version = tomllib.load(fh)["project"]["version"]
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"fslora {version}\n"
    with pytest.raises(SystemExit) as exc:          # the parser's own --version (shown in fslora --help)
        build_parser().parse_args(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"fslora {version}\n"


def integer_options() -> list:
    return [(path, a) for path, parser in command_parsers() for a in arguments(parser)
            if a.option_strings and (a.type is int or isinstance(a.type, IntegerIn))]


def test_every_integer_option_names_its_range_for_a_non_integer(capsys):
    """Issue 23's leftover: ``simulate --rounds 1.5`` said "invalid int value" without the range."""
    options = integer_options()
    assert len(options) > 60
    for path, action in options:
        name = action.option_strings[0]
        assert isinstance(action.type, IntegerIn), f"{path} {name}: a bare type=int names no range"
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(path.split() + [name, "1.5"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1, err     # one line (a bad value is refused before any warning)
        assert err[-1].startswith(f"fslora {path}: error: argument {name}"), err
        assert err[-1].endswith(f"must be an integer {action.type.range_text}, got '1.5'"), err


def _numeric_ranges(command: str) -> list:
    return [(a.option_strings[0], a.type.low, a.type.high) for path, a in integer_options()
            if path == command and not isinstance(a, DeprecatedAlias) and a.option_strings[0] not in HIDDEN
            and isinstance(a.type.low, int) and isinstance(a.type.high, int)]


@pytest.mark.parametrize("command,extra", [
    ("simulate", ["--out"]), ("finetune", ["--out"]), ("claims", ["--quick", "--out"]),
    ("bench", None),
])
def test_the_range_the_parser_names_is_the_one_the_command_checks(command, extra, capsys, tmp_path):
    """Just outside each stated [low, high], the command's own check refuses the value naming the same
    range, before any work (the parser only names the range; the library enforces it)."""
    ranges = _numeric_ranges(command)
    if command == "bench":     # the --bridge side's options need --bridge (a model); the NumPy side's here
        ranges = [r for r in ranges if r[0] in ("--clients", "--m", "--n", "--local-steps", "--repeats")]
    if command == "claims":    # the LLM side's options apply with --llm only
        ranges = [r for r in ranges if r[0] in ("--seeds", "--rounds")]
    assert len(ranges) >= (2 if command == "claims" else 5), ranges
    out = tmp_path / "o"
    for name, low, high in ranges:
        for value in (low - 1, high + 1):
            argv = [command, name, str(value)] + ((extra + [str(out)]) if extra else [])
            err = one_line_error(capsys, argv)
            assert f"{name} must be an integer in [{low}, {high}]" in err, err
    assert not out.exists()


def _parse(argv):
    return build_parser(argv[0]).parse_args(argv)


def test_false_alarm_rate_and_its_deprecated_spelling(capsys, monkeypatch):
    assert "--false-alarm-rate must be in (0, 0.5)" in one_line_error(capsys, ["claims", "--false-alarm-rate", "0.7"])
    for command in ("claims", "crosscheck"):
        assert _parse([command, "--false-alarm-rate", "0.01"]).false_alarm_rate == 0.01
        assert capsys.readouterr().err == ""
        assert _parse([command, "--alpha", "0.02"]).false_alarm_rate == 0.02
        assert capsys.readouterr().err == (f"fslora {command}: warning: --alpha is deprecated and will be removed in "
                                           "the next release; use --false-alarm-rate\n")
        with pytest.raises(SystemExit):
            _parse([command, "--false-alarm-rate", "0.01", "--alpha", "0.02"])
        assert "not allowed with argument" in capsys.readouterr().err
    # the value reaches the jobs
    import theory.empirical.job
    import fslora_cli.crosscheck
    seen = {}

    def claims_run(job, out, **kw):
        seen["claims"] = job.alpha
        return 0

    def crosscheck_run(target, **kw):
        seen["cross"] = kw["alpha"]
        return 0
    monkeypatch.setattr(theory.empirical.job, "run_claims", claims_run)
    monkeypatch.setattr(fslora_cli.crosscheck.library, "crosscheck", crosscheck_run)
    assert main(["claims", "--quick", "--alpha", "0.03"]) == 0
    assert main(["crosscheck", "x:y", "--alpha", "0.004"]) == 0
    assert seen == {"claims": 0.03, "cross": 0.004}


def test_lora_alpha_and_its_deprecated_spelling(capsys, tmp_path):
    from fslora_cli.finetune import job_from_args
    assert job_from_args(_parse(["finetune", "--model", "tiny", "--lora-alpha", "8"])).alpha == 8.0
    assert capsys.readouterr().err == ""
    assert job_from_args(_parse(["finetune", "--model", "tiny", "--alpha", "4"])).alpha == 4.0
    err = capsys.readouterr().err
    assert "--alpha is deprecated" in err and "use --lora-alpha" in err
    for key in ("lora_alpha", "lora-alpha", "alpha"):    # a --config file may use the option's or the field's name
        config = tmp_path / f"{key}.json"
        config.write_text(json.dumps({"model": "tiny", key: 2}))
        assert job_from_args(_parse(["finetune", "--config", str(config)])).alpha == 2.0
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"model": "tiny", "lora_alpha": 2, "alpha": 3}))
    with pytest.raises(ValueError, match="'lora_alpha' and 'alpha' name the same field"):
        job_from_args(_parse(["finetune", "--config", str(both)]))
    assert "--lora-alpha must be" in one_line_error(capsys, ["finetune", "--lora-alpha", "0", "--out", str(tmp_path / "o")])


def test_bench_m_n_and_the_deprecated_dim(capsys, monkeypatch):
    import fslora_ref.bench
    calls = []
    monkeypatch.setattr(fslora_ref.bench, "run_bench", lambda **kw: calls.append(kw))
    assert main(["bench", "--m", "24", "--n", "16"]) == 0
    assert main(["bench"]) == 0
    assert main(["bench", "--dim", "32"]) == 0
    assert "--dim is deprecated" in capsys.readouterr().err
    assert [(c["m"], c["n"]) for c in calls] == [(24, 16), (512, 512), (32, 32)]


def test_every_deprecated_spelling_is_in_the_docs():
    found = set()
    for path, parser in command_parsers():
        for action in arguments(parser):
            if isinstance(action, DeprecatedAlias):
                found.add((action.option_strings[0], path.split()[0], action.replacement))
    documented = set()
    for old, commands, new in _doc_table("Deprecated spellings"):
        for command in commands.split(", "):
            documented.add((old.strip("`"), command, " and ".join(re.findall(r"`([^`]+)`", new))))
    found = {(old, command, new) for old, command, new in found if command != "flower"}  # flower's: its jobs'
    assert found == documented


def _doc_table(section: str) -> list:
    with open(os.path.join(ROOT, "docs", "guides", "cli.md"), encoding="utf-8") as fh:
        text = fh.read()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("| `")]
    return [tuple(cell.strip() for cell in row.strip("|").split("|")) for row in rows]


def _command_label(path: str) -> str:
    """flower simulate / finetune / partition / finetune-partition take their job's parser: only their own options count as flower's."""
    return path if path.startswith("flower ") and path.split()[1] in ("bench", "fab") else path.split()[0]


def test_the_shared_options_are_defined_once_in_the_cli_guide():
    own = {path: {o for a in arguments(p) if not isinstance(a, DeprecatedAlias) for o in a.option_strings
                  if o.startswith("--")} for path, p in command_parsers()}
    users = collections.defaultdict(set)
    for path, options in own.items():
        if path.split()[0] == "flower" and path.split()[1:] and path.split()[1] in ("simulate", "finetune", "partition",
                                                                                 "finetune-partition"):
            job = "finetune" if path.split()[1].startswith("finetune") else "simulate"
            options = options - own[job]
        for option in options:
            users[option].add(_command_label(path))
    shared = {option: ", ".join(sorted(commands)) for option, commands in users.items() if len(commands) > 1}
    documented = {option.strip("`"): commands for option, _meaning, commands in _doc_table("Shared options")}
    assert documented == shared
    assert {"--rank", "--out", "--json", "--m", "--false-alarm-rate", "--lora-alpha"} <= shared.keys()
    assert "--alpha" not in shared and "--dim" not in shared


@pytest.mark.parametrize("argv,hint", [
    (["finetune", "--algorithms", "fedit"], "(did you mean --algorithm?)"),
    (["crosscheck", "--false-alarm", "0.1"], None),                 # an abbreviation argparse accepts
    (["bench", "--jsn", "x.json"], "(did you mean --json?)"),
    (["simulate", "--no-such-option"], ""),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_an_unknown_option_close_to_a_known_one_is_named(argv, hint, capsys, monkeypatch):
    import fslora_cli.crosscheck
    monkeypatch.setattr(fslora_cli.crosscheck.library, "crosscheck", lambda target, **kw: 0)
    if hint is None:
        assert _parse(argv).false_alarm_rate == 0.1
        return
    with pytest.raises(SystemExit):
        main(argv)
    err = capsys.readouterr().err
    assert err.startswith(f"fslora {argv[0]}: error: unrecognized arguments: {' '.join(argv[1:])}") and err.endswith(
        f"{' ' + hint if hint else ''}\n"), err


def test_crosscheck_list_needs_no_target(capsys):
    assert main(["crosscheck", "--list"]) == 0
    assert "round_matches_reference" in capsys.readouterr().out
    assert main(["crosscheck", "--list", "--algorithm", "hetlora"]) == 0
    assert "aggregation_matches_reference" in capsys.readouterr().out
    err = one_line_error(capsys, ["crosscheck"])
    assert "needs a target MODULE:ATTR" in err and "--list" in err


# tables

def _tokens_are_whole_words(table: str, texts) -> list:
    """The words of ``texts`` missing from ``table`` as whole tokens (a cut word is missing)."""
    tokens = collections.Counter(table.split())
    return [w for text in texts for w in str(text).split() if tokens[w] == 0]


def test_table_cells_wrap_at_words_and_columns_stay_aligned():
    rng = random.Random(7)
    vocabulary = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(1, 15))) for _ in range(300)]
    rows = [("id", "method", "key")] + [
        (f"claim.{i}", " ".join(rng.choices(vocabulary, k=rng.randint(1, 14))),
         " ".join(rng.choices(vocabulary, k=rng.randint(1, 9)))) for i in range(40)]
    table = format_table(rows, [None, 24, 18])
    lines = table.splitlines()
    assert lines[1] == "-" * len(lines[1])
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    cells = collections.defaultdict(list)     # (row, column) -> its lines, read back at the column offsets
    row = -1
    for line in lines[2:]:
        if line[:starts[1]].strip():
            row += 1
        for c, start in enumerate(starts):
            end = starts[c + 1] if c + 1 < len(starts) else None
            assert start == 0 or line[start - 2:start].strip() == "", line   # the gap is kept: aligned
            piece = line[start:end].strip()
            if piece:
                cells[row, c].append(piece)
    for r, original in enumerate(rows[1:]):
        for c, text in enumerate(original):
            assert " ".join(cells[r, c]) == text       # every cell reads back whole, in order
            assert all(len(part) <= 24 or " " not in part for part in cells[r, c])
    assert _tokens_are_whole_words(table, [t for r in rows for t in r]) == []


def test_a_word_longer_than_its_column_widens_the_column_instead_of_being_cut():
    table = format_table([("a", "b"), ("x", "short words then_a_very_long_identifier_word end")], [None, 10])
    assert "then_a_very_long_identifier_word" in table.split()
    assert doctest.testmod(text_table).failed == 0


def _results(method: str, key: str):
    claim = SimpleNamespace(id="alg1.round_unbiased", through_impl=False, method=method)
    return [(claim, SimpleNamespace(status="verified", key=key), 0.0)]


def test_the_verify_table_never_cuts_a_word():
    from theory import report
    method = ("Monte Carlo over rounds; Bernstein bound with the exact variance, alpha = 1e-3, two problems "
              "and a reference-constant radius")
    key = "2000 rounds x 2 problems: max |mean - mu| / radius 0.41; step along -grad f^S 0.997 x expected"
    table = report.table(_results(method, key))
    assert _tokens_are_whole_words(table, [method, key]) == []
    assert max(len(line) for line in table.splitlines()) < 120

    def cut_table(results):   # the mutant: the table as it was (method[:46])
        rows = [("claim", "impl", "catches", "method", "status", "key number")]
        rows += [(c.id, "-", "-", c.method[:46], r.status, r.key) for c, r, _ in results]
        return "\n".join("  ".join(row) for row in rows)
    assert _tokens_are_whole_words(cut_table(_results(method, key)), [method, key]) != []
