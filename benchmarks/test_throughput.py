"""pytest-benchmark suite: every registered loss x backend x dtype x size.

``pytest benchmarks --benchmark-enable`` measures; the project's default
options (``--benchmark-disable``) run each case once, as a smoke test.  Each
result carries the throughput in ``extra_info`` (GB/s and elements/s).
"""
import numpy as np
import pytest

import fastloss as fl
from fastloss.examples import inputs
from fastloss.specs import REGISTRY

SIZES = [1_000, 100_000, 10_000_000]


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", ["value", "value_and_grad"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_throughput(benchmark, name, method, n, dtype, backend):
    y, p = inputs(name, n, np.random.default_rng(0), np.dtype(dtype))
    loss = fl.get(name)
    out = np.empty_like(p)
    if method == "value":
        def run():
            return loss(y, p, backend=backend)
        moved = 2 * p.nbytes
    else:
        def run():
            return loss.value_and_grad(y, p, out=out, backend=backend)
        moved = 3 * p.nbytes
    run()
    benchmark.group = f"{name}-{method}-{dtype}-{n}"
    benchmark(run)
    if benchmark.stats is not None:
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["GB/s"] = moved / mean / 1e9
        benchmark.extra_info["elements/s"] = n / mean


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("shape", [(100_000, 10), (512, 32000)])
@pytest.mark.parametrize("method", ["value", "value_and_grad"])
def test_cross_entropy_throughput(benchmark, method, shape, backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    labels = rng.integers(0, shape[1], shape[0])
    loss = fl.get("cross_entropy")
    out = np.empty_like(x)
    if method == "value":
        def run():
            return loss(labels, x, backend=backend)
    else:
        def run():
            return loss.value_and_grad(labels, x, out=out, backend=backend)
    run()
    benchmark.group = f"cross_entropy-{method}-{shape}"
    benchmark(run)
    if benchmark.stats is not None:
        benchmark.extra_info["GB/s"] = x.nbytes / benchmark.stats.stats.mean / 1e9
