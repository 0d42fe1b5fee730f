"""fslora_ref: a dependency-light NumPy reference for Federated Sketching LoRA (FSLoRA).

Read ``algorithms/fslora.py`` for Algorithm 1; ``sketch.py`` for the random-k sketch.
"""
from .algorithms import ALGORITHMS, get_algorithm
from .client import DivergenceError, local_train
from .config import FedConfig, budgets_from_ratios, draw_budgets
from .federation import History, run, run_round
from .problems import least_squares, logistic, make_problem, two_layer
from .seeding import stream
from .sketch import Sketch, sample_sketch, sketch_moments

__version__ = "0.1.0"

__all__ = ["ALGORITHMS", "get_algorithm", "DivergenceError", "local_train", "FedConfig", "budgets_from_ratios",
           "draw_budgets", "History", "run", "run_round", "least_squares", "logistic", "make_problem", "two_layer",
           "stream", "Sketch", "sample_sketch", "sketch_moments"]
