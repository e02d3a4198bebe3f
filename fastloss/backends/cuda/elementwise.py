"""CUDA kernels of the elementwise losses, built from the same scalar maths as the CPU kernels.

``templates(name)`` closes the five kernels over the loss's value, gradient
and Hessian from ``fastloss.kernels.scalar`` (or a custom loss's), which
numba-cuda compiles as device functions: there is no CUDA copy of any
formula.  Each thread walks a grid-stride loop four elements a step, their
loads issued before any is used (``_grid_walk``), and adds in float64; a
weight applies to ``inner`` consecutive elements (one weight per row of an
(n, k) input).
Arrays are indexed with the loop's index as an unsigned integer: Numba adds
a negative-index wraparound to every signed index, 64-bit integer work that
was a third of an arithmetic loss's loop.
"""
import numpy as np
from numba import cuda

from ...kernels import scalar
from ...specs import REGISTRY
from .launch import kernel, store_partial


@cuda.jit(device=True)
def weight_at(w, i, inner):
    return np.float64(w[i // inner])


@cuda.jit(device=True)
def _load4(a, i, g, n):
    """a[i + k g] for k = 0..3 (a[i] past the end), loaded before any is used."""
    u = np.uint64(i)
    ug = np.uint64(g)
    a0 = a[u]
    return (a0, a[u + ug] if i + g < n else a0, a[u + 2 * ug] if i + 2 * g < n else a0,
            a[u + 3 * ug] if i + 3 * g < n else a0)


@cuda.jit(device=True)
def _weights4(w, i, g, n, inner):
    """The weights of elements i + k g, k = 0..3 (1 without weights; w's first past the end)."""
    if w is None:
        return 1.0, 1.0, 1.0, 1.0
    return (weight_at(w, i, inner), weight_at(w, i + g if i + g < n else i, inner),
            weight_at(w, i + 2 * g if i + 2 * g < n else i, inner),
            weight_at(w, i + 3 * g if i + 3 * g < n else i, inner))


def _grid_walk(step):
    """A grid-stride walk over (y, p) that hands each element to ``step``, four a thread at
    a time: elements i, i + G, i + 2G and i + 3G (G the grid's threads, so a warp's loads
    stay coalesced), their eight loads (and weights) issued before any is used.  A thread
    then has four elements' loads in flight instead of one; where a step stores a result
    (a gradient), the compiler could not have issued the next element's loads before the
    store, which may alias them.  Returns the thread's (sum, count) of ``step``'s."""
    @cuda.jit(device=True, inline="always")
    def walk(y, p, w, inner, th, scale, out, out2):
        s = 0.0
        k = 0
        n = y.shape[0]
        g = cuda.gridsize(1)
        for i in range(cuda.grid(1), n, 4 * g):
            y0, y1, y2, y3 = _load4(y, i, g, n)
            p0, p1, p2, p3 = _load4(p, i, g, n)
            w0, w1, w2, w3 = _weights4(w, i, g, n, inner)
            s, k = step(i, True, y0, p0, w0, th, scale, out, out2, s, k)
            s, k = step(i + g, i + g < n, y1, p1, w1, th, scale, out, out2, s, k)
            s, k = step(i + 2 * g, i + 2 * g < n, y2, p2, w2, th, scale, out, out2, s, k)
            s, k = step(i + 3 * g, i + 3 * g < n, y3, p3, w3, th, scale, out, out2, s, k)
        return s, k
    return walk


def _value_templates(value, outside, working):
    """reduce_value and value_none computing on (y, p) converted by ``working`` (np.float64,
    or np.float32 for ``LossSpec.value_in_float32`` inputs: the GPU's float32 units have
    twice the float64 ones' throughput, or more), each value taken to float64."""
    @cuda.jit(device=True, inline="always")
    def value_step(i, live, yi, pi, wi, th, scale, out, out2, s, k):
        if live:
            v = np.float64(value(working(yi), working(pi), th)) * wi
            s += v
            if out is not None:
                out[np.uint64(i)] = v
            k += outside(yi, pi)
        return s, k

    walk = _grid_walk(value_step)

    @kernel
    def reduce_value(y, p, w, inner, th, sums, counts):
        s, k = walk(y, p, w, inner, th, 1.0, None, None)
        store_partial(s, k, sums, counts)

    @kernel
    def value_none(y, p, w, inner, th, out, sums, counts):
        _, k = walk(y, p, w, inner, th, 1.0, out, None)
        store_partial(0.0, k, sums, counts)

    return reduce_value, value_none


def _gradient_templates(value, grad, outside, working):
    """grad and value_and_grad computing on (y, p) converted by ``working`` (np.float64, or
    np.float32 for the float32_value losses' float32 variants, as the CPU backend's
    float32 kernels compute them), the gradient scaled and weighted in that type too and
    the values added in float64."""
    @cuda.jit(device=True, inline="always")
    def grad_step(i, live, yi, pi, wi, th, scale, out, out2, s, k):
        if live:
            yw, pw = working(yi), working(pi)
            out[np.uint64(i)] = grad(yw, pw, th) * working(scale) * working(wi)
            k += outside(yi, pi)
        return s, k

    @cuda.jit(device=True, inline="always")
    def value_and_grad_step(i, live, yi, pi, wi, th, scale, out, out2, s, k):
        if live:
            yw, pw = working(yi), working(pi)
            s += np.float64(value(yw, pw, th)) * wi
            out[np.uint64(i)] = grad(yw, pw, th) * working(scale) * working(wi)
            k += outside(yi, pi)
        return s, k

    walk_grad = _grid_walk(grad_step)
    walk_value_and_grad = _grid_walk(value_and_grad_step)

    @kernel
    def grad_kernel(y, p, w, inner, th, scale, out, sums, counts):
        _, k = walk_grad(y, p, w, inner, th, scale, out, None)
        store_partial(0.0, k, sums, counts)

    @kernel
    def value_and_grad(y, p, w, inner, th, scale, out, sums, counts):
        s, k = walk_value_and_grad(y, p, w, inner, th, scale, out, None)
        store_partial(s, k, sums, counts)

    return grad_kernel, value_and_grad


def templates(name):
    """The kernels of loss ``name``: reduce_value, value_none, grad, value_and_grad, grad_hess,
    and for the float32_value losses the "_f32" variants of the first four."""
    value, grad, hess = scalar.scalar_functions(name)
    spec = REGISTRY[name]
    y_ok = scalar.DOMAIN_CHECKS[spec.y_domain]
    p_ok = scalar.DOMAIN_CHECKS[spec.p_domain]

    @cuda.jit(device=True, inline="always")
    def outside(yi, pi):
        """1 where (yi, pi) is outside the loss's domain (the count that makes the call an error)."""
        return not (y_ok(np.float64(yi)) and p_ok(np.float64(pi)))

    reduce_value, value_none = _value_templates(value, outside, np.float64)

    @cuda.jit(device=True, inline="always")
    def grad_hess_step(i, live, yi, pi, wi, th, scale, out, out2, s, k):
        if live:
            yi, pi = np.float64(yi), np.float64(pi)
            u = np.uint64(i)
            out[u] = grad(yi, pi, th) * wi
            out2[u] = hess(yi, pi, th) * wi
            k += outside(yi, pi)
        return s, k

    grad_kernel, value_and_grad = _gradient_templates(value, grad, outside, np.float64)
    walk_grad_hess = _grid_walk(grad_hess_step)

    @kernel
    def grad_hess(y, p, w, inner, th, gout, hout, sums, counts):
        _, k = walk_grad_hess(y, p, w, inner, th, 1.0, gout, hout)
        store_partial(0.0, k, sums, counts)

    kinds = {"reduce_value": reduce_value, "value_none": value_none, "grad": grad_kernel,
             "value_and_grad": value_and_grad, "grad_hess": grad_hess}
    if spec.float32_value:
        kinds["reduce_value_f32"], kinds["value_none_f32"] = _value_templates(
            value, outside, np.float32)
        kinds["grad_f32"], kinds["value_and_grad_f32"] = _gradient_templates(
            value, grad, outside, np.float32)
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
