"""The parser every `fslora` command uses: errors in one line, integers in any exact notation.

argparse prints its usage block before an error ("usage: fslora simulate [-h] ...", a dozen
lines for some commands) and takes ``type=int`` strictly, so ``--rounds 1e29`` was two
messages and did not say what ``--rounds`` allows. :class:`CommandParser` (the main parser's
class, and so that of every subparser) prints ``fslora <command>: error: <message>`` as one line
and exits 2, and reads ``type=int`` options with :func:`integer`: an integer written as a float
(``1e3``, ``100.0``) is that integer, so the command's own check names the option's range
(``--rounds must be an integer in [0, 1000000], got an integer of 30 digits``).

The shared vocabulary (docs/guides/cli.md) is kept here too: :class:`DefaultsFormatter` shows
every option's default in ``--help``; :func:`integer_in` gives an integer option its range, so
that ``--rounds 1.5`` is refused with the range named; :func:`add_deprecated_alias` keeps an old
spelling working for one release, with a one-line warning on stderr.
"""
from __future__ import annotations

import argparse
import decimal
import re
import sys
from pathlib import Path

MAX_DIGITS = 100   # an integer option given with more digits than this is refused here, unparsed


def integer(text: str) -> int:
    """The integer ``text`` writes: ``12``, ``1_000``, or a float form with an integer value
    (``1e9``, ``2.0``), converted exactly (``1e29`` is 10**29, not the nearest double).

    Raises
    ------
    ValueError
        Not an integer (``1.5``, ``nan``, ``abc``): argparse says "invalid integer value".
    argparse.ArgumentTypeError
        An integer of more than MAX_DIGITS digits (never expanded in memory).
    """
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        raise ValueError(text) from None
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError(text)
    if value.adjusted() >= MAX_DIGITS:
        raise argparse.ArgumentTypeError(f"{text!r} is an integer of {value.adjusted() + 1} digits; "
                                         f"no option takes more than {MAX_DIGITS}")
    return int(value)


class IntegerIn:
    """The ``type`` of an integer option: :func:`integer`, and a text that is not an integer is
    refused naming the option's allowed range (``must be an integer in [0, 1000000], got '1.5'``).
    The range itself is enforced by the library's checks (one source of the bounds); here it is
    only named."""

    def __init__(self, low, high):
        self.low, self.high = low, high
        self.__name__ = "integer"   # argparse names the type in some messages

    @property
    def range_text(self) -> str:
        """``[low, high]``, ``an integer >= low`` when unbounded above."""
        if self.high is None:
            return f">= {self.low}"
        return f"in [{self.low}, {self.high}]"

    def __call__(self, text: str) -> int:
        try:
            return integer(text)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            detail = f" ({exc})" if isinstance(exc, argparse.ArgumentTypeError) else ""
            raise argparse.ArgumentTypeError(f"must be an integer {self.range_text}, got {text!r}{detail}") from None


def integer_in(low, high=None) -> IntegerIn:
    """The ``type=`` of an integer option whose allowed values are [low, high].

    Parameters
    ----------
    low : int or str
        The smallest allowed value (a text such as ``"--r-min"`` for a bound set by another option).
    high : int or str or None, default None
        The largest allowed value (None: unbounded; a text such as ``"--rank"`` or ``"4 x cores"``).

    Returns
    -------
    IntegerIn
        A callable ``str -> int`` for ``add_argument(type=...)``.
    """
    return IntegerIn(low, high)


def _shown(value) -> str:
    """A default as a user types it: lists and tuples comma-separated."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows every option's default: `` (default: X)`` is appended to an option's help
    unless the help already says it (``%(default)s``, or ``default X`` / ``default: X`` with the
    value). No default (None), a flag (an option without a value) and a suppressed default show
    nothing."""

    def _get_help_string(self, action) -> str:
        help_text = action.help or ""
        default = action.default
        if (not action.option_strings or action.nargs == 0 or default is None or default is argparse.SUPPRESS
                or "%(default)" in help_text or help_text == argparse.SUPPRESS):
            return help_text
        shown = _shown(default)
        if re.search(r"default:? " + re.escape(shown) + r"(?![\w.])", help_text):
            return help_text
        return f"{help_text} (default: {shown.replace('%', '%%')})"


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores into the new option's ``dest`` and prints a one-line
    warning (``fslora claims: warning: --alpha is deprecated; use --false-alarm-rate``)."""

    def __init__(self, option_strings, dest, replacement: str = "", store=None, **kwargs):
        self.replacement, self.store = replacement, store
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated and will be removed in the next release; "
              f"use {self.replacement}", file=sys.stderr)
        if self.store is not None:
            self.store(namespace, values)
        else:
            setattr(namespace, self.dest, values)


def add_deprecated_alias(container, old: str, new_action: argparse.Action, *, store=None, replacement=None,
                         metavar=None, exclusive: bool = True) -> argparse.Action:
    """Accept ``old`` as a deprecated spelling of ``new_action``'s option, for one release.

    Parameters
    ----------
    container : argparse.ArgumentParser or argument group
        Where ``new_action`` was added.
    old : str
        The old option string, e.g. ``"--alpha"``.
    new_action : argparse.Action
        The action of the option that replaces it (its dest, type and choices are used).
    store : callable, optional
        ``store(namespace, value)`` instead of setting ``new_action.dest`` (``--dim`` sets ``m`` and ``n``).
    replacement : str, optional
        What to use instead, as the warning and the help say it (default: ``new_action``'s first option).
    metavar : str, optional
        The value's name in the help (default: ``new_action``'s).
    exclusive : bool, default True
        Refuse ``old`` and the new option given together (one line: ``not allowed with argument``).

    Returns
    -------
    argparse.Action
        The alias's action.
    """
    new = replacement or new_action.option_strings[0]
    if exclusive:   # the new option joins a group with its old spelling (argparse keeps its place in the help)
        container = container.add_mutually_exclusive_group()
        container._group_actions.append(new_action)
    return container.add_argument(old, dest=new_action.dest, action=DeprecatedAlias, replacement=new, store=store,
                                  type=new_action.type, choices=new_action.choices,
                                  metavar=metavar or new_action.metavar,
                                  default=argparse.SUPPRESS, help=f"deprecated spelling of {new} (removed in the next "
                                                                  f"release)")


def package_version() -> str:
    """fslora's version: ``pyproject.toml`` next to the package in a source tree (the truth there,
    even before a reinstall), else the installed distribution's metadata.

    Returns
    -------
    str
        E.g. ``"0.1.0"``.
    """
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        import tomllib
        with open(pyproject, "rb") as fh:
            project = tomllib.load(fh).get("project", {})
        if project.get("name") == "fslora" and "version" in project:
            return str(project["version"])
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("fslora")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _suggestion(parser: argparse.ArgumentParser, extras: list) -> str:
    """`` (did you mean --algorithm?)`` for an unknown option close to one ``parser`` has
    (``finetune --algorithms``: the singular takes one value), else ``""``."""
    import difflib
    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    for word in extras:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.8)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``<prog>: error: <message>``, exit 2) and
    whose ``type=int`` options accept exact float forms (:func:`integer`). Subparsers made with
    ``add_subparsers().add_parser`` are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)
        self.register("type", int, integer)   # argparse looks a type up here before calling it

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unrecognised argument is reported by the (sub)command that was
        parsed (``fslora simulate: error: unrecognized arguments: ...``), not by ``fslora``."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            chosen = self._chosen(parsed)
            chosen.error(f"unrecognized arguments: {' '.join(extras)}{_suggestion(chosen, extras)}")
        return parsed

    def _chosen(self, parsed) -> argparse.ArgumentParser:
        """The innermost subparser ``parsed`` went through (self if there is none)."""
        parser = self
        while True:
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction) and getattr(parsed, action.dest, None) in action.choices:
                    parser = action.choices[getattr(parsed, action.dest)]
                    break
            else:
                return parser

    def error(self, message: str):
        """One line on stderr, exit code 2 (no usage block: ``--help`` shows it)."""
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())}\n")

