"""The server validates every update before aggregating: a NaN, an infinity, a wrong dtype or shape,
or a norm above --max-update-norm is refused and the client named; --on-bad-update stop ends the
round before aggregating, drop leaves the client out (the average is over the others)."""
import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord

from fslora_flower import records
from fslora_flower.strategy import FSLoRAStrategy, RefusedUpdate

from test_strategy import assert_same, setup

VICTIM = 3   # client 3 = node 1003


def poisoned_replies(strat, grid, poison):
    replies = grid.send_and_receive(strat.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    victim = next(r for r in replies if r.metadata.src_node_id == 1000 + VICTIM)
    arrays = victim.content[records.UPLOAD]
    arrays["0.B"] = Array(np.ascontiguousarray(poison(arrays["0.B"].numpy())))
    return replies


def _set(value):
    def poison(x):
        x = x.copy()
        x[0, 0] = value
        return x
    return poison


POISONS = {
    "nan": (_set(np.nan), "1 NaN value(s)"),
    "inf": (_set(np.inf), "1 infinite value(s)"),
    "float16": (lambda x: x.astype(np.float16), "dtype float16"),
    "int": (lambda x: np.round(x * 1e6).astype(np.int64), "dtype int64"),
    "shape": (lambda x: x[:, :-1], "has shape"),
}


@pytest.mark.parametrize("kind", sorted(POISONS))
def test_a_poisoned_update_stops_the_round_naming_the_client(kind):
    problem, config, grid, nodes, algo = setup("fslora")
    strat = FSLoRAStrategy(algo, problem, config, nodes, on_missing="continue")   # a bad update is not "missing"
    start = strat.state
    poison, said = POISONS[kind]
    with pytest.raises(RefusedUpdate) as err:
        strat.aggregate_train(1, poisoned_replies(strat, grid, poison))
    msg = str(err.value)
    assert f"client {VICTIM}: upload 0.B" in msg and said in msg and f"node {1000 + VICTIM}" in msg, msg
    assert "\n" not in msg and strat.state is start          # nothing aggregated


@pytest.mark.parametrize("factor", [1e3, 1e6, 1e300])
def test_the_norm_bound_refuses_a_scaled_update(factor):
    problem, config, grid, nodes, algo = setup("fslora")
    honest = FSLoRAStrategy(algo, problem, config, nodes)
    replies = grid.send_and_receive(honest.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    norms = [records.update_norm([(r.content[records.UPLOAD][f"0.{n}"].numpy(),) for n in "BA"]) for r in replies]
    bound = 10 * max(norms)
    honest_bounded = FSLoRAStrategy(algo, problem, config, nodes, max_update_norm=bound)
    honest_bounded.aggregate_train(1, grid.send_and_receive(
        honest_bounded.configure_train(1, ArrayRecord(), ConfigRecord(), grid)))   # honest updates pass the bound
    strat = FSLoRAStrategy(algo, problem, config, nodes, max_update_norm=bound)
    with pytest.raises(RefusedUpdate, match=f"client {VICTIM}: upload norm .* exceeds the bound"):
        strat.aggregate_train(1, poisoned_replies(strat, grid, lambda x: x * factor))


def test_drop_leaves_the_client_out_and_averages_over_the_others():
    problem, config, grid, nodes, algo = setup("fslora")
    strat = FSLoRAStrategy(algo, problem, config, nodes, on_bad_update="drop")     # on_missing stays "stop"
    start = strat.state
    strat.aggregate_train(1, poisoned_replies(strat, grid, _set(np.nan)))
    plans = algo.configure_round(start, problem, config, 0, [0, 1, 2, 3])
    kept = [p for p in plans if p.client != VICTIM]
    expected = algo.aggregate(start, kept, [algo.client_update(p, problem, config, 0) for p in kept], config)
    assert_same(strat.state, expected)
    assert strat.last[2] == {VICTIM: f"dropped: client {VICTIM}: upload 0.B has 1 NaN value(s)"}
    assert all(np.isfinite(x).all() for pair in strat.state.layers for x in pair)


def test_non_finite_losses_are_refused():
    problem, config, grid, nodes, algo = setup("fslora")
    strat = FSLoRAStrategy(algo, problem, config, nodes)
    replies = grid.send_and_receive(strat.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    victim = next(r for r in replies if r.metadata.src_node_id == 1000 + VICTIM)
    metrics = victim.content[records.METRICS]
    metrics["losses"] = [float("nan")] * len(metrics["losses"])
    with pytest.raises(RefusedUpdate, match=f"client {VICTIM}: reports non-finite local losses"):
        strat.aggregate_train(1, replies)


def test_the_policy_reaches_the_server_through_the_run_config():
    from fslora_cli.flower import run_config
    from fslora_flower.settings import Settings
    from test_strategy import simulate_args
    rc = run_config("simulate", simulate_args(), "/tmp/x", on_bad_update="drop", max_update_norm=5.0)
    s = Settings.from_run_config(rc)
    assert (s.on_bad_update, s.max_update_norm) == ("drop", 5.0)
    rc["on-bad-update"] = "ignore"
    with pytest.raises(ValueError, match="'on-bad-update' must be one of"):
        Settings.from_run_config(rc)
