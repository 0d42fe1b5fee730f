import numpy as np

from fslora_ref import ALGORITHMS, FedConfig, budgets_from_ratios, get_algorithm, least_squares, run


def test_every_algorithm_lowers_the_loss():
    problem = least_squares(n_clients=4, seed=0)
    config = FedConfig(rank=8, budgets=budgets_from_ratios(8, [0.25, 0.5, 0.75, 1.0], 4), lr=0.01, rounds=10)
    for name in ALGORITHMS:
        history = run(get_algorithm(name), problem, config)
        assert history["loss"][-1] < history["loss"][0], name
        assert np.all(np.isfinite(history["loss"]))
