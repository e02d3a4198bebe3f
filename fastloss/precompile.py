"""``fastloss compile``: fill the on-disk kernel cache before the first call needs it.

A kernel compiles on its first call (a second for an arithmetic loss, up to
five for a transcendental one's parallel float32 kernel) and loads from the
cache after that (about 0.1 s).  Compiling ahead, once per installation (a
container image's build step, say), makes every later process start warm.

The kernels compiled are those that calls with each loss's default parameters
take: every method (value with each reduction, grad, value_and_grad,
grad_hess), the serial and the parallel build, for the dtypes asked for,
unweighted (and weighted with ``weighted=True``); the softmax losses' row
kernels for integer labels (and cross_entropy's for probability targets, and its
kernel for rows of few classes).
Other parameter values take kernels of their own, compiled on first use.
"""
import time

DTYPES = ("float32", "float64")

_SCRIPT = """
import sys
import numpy as np
import fastloss as fl
from fastloss.backends import cpu
from fastloss.examples import inputs
from fastloss.kernels.softmax_few import FEW

weighted = sys.argv[1] == "weighted"
rng = np.random.default_rng(0)
for line in sys.stdin:
    name, dtype = line.split()
    loss = fl.get(name)
    for n in (10, cpu.parallel_min_size(name)):
        if hasattr(loss, "spec"):
            calls = [inputs(name, n, rng, dtype)]
        else:
            calls = []
            # rows of FEW classes take the softmax losses' kernels for few classes, of
            # 2 FEW their row kernels
            for C in (FEW, 2 * FEW) if name in ("cross_entropy", "softmax_focal") else (16,):
                x = rng.standard_normal((n // C or 1, C)).astype(dtype)
                calls.append((rng.integers(0, C, x.shape[0]), x))
                if name == "cross_entropy":
                    calls.append((rng.dirichlet(np.ones(C), x.shape[0]).astype(dtype), x))
        for y, p in calls:
            for w in [None] + ([np.ones(len(y))] if weighted else []):
                loss(y, p, sample_weight=w)
                loss(y, p, sample_weight=w, reduction="none")
                loss.value_and_grad(y, p, sample_weight=w)
                if hasattr(loss, "spec"):
                    loss.grad(y, p, sample_weight=w)
                if hasattr(loss, "grad_hess"):
                    loss.grad_hess(y, p, sample_weight=w)
    print(name, dtype, flush=True)
"""


def compile_names():
    """The losses ``fastloss compile`` compiles by default: all but linear_cross_entropy,
    whose kernels are cross_entropy's."""
    from .loss import available
    return [name for name in available() if name != "linear_cross_entropy"]


def precompile(names=None, dtypes=DTYPES, weighted=False, workers=None, progress=None):
    """Compile the kernels of ``names`` (default: ``compile_names()``) for ``dtypes`` into
    the on-disk cache, in worker processes (one per core by default); returns the seconds
    taken.  ``progress(name, dtype)`` is called as each is done."""
    from .loss import available
    from ._workers import run_in_workers
    names = compile_names() if names is None else list(names)
    unknown = sorted(set(names) - set(available()))
    if unknown:
        raise ValueError(f"names: unknown losses {unknown}; choose from {available()}")
    bad = sorted(set(dtypes) - set(DTYPES))
    if bad:
        raise ValueError(f"dtypes: {bad} are not among {list(DTYPES)}")
    items = [f"{name} {dtype}" for name in names for dtype in dtypes]
    start = time.perf_counter()
    run_in_workers(_SCRIPT, ["weighted" if weighted else "unweighted"], items, workers,
                   on_done=progress and (lambda item: progress(*item.split())))
    return time.perf_counter() - start
