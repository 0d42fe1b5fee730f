"""Plain-text tables for the notebooks' outputs: columns sized to their content, long cells wrapped at
word boundaries onto continuation lines, never cut mid-word (or cut at all)."""
from __future__ import annotations

import textwrap


def table(headers, rows, *, wrap=None) -> str:
    """Format ``rows`` under ``headers`` as aligned text columns.

    Parameters
    ----------
    headers : sequence of str
        One per column.
    rows : sequence of sequences
        Cells (formatted with ``str``); a column of numbers (or numeric strings) is right-aligned,
        text left-aligned.
    wrap : dict, optional
        ``{column index: width}``: such a column's cells are wrapped at word boundaries to that width
        (a single longer word stays whole); the other columns are as wide as their widest cell.

    Returns
    -------
    str
        The table, one line per row plus continuation lines of the wrapped cells.
    """
    wrap = wrap or {}
    numeric = [all(_is_number(r[j]) for r in rows) for j in range(len(headers))]
    cells = [[textwrap.wrap(str(c), wrap[j], break_long_words=False, break_on_hyphens=False) or [""]
              if j in wrap else [str(c)] for j, c in enumerate(r)] for r in rows]
    widths = [max([len(h)] + [len(line) for r in cells for line in r[j]]) for j, h in enumerate(headers)]

    def line(parts):
        return "  ".join(p.rjust(w) if num else p.ljust(w) for p, w, num in zip(parts, widths, numeric)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    for r in cells:
        for k in range(max(len(c) for c in r)):
            out.append(line([c[k] if k < len(c) else "" for c in r]))
    return "\n".join(out)


def _is_number(cell) -> bool:
    try:
        float(cell)
    except (TypeError, ValueError):
        return False
    return True
