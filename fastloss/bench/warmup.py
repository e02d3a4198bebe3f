"""Compiling the benchmark's kernels before anything is timed, on all cores at once.

On a cold kernel cache most of ``fastloss bench``'s time is Numba compiling
one kernel after another.  Worker processes compile the kernels the benchmark
will call, one loss at a time as each becomes free, in parallel, into the
shared on-disk cache; the benchmark then loads them.  On a warm cache there is
nothing to compile and no worker starts.
"""
import os

from .._workers import run_in_workers

_SCRIPT = """
import sys
import numpy as np
import fastloss as fl
from fastloss.backends import cpu
from fastloss.examples import inputs

dtype = np.dtype(sys.argv[1])
rng = np.random.default_rng(0)
for line in sys.stdin:
    name = line.strip()
    if name == "bandwidth":
        from fastloss.bench import bandwidth
        bandwidth.measure(n=1 << 12, repeats=1)
    elif name == "custom":
        from fastloss.bench import custom
        exec(custom._DEFINE, {})
        y, p = inputs("mse", cpu.parallel_min_size("mse"), rng, dtype)   # the largest threshold
        for custom_name, _ in custom.PAIRS:
            fl.get(custom_name)(y, p)
            fl.get(custom_name).value_and_grad(y, p)
    elif name == "cross_entropy":
        for C in (1000, 10):              # the row kernel, the kernel for few classes
            rows = cpu.SERIAL_BELOW // C + 1     # their parallel builds, as the bench's sizes
            x = rng.standard_normal((rows, C)).astype(dtype)
            labels = rng.integers(0, C, rows)
            loss = fl.get("cross_entropy")
            loss(labels, x)
            loss.value_and_grad(labels, x, out=x.copy())
    else:
        y, p = inputs(name, cpu.parallel_min_size(name), rng, dtype)
        loss = fl.get(name)
        loss(y, p)
        loss.value_and_grad(y, p)
        if name == "mse":                 # the serial builds, for the per-call cost at n = 10
            loss(y[:10], p[:10])
            loss(np.ones(10), np.ones(10))
    print(name, flush=True)
"""


def _cached(dispatcher):
    return os.path.exists(dispatcher._cache._cache_file._index_path)


def cold(names, dtype):
    """The names (and "cross_entropy") whose benchmark kernels for ``dtype`` (those a call
    with the default parameters takes) have no on-disk cache yet; "bandwidth" and "custom"
    (the probes' kernels and the custom losses') too where the probes' have none."""
    import numpy as np

    from ..backends import cpu
    from ..kernels import softmax, softmax_few
    from ..specs import REGISTRY
    from . import bandwidth
    out = [] if _cached(bandwidth._read2) else ["bandwidth", "custom"]
    if not (_cached(softmax.cross_entropy_labels) and _cached(softmax_few.cross_entropy_few)):
        out.append("cross_entropy")
    example = np.zeros(1, dtype)
    for name in names:
        ks = cpu.kernels(name, True)
        theta = tuple(param.to_float(param.default) for param in REGISTRY[name].params)
        if not all(_cached(ks[cpu._kind(name, kind, theta, example, example)])
                   for kind in ("reduce_value", "value_and_grad")):
            out.append(name)
    return out


def _slow_first(names):
    """The order to hand kernels out in: the transcendental losses (long float32 bodies, two
    to eight seconds to compile) and cross_entropy before the arithmetic ones (about one)."""
    from ..specs import REGISTRY

    def quick(name):        # the arithmetic losses are the one-pass ones
        spec = REGISTRY.get(name)
        return name in ("bandwidth", "custom") or (spec is not None and spec.float32_in_one_pass)
    return sorted(names, key=lambda name: (quick(name), name))


def warm(names, dtype, workers=None):
    """Compile the parallel kernels of ``names`` (and cross_entropy's) for ``dtype`` in worker
    processes, where the on-disk cache has none yet, the slow ones first."""
    try:
        run_in_workers(_SCRIPT, [str(dtype)], _slow_first(cold(names, dtype)), workers)
    except RuntimeError as e:
        raise RuntimeError(f"compiling the benchmark's kernels failed: {e}") from None
