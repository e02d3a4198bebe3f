"""Start-up costs, each in a fresh Python process: import, and a first result."""
import os
import subprocess
import sys
import tempfile

_IMPORT = ("import time; t = time.perf_counter(); import fastloss; "
           "print(time.perf_counter() - t)")
_FIRST = ("import time; t = time.perf_counter(); import numpy as np, fastloss; "
          "fastloss.get({name!r}).value_and_grad(np.ones({n}, {dtype!r}), "
          "np.full({n}, 0.5, {dtype!r})); "
          "print(time.perf_counter() - t)")


def _seconds(code, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(name="mse", dtype="float64", n=1000):
    """Seconds for ``import fastloss`` and for a first value_and_grad, cold and warm cache.

    The default, n = 1000, runs a serial kernel; n >= cpu.parallel_min_size(name)
    compiles a parallel one, which takes longer."""
    first = _FIRST.format(name=name, dtype=dtype, n=int(n))
    with tempfile.TemporaryDirectory() as cache_dir:
        cold = _seconds(first, cache_dir)
        warm = min(_seconds(first, cache_dir) for _ in range(2))
        imports = min(_seconds(_IMPORT, cache_dir) for _ in range(3))
    return {"import": imports, "first_call_cold": cold, "first_call_warm": warm}
