"""Hypothesis fuzz of the public API entry points: sketch, seeding, config, problems, run and the
conformance Options. Whatever the arguments, an entry point either raises ValueError / TypeError
(or the documented DivergenceError of a run) or returns a valid, finite result; values it would
have to coerce (1.7 as an index or a round) must raise. Each property is also run on the
pre-issue-11 code (tests/mutants/core_mutants.py), which it must catch."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from fslora_ref import (ALGORITHMS, DivergenceError, FedConfig, Sketch, budgets_from_ratios, draw_budgets,
                        get_algorithm, least_squares, make_problem, run, sample_sketch, sketch_moments, stream,
                        two_layer)
from fslora_ref.conformance.session import Options
from fslora_ref.outputs import dumps_json

from tests.mutants import core_mutants as mutants

ALLOWED = (ValueError, TypeError)

junk = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.floats(allow_nan=True, allow_infinity=True),
                 st.lists(st.integers(0, 3), max_size=2), st.just(object()))
huge = st.sampled_from([2**31, 10**12, 2**63, 2**80, 10**400])
small = st.integers(-3, 10)
NUMPY_INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
NUMPY_FLOATS = [np.float16, np.float32, np.float64]


def as_numpy(values, types=NUMPY_INTS):
    """The same values as NumPy scalars of every type that holds them (the API must check them like
    Python numbers: np.uint16(65535) * np.uint16(65535) wraps around)."""
    def cast(pair):
        kind, v = pair
        info = np.iinfo(kind) if kind in NUMPY_INTS else None
        if info is not None and not info.min <= v <= info.max:
            return np.int64(v) if -2**63 <= v < 2**63 else v
        return kind(v)
    return st.tuples(st.sampled_from(types), values).map(cast)


numpy_huge = st.sampled_from([np.uint16(65535), np.int32(2**31 - 1), np.int64(2**62), np.uint64(2**64 - 1)])
numpy_reals = as_numpy(st.floats(allow_nan=True, allow_infinity=True, width=16), NUMPY_FLOATS)
an_int = st.one_of(small, small, small, huge, st.floats(-3, 10), junk,   # mostly plausible, some absurd
                   as_numpy(small), numpy_huge, numpy_reals, st.just(np.bool_(True)))
a_real = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 10), huge, junk, numpy_reals,
                   as_numpy(st.integers(-3, 10)), numpy_huge)


def mostly(valid, invalid=None):
    """``valid`` nine times in ten, ``invalid`` (default: int-like values, often absurd) otherwise, so
    that calls with several arguments are often entirely valid and get past validation.
    (st.one_of would flatten nested alternatives and give ``valid`` a small share.)"""
    invalid = an_int if invalid is None else invalid
    return st.integers(0, 9).flatmap(lambda pick: valid if pick else invalid)


def attempt(fn, *args, **kwargs):
    """(result, None) or (None, error) for an allowed error; any other exception fails the test."""
    try:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs), None
    except ALLOWED as exc:
        return None, exc


def is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


# -- the properties (each takes the implementation, so a mutant can be put in its place) ------------
def check_sketch(make_sketch, rank, indices):
    S, err = attempt(make_sketch, rank, indices)
    if err is None:
        assert is_int(rank) and all(is_int(i) for i in indices), f"Sketch({rank!r}, {indices!r}) coerced its input"
        assert 1 <= S.k <= S.rank and np.array_equal(S.indices, sorted(int(i) for i in indices))
        d = S.diagonal()
        assert np.all(np.isfinite(d)) and math.isclose(d.sum(), S.rank)


def check_stream(make_stream, seed, round, client, layer, purpose):
    rng, err = attempt(make_stream, seed, round=round, client=client, layer=layer, purpose=purpose)
    if err is None:
        assert all(is_int(v) for v in (seed, round, client, layer)), "stream() coerced a non-integer id"
        assert np.isfinite(rng.standard_normal())


def check_budgets(fn, rank, ratios, n_clients):
    budgets, err = attempt(fn, rank, ratios, n_clients)
    if err is None:
        assert is_int(rank) and rank >= 1 and is_int(n_clients), "budgets_from_ratios accepted a bad rank or N"
        assert len(budgets) == n_clients and all(is_int(k) and 1 <= k <= rank for k in budgets)


def fuzz(check, fn, shrink=True, **strategies):
    """Run ``check(fn, **drawn)`` under hypothesis (the 'ci' profile: derandomized, 60 examples)."""
    @given(**strategies)
    def prop(**kwargs):
        check(fn, **kwargs)
    if not shrink:  # a mutant only has to fail (within more examples); shrinking its counterexample is wasted time
        prop = settings(max_examples=500, phases=[Phase.explicit, Phase.reuse, Phase.generate])(prop)
    prop()


SKETCH_ARGS = dict(rank=mostly(st.integers(5, 10)),
                   indices=mostly(st.lists(st.integers(0, 4), min_size=1, max_size=4, unique=True),
                                  st.one_of(st.lists(st.one_of(st.integers(0, 9), st.floats(0, 9)), min_size=1,
                                                     max_size=4), st.lists(an_int, max_size=4))))
STREAM_ARGS = dict(seed=mostly(st.integers(0, 5)), round=mostly(st.integers(-1, 5)),
                   client=mostly(st.integers(-1, 5)), layer=mostly(st.integers(-1, 5)),
                   purpose=mostly(st.sampled_from(["sketch", "batch", "init"]), st.one_of(st.just("nope"), junk)))
BUDGET_ARGS = dict(rank=mostly(st.integers(1, 64)),
                   ratios=mostly(st.lists(st.floats(0.01, 1), min_size=1, max_size=3),
                                 st.one_of(st.lists(a_real, max_size=3), junk)),
                   n_clients=mostly(st.integers(1, 8)))


def test_fuzz_sketch():
    fuzz(check_sketch, Sketch, **SKETCH_ARGS)


def test_fuzz_stream():
    fuzz(check_stream, stream, **STREAM_ARGS)


def test_fuzz_budgets_from_ratios():
    fuzz(check_budgets, budgets_from_ratios, **BUDGET_ARGS)


@pytest.mark.parametrize("check,mutant,strategies", [
    (check_sketch, mutants.coercing_sketch, SKETCH_ARGS),
    (check_stream, mutants.coercing_stream, STREAM_ARGS),
    (check_budgets, mutants.coercing_budgets_from_ratios, BUDGET_ARGS),
], ids=["sketch", "stream", "budgets_from_ratios"])
def test_fuzz_catches_the_old_coercing_code(check, mutant, strategies):
    with pytest.raises((AssertionError, ArithmeticError, BaseExceptionGroup)):
        fuzz(check, mutant, shrink=False, **strategies)


@given(rank=mostly(st.integers(1, 10)), k=mostly(st.integers(1, 10)),
       rng=mostly(st.just(np.random.default_rng(0)), junk))
def test_fuzz_sample_sketch_and_moments(rank, k, rng):
    S, err = attempt(sample_sketch, rank, k, rng)
    if err is None:
        assert S.k == k and S.rank == rank
    moments, err = attempt(sketch_moments, rank, k)
    if err is None:
        assert all(np.isfinite(v) for v in moments.values()) and moments["c_k"] >= 0


@given(n_clients=mostly(st.integers(1, 8)), r_min=mostly(st.integers(1, 4)), r_max=mostly(st.integers(1, 8)),
       distribution=mostly(st.sampled_from(["uniform", "normal", "heavy_tail_low"]), junk), seed=mostly(st.integers(0, 9)))
def test_fuzz_draw_budgets(n_clients, r_min, r_max, distribution, seed):
    budgets, err = attempt(draw_budgets, n_clients, r_min, r_max, distribution, seed)
    if err is None:
        assert len(budgets) == n_clients and all(is_int(k) and r_min <= k <= r_max for k in budgets)


positive = st.floats(1e-6, 1e6)
CONFIG_ARGS = dict(rank=mostly(st.just(8)), budgets=mostly(st.lists(st.integers(1, 8), min_size=1, max_size=3),
                                                           st.one_of(st.lists(an_int, max_size=3), junk)),
                   local_steps=mostly(st.integers(1, 5)), lr=mostly(positive, a_real), rounds=mostly(st.integers(0, 9)),
                   seed=mostly(st.integers(0, 9)), lora_scaling=mostly(positive, a_real),
                   weight_decay=mostly(st.just(0.0), a_real), client_optimizer=mostly(st.just("sgd"), junk),
                   client_fraction=mostly(st.floats(0.01, 1), a_real),
                   server_optimizer=mostly(st.sampled_from(["none", "sgd", "adam"]), junk),
                   server_lr=mostly(positive, a_real), form=mostly(st.sampled_from(["submatrix", "masked"]), junk),
                   extra=mostly(st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                                st.one_of(st.dictionaries(st.text(max_size=2), a_real, max_size=2), junk)))


@given(**CONFIG_ARGS)
def test_fuzz_config(**kwargs):
    config, err = attempt(FedConfig, **kwargs)
    if err is None:
        dumps_json(config.to_json())  # strict JSON: finite, serialisable (a checkpoint holds it)
        assert all(is_int(k) and 1 <= k <= config.rank for k in config.budgets)
        assert config == FedConfig.from_json(config.to_json()) and hash(config) is not None


PROBLEM_ARGS = dict(family=mostly(st.sampled_from(["least_squares", "logistic", "two_layer"]), junk),
                    n_clients=mostly(st.one_of(st.integers(1, 3), as_numpy(st.integers(1, 3)))),
                    m=mostly(st.one_of(st.integers(1, 6), as_numpy(st.integers(1, 6)))),
                    target_rank=mostly(st.integers(1, 3)), mean_size=mostly(st.one_of(st.integers(4, 12),
                                                                                     as_numpy(st.integers(4, 12)))),
                    size_spread=mostly(st.floats(0, 3), a_real), noise=mostly(st.floats(0, 1e3), a_real),
                    heterogeneity=mostly(st.floats(0, 1e3), a_real),
                    batch_size=mostly(st.one_of(st.none(), st.just(4))), seed=mostly(st.integers(0, 9)))


@given(**PROBLEM_ARGS)
def test_fuzz_problems(family, **kwargs):
    problem, err = attempt(make_problem, family, **kwargs)
    if err is None:
        for W in problem.base_weights:
            assert np.all(np.isfinite(W))
        for c in problem.clients:
            assert np.all(np.isfinite(c.X)) and np.all(np.isfinite(c.targets))
        loss = problem.global_loss(problem.base_weights)
        assert np.isfinite(loss), f"make_problem({family!r}, {kwargs}) gave a non-finite loss without an error"


PROBLEMS = [least_squares(n_clients=3, m=5, n=3, mean_size=8, seed=0, batch_size=4),
            two_layer(n_clients=3, m=4, hidden=5, n=3, mean_size=8, seed=1)]


@given(which=st.sampled_from([0, 1]), name=st.sampled_from(sorted(ALGORITHMS)), rank=mostly(st.just(6)),
       budgets=st.lists(st.integers(1, 6), min_size=3, max_size=3),
       lr=mostly(st.one_of(st.floats(1e-6, 0.1), st.floats(1e-6, 1e300)), a_real),
       lora_scaling=mostly(st.one_of(st.floats(0.1, 4), st.floats(1e-3, 1e100)), a_real), rounds=mostly(st.integers(0, 2)),
       server=st.sampled_from([("none", 1.0), ("adam", 0.1), ("sgd", 1e200)]),
       client_optimizer=st.sampled_from(["sgd", "adamw"]))
def test_fuzz_run(which, name, rank, budgets, lr, lora_scaling, rounds, server, client_optimizer):
    if is_int(rounds) and rounds > 3:
        rounds = 3  # keep the run short; absurd round counts are a matter of time, not of correctness
    config, err = attempt(FedConfig, rank=rank, budgets=budgets, local_steps=2, lr=lr, rounds=rounds,
                          lora_scaling=lora_scaling, server_optimizer=server[0], server_lr=server[1],
                          client_optimizer=client_optimizer)
    if err is not None:
        return
    try:
        history, err = attempt(run, get_algorithm(name), PROBLEMS[which], config)
    except DivergenceError:  # documented: the run diverged, and the message names round, client and option
        return
    if err is None:
        for key, values in history.to_json().items():
            flat = np.ravel(np.asarray([v for v in values if v is not None], dtype=float))
            assert np.all(np.isfinite(flat)), f"{name}: non-finite {key} in the history without an error"
        dumps_json(history.to_json())


@given(rounds=mostly(st.integers(20, 300)), alpha=mostly(st.floats(1e-6, 0.49), a_real),
       sampler_draws=mostly(st.integers(500, 5000)), seed=mostly(st.integers(0, 9)))
def test_fuzz_conformance_options(rounds, alpha, sampler_draws, seed):
    options, err = attempt(Options, rounds=rounds, alpha=alpha, sampler_draws=sampler_draws, seed=seed)
    if err is None:
        assert is_int(options.rounds) and options.rounds >= 20 and 0 < options.alpha < 0.5
        assert is_int(options.sampler_draws) and is_int(options.seed) and options.seed >= 0


@given(family=st.sampled_from(["least_squares", "logistic", "two_layer"]), dims=st.lists(
    st.one_of(numpy_huge, as_numpy(st.integers(1, 6)), as_numpy(st.sampled_from([255, 4096, 65535]))),
    min_size=3, max_size=3), n_clients=st.one_of(as_numpy(st.integers(1, 3)), numpy_huge))
def test_fuzz_numpy_sizes_respect_the_limits(family, dims, n_clients):
    """NumPy integer sizes pass the same limits as Python ones: either an allowed error or a problem
    within MAX_FLOATS (np.uint16(65535) twice used to try a 32 GiB allocation)."""
    from fslora_ref.validation import MAX_FLOATS
    names = {"least_squares": ("m", "n"), "logistic": ("m", "n_classes"), "two_layer": ("m", "hidden", "n")}[family]
    kwargs = dict(zip(names, dims), n_clients=n_clients, mean_size=4)
    problem, err = attempt(make_problem, family, **kwargs)
    if err is None:
        floats = sum(W.size for W in problem.base_weights) + sum(c.X.size for c in problem.clients)
        assert floats <= MAX_FLOATS and all(isinstance(v, int) for s in problem.layer_shapes for v in s)


def test_numpy_sizes_and_empty_clients_are_refused_clearly():
    with pytest.raises(ValueError, match="the base weights would hold 4,294,836,225 floats"):
        least_squares(m=np.uint16(65535), n=np.uint16(65535))
    with pytest.raises(TypeError, match="must be an integer"):
        least_squares(m=np.float64(4.0))
    with pytest.raises(ValueError, match="clients\\[1\\] is empty"):
        from fslora_ref.problems.base import ClientData, Problem
        Problem("p", [np.zeros((2, 2))], [ClientData(np.ones((3, 2)), np.ones((3, 2))),
                                          ClientData(np.zeros((0, 2)), np.zeros((0, 2)))])
    config = FedConfig(rank=np.uint8(4), budgets=[np.int16(2)], rounds=np.int64(3), lr=np.float32(0.5),
                       local_steps=np.uint32(2))
    assert dumps_json(config.to_json()) and type(config.rounds) is int and type(config.lr) is float
    with pytest.raises(ValueError, match="rounds must be an integer in \\[0, 1000000\\]"):
        FedConfig(rank=4, budgets=[2], rounds=np.uint64(2**64 - 1))
