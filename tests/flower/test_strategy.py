"""FSLoRAStrategy in process (no Flower processes): configure_train / aggregate_train through the
real ClientApp and Flower's serialisation equal the reference's run_round bit for bit."""
import argparse
import json

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord

from fslora_ref.algorithms import ALGORITHMS, get_algorithm
from fslora_cli.simulate import DEFAULTS, build, configure_parser
from fslora_ref.client import DivergenceError
from fslora_ref.federation import run_round

from fslora_flower import records, strategy as strategy_mod
from fslora_cli.flower import run_config
from fslora_flower.strategy import FSLoRAStrategy, MissingClients

from inprocess import InProcessGrid


def simulate_args(**changes):
    p = argparse.ArgumentParser()
    configure_parser(p)
    args = p.parse_args([])
    for k, v in dict(dict(clients=4, rank=8, budgets="1,2,4,8", rounds=2, local_steps=3, m=10, n=9, lr=0.05,
                          batch_size=8, seed=3, out="unused"), **changes).items():
        setattr(args, k, v)
    args.ratios = None if args.budgets else args.ratios
    return args


def setup(algorithm="fslora", silent=(), **changes):
    args = simulate_args(**changes)
    problem, config, _ = build(args)
    grid = InProcessGrid(run_config("simulate", args, "unused"), config.n_clients, silent=silent)
    nodes = {i: 1000 + i for i in range(config.n_clients)}
    return problem, config, grid, nodes, get_algorithm(algorithm)


def flower_round(strat, grid, t, reorder=None):
    replies = grid.send_and_receive(strat.configure_train(t + 1, ArrayRecord(), ConfigRecord(), grid))
    return strat.aggregate_train(t + 1, reorder(replies) if reorder else replies)


def server_arrays(state):
    out = [x for pair in state.layers for x in pair]
    for key in ("delta_W", "merged"):
        out += list(state.extra.get(key, []))
    opt = state.extra.get("server_opt")
    if isinstance(opt, dict):
        out += [x for v in opt.values() if isinstance(v, list) for x in v]
    return out


def assert_trained_close(got_uploads, uploads):
    """The server's trained factors (sent, or rebuilt from the uploaded change) are the client's."""
    for got, up in zip(got_uploads, uploads):
        for pair, ref_pair in zip(got.trained, up.trained):
            for x, y in zip(pair, ref_pair):
                assert x.shape == y.shape and np.allclose(x, y, rtol=1e-12, atol=1e-14)


def assert_same(a, b):
    xs, ys = server_arrays(a), server_arrays(b)
    assert len(xs) == len(ys) and all(np.array_equal(x, y) for x, y in zip(xs, ys))


CASES = [(name, {}) for name in ALGORITHMS] + [
    ("fslora", {"client_optimizer": "adamw"}),
    ("fslora", {"client_fraction": 0.5, "server_optimizer": "adam", "server_lr": 0.1}),
    ("fslora", {"family": "two_layer"}),
    ("fedit", {"family": "logistic"}),
    ("flexlora", {"m": 6, "n": 5}),          # k_i = 8 > min(m, n): the truncation keeps zero components
]


@pytest.mark.parametrize("name,changes", CASES, ids=[f"{n}-{'-'.join(c) or 'default'}" for n, c in CASES])
def test_rounds_equal_run_round_bit_for_bit(name, changes):
    problem, config, grid, nodes, algo = setup(name, **changes)
    ref = algo.init(problem, config)
    strat = FSLoRAStrategy(algo, problem, config, nodes)
    for t in range(config.rounds):
        ref, plans, ups = run_round(algo, ref, problem, config, t)
        _, metrics = flower_round(strat, grid, t, reorder=lambda r: r[::-1])   # replies in reverse arrival order
        got_plans, got_ups, missing = strat.last
        assert not missing and [p.client for p in got_plans] == [p.client for p in plans]
        assert [u.losses for u in got_ups] == [u.losses for u in ups]
        assert [u.upload_floats for u in got_ups] == [u.upload_floats for u in ups]
        assert_trained_close(got_ups, ups)
        assert metrics["clients"] == len(plans)
        assert_same(strat.state, ref)
    assert any(np.linalg.norm(x) > 0 for x in ref.layers[0])


def test_masked_form_travels_with_its_masks():
    problem, config, grid, nodes, algo = setup("fslora")
    config = config.replace(form="masked")
    strat = FSLoRAStrategy(algo, problem, config, nodes)
    ref = algo.init(problem, config)
    ref, _, ups = run_round(algo, ref, problem, config, 0)
    flower_round(strat, grid, 0)
    assert_same(strat.state, ref)
    assert_trained_close(strat.last[1], ups)


def test_arrival_order_aggregation_is_caught(monkeypatch):
    """Teeth: summing in arrival order (Flower FedAvg's way) is not bit-reproducible here."""
    problem, config, grid, nodes, algo = setup("fslora", budgets="6,7,8,8", local_steps=2)
    ref, _, _ = run_round(algo, algo.init(problem, config), problem, config, 0)
    monkeypatch.setattr(strategy_mod, "sorted", lambda xs: list(xs), raising=False)  # keep arrival order
    strat = FSLoRAStrategy(algo, problem, config, nodes)
    flower_round(strat, grid, 0, reorder=lambda r: [r[2], r[0], r[3], r[1]])
    assert not all(np.array_equal(x, y) for x, y in zip(server_arrays(strat.state), server_arrays(ref)))


def test_wrong_upload_field_fails_loudly(monkeypatch):
    """Teeth: if the wire carried the trained factors where FSLoRA's rule reads the change, the
    server must refuse to aggregate rather than average something else."""
    problem, config, grid, nodes, algo = setup("fslora")
    monkeypatch.setitem(records.UPLOAD_FIELD, "fslora", "trained")
    strat = FSLoRAStrategy(algo, problem, config, nodes)
    with pytest.raises(TypeError):
        flower_round(strat, grid, 0)


def block_overhead(messages, floats, itemsize=8):
    """Per message: serialised bytes minus the float payload."""
    from fslora_flower.exchange import payload_bytes
    return [payload_bytes(m) - itemsize * f for m, f in zip(messages, floats)]


def test_fslora_download_and_upload_scale_with_k_not_r():
    """Bytes = 8 k_i (m + n) per layer + an overhead that depends on neither k_i nor r."""
    overheads = {}
    for rank, budgets in ((8, "1,2,4,8"), (32, "1,2,4,8")):
        problem, config, grid, nodes, algo = setup("fslora", rank=rank, budgets=budgets, family="two_layer")
        strat = FSLoRAStrategy(algo, problem, config, nodes)
        down = strat.configure_train(1, ArrayRecord(), ConfigRecord(), grid)
        floats = [p.download_floats for p in strat.plans.values()]
        assert floats == [k * sum(m + n for m, n in problem.layer_shapes) for k in config.budgets]
        replies = grid.send_and_receive(down)
        strat.aggregate_train(1, replies)
        up_floats = [u.upload_floats for u in strat.last[1]]
        assert up_floats == floats
        overheads[rank] = (block_overhead(down, floats), block_overhead(sorted(replies, key=lambda r: r.metadata.src_node_id), up_floats))
    for direction in (0, 1):
        values = overheads[8][direction] + overheads[32][direction]
        assert max(values) - min(values) <= 32, values          # a few shape digits at most
        assert max(values) < 4000
    # teeth: FedIT sends the full rank r, so the same overhead computed against k_i explodes with r
    problem, config, grid, nodes, algo = setup("fedit", rank=32, budgets="1,2,4,8", family="two_layer")
    strat = FSLoRAStrategy(algo, problem, config, nodes)
    down = strat.configure_train(1, ArrayRecord(), ConfigRecord(), grid)
    as_if_k = [k * sum(m + n for m, n in problem.layer_shapes) for k in config.budgets]
    assert max(block_overhead(down, as_if_k)) - min(block_overhead(down, as_if_k)) > 1000


@pytest.mark.parametrize("policy", ["stop", "continue"])
def test_a_silent_client(policy):
    problem, config, grid, nodes, algo = setup("fslora", silent={1002})
    strat = FSLoRAStrategy(algo, problem, config, nodes, on_missing=policy, reply_timeout=20)
    start = strat.state
    if policy == "stop":
        with pytest.raises(MissingClients) as err:
            flower_round(strat, grid, 0)
        msg = str(err.value)
        assert "client 2 (node 1002): no reply within 20 s" in msg and "--resume" in msg and "\n" not in msg
        assert strat.state is start                     # nothing aggregated
        return
    flower_round(strat, grid, 0)
    plans = algo.configure_round(start, problem, config, 0, [0, 1, 2, 3])
    kept = [p for p in plans if p.client != 2]
    ups = [algo.client_update(p, problem, config, 0) for p in kept]
    expected = algo.aggregate(start, kept, ups, config)     # the average over the 3 that replied
    assert_same(strat.state, expected)
    assert strat.last[2] == {2: "no reply within 20 s"}


def test_no_reply_at_all_stops_even_when_continuing():
    problem, config, grid, nodes, algo = setup("fslora", silent={1000, 1001, 1002, 1003})
    strat = FSLoRAStrategy(algo, problem, config, nodes, on_missing="continue")
    with pytest.raises(MissingClients, match="no participant replied"):
        flower_round(strat, grid, 0)


def test_client_divergence_is_the_reference_error():
    problem, config, grid, nodes, algo = setup("fslora", lr=1e150, local_steps=4)
    with pytest.raises(DivergenceError) as ref_err:
        run_round(algo, algo.init(problem, config), problem, config, 0)
    strat = FSLoRAStrategy(algo, problem, config, nodes, on_missing="continue")
    with pytest.raises(DivergenceError) as err:
        flower_round(strat, grid, 0)
    assert str(err.value) == str(ref_err.value)


def test_a_tampered_reply_is_a_refused_update_when_dropping():
    problem, config, grid, nodes, algo = setup("fslora")
    strat = FSLoRAStrategy(algo, problem, config, nodes, on_bad_update="drop")
    replies = grid.send_and_receive(strat.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    victim = next(r for r in replies if r.metadata.src_node_id == 1003)
    arrays = victim.content[records.UPLOAD]
    arrays["0.B"] = type(arrays["0.B"])(np.zeros((3, 3)))
    strat.aggregate_train(1, replies)
    assert strat.last[2][3].startswith("dropped: client 3: upload 0.B has shape (3, 3)")


def test_a_client_that_raises_is_named():
    problem, config, grid, nodes, algo = setup("fslora")
    grid.contexts[1001].node_config["partition-id"] = 3       # misconfigured node: claims another partition
    strat = FSLoRAStrategy(algo, problem, config, nodes, on_missing="continue")
    flower_round(strat, grid, 0)
    assert strat.last[2][1].startswith("failed (ValueError: this node is partition-id 3")


def test_strategy_runs_under_flowers_own_loop():
    """Strategy.start (Flower's round loop) drives it too, with the same result."""
    problem, config, grid, nodes, algo = setup("hetlora")
    strat = FSLoRAStrategy(algo, problem, config, nodes)
    result = strat.start(grid, ArrayRecord(), num_rounds=config.rounds, timeout=5)
    ref = algo.init(problem, config)
    for t in range(config.rounds):
        ref, _, _ = run_round(algo, ref, problem, config, t)
    assert_same(strat.state, ref)
    assert np.array_equal(result.arrays["0.B"].numpy(), ref.layers[0][0])


def test_run_config_round_trip():
    args = simulate_args()
    rc = run_config("simulate", args, "/tmp/x", round_timeout=12, on_missing="continue")
    assert json.loads(rc["job-args"])["budgets"] == "1,2,4,8" and rc["round-timeout"] == 12
    with pytest.raises(ValueError, match="on-missing"):
        run_config("simulate", args, "/tmp/x", on_missing="retry")
    with pytest.raises(ValueError, match="round-timeout"):
        run_config("simulate", args, "/tmp/x", round_timeout=0)
    assert set(DEFAULTS) <= set(json.loads(rc["job-args"]))


def test_an_error_reply_written_by_the_superlink_is_matched_to_its_client():
    problem, config, grid, nodes, algo = setup("fslora")
    grid.gone = {1001}
    strat = FSLoRAStrategy(algo, problem, config, nodes, on_missing="continue")
    flower_round(strat, grid, 0)
    assert strat.last[2] == {1: "failed (Node Unavailable - no heartbeat)"}
    assert [u.client for u in strat.last[1]] == [0, 2, 3]
