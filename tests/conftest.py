"""Shared test data: inputs drawn from each loss's declared domains.

Every test parametrized over ``LOSS_CASES`` covers each registered loss with
its default parameters and with the extra ``test_params`` of its spec, so a
newly registered loss is tested without editing the tests.
"""
import numpy as np
import pytest

import fastloss as fl
from fastloss.specs import REGISTRY

LOSS_CASES = [(name, {}) for name in REGISTRY] + [
    (name, dict(params)) for name, spec in REGISTRY.items() for params in spec.test_params
]
LOSS_IDS = [name + "".join(f"-{k}={v}" for k, v in params.items()) for name, params in LOSS_CASES]

loss_case = pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_IDS)
loss_name = pytest.mark.parametrize("name", sorted(REGISTRY))


def draw(domain, rng, shape, scale=3.0):
    """Values from a domain: labels for the discrete ones, spread reals otherwise."""
    if domain == "binary":
        return rng.integers(0, 2, shape).astype(np.float64)
    if domain == "signed_binary":
        return rng.choice([-1.0, 1.0], shape)
    if domain == "unit":
        # mostly interior, some exactly 0 and 1
        u = rng.uniform(0.0, 1.0, shape)
        edge = rng.uniform(size=shape) < 0.05
        return np.where(edge, np.round(u), u)
    if domain == "nonneg":
        return rng.poisson(2.0, shape).astype(np.float64)
    return rng.normal(0.0, scale, shape)


def sample(name, n, rng, dtype=np.float64, shape=None):
    """(y_true, y_pred) for loss ``name``."""
    spec = REGISTRY[name]
    shape = (n,) if shape is None else shape
    y = draw(spec.y_domain, rng, shape)
    if spec.p_domain == "unit":
        p = np.clip(rng.uniform(0.0, 1.0, shape), 1e-6, 1 - 1e-6)
    else:
        p = draw(spec.p_domain, rng, shape)
    return y.astype(dtype), p.astype(dtype)


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
