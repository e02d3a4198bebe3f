"""CUDA kernels of the elementwise losses, built from the same scalar maths as the CPU kernels.

``templates(name)`` closes the five kernels over the loss's value, gradient
and Hessian from ``fastloss.kernels.scalar`` (or a custom loss's), which
numba-cuda compiles as device functions: there is no CUDA copy of any
formula.  Each thread walks a grid-stride loop in float64; a weight applies to
``inner`` consecutive elements (one weight per row of an (n, k) input).
Arrays are indexed with the loop's index as an unsigned integer: Numba adds
a negative-index wraparound to every signed index, 64-bit integer work that
was a third of an arithmetic loss's loop.
"""
import numpy as np
from numba import cuda, njit

from ...kernels import scalar
from ...specs import REGISTRY
from .launch import kernel, store_partial


@cuda.jit(device=True)
def weight_at(w, i, inner):
    return np.float64(w[i // inner])


def _in_float64(value):
    @njit(inline="always")
    def value_at(y, p, th):
        return value(np.float64(y), np.float64(p), th)
    return value_at


def _in_float32(value):
    """The value computed on float32 (y, p), for ``LossSpec.value_in_float32`` inputs:
    the GPU's float32 units have twice the float64 ones' throughput, or more."""
    @njit(inline="always")
    def value_at(y, p, th):
        return np.float64(value(np.float32(y), np.float32(p), th))
    return value_at


def _value_templates(value_at, y_ok, p_ok):
    """reduce_value and value_none, with each element's value from ``value_at``."""
    @kernel
    def reduce_value(y, p, w, inner, th, sums, counts):
        s = 0.0
        k = 0
        for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
            u = np.uint64(i)
            yi = y[u]
            pi = p[u]
            v = value_at(yi, pi, th)
            if w is not None:
                v = v * weight_at(w, i, inner)
            s += v
            k += not (y_ok(np.float64(yi)) and p_ok(np.float64(pi)))
        store_partial(s, k, sums, counts)

    @kernel
    def value_none(y, p, w, inner, th, out, sums, counts):
        k = 0
        for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
            u = np.uint64(i)
            yi = y[u]
            pi = p[u]
            v = value_at(yi, pi, th)
            if w is not None:
                v = v * weight_at(w, i, inner)
            out[u] = v
            k += not (y_ok(np.float64(yi)) and p_ok(np.float64(pi)))
        store_partial(0.0, k, sums, counts)

    return reduce_value, value_none


def templates(name):
    """The kernels of loss ``name``: reduce_value, value_none, grad, value_and_grad, grad_hess,
    and for the float32_value losses reduce_value_f32 and value_none_f32."""
    value, grad, hess = scalar.scalar_functions(name)
    spec = REGISTRY[name]
    y_ok = scalar.DOMAIN_CHECKS[spec.y_domain]
    p_ok = scalar.DOMAIN_CHECKS[spec.p_domain]
    reduce_value, value_none = _value_templates(_in_float64(value), y_ok, p_ok)

    @kernel
    def grad_kernel(y, p, w, inner, th, scale, out, sums, counts):
        k = 0
        for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
            u = np.uint64(i)
            yi = np.float64(y[u])
            pi = np.float64(p[u])
            g = grad(yi, pi, th) * scale
            if w is not None:
                g = g * weight_at(w, i, inner)
            out[u] = g
            k += not (y_ok(yi) and p_ok(pi))
        store_partial(0.0, k, sums, counts)

    @kernel
    def value_and_grad(y, p, w, inner, th, scale, out, sums, counts):
        s = 0.0
        k = 0
        for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
            u = np.uint64(i)
            yi = np.float64(y[u])
            pi = np.float64(p[u])
            v = value(yi, pi, th)
            g = grad(yi, pi, th) * scale
            if w is not None:
                wi = weight_at(w, i, inner)
                v = v * wi
                g = g * wi
            s += v
            out[u] = g
            k += not (y_ok(yi) and p_ok(pi))
        store_partial(s, k, sums, counts)

    @kernel
    def grad_hess(y, p, w, inner, th, gout, hout, sums, counts):
        k = 0
        for i in range(cuda.grid(1), y.shape[0], cuda.gridsize(1)):
            u = np.uint64(i)
            yi = np.float64(y[u])
            pi = np.float64(p[u])
            g = grad(yi, pi, th)
            h = hess(yi, pi, th)
            if w is not None:
                wi = weight_at(w, i, inner)
                g = g * wi
                h = h * wi
            gout[u] = g
            hout[u] = h
            k += not (y_ok(yi) and p_ok(pi))
        store_partial(0.0, k, sums, counts)

    kinds = {"reduce_value": reduce_value, "value_none": value_none, "grad": grad_kernel,
             "value_and_grad": value_and_grad, "grad_hess": grad_hess}
    if spec.float32_value:
        kinds["reduce_value_f32"], kinds["value_none_f32"] = _value_templates(
            _in_float32(value), y_ok, p_ok)
    return kinds


@kernel
def sum_and_negatives(w, sums, counts):
    """Partials of sum(w) and of the count of negative entries (weights, row losses)."""
    s = 0.0
    k = 0
    for i in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        wi = np.float64(w[np.uint64(i)])
        s += wi
        k += wi < 0.0
    store_partial(s, k, sums, counts)


@kernel
def copy_1d(src, dst):
    """dst = src, elementwise (any strides; converts the dtype)."""
    for i in range(cuda.grid(1), src.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


@kernel
def copy_2d(src, dst):
    """dst (flat, C order) = src (2-D, any strides; converts the dtype)."""
    cols = src.shape[1]
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        dst[i] = src[i // cols, i % cols]
