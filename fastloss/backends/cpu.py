"""The CPU backend: fused Numba kernels generated from each loss's scalar maths.

Every kernel walks the input in fixed blocks of ``BLOCK`` elements; a
reduction sums each block in float64 and then adds the block sums in order.
The blocks do not depend on the thread count, so results are bitwise the same
for any number of threads, and the rounding error grows like that of blocked
pairwise summation.  Inputs are read in their own dtype and computed in
float64; array outputs are written in the output buffer's dtype.  The one
exception: the values and gradients of the losses marked
``LossSpec.float32_value``, for float32 predictions (``value_in_float32``),
are computed in float32 (sixteen AVX-512 lanes instead of eight), the values
still summed in float64: on AVX-512 CPUs by the float32 templates (a block's
values to a buffer, then summed) for the transcendental losses, and in the one
pass of the float64 templates for the arithmetic ones
(``LossSpec.float32_in_one_pass``); on AVX2 CPUs in one pass for all
(``float32_in_one_pass``).
kl_div's and poisson_nll's values take their float32 operands into float64 maths
(``LossSpec.float64_value_maths``).
Small inputs run a serial build of the same template (``parallel_min_size``),
since waking threads costs more there; the choice depends on the size and the
threading layer only, and the two builds agree to the last bit or two (LLVM
may vectorize them differently).
"""
import threading

import numba
import numpy as np
from numba import njit, prange
from numba.core.caching import NullCache
from numba.cpython.unsafe.tuple import tuple_setitem
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from .. import _config
from .. import _validation as arrays  # noqa: F401  (host arrays in, host arrays out)
from ..kernels import scalar
from ..kernels.as_kernel import as_kernel
from ..kernels.llvm_attributes import inlined_jit
from ..kernels.memory import PREFETCH_CHUNK, prefetch_chunk
from ..kernels.vector_width import has_avx2, has_avx512
from . import float32_overflowed
from ..specs import REGISTRY


BLOCK = 4096
# Suffix of the kinds of kernel built at a loss's constant_param.
CONSTANT = "@constant"
_ZERO32 = np.float32(0.0)
_ONE32 = np.float32(1.0)
# The input size from which the parallel builds run (below it, the serial ones) under TBB
# or OpenMP.  A parallel call wakes the other threads: under TBB about 20 us after 50 us of
# Python between calls (2 us back to back).  With 50 us between calls, TBB, float32 (Intel
# AVX-512, 2 threads), serial and parallel builds: binary_cross_entropy_with_logits' value
# at 2^16 44 and 59 us, value_and_grad 70 and 77; at 2^17 79 and 84, 150 and 104.  The
# arithmetic losses (LossSpec.arithmetic) cover more elements in that time: mse's value at
# 2^17 25 and 64 us, value_and_grad 54 and 77; at 2^18 58 and 80, 181 and 119.
PARALLEL_MIN_SIZE = 1 << 16
ARITHMETIC_PARALLEL_MIN_SIZE = 1 << 18
# Under Numba's workqueue layer (no tbb installed) a parallel call costs 100-300 us
# whatever its size, so both thresholds are 8 times higher: serial and parallel builds,
# mse's value at 2^20 349 and 452 us, value_and_grad 525 and 779; at 2^21 661 and 673, 998
# and 804; binary_cross_entropy_with_logits' value at 2^19 359 and 511, at 2^20 672 and
# 1035, value_and_grad 1088 and 776.
WORKQUEUE_FACTOR = 8
_workqueue = None
# Below this many elements the kernels that call_parallel runs (the row losses', the
# boosting adapters') run their serial twins (``serial_twin``).  Under TBB, with 50 us
# between calls, float32: cross_entropy's value at (1024, 10) took 32 us serial and 45
# parallel, at (2048, 10) 49 and 52, at (4096, 10) 79 and 70; at (32, 1000) 26 and 35, at
# (64, 1000) 41 and 36; its value_and_grad 78 and 69 at (2048, 10); multi_margin's value
# crossed at (2048, 10) as well, nll's (one element a row) beyond (8192, 10).  Waking the
# second thread took about 20 us; a parallel build's launch on one thread cost 3 us more
# than its serial twin (cross_entropy's kernel at (32, 10): 4.2 us and 1.3).
SERIAL_BELOW = 1 << 15
# The kernels are compiled without fast-math, as the scalar maths they inline is
# (fmath.SCALAR_OPTIONS): its stable forms must be kept as written.  Only the
# block sums may be reassociated (which lets LLVM vectorize them): they go
# through ``_add``, whose one instruction carries the flag after LLVM inlines it
# (with nsz, so that adding a constant 0.0, a domain shortfall that cannot be
# negative, folds away).
KERNEL_OPTIONS = dict(fastmath={"contract", "nsz"}, error_model="numpy", nogil=True)


# The helpers of the kernels' loops are inlined_jit, as the loss maths is: alwaysinline
# whatever compiles them first (``fmath``'s SCALAR_OPTIONS say why).
@inlined_jit(fastmath={"reassoc", "nsz"}, error_model="numpy")
def _add(s, v):
    return s + v


# Block bounds as unsigned integers: Numba then indexes without the
# negative-index wraparound select, which would stop LLVM vectorizing and make
# its run-time aliasing checks conservative (and the sums' last bits depend on
# where arrays happen to lie in memory).
@inlined_jit(error_model="numpy")
def _lo(b):
    return np.uint64(b * BLOCK)


@inlined_jit(error_model="numpy")
def _hi(b, n):
    return np.uint64(min(n, (b + 1) * BLOCK))



@njit(error_model="numpy")
def _sum_in_order(parts):
    s = 0.0
    for b in range(parts.shape[0]):
        s += parts[b]
    return s


@inlined_jit(**KERNEL_OPTIONS)
def _block_weight_stats(w, lo, hi):
    """(sum of w[lo:hi] in float64, count of its negative elements)."""
    s = 0.0
    k = 0
    for i in range(lo, hi):
        wi = np.float64(w[i])
        s = _add(s, wi)
        k += wi < 0.0
    return s, k


def _weight_template(parallel):
    @njit(parallel=parallel, **KERNEL_OPTIONS)
    def weight_stats(w):
        n = w.shape[0]
        nb = (n + BLOCK - 1) // BLOCK
        sums = np.empty(nb)
        neg = np.empty(nb, np.int64)
        for b in prange(nb):
            sums[b], neg[b] = _block_weight_stats(w, _lo(b), _hi(b, n))
        return _sum_in_order(sums), neg.sum()

    return weight_stats


def _block_reductions(block_sum, parallel):
    """reduce_value and reduce_weighted_value (``_with_weight_stats``) over the blocks of
    ``block_sum(y, p, w, th, lo, hi) -> (sum of a block's weighted values, whether one of
    its inputs is invalid)``."""
    def reduce_template(weight_stats):
        @njit(parallel=parallel, **KERNEL_OPTIONS)
        def reduce_value(y, p, w, th):
            n = y.shape[0]
            nb = (n + BLOCK - 1) // BLOCK
            sums = np.empty(nb)
            bad = np.empty(nb, np.int64)
            if weight_stats:
                weights = np.empty(nb)
                negative = np.empty(nb, np.int64)
            for b in prange(nb):
                sums[b], bad[b] = block_sum(y, p, w, th, _lo(b), _hi(b, n))
                if weight_stats:
                    weights[b], negative[b] = _block_weight_stats(w, _lo(b), _hi(b, n))
            if weight_stats:
                return _sum_in_order(sums), bad.sum(), _sum_in_order(weights), negative.sum()
            return _sum_in_order(sums), bad.sum()
        return reduce_value
    return _with_weight_stats(reduce_template)


def _with_weight_stats(reduce_template):
    """{"reduce_value": reduce_template(False), "reduce_weighted_value": reduce_template(True)}.

    A reduce_value template built with ``weight_stats`` also sums each block's weights
    and counts its negative ones (``_block_weight_stats``, over the block just read, so
    from the cache), returning (sum, invalid count, sum of weights, negative weights):
    a weighted mean then needs no pass of its own over the weights (weight_stats), which
    took a third of the time of a weighted value (mse: 2.9 ms for the values, 1.2 for
    the weights; Intel AVX-512, 2 threads, n = 1e7 float32)."""
    return {"reduce_value": reduce_template(False),
            "reduce_weighted_value": reduce_template(True)}


def _no_shortfall(y, p):
    raise NotImplementedError("for use inside Numba-compiled code")


@overload(_no_shortfall, inline="always")
def _no_shortfall_typed(y, p):
    """The zero a kernel's domain shortfalls are summed onto: float32 when both inputs are
    float32 (their shortfalls are, and a float64 sum would convert each), else float64."""
    if y.dtype == numba.float32 and p.dtype == numba.float32:
        return lambda y, p: _ZERO32
    return lambda y, p: 0.0


def _loss_templates(name, parallel):
    """The kernels of loss ``name``, as jitted closures over its scalar maths.

    A loss with a ``constant_param`` also gets each kernel built with that
    parameter compiled in (kinds ending in ``CONSTANT``), used when a call passes
    that value: branches on the parameter then fold away (sigmoid_focal at
    gamma = 2 needs no general power, kl_div without log targets no
    exponential), where a vectorized loop would compute both sides of every
    such branch for every element.  Like every kernel, each is compiled on its
    first call.
    """
    spec = REGISTRY[name]
    functions = scalar.scalar_functions(name)
    binary_value = scalar.BINARY_LABEL_VALUES.get(name)
    kinds = _templates(spec, *functions, binary_value, parallel)
    if spec.constant_param:
        at_constant = [f if f is None else _at_constant(spec, f)
                       for f in (*functions, binary_value)]
        kinds.update({kind + CONSTANT: kernel
                      for kind, kernel in _templates(spec, *at_constant, parallel).items()})
    return kinds


# The kinds a loss with ``LossSpec.float32_value`` also has in float32 (suffix "_f32").
FLOAT32_KINDS = ("reduce_value", "reduce_weighted_value", "value_none", "grad", "value_and_grad")


def _templates(spec, value, grad, hess, binary_value, parallel):
    """The kernels of one loss from its scalar (value, grad, hess) and, if it has one,
    its value for labels in {0, 1} (``scalar.BINARY_LABEL_VALUES``)."""
    kinds = _one_pass_templates(spec, value, grad, hess, parallel, _in_float64)
    if spec.float32_value and float32_in_one_pass(spec):
        halves = spec.float32_in_one_pass and not spec.float64_value_maths
        in_float32 = _one_pass_templates(spec, value, grad, hess, parallel, _in_float32,
                                         halves=halves, prefetch=not halves)
        if binary_value is not None:
            in_float32.update(_one_pass_by_labels(spec, value, grad, binary_value, parallel,
                                                  _in_float32))
        kinds.update({kind + "_f32": in_float32[kind] for kind in FLOAT32_KINDS})
    elif spec.float32_value:
        kinds.update(_float32_templates(spec, value, grad, binary_value, parallel))
    if float32_grad_hess(spec):
        # The transcendental losses' first and second derivatives in float32, in one pass
        # (no sum to keep out of the float32 loop): binary_cross_entropy_with_logits
        # 8.2-8.5 -> 4.7-6.0 ms, log_cosh 14-15 -> 6-9, sigmoid_focal 13 -> 6 (Intel
        # AVX-512, 2 threads, n = 1e7, into out= buffers, old and new alternated).  The
        # arithmetic losses' ran 10-40% slower so, and keep float64.
        kinds["grad_hess_f32"] = _one_pass_templates(spec, value, grad, hess, parallel,
                                                     _in_float32, prefetch=True)["grad_hess"]
    return kinds


def float32_grad_hess(spec):
    """Whether ``spec`` has a float32 grad_hess kind (``_templates``): the float32_value
    losses whose float32 kinds are not the one-pass arithmetic ones, and those whose spec
    asks for one (``LossSpec.float32_grad_hess``)."""
    return spec.float32_value and (not spec.float32_in_one_pass or spec.float32_grad_hess)


def float32_in_one_pass(spec):
    """Whether the float32 kinds of ``spec`` compute in one pass (``_one_pass_templates``)
    rather than by the float32 templates' two (``_float32_templates``).

    ``LossSpec.float32_in_one_pass`` says (the arithmetic losses), but on CPUs with
    AVX2 and not AVX-512 every float32_value loss takes one pass: there the two
    passes cost the transcendental losses' values a fifth to a third of their time
    (AVX2, AMD Zen 3, 2 threads, n = 1e7: binary_cross_entropy 11.8 -> 9.6 ms,
    binary_cross_entropy_with_logits 12.3 -> 8.2, log_cosh 11.2 -> 8.2, both with
    the loop sized by its float32 inputs, ``tuned_for_float32``; sigmoid_focal, with
    the most maths per element, the same).  Sixteen registers of eight float32
    lanes spill a loop's constants either way, and the buffer's store, reload and
    second loop cost more than the float64 sum's conversions in the one loop.  (Other
    CPUs keep the layout they had: unmeasured, and without the vector width sized by
    the float32 inputs, which ``tuned_for_float32`` sets on x86 only, one pass would
    run half as many float32 lanes.)
    """
    return spec.float32_in_one_pass or (has_avx2() and not has_avx512())


@inlined_jit()
def _in_float64(v):
    return np.float64(v)


@inlined_jit()
def _in_float32(v):
    return np.float32(v)


def _element_steps(value, grad, hess, y_short, p_short, working):
    """What the one-pass kernels do with element i, for one loss: (value_step, fill_step,
    grad_step, value_grad_step, grad_hess_step), each ``step(y, p, w, th, scale, i, out,
    out2, s, k)`` returning the block's sum s and count k of domain shortfalls with
    element i's added: its value summed, its value, gradient (times ``scale``), value
    and gradient, or gradient and Hessian written to ``out`` (and ``out2``), each
    weighted where w is given; for grad_hess a negative weight counts as an input
    outside the domain."""
    @inlined_jit(**KERNEL_OPTIONS)
    def weighted_value(y, p, w, th, i):
        yr = y[i]
        pr = p[i]
        v = value(working(yr), working(pr), th)
        if w is not None:
            v = v * np.float64(w[i])
        return v, y_short(yr) + p_short(pr)

    @inlined_jit(**KERNEL_OPTIONS)
    def value_step(y, p, w, th, scale, i, out, out2, s, k):
        v, shortfall = weighted_value(y, p, w, th, i)
        return _add(s, v), _add(k, shortfall)

    @inlined_jit(**KERNEL_OPTIONS)
    def fill_step(y, p, w, th, scale, i, out, out2, s, k):
        v, shortfall = weighted_value(y, p, w, th, i)
        out[i] = v
        return s, _add(k, shortfall)

    @inlined_jit(**KERNEL_OPTIONS)
    def grad_step(y, p, w, th, scale, i, out, out2, s, k):
        yr = y[i]
        pr = p[i]
        g = grad(working(yr), working(pr), th) * working(scale)
        if w is not None:
            g = g * np.float64(w[i])
        out[i] = g
        return s, _add(k, y_short(yr) + p_short(pr))

    @inlined_jit(**KERNEL_OPTIONS)
    def value_grad_step(y, p, w, th, scale, i, out, out2, s, k):
        yr = y[i]
        pr = p[i]
        yi = working(yr)
        pi = working(pr)
        v = value(yi, pi, th)
        g = grad(yi, pi, th) * working(scale)
        if w is not None:
            wi = np.float64(w[i])
            v = v * wi
            g = g * wi
        out[i] = g
        return _add(s, v), _add(k, y_short(yr) + p_short(pr))

    @inlined_jit(**KERNEL_OPTIONS)
    def grad_hess_step(y, p, w, th, scale, i, out, out2, s, k):
        yr = y[i]
        pr = p[i]
        yi = working(yr)
        pi = working(pr)
        g = grad(yi, pi, th)
        h = hess(yi, pi, th)
        if w is not None:
            wi = np.float64(w[i])
            g = g * wi
            h = h * wi
            k = _add(k, _shortfall32(wi))
        out[i] = g
        out2[i] = h
        return s, _add(k, y_short(yr) + p_short(pr))

    return value_step, fill_step, grad_step, value_grad_step, grad_hess_step


def _block_loop(step, prefetch):
    """A loop over one block [lo, hi) applying ``step`` (``_element_steps``) to each
    element, from the sum s and shortfall count k given to the block's (s, k): with
    ``prefetch``, in chunks, each after prefetch requests for y and p
    (``memory.prefetch_chunk``); without, whole (an outer loop of chunks made LLVM
    rematerialize constants inside the inner one: kl_div's float64 value 10% slower).
    One signature, (y, p, th, scale, lo, hi, w, out, out2, s, k), for every step, so that
    ``_by_labels`` can choose between two such loops and ``_writing_kernels`` takes any.

    Until 6e31f61 made every helper ``alwaysinline``, kernels built from such loops came
    out unvectorized depending on what the process had compiled first (the float64 kinds
    of huber, mae, pinball and smooth_l1 on float32 data), and the one-pass kernels had
    their loops written out in their bodies, four copies."""
    if prefetch:
        @inlined_jit(**KERNEL_OPTIONS)
        def loop(y, p, th, scale, lo, hi, w, out, out2, s, k):
            for c in range(lo, hi, PREFETCH_CHUNK):
                for i in range(c, prefetch_chunk(y, p, c, hi)):
                    s, k = step(y, p, w, th, scale, i, out, out2, s, k)
            return s, k
        return loop

    @inlined_jit(**KERNEL_OPTIONS)
    def whole_loop(y, p, th, scale, lo, hi, w, out, out2, s, k):
        for i in range(lo, hi):
            s, k = step(y, p, w, th, scale, i, out, out2, s, k)
        return s, k
    return whole_loop


def _writing_kernels(fill, grad, value_grad, grad_hess, parallel):
    """value_none, grad, value_and_grad and grad_hess over the blocks in parallel, from the
    block loops (``_block_loop``) of those steps (None: no such kernel)."""
    kernels = {}
    if fill is not None:
        @njit(parallel=parallel, **KERNEL_OPTIONS)
        def value_none(y, p, w, th, out):
            n = y.shape[0]
            nb = (n + BLOCK - 1) // BLOCK
            bad = np.empty(nb, np.int64)
            for b in prange(nb):
                k = fill(y, p, th, 1.0, _lo(b), _hi(b, n), w, out, None, 0.0,
                         _no_shortfall(y, p))[1]
                bad[b] = k < 0.0
            return bad.sum()
        kernels["value_none"] = value_none
    if grad is not None:
        @njit(parallel=parallel, **KERNEL_OPTIONS)
        def grad_kernel(y, p, w, th, scale, out):
            n = y.shape[0]
            nb = (n + BLOCK - 1) // BLOCK
            bad = np.empty(nb, np.int64)
            for b in prange(nb):
                k = grad(y, p, th, scale, _lo(b), _hi(b, n), w, out, None, 0.0,
                         _no_shortfall(y, p))[1]
                bad[b] = k < 0.0
            return bad.sum()
        kernels["grad"] = grad_kernel
    if value_grad is not None:
        @njit(parallel=parallel, **KERNEL_OPTIONS)
        def value_and_grad(y, p, w, th, scale, out):
            n = y.shape[0]
            nb = (n + BLOCK - 1) // BLOCK
            sums = np.empty(nb)
            bad = np.empty(nb, np.int64)
            for b in prange(nb):
                s, k = value_grad(y, p, th, scale, _lo(b), _hi(b, n), w, out, None, 0.0,
                                  _no_shortfall(y, p))
                sums[b] = s
                bad[b] = k < 0.0
            return _sum_in_order(sums), bad.sum()
        kernels["value_and_grad"] = value_and_grad
    if grad_hess is not None:
        @njit(parallel=parallel, **KERNEL_OPTIONS)
        def grad_hess_kernel(y, p, w, th, gout, hout):
            n = y.shape[0]
            nb = (n + BLOCK - 1) // BLOCK
            bad = np.empty(nb, np.int64)
            for b in prange(nb):
                k = grad_hess(y, p, th, 1.0, _lo(b), _hi(b, n), w, gout, hout, 0.0,
                              _no_shortfall(y, p))[1]
                bad[b] = k < 0.0
            return bad.sum()
        kernels["grad_hess"] = grad_hess_kernel
    return kernels


def _one_pass_blocks(value, grad, y_short, p_short, working):
    """The block loops of the one-pass kernels that compute values, for one value
    function: (value_sum, value_fill, value_grad), in chunks after prefetch requests."""
    value_step, fill_step, _, value_grad_step, _ = _element_steps(
        value, grad, None, y_short, p_short, working)
    return tuple(_block_loop(step, True) for step in (value_step, fill_step,
                                                      value_grad_step))


def _one_pass_templates(spec, value, grad, hess, parallel, working, halves=False,
                        prefetch=False):
    """The kernels of one loss that compute each element in one pass, the inputs read
    in their own dtype and converted by ``working`` (to float64, or to float32 for
    the float32 kinds of ``LossSpec.float32_in_one_pass``); sums are float64.  Each
    element's inputs are read once, before anything is stored: an output may be
    y_true or y_pred itself (``_validation.kernel_out``).

    With ``halves``, reduce_value adds the values of element i and of element i + h of
    each block, h its half length, in the working dtype before the float64 sum takes
    them.  For float32 maths that halves the conversions to float64, which cost the
    arithmetic losses' values a tenth to a fifth of their time on AVX-512 (two
    512-bit ports convert sixteen lanes in five operations): hinge, huber, smooth_l1
    and squared_hinge read 74-83% of read2 over the same arrays and 87-98% with
    halves (Intel AVX-512, 2 threads, n = 1e7).  The one rounding of each pair's sum
    is as small as each float32 value's own, but value_and_grad's value may differ
    from reduce_value's in its last bits: value_and_grad keeps one pass in order,
    which with halves (its gradients written in halves too, or in a second loop)
    ran 5-35% slower.

    With ``prefetch`` (the float32 kinds without ``halves``: those of the
    transcendental maths) each block's loop runs in chunks, each after prefetch
    requests for y and p a few pages ahead (``memory.prefetch_chunk``), as the
    two-pass float32 templates' loops do.  Their loops read memory too slowly for
    the hardware prefetchers (Intel AVX-512, n = 1e7 float32, old and new
    alternated: one thread, kl_div's value 9.6-10.9 -> 8.6-9.5 ms, poisson_nll's
    8.3-9.1 -> 7.0-7.4; two threads, value 4.8-5.0 -> 4.3-4.6 and 3.8-4.1 -> 3.4-3.6,
    grad_hess of poisson_nll, binary_cross_entropy_with_logits and log_cosh about 10%
    faster; with AVX2 code on that host, the one-pass values of
    binary_cross_entropy_with_logits, sigmoid_focal, kl_div and poisson_nll twice as
    fast, 13 -> 6 ms).  Without it the loops stay whole: an outer loop of chunks made
    LLVM rematerialize constants inside the inner one (kl_div's float64 value 10%
    slower).
    """
    # Domains are checked by summing shortfalls: negative exactly when an input is outside.
    y_short = scalar.DOMAIN_SHORTFALLS[spec.y_domain]
    p_short = scalar.DOMAIN_SHORTFALLS[spec.p_domain]
    split = np.uint64(2 if halves else 0)

    value_step, fill_step, grad_step, value_grad_step, grad_hess_step = _element_steps(
        value, grad, hess, y_short, p_short, working)

    fill_loop, grad_loop, value_grad_loop, grad_hess_loop, tail_loop = (
        _block_loop(step, prefetch)
        for step in (fill_step, grad_step, value_grad_step, grad_hess_step, value_step))

    # _block_reductions' loop, with each block's pairs of halves before its tail.  The pair's
    # maths stays written out: through _element_steps' weighted_value, LLVM built another
    # loop (Intel AVX-512: hinge's float32 value 65 -> 130 instructions, 6 of them stack
    # references; huber's 37 -> 71, mse's 19 -> 35 per loop iteration), not kept untimed.
    def reduce_template(weight_stats):
        @njit(parallel=parallel, **KERNEL_OPTIONS)
        def reduce_value(y, p, w, th):
            n = y.shape[0]
            nb = (n + BLOCK - 1) // BLOCK
            sums = np.empty(nb)
            bad = np.empty(nb, np.int64)
            if weight_stats:
                weights = np.empty(nb)
                negative = np.empty(nb, np.int64)
            for b in prange(nb):
                s = 0.0
                k = _no_shortfall(y, p)
                lo = _lo(b)
                h = (_hi(b, n) - lo) // split if split else np.uint64(0)
                for i in range(lo, lo + h):
                    j = i + h
                    yr = y[i]
                    pr = p[i]
                    yq = y[j]
                    pq = p[j]
                    v = value(working(yr), working(pr), th)
                    u = value(working(yq), working(pq), th)
                    if w is not None:
                        v = v * np.float64(w[i])
                        u = u * np.float64(w[j])
                    s = _add(s, v + u)
                    k = _add(k, (y_short(yr) + p_short(pr)) + (y_short(yq) + p_short(pq)))
                s, k = tail_loop(y, p, th, 1.0, lo + h + h, _hi(b, n), w, None, None, s, k)
                sums[b] = s
                bad[b] = k < 0.0
                if weight_stats:
                    weights[b], negative[b] = _block_weight_stats(w, lo, _hi(b, n))
            if weight_stats:
                return _sum_in_order(sums), bad.sum(), _sum_in_order(weights), negative.sum()
            return _sum_in_order(sums), bad.sum()
        return reduce_value

    return {**_with_weight_stats(reduce_template),
            **_writing_kernels(fill_loop, grad_loop, value_grad_loop, grad_hess_loop, parallel)}


def _one_pass_by_labels(spec, value, grad, binary_value, parallel, working):
    """reduce_value, value_none and value_and_grad of ``_one_pass_templates`` for a loss
    with a value function for labels in {0, 1} (``scalar.BINARY_LABEL_VALUES``): each
    block whose labels are all 0 or 1 takes it, the others the general ``value``."""
    y_short = scalar.DOMAIN_SHORTFALLS[spec.y_domain]
    p_short = scalar.DOMAIN_SHORTFALLS[spec.p_domain]
    general = _one_pass_blocks(value, grad, y_short, p_short, working)
    # labels known to be 0 or 1 are inside every label domain: p's is checked alone
    binary = _one_pass_blocks(binary_value, grad, scalar.DOMAIN_SHORTFALLS["real"], p_short,
                              working)
    value_sum, value_fill, value_grad = (_by_labels(b, g) for b, g in zip(binary, general))

    @inlined_jit(**KERNEL_OPTIONS)
    def block_sum(y, p, w, th, lo, hi):
        s, k = value_sum(y, p, th, 1.0, lo, hi, w, None, None, 0.0, _no_shortfall(y, p))
        return s, k < 0.0

    return {**_block_reductions(block_sum, parallel),
            **_writing_kernels(value_fill, None, value_grad, None, parallel)}


def _constant_position(spec):
    """(index in theta, value) of ``spec.constant_param``."""
    name, constant = spec.constant_param
    return [p.name for p in spec.params].index(name), float(constant)


def _at_constant(spec, f):
    """Scalar function ``f`` with ``spec.constant_param`` compiled in as a constant."""
    index, constant = _constant_position(spec)

    @inlined_jit()
    def at_constant(y, p, th):
        return f(y, p, tuple_setitem(th, index, constant))

    return at_constant


def constant_applies(spec, theta):
    """Whether a call with parameters ``theta`` runs the kernels built at the constant."""
    if not spec.constant_param:
        return False
    index, constant = _constant_position(spec)
    return theta[index] == constant


def _checked(v):
    raise NotImplementedError("for use inside Numba-compiled code")


@overload(_checked, inline="always")
def _checked_typed(v):
    """A target as the float32 kernels check its domain: as float32 where that is
    exact (a 64-bit comparison would halve the vector width), else as given."""
    if np.can_cast(as_dtype(v), np.float32, "safe"):
        return lambda v: np.float32(v)
    return lambda v: v


@inlined_jit(**KERNEL_OPTIONS)
def _labels_binary(y, lo, hi):
    """Whether y[lo:hi] holds only 0 and 1 (a float32 count: 16 lanes, exact per block).
    Soft labels usually show at the first element, which is looked at alone first."""
    if not ((y[lo] == 0) | (y[lo] == 1)):
        return False
    others = _ZERO32
    for i in range(lo, hi):
        others = _add(others, _ZERO32 if (y[i] == 0) | (y[i] == 1) else _ONE32)
    return others == _ZERO32


def _by_labels(binary_fill, general_fill):
    """A fill loop that runs ``binary_fill`` on a block whose labels are all 0 or 1."""
    @inlined_jit(**KERNEL_OPTIONS)
    def fill(y, p, th, scale, lo, hi, *rest):
        if _labels_binary(y, lo, hi):
            return binary_fill(y, p, th, scale, lo, hi, *rest)
        return general_fill(y, p, th, scale, lo, hi, *rest)
    return fill


def _shortfall32(v):
    raise NotImplementedError("for use inside Numba-compiled code")


@overload(_shortfall32, inline="always")
def _shortfall32_typed(v):
    """A domain shortfall as a float32 that stays negative (a float64 one of -1e-50 would
    round to -0)."""
    if v == numba.float32:
        return lambda v: v
    return lambda v: np.float32(-1.0) if v < 0 else _ZERO32


@inlined_jit(**KERNEL_OPTIONS)
def _buffer_sum(values, w, lo, hi):
    """The float64 sum of a block's float32 values (``values[i - lo]`` for i in [lo, hi)),
    each times w[i] if weighted.  Unweighted, element i and element i + h, h half the
    block, are added in float32 first, as in ``_one_pass_templates``' halves: the
    transcendental losses' values 2-7% faster and their value_and_grad up to 5% (Intel
    AVX-512, 2 threads, n = 1e7)."""
    s = 0.0
    h = (hi - lo) // np.uint64(2) if w is None else np.uint64(0)
    for i in range(h):
        s = _add(s, values[i] + values[i + h])
    for i in range(lo + h + h, hi):
        v = np.float64(values[i - lo])
        if w is not None:
            v = v * np.float64(w[i])
        s = _add(s, v)
    return s


def _float32_templates(spec, value, grad, binary_value, parallel):
    """reduce_value, value_none, grad and value_and_grad evaluating the loss on float32 (y, p).

    A first loop writes a block's values in float32 (to a buffer, or to ``out``),
    and gradients times a float32 ``scale`` to ``out``, and sums the inputs'
    domain shortfalls (``scalar.DOMAIN_SHORTFALLS``: negative exactly when an
    input is outside its domain) on the inputs as given; a second loop applies
    the weights and sums in float64.  Any 64-bit operation (a float64, an int64
    count) in the first loop would make LLVM vectorize it eight lanes wide
    instead of sixteen.
    """
    y_short = scalar.DOMAIN_SHORTFALLS[spec.y_domain]
    p_short = scalar.DOMAIN_SHORTFALLS[spec.p_domain]

    @inlined_jit(**KERNEL_OPTIONS)
    def outside(yv, pv):
        """Negative for an input outside the loss's domain, else 0."""
        return _shortfall32(y_short(_checked(yv))) + p_short(pv)

    @inlined_jit(**KERNEL_OPTIONS)
    def p_outside(yv, pv):
        """``outside`` for labels known to be 0 or 1 (in every label domain): p alone."""
        return p_short(pv)

    def fill_template(f, outside=outside):
        @inlined_jit(**KERNEL_OPTIONS)
        def fill(y, p, th, scale, lo, hi, dest, dest_lo):
            bad = _ZERO32
            for c in range(lo, hi, PREFETCH_CHUNK):
                for i in range(c, prefetch_chunk(y, p, c, hi)):
                    bad = _add(bad, outside(y[i], p[i]))     # before the store: loads shared
                    dest[i - dest_lo] = f(np.float32(y[i]), p[i], th) * scale
            return np.int64(bad < _ZERO32)
        return fill

    def fill_value_grad_template(f, outside=outside):
        @inlined_jit(**KERNEL_OPTIONS)
        def fill_value_grad(y, p, th, scale, lo, hi, values, out):
            bad = _ZERO32
            for c in range(lo, hi, PREFETCH_CHUNK):
                for i in range(c, prefetch_chunk(y, p, c, hi)):
                    bad = _add(bad, outside(y[i], p[i]))
                    yi = np.float32(y[i])
                    values[i - lo] = f(yi, p[i], th)
                    out[i] = grad(yi, p[i], th) * scale
            return np.int64(bad < _ZERO32)
        return fill_value_grad

    fill_value = fill_template(value)     # called with scale 1, which folds away
    fill_grad = fill_template(grad)
    fill_value_grad = fill_value_grad_template(value)
    if binary_value is not None:
        fill_value = _by_labels(fill_template(binary_value, p_outside), fill_value)
        fill_value_grad = _by_labels(fill_value_grad_template(binary_value, p_outside),
                                     fill_value_grad)

    @inlined_jit(**KERNEL_OPTIONS)
    def block_sum(y, p, w, th, lo, hi):
        values = np.empty(BLOCK, np.float32)
        bad = fill_value(y, p, th, _ONE32, lo, hi, values, lo)
        return _buffer_sum(values, w, lo, hi), bad

    @njit(parallel=parallel, **KERNEL_OPTIONS)
    def value_none_f32(y, p, w, th, out):
        n = y.shape[0]
        nb = (n + BLOCK - 1) // BLOCK
        bad = np.empty(nb, np.int64)
        for b in prange(nb):
            lo = _lo(b)
            hi = _hi(b, n)
            bad[b] = fill_value(y, p, th, _ONE32, lo, hi, out, np.uint64(0))
            if w is not None:
                for i in range(lo, hi):
                    out[i] = out[i] * w[i]
        return bad.sum()

    @njit(parallel=parallel, **KERNEL_OPTIONS)
    def grad_f32(y, p, w, th, scale, out):
        n = y.shape[0]
        nb = (n + BLOCK - 1) // BLOCK
        bad = np.empty(nb, np.int64)
        scale32 = np.float32(scale)
        for b in prange(nb):
            lo = _lo(b)
            hi = _hi(b, n)
            bad[b] = fill_grad(y, p, th, scale32, lo, hi, out, np.uint64(0))
            if w is not None:
                for i in range(lo, hi):
                    out[i] = out[i] * w[i]
        return bad.sum()

    @njit(parallel=parallel, **KERNEL_OPTIONS)
    def value_and_grad_f32(y, p, w, th, scale, out):
        n = y.shape[0]
        nb = (n + BLOCK - 1) // BLOCK
        sums = np.empty(nb)
        bad = np.empty(nb, np.int64)
        scale32 = np.float32(scale)
        for b in prange(nb):
            lo = _lo(b)
            hi = _hi(b, n)
            values = np.empty(BLOCK, np.float32)
            bad[b] = fill_value_grad(y, p, th, scale32, lo, hi, values, out)
            if w is not None:
                for i in range(lo, hi):
                    out[i] = out[i] * w[i]
            sums[b] = _buffer_sum(values, w, lo, hi)
        return _sum_in_order(sums), bad.sum()

    reduce_kinds = _block_reductions(block_sum, parallel)
    return {"reduce_value_f32": reduce_kinds["reduce_value"],
            "reduce_weighted_value_f32": reduce_kinds["reduce_weighted_value"],
            "value_none_f32": value_none_f32,
            "grad_f32": grad_f32, "value_and_grad_f32": value_and_grad_f32}


def tuned_for_float32(dispatcher, interleave=0, by_float32=False):
    """Make ``dispatcher`` compile its signatures for float32 targets and predictions
    with LLVM's loop interleave count forced to ``interleave``
    (``LossSpec.float32_interleave``; 0: LLVM's choice) and, if ``by_float32``, with
    the vector width chosen by the float32 inputs (``-vectorizer-maximize-bandwidth``:
    all float32 lanes of a vector register for a loop of float32 maths with a float64
    sum, where LLVM would size it by the float64 sum; ``_sized_by_float32``).
    Other dtypes keep LLVM's choices: float64 maths spills at an interleave of four,
    and a float64 target with float32 predictions then sums exactly as with both in
    float64.

    The options are LLVM's, for the whole process; they are set and reset around each
    such compilation under Numba's compiler lock, so no other compilation sees them.
    Only on CPUs with AVX-512 or AVX2, where they were measured: on AVX-512 the
    32 vector registers hold four interleaved copies of a loss's loop without
    spilling (``LossSpec.interleave_for``); on AVX2 the loop sized by its float32
    inputs runs eight float32 lanes instead of four (squared_hinge's value 20%
    faster, huber's 10%, the transcendental losses' a fifth to a third with
    ``float32_in_one_pass``).
    """
    options = []
    if interleave:
        options.append(("-force-vector-interleave", interleave, 0))
    if by_float32:
        options.append(("-vectorizer-maximize-bandwidth", "true", "false"))
    if not options or not (has_avx512() or has_avx2()):
        return dispatcher
    compile_default = dispatcher.compile

    def compile(sig):
        if not all(getattr(t, "dtype", None) == numba.float32 for t in sig[:2]):
            return compile_default(sig)
        import llvmlite.binding as llvm
        from numba.core.compiler_lock import global_compiler_lock
        with global_compiler_lock:
            for option, value, _ in options:
                llvm.set_option("", f"{option}={value}")
            try:
                return compile_default(sig)
            finally:
                for option, _, default in options:
                    llvm.set_option("", f"{option}={default}")

    dispatcher.compile = compile
    return dispatcher


def _sized_by_float32(spec, kind):
    """Whether kernel ``kind`` of ``spec`` is compiled with the vector width of its
    float32 inputs (``tuned_for_float32``'s ``by_float32``): every one-pass float32
    kind, but on AVX-512 those of ``LossSpec.float32_sum_width_kinds``."""
    base, f32, _ = kind.partition("_f32")
    if not (f32 and float32_in_one_pass(spec)):
        return False
    return base not in spec.float32_sum_width_kinds or not has_avx512()


_kernels = {}
_build_lock = threading.Lock()


def build_kernels(name, parallel, cached=True):
    """Fresh kernels of loss ``name``, each built as every call gets it (``as_kernel``:
    full vector width, callees compiled for linking only; the spec's LLVM options for
    float32 data), and cached on disk unless ``cached`` is False (code loaded from the
    cache cannot be inspected: tests/test_inlined.py reads the LLVM IR)."""
    variant = "par" if parallel else "ser"
    if name == "weights":
        ks = {"weight_stats": _weight_template(parallel)}
    else:
        ks = _loss_templates(name, parallel)
    from ..custom import get_custom
    custom = get_custom(name)
    label = name if custom is None else f"{name}-{custom.current_digest()}"
    spec = REGISTRY.get(name)
    for kind, disp in ks.items():
        as_kernel(disp, f"{label}-{kind}-{variant}" if cached else None)
        if spec is not None:
            tuned_for_float32(disp, spec.interleave_for(kind, has_avx512()),
                              _sized_by_float32(spec, kind))
    return ks


def kernels(name, parallel):
    """The (lazily built, disk-cached) kernels of loss ``name``."""
    key = (name, parallel)
    ks = _kernels.get(key)
    if ks is None:
        with _build_lock:
            ks = _kernels.get(key)
            if ks is None:
                ks = _kernels[key] = build_kernels(name, parallel)
    return ks


def forget(name):
    """Drop the kernels of ``name`` (a custom loss redefined with other code)."""
    with _build_lock:
        for parallel in (False, True):
            _kernels.pop((name, parallel), None)


# Numba's "workqueue" threading layer must not be entered from two threads at
# once; "omp" and "tbb" may.  Until the layer is known, and if it is
# workqueue, parallel calls are serialized by this lock.
_parallel_lock = threading.Lock()
_layer_is_threadsafe = None


def apply_num_threads():
    """Give Numba (in this thread) the thread count set with fastloss.set_num_threads."""
    threads = _config.get_num_threads()
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)


def parallel_min_size(name):
    """The input size from which loss ``name``'s parallel builds run, for this process's
    threading layer (started here if no parallel kernel has run yet)."""
    global _workqueue
    spec = REGISTRY.get(name)
    size = (ARITHMETIC_PARALLEL_MIN_SIZE if spec is not None and spec.arithmetic
            else PARALLEL_MIN_SIZE)
    if _workqueue is None:
        numba.get_num_threads()                 # starts the threading layer
        _workqueue = numba.threading_layer() == "workqueue"
    return size * WORKQUEUE_FACTOR if _workqueue else size


def _run(name, kind, size, *args):
    try:
        # The variant depends on the size (and the threading layer) alone, never on the
        # thread count, so a given input always runs the same compiled code: the same bits.
        # (PARALLEL_MIN_SIZE is below every threshold: small calls never start the layer.)
        if size < PARALLEL_MIN_SIZE or size < parallel_min_size(name):
            return (_kernels.get((name, False)) or kernels(name, False))[kind](*args)
        return call_parallel(kernels(name, True)[kind], *args)
    except numba.core.errors.TypingError as e:
        from ..custom import compile_error, get_custom
        if get_custom(name) is None:
            raise
        raise compile_error(name, e) from None


def call_parallel(kernel, *args):
    """``kernel(*args)`` for a parallel kernel: fastloss's thread count, and
    serialized with every other parallel call while the layer may be workqueue.

    The kernels that have no serial build among a loss's (the row losses', the
    boosting adapters') run their serial twin (``serial_twin``) where their first
    argument, the data they walk, has fewer than ``SERIAL_BELOW`` elements: no thread
    is woken, and the threading layer is not even started.  Their results do not
    depend on the thread count, nor on the build: each row or element is computed
    by the same code in either."""
    global _layer_is_threadsafe
    if args[0].size < SERIAL_BELOW:
        return serial_twin(kernel)(*args)
    apply_num_threads()
    if _layer_is_threadsafe:
        return kernel(*args)
    with _parallel_lock:
        result = kernel(*args)
        _layer_is_threadsafe = numba.threading_layer() != "workqueue"
    return result


_twins = {}


def serial_twin(kernel):
    """A parallel kernel's serial build: its function compiled with the same options but
    ``parallel`` (prange runs as range), for linking alone and the full vector width as
    every kernel (``as_kernel``), cached on disk apart from the parallel build where that
    is cached."""
    twin = _twins.get(kernel)
    if twin is None:
        with _build_lock:
            twin = _twins.get(kernel)
            if twin is None:
                options = {k: v for k, v in kernel.targetoptions.items()
                           if k not in ("parallel", "nopython")}
                twin = njit(**options)(kernel.py_func)
                cached = kernel._cache
                tag = None
                if not isinstance(cached, NullCache):    # cached as the parallel build is
                    tag = getattr(cached, "_tag", None) or (
                        f"{kernel.py_func.__module__}.{kernel.py_func.__qualname__}")
                    tag += "-serial"
                twin = _twins[kernel] = as_kernel(twin, tag)
    return twin


def _kind(name, kind, theta, y=None, p=None):
    """The kernel kind for these parameters (and, for the float32 kernels, dtypes)."""
    spec = REGISTRY[name]
    if y is not None and spec.value_in_float32(y.dtype, p.dtype):
        kind += "_f32"
    return kind + CONSTANT if spec.constant_param and constant_applies(spec, theta) else kind


def reduce_value(name, y, p, w, theta):
    kind = _kind(name, "reduce_value", theta, y, p)
    total, bad = _run(name, kind, y.shape[0], y, p, w, theta)
    if float32_overflowed(kind, total, bad):
        total, bad = _run(name, kind.replace("_f32", ""), y.shape[0], y, p, w, theta)
    return total, bad


def reduce_weighted_value(name, y, p, w, theta):
    """``reduce_value`` with weights, in one pass with their statistics: (sum of w*l,
    invalid count, sum of w, count of negative weights)."""
    kind = _kind(name, "reduce_weighted_value", theta, y, p)
    total, bad, weights, negative = _run(name, kind, y.shape[0], y, p, w, theta)
    if float32_overflowed(kind, total, bad):
        total, bad, weights, negative = _run(name, kind.replace("_f32", ""), y.shape[0],
                                             y, p, w, theta)
    return total, bad, weights, negative


def value_none(name, y, p, w, theta, out):
    return _run(name, _kind(name, "value_none", theta, y, p), y.shape[0], y, p, w, theta, out)


def grad(name, y, p, w, theta, scale, out):
    return _run(name, _kind(name, "grad", theta, y, p), y.shape[0],
                y, p, w, theta, float(scale), out)


def value_and_grad(name, y, p, w, theta, scale, out):
    kind = _kind(name, "value_and_grad", theta, y, p)
    over_input = "_f32" in kind and (np.may_share_memory(out, p) or np.may_share_memory(out, y))
    # A gradient to be written over an input (out=y_pred) goes to a buffer first: where the
    # float32 pass's sum is not finite, the float64 pass after it reads the inputs again.
    first = np.empty_like(out) if over_input else out
    total, bad = _run(name, kind, y.shape[0], y, p, w, theta, float(scale), first)
    if float32_overflowed(kind, total, bad):
        total, bad = _run(name, kind.replace("_f32", ""), y.shape[0],
                          y, p, w, theta, float(scale), out)
    elif over_input:
        out[...] = first
    return total, bad


# grad_hess's kernels count a negative weight as an invalid input: the caller needs no
# weight_stats pass first (Loss.grad_hess), which cost weighted boosting objectives a fifth.
GRAD_HESS_CHECKS_WEIGHTS = True


def grad_hess(name, y, p, w, theta, gout, hout):
    dtypes = (y, p) if float32_grad_hess(REGISTRY[name]) else ()
    return _run(name, _kind(name, "grad_hess", theta, *dtypes), y.shape[0],
                y, p, w, theta, gout, hout)


def weight_stats(w):
    return _run("weights", "weight_stats", w.shape[0], w)
