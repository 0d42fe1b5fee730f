"""The claims engine's shared work changes no number: a unit of work (every arm of an evaluation seed,
every step of a tuning grid) shares one seed's minibatch draws and sketch streams, arms shared by several
claims run once, and each shortcut is compared with a fresh run. Mutants that would share draws between
different configurations (another seed, another client size, a stream not reset) are caught by the
same comparison."""
from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest

from fslora_ref.algorithms import fslora as fslora_mod
from fslora_ref.algorithms import protocol as protocol_mod
from fslora_ref.client import _all_finite
from fslora_ref.seeding import stream
from theory.empirical import claims as claims_mod
from theory.empirical import engine, tuning, tuning_paper
from theory.empirical.runs import Arm, run_unit
from theory.empirical.settings import settings_for

RATIOS = ("ratios", claims_mod.PAPER_RATIOS)
# arms that share a seed's draws in different ways: FSLoRA at several budgets and ranks (same sketch
# streams, other k), a drawn budget distribution, and baselines that draw no sketch
ARMS = (Arm("fs ratios", "fslora", 8, RATIOS), Arm("fs k=2", "fslora", 8, ("fixed", 2)),
        Arm("fs r=4", "fslora", 4, ("fixed", 2)), Arm("fs uniform", "fslora", 8, ("distribution", "uniform", 1, 4)),
        Arm("hetlora", "hetlora", 8, RATIOS), Arm("flora", "flora", 8, RATIOS), Arm("fedit", "fedit", 4, ("fixed", 4)))


def _settings(family="two_layer", protocol="sgd"):
    return settings_for(family, quick=True, rounds=6, clients=4, protocol=protocol)


def _lrs(settings):
    return {a.key: settings.lr * (0.5 if settings.protocol == "sgd" else 1.0) for a in ARMS}


def _fresh(settings, seeds):
    """Each (seed, arm) run in a process state with no reuse block (the reference)."""
    return {s: run_unit(settings, s, ARMS, lrs=_lrs(settings)) for s in seeds}


def _shared(settings, seeds):
    """The seeds run one after another inside ONE reuse block: a key that ignored the seed would leak."""
    with fslora_mod.reuse_sketch_draws(), protocol_mod.reuse_batch_draws():
        return {s: run_unit(settings, s, ARMS, lrs=_lrs(settings)) for s in seeds}


@pytest.mark.parametrize("family,protocol", [("two_layer", "sgd"), ("least_squares", "paper"), ("logistic", "sgd")])
def test_a_unit_sharing_its_draws_gives_exactly_the_fresh_runs(family, protocol):
    settings = _settings(family, protocol)
    assert _shared(settings, (0, 1)) == _fresh(settings, (0, 1))


def test_the_engines_unit_of_work_runs_inside_the_reuse_blocks_and_matches_a_fresh_run():
    settings = _settings()
    inside = {}

    def probe(*task):
        inside["batches"] = protocol_mod._REUSED_BATCHES is not None
        inside["sketches"] = fslora_mod._REUSED_DRAWS is not None
        return run_unit(*task)

    result, cpu, wall = engine._measured(probe, settings, 0, ARMS, None, None, _lrs(settings))
    assert inside == {"batches": True, "sketches": True} and cpu >= 0 and wall >= 0
    assert result == _fresh(settings, (0,))[0]
    assert protocol_mod._REUSED_BATCHES is None and fslora_mod._REUSED_DRAWS is None   # nothing outlives the unit


def test_tuning_inside_the_reuse_blocks_matches_a_fresh_tuning():
    settings = _settings("least_squares")
    arm = ARMS[0]
    fresh = tuning.tune_arm(settings, arm, (1000, 1001))
    shared, _, _ = engine._measured(tuning.tune_arm, settings, arm, (1000, 1001))
    assert shared == fresh
    paper = _settings("least_squares", "paper")
    assert engine._measured(tuning_paper.tune_algorithm, paper, arm, (1000,))[0] == \
        tuning_paper.tune_algorithm(paper, arm, (1000,))


# ---- mutants: sharing between different configurations is caught by the same comparison ------------------
@contextlib.contextmanager
def _batch_key_without(dropped: str):
    """reused_batches with a key missing the seed or the client size (a memo that shares too much)."""
    real = protocol_mod.reused_batches

    def mutant(problem, config, round_index, client):
        memo = protocol_mod._REUSED_BATCHES
        if memo is None or problem.batch_size is None:
            return real(problem, config, round_index, client)
        key = (None if dropped == "seed" else config.seed, round_index, client,
               None if dropped == "size" else problem.clients[client].size, problem.batch_size)
        if key not in memo:
            rng = stream(config.seed, round=round_index, client=client, purpose="batch")
            memo[key] = tuple(problem.sample_batch(client, rng) for _ in range(config.local_steps))
        return memo[key]

    protocol_mod.reused_batches = mutant
    try:
        yield
    finally:
        protocol_mod.reused_batches = real


def test_a_batch_memo_that_ignores_the_seed_is_caught():
    # equal client sizes at every seed, so the mutant's key really collides across seeds
    settings = replace(_settings(), dims=_settings().dims + (("size_spread", 0.0),))
    assert [c.size for c in settings.problem(0).clients] == [c.size for c in settings.problem(1).clients]
    with _batch_key_without("seed"):
        assert _shared(settings, (0, 1)) != _fresh(settings, (0, 1))


def test_a_batch_memo_that_ignores_the_client_size_is_caught():
    # two families with other client sizes at the same seed run in one block
    ls, lg = _settings("least_squares"), _settings("logistic")
    assert [c.size for c in ls.problem(0).clients] != [c.size for c in lg.problem(0).clients]
    with _batch_key_without("size"):
        with fslora_mod.reuse_sketch_draws(), protocol_mod.reuse_batch_draws():
            shared = (run_unit(ls, 0, ARMS, lrs=_lrs(ls)), run_unit(lg, 0, ARMS, lrs=_lrs(lg)))
    assert shared != (run_unit(ls, 0, ARMS, lrs=_lrs(ls)), run_unit(lg, 0, ARMS, lrs=_lrs(lg)))


def test_a_sketch_stream_not_reset_between_budgets_is_caught(monkeypatch):
    real = fslora_mod._reused_stream

    def not_reset(seed, round_index, client, layer):
        hit = fslora_mod._REUSED_STREAMS.get((seed, round_index, client, layer))
        return hit[0] if hit is not None else real(seed, round_index, client, layer)

    settings = _settings()
    fresh = _fresh(settings, (0,))
    monkeypatch.setattr(fslora_mod, "_reused_stream", not_reset)
    assert _shared(settings, (0,)) != fresh


def test_reused_batches_are_the_streams_draws_read_only_and_only_for_a_reference_problem():
    settings = _settings()
    problem, config = settings.problem(3), settings.config(ARMS[0], 3)
    assert protocol_mod.reused_batches(problem, config, 2, 1) is None      # outside a block: the stream
    with protocol_mod.reuse_batch_draws():
        first = protocol_mod.reused_batches(problem, config, 2, 1)
        with protocol_mod.reuse_batch_draws():     # a nested block shares the outer one's draws
            again = protocol_mod.reused_batches(problem, config, 2, 1)
        assert protocol_mod.reused_batches(problem, config, 2.0, 1) is None   # the stream rejects it by name
    rng = stream(3, round=2, client=1, purpose="batch")
    assert [b.tolist() for b in first] == [problem.sample_batch(1, rng).tolist() for _ in range(config.local_steps)]
    assert all(a is b for a, b in zip(first, again)) and not any(b.flags.writeable for b in first)
    assert protocol_mod._REUSED_BATCHES is None


# ---- the finiteness check's fast path ---------------------------------------------------------------------
@pytest.mark.parametrize("arrays,expected", [
    ([np.ones((3, 2)), np.zeros(4)], True),
    ([np.ones(3), np.array([1.0, np.nan])], False),
    ([np.array([np.inf, 1.0])], False),
    ([np.array([np.inf, -np.inf])], False),
    ([np.array([1e308, 1e308, -1e308])], True),       # finite entries whose sum overflows
    ([np.array([1e308, 1e308]), np.array([np.nan])], False),
])
def test_the_finiteness_check_agrees_with_the_entrywise_one(arrays, expected):
    with np.errstate(over="ignore", invalid="ignore"):
        assert _all_finite(arrays) is expected
        assert expected == all(np.isfinite(a).all() for a in arrays)


# ---- arms shared by several claims run once -----------------------------------------------------------------
def test_an_arm_in_several_claims_is_run_once_and_different_configurations_never_merge():
    claims = claims_mod.build_claims()
    listed = [a for c in claims for a in c.arms]
    arms = engine.needed_arms(claims)
    assert len(arms) < len(listed) and len({a.key for a in arms}) == len(arms)
    assert {a.key for a in listed} == {a.key for a in arms}
    # same label, other budget: another run (a key on the label would merge them)
    a, b = Arm("k/r=4/16", "fslora", 16, ("fixed", 4)), Arm("k/r=4/16", "fslora", 16, ("fixed", 2))
    assert len(engine.needed_arms([claims_mod.EmpiricalClaim("x", "", "", "rounds", claims[0].hypothesis,
                                                             (a, b), ())])) == 2
