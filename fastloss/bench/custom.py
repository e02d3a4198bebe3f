"""Custom losses beside the built-in losses of the same arithmetic, and their compile time.

``squared_error`` is mse's arithmetic and ``check_loss`` pinball's (a branch
and a parameter), written as user functions with ``fastloss.custom_loss``;
the ratio custom / built-in at the same n and dtype shows what the custom
path costs at run time.  Compile time is the first value_and_grad of a newly
defined custom loss in a fresh process, with an empty kernel cache and again
with the cache it left.
"""
import numpy as np

import fastloss as fl
from fastloss.examples import inputs

from .startup import _seconds
from .throughput import best_of_rounds

_DEFINE = """
import numpy as np, fastloss as fl

@fl.custom_loss
def squared_error(y, p):
    r = p - y
    return r * r

@fl.custom_loss
def check_loss(y, p, *, quantile=0.5):
    r = y - p
    return quantile * r if r >= 0.0 else (quantile - 1.0) * r
"""
PAIRS = (("squared_error", "mse"), ("check_loss", "pinball"))

_FIRST = ("import time; t = time.perf_counter()\n" + _DEFINE
          + "fl.get('check_loss').value_and_grad(np.ones(1000), np.zeros(1000))\n"
            "print(time.perf_counter() - t)")


def measure(n=10_000_000, dtype=np.float32, repeats=5):
    """{(custom, builtin): {method: (custom seconds, built-in seconds)}}.

    Each time is the best of ``repeats`` rounds, each round running the custom
    loss and then its built-in, so that neither gets the other's quieter
    moments or its first calls' costs.  value_and_grad writes to an ``out=``
    buffer, as in the main table: a fresh gradient per call would time the
    allocator's page faults, not the kernels.
    """
    exec(_DEFINE, {})            # registers the custom losses (again: nothing is rebuilt)
    rng = np.random.default_rng(0)
    results = {}
    for custom, builtin in PAIRS:
        y, p = inputs(builtin, n, rng, dtype)
        out = np.empty_like(p)
        losses = [fl.get(name) for name in (custom, builtin)]
        calls = {"value": [lambda f=loss: f(y, p) for loss in losses],
                 "value_and_grad": [lambda f=loss.value_and_grad: f(y, p, out=out)
                                    for loss in losses]}
        results[(custom, builtin)] = {method: best_of_rounds(fns, repeats)
                                      for method, fns in calls.items()}
    return results


def compile_seconds():
    import tempfile
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = _seconds(_FIRST, cache_dir)
        warm = min(_seconds(_FIRST, cache_dir) for _ in range(2))
    return {"cold": cold, "warm": warm}
