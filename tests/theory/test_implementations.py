"""Round runners: the reference's real path, protocol implementations, loading, divergence."""
import numpy as np
import pytest

from fslora_ref.algorithms import FedIT, get_algorithm
from fslora_ref.algorithms.protocol import ServerState
from fslora_ref.client import DivergenceError
from fslora_ref.config import FedConfig
from fslora_ref.conformance.reference import ReferenceImplementation
from fslora_ref.federation import run_round
from fslora_ref.problems import least_squares, logistic
from theory.implementations import (AlgorithmRunner, ProtocolRunner, load_runner, runner_for, stack, trajectory)
from theory.paper.objective import random_points


def _setup(family="least_squares", batch_size=None):
    if family == "least_squares":
        problem = least_squares(n_clients=3, m=6, n=4, mean_size=16, batch_size=batch_size, seed=2)
    else:
        problem = logistic(n_clients=3, m=6, n_classes=3, mean_size=16, seed=2)
    config = FedConfig(rank=4, budgets=(1, 2, 4), local_steps=2, lr=0.05, rounds=3, seed=5, lora_scaling=0.8)
    return problem, config, random_points(problem, 1, seed=3)[0]


def test_algorithm_runner_is_run_round():
    problem, config, layers = _setup(batch_size=4)
    got = AlgorithmRunner().run(problem, config, layers, 2)
    want, _, _ = run_round(get_algorithm("fslora"), ServerState([(B.copy(), A.copy()) for B, A in layers]),
                           problem, config, 2)
    assert all(np.array_equal(g, w) for pg, pw in zip(got, want.layers) for g, w in zip(pg, pw))
    assert AlgorithmRunner().is_reference and not AlgorithmRunner(FedIT()).is_reference


class WhiteOnly(ReferenceImplementation):
    black_box_round = None


@pytest.mark.parametrize("family", ["least_squares", "logistic"])
@pytest.mark.parametrize("impl", [ReferenceImplementation(), WhiteOnly()], ids=["black-box", "white-box"])
def test_protocol_runner_on_the_reference_adapter_equals_the_reference(family, impl):
    # the adapter draws from the same (seed, round, client, layer) streams, so black-box rounds coincide;
    # a white-box-only implementation gets the reference's draws
    problem, config, layers = _setup(family)
    runner = ProtocolRunner(impl)
    assert runner.mode == ("black" if impl.black_box_round else "white")
    for t in range(3):
        got = runner.run(problem, config, layers, t)
        want = AlgorithmRunner().run(problem, config, layers, t)
        err = max(float(np.max(np.abs(g - w))) for pg, pw in zip(got, want) for g, w in zip(pg, pw))
        assert err < 1e-12
        assert not np.allclose(got[0][0], layers[0][0])


def test_protocol_runner_refuses_what_the_protocol_cannot_express():
    problem, config, layers = _setup(batch_size=4)
    with pytest.raises(ValueError, match="batch_size=4"):
        ProtocolRunner(ReferenceImplementation()).run(problem, config, layers, 0)
    problem, config, layers = _setup()
    with pytest.raises(ValueError, match="client_optimizer='adamw'"):
        ProtocolRunner(ReferenceImplementation()).run(problem, config.replace(client_optimizer="adamw"), layers, 0)
    with pytest.raises(TypeError, match="neither black_box_round"):
        runner_for(object())


def test_load_runner_accepts_protocol_objects_algorithm_classes_and_files():
    assert isinstance(load_runner("fslora_ref.conformance.reference:impl"), ProtocolRunner)
    alg = load_runner("tests.mutants.core_mutants:DividesBySelectors")
    assert isinstance(alg, AlgorithmRunner) and not alg.is_reference and alg.has_forms
    assert load_runner("fslora_ref.algorithms:FSLoRA").is_reference
    ex = load_runner("examples/numpy_fslora.py:impl")
    assert isinstance(ex, ProtocolRunner) and "examples/numpy_fslora.py:impl" in ex.describe()
    with pytest.raises(ValueError, match="MODULE:ATTR"):
        load_runner("no_colon")


class ShapeBug(ReferenceImplementation):
    def black_box_round(self, task):
        return [(B[:, :-1], A) for B, A in task.layers]


class Exploding(ReferenceImplementation):
    def black_box_round(self, task):
        return [(B * np.inf, A) for B, A in task.layers]


def test_malformed_and_non_finite_results():
    problem, config, layers = _setup()
    with pytest.raises(ValueError, match="returned B"):
        ProtocolRunner(ShapeBug()).run(problem, config, layers, 0)
    with pytest.raises(DivergenceError, match="round 0"):
        trajectory(ProtocolRunner(Exploding()), problem, config, layers)


def test_trajectory_is_deterministic_and_keyed_by_seed():
    problem, config, layers = _setup()
    a, b = (stack(trajectory(AlgorithmRunner(), problem, config, layers)) for _ in range(2))
    c = stack(trajectory(AlgorithmRunner(), problem, config.replace(seed=6), layers))
    assert a[0].shape == (4, 6, 4) and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


class ExplodingFromRound2(ReferenceImplementation):
    def black_box_round(self, task):
        out = super().black_box_round(task)
        return out if task.round_index < 2 else [(B * np.inf, A) for B, A in out.layers]


def test_one_round_loop_for_trajectories_and_seeded_runs():
    """trajectory and ours' run_seeds share one loop: same iterates as the reference's rounds; a
    divergence at round 2 is an error for trajectory and keeps rounds 0..1 for run_seeds."""
    from theory.ours.runs import run_seeds
    problem = least_squares(n_clients=3, m=6, n=4, mean_size=16, seed=2)
    config = FedConfig(rank=4, budgets=(1, 2, 4), local_steps=1, lr=0.05, rounds=4, seed=5)
    init = get_algorithm("fslora").init(problem, config).layers
    Bs, As = stack(trajectory(AlgorithmRunner(), problem, config, init))
    runs = run_seeds(problem, config, 4, [5])
    assert np.array_equal(runs.B[0], Bs) and np.array_equal(runs.A[0], As) and runs.diverged == ""
    with pytest.raises(DivergenceError, match="round 2"):
        trajectory(ProtocolRunner(ExplodingFromRound2()), problem, config, init)
    cut = run_seeds(problem, config, 4, [5], ProtocolRunner(ExplodingFromRound2()))
    assert cut.rounds == 2 and cut.diverged.startswith("seed 5: round 2")
    assert np.allclose(cut.B[0], Bs[:3], rtol=1e-12, atol=1e-14)


class QuadraticOnly(ReferenceImplementation):
    def black_box_round(self, task):
        raise TypeError("oracle 0 is a ProblemOracle; this adapter expresses QuadraticOracle only")


def test_an_implementation_that_cannot_take_problem_oracles_is_a_usage_error(monkeypatch):
    import sys
    import types
    module = types.ModuleType("quadratic_only_impl")
    module.impl = QuadraticOnly()
    monkeypatch.setitem(sys.modules, "quadratic_only_impl", module)
    with pytest.raises(ValueError, match="cannot run verify's full-batch least-squares clients.*QuadraticOracle only"):
        load_runner("quadratic_only_impl:impl")
