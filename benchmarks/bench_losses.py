"""asv benchmarks: every registered loss, on the CPU kernels and the NumPy baseline (and the GPU).

Run offline in the current environment with ``asv run --python=same --quick``.
The ``time_*`` benchmarks give seconds per call; the ``track_*`` ones give
the throughput in GB/s of input read (value) or moved (value_and_grad), from
the same kind of best-of timing, so that regressions show as a drop.
"""
import time

import numpy as np

import fastloss as fl
from fastloss.examples import inputs
from fastloss.specs import REGISTRY

LOSSES = sorted(REGISTRY)
SIZES = [1_000, 100_000, 10_000_000]
DTYPES = ["float32", "float64"]
BACKENDS = ["cpu", "numpy"]


class Loss:
    params = (LOSSES, SIZES, DTYPES, BACKENDS)
    param_names = ["loss", "n", "dtype", "backend"]
    timeout = 300

    def setup(self, name, n, dtype, backend):
        self.y, self.p = inputs(name, n, np.random.default_rng(0), np.dtype(dtype))
        self.loss = fl.get(name)
        self.out = np.empty_like(self.p)
        self.backend = backend
        self.itemsize = np.dtype(dtype).itemsize
        self.n = n
        # compile (or load from the cache) outside the timings
        self.loss.value_and_grad(self.y, self.p, out=self.out, backend=backend)
        self.loss(self.y, self.p, backend=backend)

    def time_value(self, *args):
        self.loss(self.y, self.p, backend=self.backend)

    def time_value_and_grad(self, *args):
        self.loss.value_and_grad(self.y, self.p, out=self.out, backend=self.backend)

    def _best(self, fn):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    def track_value_gbs(self, *args):
        return 2 * self.itemsize * self.n / self._best(lambda: self.time_value()) / 1e9

    track_value_gbs.unit = "GB/s"

    def track_value_and_grad_gbs(self, *args):
        return 3 * self.itemsize * self.n / self._best(lambda: self.time_value_and_grad()) / 1e9

    track_value_and_grad_gbs.unit = "GB/s"


class Compile:
    """First-call cost in a fresh process: import, compile or cache load, one result."""

    params = (["mse", "binary_cross_entropy_with_logits"],)
    param_names = ["loss"]
    timeout = 120

    def track_first_call_warm_cache_seconds(self, name):
        from fastloss.bench import startup
        return startup.measure(name)["first_call_warm"]

    track_first_call_warm_cache_seconds.unit = "s"

    def track_first_call_cold_cache_seconds(self, name):
        from fastloss.bench import startup
        return startup.measure(name)["first_call_cold"]

    track_first_call_cold_cache_seconds.unit = "s"

    def track_first_parallel_float32_call_cold_cache_seconds(self, name):
        """n = 1e6 float32: a parallel kernel, the longest to compile."""
        from fastloss.bench import startup
        return startup.measure(name, "float32", 1_000_000)["first_call_cold"]

    track_first_parallel_float32_call_cold_cache_seconds.unit = "s"


class CrossEntropy:
    """Softmax cross-entropy over float32 logits: tall-skinny, square-ish and short-wide."""

    params = ([(1_000_000, 10), (8192, 32000), (1024, 256000)], ["cpu", "numpy"])
    param_names = ["shape", "backend"]
    timeout = 600

    def setup(self, shape, backend):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal(shape, dtype=np.float32)
        self.labels = rng.integers(0, shape[1], shape[0])
        self.out = np.empty_like(self.x)
        self.loss = fl.get("cross_entropy")
        self.backend = backend
        # compile (or load from the cache) outside the timings
        self.loss(self.labels, self.x, backend=backend)
        self.loss.value_and_grad(self.labels, self.x, out=self.out, backend=backend)

    def time_forward(self, *args):
        self.loss(self.labels, self.x, backend=self.backend)

    def time_forward_backward(self, *args):
        self.loss.value_and_grad(self.labels, self.x, out=self.out, backend=self.backend)

    def track_forward_gbs(self, *args):
        best = min(_timed(lambda: self.time_forward()) for _ in range(3))
        return self.x.nbytes / best / 1e9

    track_forward_gbs.unit = "GB/s"


class Cuda:
    """The cuda backend on device arrays, float32: value and value_and_grad.

    Skipped (asv reports n/a) where ``fl.backend_info()`` says it cannot run,
    and under the CUDA simulator, whose times mean nothing.
    """

    params = (LOSSES, [1_000_000, 100_000_000])
    param_names = ["loss", "n"]
    timeout = 300

    def setup(self, name, n):
        import os
        if (os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
                or not fl.backend_info()["cuda"].startswith("available")):
            raise NotImplementedError("no CUDA GPU here")
        from numba import cuda
        y, p = inputs(name, n, np.random.default_rng(0), np.float32)
        self.y, self.p = cuda.to_device(y), cuda.to_device(p)
        self.out = cuda.device_array(n, np.float32)
        self.loss = fl.get(name)
        self.sync = cuda.synchronize
        self.n = n
        self.time_value()
        self.time_value_and_grad()

    def time_value(self, *args):
        self.loss(self.y, self.p)

    def time_value_and_grad(self, *args):
        self.loss.value_and_grad(self.y, self.p, out=self.out)
        self.sync()

    def track_value_gbs(self, *args):
        best = min(_timed(lambda: self.time_value()) for _ in range(5))
        return 8 * self.n / best / 1e9

    track_value_gbs.unit = "GB/s"


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
