"""Client problem families with exact gradients."""
from .base import ClientData, Problem
from .families import FAMILIES, least_squares, logistic, make_problem, two_layer
from .sketched import enumerate_sketched, least_squares_regulariser, sketched_loss

__all__ = ["ClientData", "Problem", "FAMILIES", "least_squares", "logistic", "two_layer", "make_problem",
           "enumerate_sketched", "least_squares_regulariser", "sketched_loss"]
