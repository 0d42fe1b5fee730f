"""How the verify report's figures are written: one place, so that the report and its ``ours``
section (which the report imports) share it without importing each other."""
from __future__ import annotations

from fslora_ref.outputs import write_figure


def save_figure(fig, path) -> None:
    """Lay out ``fig``, write it to ``path`` as a PNG (atomically, 110 dpi) and close it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or os.PathLike
    """
    import matplotlib.pyplot as plt
    if fig.get_layout_engine() is None:   # figures from plotting_style.figure are laid out already
        fig.tight_layout()
    write_figure(path, fig, dpi=110)
    plt.close(fig)
