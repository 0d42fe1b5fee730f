"""Fixed-width console tables whose cells wrap at word boundaries: a word is never cut.

A column given a maximum width wraps its cells onto as many lines as they need (the other
cells of the row are blank on those lines); a column is never narrower than its longest word,
so a long identifier widens its column instead of being split.
"""
from __future__ import annotations

import textwrap


def wrap_cell(text, width: int | None) -> list:
    """The lines of one cell, wrapped at spaces to at most ``width`` characters where its words allow.

    Parameters
    ----------
    text : object
        The cell (``str(text)`` is shown).
    width : int or None
        The most characters a line may take; None: one line, as it is.

    Returns
    -------
    list of str
        At least one line; no word is split (a word longer than ``width`` stands alone on its line).

    Examples
    --------
    >>> wrap_cell("Monte Carlo over rounds; Bernstein bound", 16)
    ['Monte Carlo over', 'rounds;', 'Bernstein bound']
    """
    text = str(text)
    if width is None or len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False) or [""]


def format_table(rows, max_widths=None, gap: str = "  ") -> str:
    """A header, a rule of dashes and the rows, each column left-aligned; cells wrap at words.

    Parameters
    ----------
    rows : sequence of sequence
        ``rows[0]`` is the header; every row has the same number of cells.
    max_widths : sequence of (int or None), optional
        Per column, the width its cells wrap to (None: no limit). A column is never narrower than
        its longest word.
    gap : str, default "  "
        Between columns.

    Returns
    -------
    str
        The table, lines joined by newlines, without trailing spaces.

    Examples
    --------
    >>> print(format_table([("id", "method"), ("a.b", "exact: every draw, reported as excess")], [None, 20]))
    id   method
    -----------------------
    a.b  exact: every draw,
         reported as excess
    """
    n = len(rows[0])
    max_widths = list(max_widths) if max_widths is not None else [None] * n
    if len(max_widths) != n or any(len(row) != n for row in rows):
        raise ValueError(f"every row and max_widths must have {n} cells")
    cells = [[wrap_cell(cell, max_widths[i]) for i, cell in enumerate(row)] for row in rows]
    widths = [max(len(line) for row in cells for line in row[i]) for i in range(n)]
    lines = []
    for row in cells:
        for k in range(max(len(c) for c in row)):
            parts = [(c[k] if k < len(c) else "").ljust(widths[i]) for i, c in enumerate(row)]
            lines.append(gap.join(parts).rstrip())
    header_lines = max(len(c) for c in cells[0])
    lines.insert(header_lines, "-" * (sum(widths) + len(gap) * (n - 1)))
    return "\n".join(lines)
