"""Shared test data: inputs drawn from each loss's declared domains.

Every test parametrized over ``LOSS_CASES`` covers each registered loss with
its default parameters and with the extra ``test_params`` of its spec, so a
newly registered loss is tested without editing the tests.
"""
import math

import numpy as np
import pytest

import fastloss as fl
from fastloss.examples import inputs as sample  # noqa: F401  (used by the test modules)
from fastloss.specs import REGISTRY



@fl.custom_loss
def custom_weighted_log_cosh(y, p, *, tau=0.3):
    """A test loss made with fastloss.custom_loss: log cosh(p - y), weighted tau above, 1 - tau below.

    Written in the stable form |r| + log1p(exp(-2|r|)) - log 2, with a branch,
    a parameter and math and NumPy functions, so that its derivatives come from
    jets through all of them; registered here, it runs through every test
    parametrized over the registry.
    """
    r = p - y
    a = abs(r)
    side = tau if r > 0 else 1.0 - tau
    return side * (a + np.log1p(math.exp(-2.0 * a)) - 0.6931471805599453)


LOSS_CASES = [(name, {}) for name in REGISTRY] + [
    (name, dict(params)) for name, spec in REGISTRY.items() for params in spec.test_params
]
LOSS_IDS = [name + "".join(f"-{k}={v}" for k, v in params.items()) for name, params in LOSS_CASES]

loss_case = pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_IDS)
BUILTIN_CASES = [(n, p) for n, p in LOSS_CASES if not REGISTRY[n].custom]
builtin_loss_case = pytest.mark.parametrize(
    "name,params", BUILTIN_CASES,
    ids=[i for i, (n, _) in zip(LOSS_IDS, LOSS_CASES) if not REGISTRY[n].custom])


def loss_function(name):
    """The public function of a registered loss: fastloss.<name>, or a custom loss's own."""
    custom = fl.custom.get_custom(name)
    return getattr(fl, name) if custom is None else custom.function
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
