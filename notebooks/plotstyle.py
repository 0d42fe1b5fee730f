"""The notebooks' name for the project's one figure style, ``fslora_ref.plotting_style``.

    import plotstyle as ps
    fig, ax = ps.figure()                       # a slide-friendly single panel
    ax.semilogy(history["loss"], **ps.algo("fslora"))
    ps.loss_axes(ax)                            # "round t" / "global loss f(X^t)" on a log scale
    ps.legend(ax)

The palette, names, markers and axis conventions live in the package so that the commands' PNGs
(``fslora simulate``, ``verify``, ``claims``) draw exactly like the notebooks; this module only
re-exports them.
"""
from fslora_ref.plotting_style import *  # noqa: F401,F403
from fslora_ref.plotting_style import (ALGORITHMS, BOUND, CLIENTS, DIVERGING, DROPPED, MAX_WIDTH, MEASURED,  # noqa: F401
                                       OURS, OURS_PRIOR, PAPER, ROW, SELECTED, SEQUENTIAL, SERIES, SERVER, SINGLE,
                                       TERM, AlgoStyle, algo, algorithm_key, bar, client_color, figure, label, legend,
                                       loss_axes, series_color, series_styles, use)
