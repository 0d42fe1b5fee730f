"""A dependency-free progress bar on stderr (one line, redrawn; plain lines when not a TTY)."""
from __future__ import annotations

import sys
import time


class Progress:
    """A progress bar: ``Progress(total, label, done=d)``.

    The ETA is estimated from the steps done in this process only.

    Parameters
    ----------
    total : int
        The number of steps (at least 1 is used).
    label : str
        Printed before the bar.
    stream : file-like, optional
        Where to draw (default ``sys.stderr``); redrawn in place on a TTY, else a plain line
        every tenth.
    width : int, default 28
        The bar's width in characters.
    done : int, default 0
        Steps already done (a resumed run).
    """

    def __init__(self, total: int, label: str, stream=None, width: int = 28, done: int = 0):
        self.total, self.label, self.width = max(int(total), 1), label, width
        self.stream = stream or sys.stderr
        self.done = min(max(int(done), 0), self.total)
        self.count, self.start = self.done, time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_plain = -1

    def update(self, n: int = 1, info: str = ""):
        """Advance by ``n`` steps and redraw.

        Parameters
        ----------
        n : int, default 1
            Steps done.
        info : str, optional
            Shown after the bar.
        """
        self.count = min(self.total, self.count + n)
        frac = self.count / self.total
        elapsed = time.perf_counter() - self.start
        new = self.count - self.done
        eta = elapsed / new * (self.total - self.count) if new > 0 else 0.0
        bar = "#" * int(frac * self.width)
        line = f"{self.label} [{bar:<{self.width}}] {self.count}/{self.total} {elapsed:5.1f}s eta {eta:5.1f}s {info}"
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        elif int(frac * 10) != self._last_plain or self.count == self.total:
            self._last_plain = int(frac * 10)
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        """End the bar's line (on a TTY)."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
