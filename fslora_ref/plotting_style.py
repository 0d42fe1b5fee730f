"""One figure style for fslora: a display name, colour and marker per algorithm, and axis conventions.

Every figure of the project draws from here: the commands' PNGs (``fslora simulate``, ``verify``,
``claims``, ``finetune``), the notebooks (``notebooks/plotstyle.py`` re-exports this module) and so
the README and documentation images they produce. The same algorithm therefore has the same name,
colour and marker everywhere::

    from fslora_ref import plotting_style as ps
    fig, ax = ps.figure()                       # a slide-friendly single panel
    ax.plot(history["loss"], **ps.algo("fslora"))
    ps.loss_axes(ax)                            # "round t" / "global loss f(X^t)" on a log scale
    ps.legend(ax)

The colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies,
and in greyscale by marker and line style); FSLoRA is drawn in vermillion, on top and slightly
thicker. Figures are at most ``MAX_WIDTH`` inches wide so they fit a slide. matplotlib is optional:
it is imported only by the functions that draw, so importing this module costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlgoStyle:
    """How one algorithm is drawn.

    Parameters
    ----------
    label : str
        Display name, as the paper writes it.
    color : str
        Hex colour.
    marker : str
        matplotlib marker.
    linestyle : str
        matplotlib line style.
    """

    label: str
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
# roles in the teaching pictures and the theory figures
SELECTED = "#D55E00"       # an index the sketch kept
DROPPED = "#DDDDDD"        # an index it dropped
SERVER = "#0072B2"         # the server's state
CLIENTS = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#F0E442", "#0072B2")   # client i: CLIENTS[i % 6]
DIVERGING = "RdBu_r"       # signed matrices: blue negative, red positive, white zero
SEQUENTIAL = "viridis"     # magnitudes
MEASURED = "#D55E00"       # a measured left-hand side (an implementation's run): FSLoRA's colour
BOUND = "#000000"          # the bound it is checked against
TERM = "#777777"           # a bound's individual terms, and other reference lines
OURS = "#0072B2"           # the toolkit's own bound (notebook 06, the ours.* claims)
OURS_PRIOR = "#56B4E9"     # its a-priori form
PAPER = "#999999"          # the paper's Theorem 4.4 next to ours
# further series that are not algorithms (a claim's variants, k values, families), in order
SERIES = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#000000")

MAX_WIDTH = 10.0           # inches: wider figures do not fit a slide
SINGLE = (6.4, 4.0)
ROW = (10.0, 3.6)

ROUND_LABEL = "round t"
LOSS_LABEL = "global loss f(X^t)"
SKETCHED_LOSS_LABEL = "sketched loss f^S(X^t)"
UPLOAD_LABEL = "floats uploaded (cumulative, all clients)"

RC = {
    "figure.dpi": 110, "savefig.dpi": 110, "savefig.bbox": "tight",
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
    "lines.linewidth": 1.6, "lines.markersize": 4,
}


def algorithm_key(name: str) -> str | None:
    """The key of ``ALGORITHMS`` that ``name`` spells (a key or a display name, any case), else None.

    Parameters
    ----------
    name : str
        ``"fslora"``, ``"FSLoRA"``, ``"FedIT"``, ...

    Returns
    -------
    str or None
    """
    low = str(name).lower()
    return low if low in ALGORITHMS else None


def label(name: str) -> str:
    """The display name of algorithm ``name`` (``"fslora"`` -> ``"FSLoRA"``); other names unchanged.

    Parameters
    ----------
    name : str

    Returns
    -------
    str
    """
    key = algorithm_key(name)
    return ALGORITHMS[key].label if key else str(name)


def algo(name: str, *, every: int | None = None) -> dict:
    """Keyword arguments for ``ax.plot`` that draw algorithm ``name`` in its style.

    Parameters
    ----------
    name : str
        One of ``ALGORITHMS`` (``fslora``, ``fedit``, ``hetlora``, ``flexlora``, ``flora``), or its
        display name.
    every : int, optional
        Put a marker on every ``every``-th point; None draws none.

    Returns
    -------
    dict
        ``color``, ``label``, ``linestyle``, ``marker``, ``markevery``, ``linewidth``, ``zorder``.

    Examples
    --------
    >>> algo("fslora")["color"], algo("FedIT")["label"]
    ('#D55E00', 'FedIT')
    """
    key = algorithm_key(name)
    if key is None:
        raise ValueError(f"name must be one of {sorted(ALGORITHMS)}, got {name!r}")
    s = ALGORITHMS[key]
    main = key == "fslora"
    return {"color": s.color, "label": s.label, "linestyle": s.linestyle,
            "marker": s.marker if every else None, "markevery": every,
            "linewidth": 2.2 if main else 1.5, "zorder": 3 if main else 2}


def bar(name: str) -> dict:
    """Keyword arguments for ``ax.bar`` / ``ax.barh`` in algorithm ``name``'s colour and name.

    Parameters
    ----------
    name : str
        A key or display name of ``ALGORITHMS``.

    Returns
    -------
    dict
        ``color``, ``label``.
    """
    s = algo(name)
    return {"color": s["color"], "label": s["label"]}


def series_styles(algorithms) -> list:
    """Styles for a list of series, each run by an algorithm (or None): an algorithm's first series
    gets its own style; a repeat (e.g. FSLoRA at two ranks) its colour with another line style; a
    series with no known algorithm the next ``SERIES`` colour.

    Parameters
    ----------
    algorithms : sequence of str or None
        The algorithm behind each series, in order.

    Returns
    -------
    list of dict
        ``color``, ``linestyle``, ``marker``, ``linewidth``, ``zorder`` per series (no ``label``).
    """
    seen, other, out = {}, 0, []
    for name in algorithms:
        key = algorithm_key(name) if name is not None else None
        if key is None:
            out.append({"color": SERIES[other % len(SERIES)], "linestyle": "-", "marker": None,
                        "linewidth": 1.5, "zorder": 2})
            other += 1
            continue
        style = {k: v for k, v in algo(key).items() if k in ("color", "linestyle", "linewidth", "zorder")}
        repeat = seen.get(key, 0)
        seen[key] = repeat + 1
        if repeat:
            style["linestyle"] = (":", "-.", (0, (5, 1)), (0, (1, 3)))[(repeat - 1) % 4]
            style["linewidth"] = 1.5
        style["marker"] = None
        out.append(style)
    return out


def client_color(i: int) -> str:
    """The colour of client ``i`` in the teaching pictures.

    Parameters
    ----------
    i : int

    Returns
    -------
    str
    """
    return CLIENTS[i % len(CLIENTS)]


def series_color(i: int) -> str:
    """The ``i``-th colour for series that are not algorithms (k values, families, terms).

    Parameters
    ----------
    i : int

    Returns
    -------
    str
    """
    return SERIES[i % len(SERIES)]


def use() -> None:
    """Apply the style's rcParams to matplotlib (idempotent).

    Returns
    -------
    None
    """
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
    **kwargs
        Passed to ``plt.subplots`` (``sharey``, ``gridspec_kw``, ...).

    Returns
    -------
    (Figure, Axes or array of Axes)
    """
    import matplotlib.pyplot as plt
    use()
    w, h = size or (SINGLE if ncols == 1 and nrows == 1 else (ROW[0], ROW[1] * nrows))
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(min(w, MAX_WIDTH), h), **kwargs)


def loss_axes(ax, *, x: str = "round", y: str = LOSS_LABEL, log: bool = True) -> None:
    """Label a loss panel: rounds (linear) or uploaded floats (log) against the loss (log by default).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    x : {"round", "upload"}
    y : str
        The y label.
    log : bool
        Log-scale the loss.

    Returns
    -------
    None
    """
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


def legend(ax, *, outside: bool = False, right: bool = False, **kwargs):
    """A legend that never covers data: ``outside=True`` puts it below the panel, ``right=True``
    to its right.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    outside, right : bool
    **kwargs
        Passed to ``ax.legend``.

    Returns
    -------
    matplotlib.legend.Legend
    """
    if outside:
        kwargs.setdefault("ncol", 5)
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False, **kwargs)
    if right:
        return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, frameon=False, **kwargs)
    return ax.legend(frameon=False, **kwargs)
