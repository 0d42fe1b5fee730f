"""What every notebook shares: the size switch, where key figures go, and its own clock.

Imported first in each notebook (the kernel's working directory is this folder), before numpy,
because BLAS reads OPENBLAS_NUM_THREADS once at import: one thread avoids the thread contention
that made small matrix products slower, not faster, on the 2-core machines this runs on.
"""
import os
import time
import warnings

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# transformers imports tqdm.auto, which warns (with the site-packages path) that ipywidgets is
# missing; no notebook shows a progress bar, so the warning would only clutter the outputs
warnings.filterwarnings("ignore", message="IProgress not found")

SMALL = os.environ.get("FSLORA_NOTEBOOK_SIZE", "full") == "small"   # the test suite sets "small"
FIG_DIR = os.environ.get("FSLORA_FIGURES_DIR")                      # `make notebooks` sets docs/figures
T0 = time.perf_counter()


def save(fig, name):
    """Keep a key figure as <FSLORA_FIGURES_DIR>/<name>.png (for the README) when the variable is set."""
    if FIG_DIR:
        os.makedirs(FIG_DIR, exist_ok=True)
        fig.savefig(os.path.join(FIG_DIR, name + ".png"), dpi=110, bbox_inches="tight")


def elapsed() -> float:
    """Seconds since the notebook imported this module."""
    return time.perf_counter() - T0
