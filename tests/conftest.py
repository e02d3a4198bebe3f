"""Shared test data: inputs drawn from each loss's declared domains.

Every test parametrized over ``LOSS_CASES`` covers each registered loss with
its default parameters and with the extra ``test_params`` of its spec, so a
newly registered loss is tested without editing the tests.
"""
import numpy as np
import pytest

import fastloss as fl
from fastloss.examples import inputs as sample  # noqa: F401  (used by the test modules)
from fastloss.specs import REGISTRY

LOSS_CASES = [(name, {}) for name in REGISTRY] + [
    (name, dict(params)) for name, spec in REGISTRY.items() for params in spec.test_params
]
LOSS_IDS = [name + "".join(f"-{k}={v}" for k, v in params.items()) for name, params in LOSS_CASES]

loss_case = pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_IDS)
loss_name = pytest.mark.parametrize("name", sorted(REGISTRY))


def weights(n, rng, dtype=np.float64):
    return rng.uniform(0.0, 2.0, n).astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _restore_defaults():
    yield
    fl.set_backend(None)
    fl.set_num_threads(None)
