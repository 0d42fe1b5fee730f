"""What every command's parser shares: which options were given, and ``--config`` files.

A job's value comes from three places, lowest first: the job's defaults, then a ``--config``
TOML / JSON file, then the options given on the command line (an option typed out always wins,
even when it repeats the default).
"""
from __future__ import annotations

import argparse
import functools


@functools.cache
def _recording(action_class):
    class Recording(action_class):
        def __call__(self, parser, namespace, values, option_string=None):
            super().__call__(parser, namespace, values, option_string)
            namespace.given = set(getattr(namespace, "given", set())) | {self.dest}
    Recording.__name__ = f"Recording{action_class.__name__}"
    return Recording


def record_given(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make every option of ``parser`` add its name to ``namespace.given`` when it is given
    (a default alone cannot tell ``--clients 20`` from no ``--clients``)."""
    for action in parser._actions:
        if action.dest != argparse.SUPPRESS and not isinstance(
                action, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
            action.__class__ = _recording(type(action))
    return parser


def add_config_option(parser, command: str) -> None:
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"a TOML (.toml) or JSON (.json) table of `fslora {command}` job fields (names as the "
                             f"options, with - or _); options given on the command line override the file")


def given(args) -> set:
    """The options given explicitly on the command line."""
    return set(getattr(args, "given", set()))


def job_values(args, job_class, renamed: dict | None = None) -> tuple[dict, set]:
    """(the job's field values, the fields set explicitly) from parsed options: the options, with
    the ``--config`` file's values for every field not given on the command line. ``renamed``:
    {option name: field name} for an option named otherwise than its field (``lora_alpha`` ->
    ``alpha``), so that a ``--config`` file may use either name."""
    values = {name: getattr(args, name) for name in job_class.field_names()}
    explicit = given(args) & set(values)
    if getattr(args, "config", None):
        from fslora_ref.jobs import read_job_file
        data = read_job_file(args.config)
        for option, field in (renamed or {}).items():
            for key in (option, option.replace("_", "-")):
                if key in data:
                    if field in data:
                        raise ValueError(f"--config {args.config!r}: {key!r} and {field!r} name the same field; "
                                         f"give one")
                    data[field] = data.pop(key)
        from_file = job_class.from_dict(data, where=f"--config {args.config!r}").to_dict()
        keys = {str(k).replace("-", "_") for k in data}
        values.update({k: from_file[k] for k in keys if k not in explicit})
        explicit |= keys
    return values, explicit
