"""The one driver loop with another recorder (the LLM bridge's kind: a dict history): resume,
per-round checkpoints and error wrapping are the loop's, whatever the recorder records."""
from __future__ import annotations

import pytest

from fslora_ref import DivergenceError, FedConfig, get_algorithm, least_squares, run
from fslora_ref.checkpoint import checkpoint_path
from fslora_ref.federation import run_round

PROBLEM = least_squares(n_clients=2, m=5, n=3, seed=0, batch_size=4)
CONFIG = FedConfig(rank=4, budgets=[1, 3], local_steps=2, lr=0.01, rounds=3)


class DictRecorder:
    """Records the per-round upload sizes and the server's first B entry in a dict."""

    def __init__(self):
        self.calls = []

    def identity(self, algorithm, given):
        return dict(given, recorder="dict")

    def start(self, algorithm, state, config):
        self.calls.append(("start", 0))
        return {"algorithm": algorithm.name, "rounds": [], "b00": [float(state.layers[0][0][0, 0])]}

    def resumed(self, path, algorithm, state, history, config, next_round):
        self.calls.append(("resumed", next_round))
        assert len(history["rounds"]) == next_round
        return history

    def record(self, history, algorithm, state, config, round_index, plans, uploads):
        row = {"round": round_index + 1, "upload": sum(up.upload_floats for up in uploads)}
        history["rounds"].append(row)
        history["b00"].append(float(state.layers[0][0][0, 0]))
        return row

    def finish(self, history, state):
        self.calls.append(("finish", len(history["rounds"])))
        return history


def test_a_dict_history_is_checkpointed_and_resumed_by_the_loop(tmp_path):
    whole = run(get_algorithm("fslora"), PROBLEM, CONFIG, recorder=DictRecorder())
    path = checkpoint_path(tmp_path, "fslora")
    first = DictRecorder()
    run(get_algorithm("fslora"), PROBLEM, CONFIG, checkpoint=path, stop_after=1, recorder=first)
    second = DictRecorder()
    resumed = run(get_algorithm("fslora"), PROBLEM, CONFIG, checkpoint=path, resume=True, recorder=second)
    assert resumed == whole and len(whole["rounds"]) == 3
    assert first.calls == [("start", 0), ("finish", 1)] and second.calls == [("resumed", 1), ("finish", 3)]
    # the same history as the default recorder's run: the rounds themselves do not depend on the recorder
    cumulative = run(get_algorithm("fslora"), PROBLEM, CONFIG)["upload_floats"]
    assert [r["upload"] for r in whole["rounds"]] == [b - a for a, b in zip(cumulative, cumulative[1:])]


def test_the_recorders_identity_guards_the_checkpoint(tmp_path):
    path = checkpoint_path(tmp_path, "fslora")
    run(get_algorithm("fslora"), PROBLEM, CONFIG, checkpoint=path, stop_after=1, recorder=DictRecorder())
    with pytest.raises(ValueError, match=r"differing fields: .*recorder \(\"dict\" in the checkpoint, absent now\)"):
        run(get_algorithm("fslora"), PROBLEM, CONFIG, checkpoint=path, resume=True)


def test_divergence_and_bad_resumes_are_wrapped_by_the_loop_for_any_recorder(tmp_path):
    def diverging(algorithm, state, problem, config, round_index):
        raise DivergenceError(f"round {round_index}, client 0: non-finite loss")

    with pytest.raises(DivergenceError, match=r"^fslora: round 0, client 0: non-finite loss$"):
        run(get_algorithm("fslora"), PROBLEM, CONFIG, recorder=DictRecorder(), round_fn=diverging)

    path = checkpoint_path(tmp_path, "fslora")
    run(get_algorithm("fslora"), PROBLEM, CONFIG, checkpoint=path, stop_after=1, recorder=DictRecorder())

    def unfit(algorithm, state, problem, config, round_index):
        if round_index == 1:
            raise KeyError("delta_W")
        return run_round(algorithm, state, problem, config, round_index)

    with pytest.raises(ValueError, match=r"its server state does not fit this run \(KeyError: 'delta_W'\)"):
        run(get_algorithm("fslora"), PROBLEM, CONFIG, checkpoint=path, resume=True, recorder=DictRecorder(),
            round_fn=unfit)


@pytest.mark.parametrize("name", ["fslora", "flexlora"])
def test_the_row_is_every_clients_part_reduced_in_client_order(name):
    """The row is ``reduce_evaluations`` of the clients' ``evaluate_client`` parts (what a Flower server
    gets from the nodes), and equals the problem's own global loss and mean weight gradient bit for bit
    (unweighted means over clients: a data-size weighting would be caught)."""
    import numpy as np
    from fslora_ref.problems.sketched import exact_sketched_loss, mean_sketched_loss
    from fslora_ref.recorder import evaluate, evaluate_client, reduce_evaluations
    problem = least_squares(n_clients=3, m=6, n=4, seed=1, batch_size=4, size_spread=1.0)
    config = CONFIG.replace(budgets=[1, 2, 4])
    algorithm = get_algorithm(name)
    state, _, _ = run_round(algorithm, algorithm.init(problem, config), problem, config, 0)
    row = evaluate(algorithm, state, problem, config)
    weights = algorithm.global_weights(state, problem, config)
    layers = algorithm.global_factors(state) if algorithm.has_trainable_factors else None
    parts = [evaluate_client(problem, i, weights, layers, config.lora_scaling) for i in range(3)]
    reduced = reduce_evaluations(parts)
    assert reduced == {k: v for k, v in row.items() if k != "sketched_loss"}
    assert ("grad_norm_factors" in reduced) is algorithm.has_trainable_factors
    assert row["loss"] == problem.global_loss(weights)
    assert row["grad_norm_weights"] == float(np.sqrt(sum(np.sum(g * g) for g in problem.global_weight_grads(weights))))
    if name == "fslora":
        assert row["sketched_loss"] == mean_sketched_loss(
            [exact_sketched_loss(problem, i, layers, config.lora_scaling, [config.budgets[i]]) for i in range(3)])
    assert len(set(problem.client_sizes)) == 3      # a data-size-weighted mean would differ
    assert float(np.average([p.loss for p in parts], weights=problem.client_sizes)) != row["loss"]


def test_the_sketched_loss_is_none_when_a_client_has_no_exact_value():
    """f^S is the mean of the clients' f_i^S only when every one is exact; the in-process run stops
    computing at the first client without one (a generator is not drawn further)."""
    from fslora_ref.problems.sketched import mean_sketched_loss
    drawn = []

    def values():
        for v in (1.0, None, 2.0):
            drawn.append(v)
            yield v
    assert mean_sketched_loss([1.0, 2.0, 4.5]) == 2.5
    assert mean_sketched_loss(values()) is None and drawn == [1.0, None]
