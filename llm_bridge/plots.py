"""curves.png of a finetune run: held-out accuracy and training loss against the round."""
from __future__ import annotations

from fslora_ref.outputs import write_figure


def history_figure(history: dict):
    """Two panels: accuracy per family (and mean) vs round, and mean client loss vs round.

    Each commonsense family's majority-class (dashed) and chance (dotted) rate is drawn in the
    family's colour.

    Parameters
    ----------
    history : dict
        A finetune run's history.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib
    matplotlib.use("Agg")

    from fslora_ref import plotting_style as ps
    fig, (ax1, ax2) = ps.figure(2, size=(10, 4))
    evals = history["eval"]
    rates = history["data"].get("reference_rates") or {}
    xs = [e["round"] for e in evals]
    for fam in evals[0]["accuracy"]:
        (line,) = ax1.plot(xs, [100 * e["accuracy"][fam] for e in evals], marker="o", label=fam)
        if fam in rates:   # labels starting with "_" stay out of the legend; two style keys explain them
            ax1.axhline(100 * rates[fam]["majority"], color=line.get_color(), linestyle="--", linewidth=1,
                        label=f"_{fam} majority")
            ax1.axhline(100 * rates[fam]["chance"], color=line.get_color(), linestyle=":", linewidth=1,
                        label=f"_{fam} chance")
    ax1.plot(xs, [100 * e["mean"] for e in evals], marker="s", color="black", linewidth=2, label="mean")
    if rates:
        ax1.plot([], [], color="gray", linestyle="--", linewidth=1, label="majority class")
        ax1.plot([], [], color="gray", linestyle=":", linewidth=1, label="chance")
    ax1.set_xlabel(ps.ROUND_LABEL)
    ax1.set_ylabel(f"held-out {history['data'].get('scoring', 'exact match')} (%)")
    ax1.set_title("Global model on the held-out set")
    ax1.set_ylim(-2, 102)
    ax1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    rows = history["rounds"]
    if rows:
        ax2.plot([r["round"] for r in rows], [r["train_loss"] for r in rows], marker=".", label="mean client loss")
        ax2.legend(fontsize=8)
    ax2.set_xlabel(ps.ROUND_LABEL)
    ax2.set_ylabel("training loss (answer tokens)")
    ax2.set_title("Local training loss")
    fig.suptitle(f"{ps.label(history['algorithm'])} on {history['model']}, budgets k_i = {history['config']['budgets']}, "
                 f"r = {history['config']['rank']}")
    return fig


def plot_history(history: dict, path: str):
    """Write ``history_figure(history)`` to ``path`` as PNG (atomically).

    Parameters
    ----------
    history : dict
        A finetune run's history.
    path : str
        The PNG to write.
    """
    import matplotlib.pyplot as plt
    fig = history_figure(history)
    try:
        write_figure(path, fig, dpi=90)
    finally:
        plt.close(fig)
