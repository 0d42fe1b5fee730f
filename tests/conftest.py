"""Shared test configuration: deterministic hypothesis, per-test seeds, tolerance table."""
from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# CI (and by default everyone) runs hypothesis derandomized: the same examples every run.
settings.register_profile("ci", derandomize=True, max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Relative tolerances per dtype for comparisons of two implementations of the same math.
TOLERANCE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


@pytest.fixture
def test_seed(request) -> int:
    """A seed derived from the test's name: stable across runs, different across tests."""
    return zlib.crc32(request.node.nodeid.encode()) % (2**31)


@pytest.fixture
def rng(test_seed) -> np.random.Generator:
    return np.random.default_rng(test_seed)
