"""The parser every `fslora` command uses: errors in one line, integers in any exact notation.

argparse prints its usage block before an error ("usage: fslora simulate [-h] ...", a dozen
lines for some commands) and takes ``type=int`` strictly, so ``--rounds 1e29`` was two
messages and did not say what ``--rounds`` allows. :class:`CommandParser` (the main parser's
class, and so that of every subparser) prints ``fslora <command>: error: <message>`` as one line
and exits 2, and reads ``type=int`` options with :func:`integer`: an integer written as a float
(``1e3``, ``100.0``) is that integer, so the command's own check names the option's range
(``--rounds must be an integer in [0, 1000000], got an integer of 30 digits``).
"""
from __future__ import annotations

import argparse
import decimal
import sys

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


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``<prog>: error: <message>``, exit 2) and
    whose ``type=int`` options accept exact float forms (:func:`integer`). Subparsers made with
    ``add_subparsers().add_parser`` are of this class too."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("type", int, integer)   # argparse looks a type up here before calling it

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unrecognised argument is reported by the (sub)command that was
        parsed (``fslora simulate: error: unrecognized arguments: ...``), not by ``fslora``."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
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

