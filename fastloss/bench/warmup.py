"""Compiling the benchmark's kernels before anything is timed, on all cores at once.

On a cold kernel cache most of ``fastloss bench``'s time is Numba compiling
one kernel after another.  Worker processes compile disjoint shares of the
kernels the benchmark will call, in parallel, into the shared on-disk cache;
the benchmark then loads them.  On a warm cache each worker only loads, which
costs about a second.
"""
import os
import subprocess
import sys

_SCRIPT = """
import sys
import numpy as np
import fastloss as fl
from fastloss.backends import cpu
from fastloss.examples import inputs

dtype = np.dtype(sys.argv[1])
rng = np.random.default_rng(0)
for name in sys.argv[2:]:
    if name == "cross_entropy":
        x = rng.standard_normal((64, 1000)).astype(dtype)
        labels = rng.integers(0, 1000, 64)
        loss = fl.get("cross_entropy")
        loss(labels, x)
        loss.value_and_grad(labels, x, out=x.copy())
        continue
    y, p = inputs(name, cpu.PARALLEL_MIN_SIZE, rng, dtype)
    loss = fl.get(name)
    loss(y, p)
    loss.value_and_grad(y, p)
    if name == "mse":                     # the serial build, for the per-call cost at n = 10
        loss(y[:10], p[:10])
"""


def _cached(dispatcher):
    return os.path.exists(dispatcher._cache._cache_file._index_path)


def cold(names):
    """The names (and "cross_entropy") whose benchmark kernels have no on-disk cache yet."""
    from ..backends import cpu
    from ..kernels import softmax
    out = [] if _cached(softmax.cross_entropy_labels) else ["cross_entropy"]
    for name in names:
        ks = cpu.kernels(name, True)
        if not (_cached(ks["reduce_value"]) and _cached(ks["value_and_grad"])):
            out.append(name)
    return out


def warm(names, dtype, workers=None):
    """Compile the parallel kernels of ``names`` (and cross_entropy's) for ``dtype`` in worker
    processes, where the on-disk cache has none yet."""
    workers = max(1, workers or os.cpu_count() or 1)
    names = cold(names)
    if not names:
        return
    groups = [names[i::workers] for i in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-c", _SCRIPT, str(dtype), *group],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for group in groups if group]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"compiling the benchmark's kernels failed:\n{err.decode()[-2000:]}")
