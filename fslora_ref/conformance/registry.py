"""The ordered registry of checks: name -> (mode, function, one-line description)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One registered check.

    Parameters
    ----------
    name : str
        The check's name (its function's name without ``check_``).
    mode : {"white", "black", "sampler"}
        The implementation method it exercises.
    func : callable
        ``func(impl, session=None) -> str`` (what was verified); raises CheckFailed.
    description : str
        One line: the first paragraph of the function's docstring.
    """

    name: str
    mode: str          # "white" | "black" | "sampler"
    func: object       # func(impl, session=None) -> str (what was verified); raises CheckFailed
    description: str


CHECKS: dict = {}


def check(mode: str):
    """Register ``check_<name>(impl, session=None)`` under ``<name>`` for ``mode`` (a decorator).

    Parameters
    ----------
    mode : {"white", "black", "sampler"}

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.
    """
    def register(func):
        name = func.__name__.removeprefix("check_")
        first_paragraph = (func.__doc__ or "").strip().split("\n\n")[0]
        CHECKS[name] = Check(name, mode, func, " ".join(first_paragraph.split()) or name)
        return func
    return register
