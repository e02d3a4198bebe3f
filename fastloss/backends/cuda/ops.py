"""The backend operations (see ``fastloss.backends``) on device arrays."""
import threading

import numpy as np
from numba import cuda

from . import arrays
from . import elementwise
from .. import float32_overflowed
from ...specs import REGISTRY
from .launch import reduce

_kernels = {}
_build_lock = threading.Lock()


def kernels(name):
    """The (lazily built) CUDA kernels of loss ``name``; each compiles per dtype on first launch."""
    ks = _kernels.get(name)
    if ks is None:
        with _build_lock:
            ks = _kernels.get(name)
            if ks is None:
                ks = _kernels[name] = elementwise.templates(name)
    return ks


def forget(name):
    """Drop the kernels of ``name`` (a custom loss redefined with other code)."""
    with _build_lock:
        _kernels.pop(name, None)


def _weights(w):
    return (None, 1) if w is None else (w.array, w.inner)


def _run(name, kind, y, p, w, *args):
    wa, inner = _weights(w)
    return reduce(kernels(name)[kind], y.shape[0], y, p, wa, inner, *args)


def value_kind(kind, name, y, p):
    """``kind``, or its float32 variant where the loss computes its value (and gradient) in
    float32 on (y, p)."""
    return kind + "_f32" if REGISTRY[name].value_in_float32(y.dtype, p.dtype) else kind


def reduce_value(name, y, p, w, theta):
    kind = value_kind("reduce_value", name, y, p)
    total, bad = _run(name, kind, y, p, w, theta)
    if float32_overflowed(kind, total, bad):
        total, bad = _run(name, "reduce_value", y, p, w, theta)
    return total, bad


def value_none(name, y, p, w, theta, out):
    return _run(name, value_kind("value_none", name, y, p), y, p, w, theta, out)[1]


def _gradient_kind(kind, name, y, p, out):
    """``value_kind`` for a kernel that writes gradients to ``out``: its float32 variant
    only for a float32 ``out`` (a float16 one takes the float64 kernel's gradients)."""
    return value_kind(kind, name, y, p) if out.dtype == np.float32 else kind


def grad(name, y, p, w, theta, scale, out):
    kind = _gradient_kind("grad", name, y, p, out)
    return _run(name, kind, y, p, w, theta, float(scale), out)[1]


def value_and_grad(name, y, p, w, theta, scale, out):
    kind = _gradient_kind("value_and_grad", name, y, p, out)
    over_input = kind.endswith("_f32") and (arrays.buffers_overlap(out, y)
                                            or arrays.buffers_overlap(out, p))
    # A gradient to be written over an input (out=y_pred) goes to a buffer first: where the
    # float32 pass's sum is not finite, the float64 pass after it reads the inputs again.
    first = cuda.device_array_like(out) if over_input else out
    total, bad = _run(name, kind, y, p, w, theta, float(scale), first)
    if float32_overflowed(kind, total, bad):
        total, bad = _run(name, "value_and_grad", y, p, w, theta, float(scale), out)
    elif over_input:
        out.copy_to_device(first)
    return total, bad


def grad_hess(name, y, p, w, theta, gout, hout):
    return _run(name, "grad_hess", y, p, w, theta, gout, hout)[1]


def weight_stats(w):
    """(sum of the weights over all elements, count of negative weights)."""
    total, negative = reduce(elementwise.sum_and_negatives, w.array.shape[0], w.array)
    return total * w.inner, negative
