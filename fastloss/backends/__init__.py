"""Backends: each implements the same few operations over flat arrays.

* ``reduce_value(name, y, p, w, theta) -> (sum of w*l, invalid count)``
* ``value_none(name, y, p, w, theta, out) -> invalid count``
* ``grad(name, y, p, w, theta, scale, out) -> invalid count``
* ``value_and_grad(name, y, p, w, theta, scale, out) -> (sum, invalid count)``
* ``grad_hess(name, y, p, w, theta, gout, hout) -> invalid count``
* ``weight_stats(w) -> (sum, count of negative weights)``
* optional: ``reduce_weighted_value(name, y, p, w, theta) -> (sum of w*l, invalid count,
  sum of w, count of negative weights)``, reduce_value and weight_stats in one pass (cpu)

``w`` is None or one weight per element; ``scale`` multiplies the gradient
(1/n or 1/sum(w) for a mean); "invalid" is nonzero when an element lies
outside the loss's input domains (the CPU kernels count the blocks that hold
one), which the caller turns into a ValueError naming the first such element.  The modules are
imported on first use, so ``import fastloss`` never imports Numba.
"""
import importlib
import math

import numpy as np

_MODULES = {"numpy": "reference", "cpu": "cpu", "cuda": "cuda.ops"}
_loaded = {}


def load(name):
    """The backend module for ``name`` ("numpy", "cpu" or "cuda")."""
    mod = _loaded.get(name)
    if mod is None:
        if name == "cuda":
            from .cuda import require
            require()
        mod = importlib.import_module(f"{__name__}.{_MODULES[name]}")
        _loaded[name] = mod
    return mod


def on_device(a):
    """Whether ``a`` is a GPU array: it has ``__cuda_array_interface__`` (or is the
    CUDA simulator's stand-in for a device array, which has not)."""
    return type(a) is not np.ndarray and (hasattr(a, "__cuda_array_interface__")
                                          or type(a).__name__ == "FakeCUDAArray")


def describe():
    """{backend name: "available: ..." or "unavailable: why"} for this machine."""
    import numba

    from .._config import get_num_threads
    from .cuda import describe as cuda
    return {"numpy": "available: the NumPy reference",
            "cpu": f"available: Numba {numba.__version__}, {get_num_threads()} threads",
            "cuda": cuda()}


def available():
    """The backends that can run on this machine, by name."""
    return [name for name, state in describe().items() if state.startswith("available")]


def float32_overflowed(kind, total, bad):
    """Whether a float32 kernel's (total, bad) is to be computed again by the float64
    kernel of the same kind: a float32 value may overflow where the float64 sum holds it
    (mse of differences above 1.8e19; NaN inputs pay for a second pass too).  The
    float32 kernels' kinds hold "_f32" (the CPU's constant builds add "@constant")."""
    return "_f32" in kind and not bad and not math.isfinite(total)
