"""Which errors are the user's, and the exit code each error gives.

`fslora` prints a user error as one line and exits 2; the Flower ServerApp records the same code
so that `fslora flower <job>` exits as `fslora <job>` would for the same error.
"""
from __future__ import annotations


class UserError(Exception):
    """An error whose message is the whole story (printed as one line, exit code 2)."""


# what a command raises for bad input or a run that cannot go on: one line, exit code 2
# (OSError: a full disk, a quota, a file the OS refuses -- the message names the file;
# fslora_ref.outputs words the writes' own errors, this catches the rest)
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, UserError)


def exit_code(exc: BaseException) -> int:
    """The code ``fslora`` exits with when a command raises ``exc``.

    Parameters
    ----------
    exc : BaseException
        The exception a command raised.

    Returns
    -------
    int
        2 for a user error (an instance of ``USER_ERRORS``), 130 for ``KeyboardInterrupt``, else 1.
    """
    return 2 if isinstance(exc, USER_ERRORS) else 130 if isinstance(exc, KeyboardInterrupt) else 1
