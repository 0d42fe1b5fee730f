"""curves.png of a finetune run: held-out accuracy and training loss against the round."""
from __future__ import annotations

from fslora_ref.outputs import write_figure


def plot_history(history: dict, path: str):
    """Two panels: exact-match accuracy per family (and mean) vs round; mean client loss vs round."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    evals = history["eval"]
    xs = [e["round"] for e in evals]
    for fam in evals[0]["accuracy"]:
        ax1.plot(xs, [100 * e["accuracy"][fam] for e in evals], marker="o", label=fam)
    ax1.plot(xs, [100 * e["mean"] for e in evals], marker="s", color="black", linewidth=2, label="mean")
    ax1.set_xlabel("round")
    ax1.set_ylabel("held-out accuracy (%)")
    ax1.set_title("Global model accuracy")
    ax1.set_ylim(-2, 102)
    ax1.legend(fontsize=8)
    rows = history["rounds"]
    if rows:
        ax2.plot([r["round"] for r in rows], [r["train_loss"] for r in rows], marker=".", label="mean client loss")
    ax2.set_xlabel("round")
    ax2.set_ylabel("training loss (answer tokens)")
    ax2.set_title("Local training loss")
    ax2.legend(fontsize=8)
    fig.suptitle(f"{history['algorithm']} on {history['model']}, budgets k_i = {history['config']['budgets']}, "
                 f"r = {history['config']['rank']}")
    fig.tight_layout()
    try:
        write_figure(path, fig, dpi=90)
    finally:
        plt.close(fig)
