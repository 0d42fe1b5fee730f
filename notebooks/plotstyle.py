"""One figure style for fslora: a fixed colour, display name and marker per algorithm, and axis conventions.

    import plotstyle as ps
    fig, ax = ps.figure()                       # a slide-friendly single panel
    ax.semilogy(history["loss"], **ps.algo("fslora"))
    ps.loss_axes(ax)                            # "round" / "global loss f" on a log scale
    ps.legend(ax)

The colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies
and in greyscale by marker); FSLoRA is drawn in vermillion, on top and slightly thicker. Figures are
at most ``MAX_WIDTH`` inches wide so they fit a slide. matplotlib is imported when a function needs it,
so importing this module costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlgoStyle:
    label: str       # display name, as the paper writes it
    color: str
    marker: str
    linestyle: str = "-"


# the order is the legend order: FSLoRA first, then the baselines as the spec lists them
ALGORITHMS = {
    "fslora": AlgoStyle("FSLoRA", "#D55E00", "o"),
    "fedit": AlgoStyle("FedIT", "#000000", "s", "--"),
    "hetlora": AlgoStyle("HetLoRA", "#0072B2", "^"),
    "flexlora": AlgoStyle("FlexLoRA", "#009E73", "D"),
    "flora": AlgoStyle("FLoRA", "#CC79A7", "v"),
}
# roles in the teaching pictures
SELECTED = "#D55E00"       # an index the sketch kept
DROPPED = "#DDDDDD"        # an index it dropped
SERVER = "#0072B2"         # the server's state
CLIENTS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#F0E442", "#0072B2")   # client i: CLIENTS[i % 6]
DIVERGING = "RdBu_r"       # matrices: blue negative, red positive, white zero

MAX_WIDTH = 10.0           # inches: wider figures do not fit a slide
SINGLE = (6.4, 4.0)
ROW = (10.0, 3.6)

ROUND_LABEL = "round t"
LOSS_LABEL = "global loss f(X^t)"
SKETCHED_LOSS_LABEL = "sketched loss f^S(X^t)"
UPLOAD_LABEL = "floats uploaded (cumulative)"

RC = {
    "figure.dpi": 110, "savefig.dpi": 110, "savefig.bbox": "tight",
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
    "lines.linewidth": 1.6, "lines.markersize": 4,
}


def algo(name: str, *, every: int | None = None) -> dict:
    """Keyword arguments for ``ax.plot`` that draw algorithm ``name`` in its style.

    Parameters
    ----------
    name : str
        One of ``ALGORITHMS`` (``fslora``, ``fedit``, ``hetlora``, ``flexlora``, ``flora``).
    every : int, optional
        Put a marker on every ``every``-th point (default: about ten markers per line is the
        caller's choice; None draws none).

    Returns
    -------
    dict
        ``color``, ``label``, ``linestyle``, ``marker``, ``markevery``, ``linewidth``, ``zorder``.
    """
    if name not in ALGORITHMS:
        raise ValueError(f"name must be one of {sorted(ALGORITHMS)}, got {name!r}")
    s = ALGORITHMS[name]
    main = name == "fslora"
    return {"color": s.color, "label": s.label, "linestyle": s.linestyle,
            "marker": s.marker if every else None, "markevery": every,
            "linewidth": 2.2 if main else 1.5, "zorder": 3 if main else 2}


def client_color(i: int) -> str:
    """The colour of client ``i`` in the teaching pictures."""
    return CLIENTS[i % len(CLIENTS)]


def use() -> None:
    """Apply the style's rcParams to matplotlib (idempotent)."""
    import matplotlib as mpl
    mpl.rcParams.update(RC)


def figure(ncols: int = 1, nrows: int = 1, *, size=None, **kwargs):
    """``plt.subplots`` in the house style, at most ``MAX_WIDTH`` inches wide.

    Parameters
    ----------
    ncols, nrows : int
        Panel grid.
    size : (float, float), optional
        Inches; default ``SINGLE`` for one panel, ``ROW`` for a row of panels. Clipped to
        ``MAX_WIDTH``.

    Returns
    -------
    (Figure, Axes or array of Axes)
    """
    import matplotlib.pyplot as plt
    use()
    w, h = size or (SINGLE if ncols == 1 and nrows == 1 else (ROW[0], ROW[1] * nrows))
    return plt.subplots(nrows, ncols, figsize=(min(w, MAX_WIDTH), h), layout="constrained", **kwargs)


def loss_axes(ax, *, x: str = "round", y: str = LOSS_LABEL, log: bool = True) -> None:
    """Label a loss panel: rounds (or uploaded floats, log-scaled) against the loss (log-scaled)."""
    if x == "round":
        ax.set_xlabel(ROUND_LABEL)
        ax.set_xlim(left=0)
    elif x == "upload":
        ax.set_xlabel(UPLOAD_LABEL)
        ax.set_xscale("log")
    else:
        raise ValueError(f"x must be 'round' or 'upload', got {x!r}")
    ax.set_ylabel(y)
    if log:
        ax.set_yscale("log")


def legend(ax, *, outside: bool = False, **kwargs):
    """A legend that never covers data: ``outside=True`` puts it below the panel."""
    if outside:
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=5, frameon=False, **kwargs)
    return ax.legend(frameon=False, **kwargs)
