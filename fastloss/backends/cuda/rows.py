"""CUDA kernels of the losses over rows of class scores: one block per row.

The block's threads stride over the row's C columns.  The softmax losses
keep, per thread, a running maximum and a sum of exponentials rescaled
whenever the maximum grows (the online log-sum-exp), combine them across the
block in shared memory, and then make one more pass over the row for the
gradient: two reads and one write per element, and nothing of size (N, C)
besides the gradient.  The row formulas are the CPU kernels' own
(``fastloss.kernels.softmax`` and ``margin``), compiled as device functions.
Every value that the gradient pass overwrites in place (``out`` is the logits)
is read before the block's first barrier.
"""
import math

import numpy as np
from numba import cuda

from ...kernels import fmath
from ...kernels.margin import margin_term
from ...kernels.softmax import (cap_slope, capped, focal_factors, label_target_sums,
                                row_loss_value, softmax_coef, target_weight)
from .launch import SIMULATED, THREADS, block_max, block_sum, kernel, store_partial

MAX_ROW_BLOCKS = 2 if SIMULATED else 1 << 16


def row_blocks(n_rows):
    return max(1, min(MAX_ROW_BLOCKS, n_rows))


@cuda.jit(device=True)
def _weight(w, j):
    if w is None:
        return 1.0
    return np.float64(w[j])


@cuda.jit(device=True)
def _push(m, s, v):
    """Add exp(v) to a running (maximum m, sum s of exp(x - m))."""
    if v > m:
        return v, s * math.exp(m - v) + 1.0
    if v == -math.inf:
        return m, s
    return m, s + math.exp(v - m)              # a NaN v makes the sum NaN


@cuda.jit(device=True)
def _push4(m, s, a, b, c, d):
    """_push of four values: one rescale at most, and their four exponentials added in their own
    precision before the float64 sum (a quarter of the branches and float64 additions)."""
    top = max(max(a, b), max(c, d))
    if top > m:
        s = s * math.exp(m - top)
        m = top
    if m == -math.inf:
        return m, s
    return m, s + ((math.exp(a - m) + math.exp(b - m)) + (math.exp(c - m) + math.exp(d - m)))


@cuda.jit(device=True)
def logit(x, i, j, cap):
    """x[i, j] in its own precision, or capped (in float64) when a softcap is set.

    (The CPU kernels' helper of the same name takes the array, which the CUDA
    simulator cannot pass to CPU-compiled code.)
    """
    if cap is None:
        return x[np.uint64(i), np.uint64(j)]
    return capped(np.float64(x[np.uint64(i), np.uint64(j)]), cap)


@cuda.jit(device=True)
def _exp_from_top(v, top):
    """exp(v - top) in v's precision: float32 logits take the single-precision exp
    (exact differences near the maximum, which is one of the logits), as on the CPU."""
    return math.exp(v - fmath.as_type_of(top, v))


@cuda.jit(device=True)
def _lowest(x, i, cap):
    """-inf in the precision of the row's (capped) logits: the running maximum's start."""
    return fmath.as_type_of(-math.inf, logit(x, i, 0, cap))


@cuda.jit(device=True)
def _smoothing_sums(class_weight, j, v, eps, sw, swx):
    """Label smoothing's running sums of w_j and w_j v_j, v_j = x_j - c (none when eps is 0)."""
    if eps != 0.0:
        wj = _weight(class_weight, j)
        sw += wj
        swx += wj * v
    return sw, swx


@cuda.jit(device=True)
def _row_pass(x, i, cap, class_weight, eps, shift):
    """This thread's running (maximum, sum of exponentials) over its columns of row i, and the
    smoothing sums of the logits less ``shift``.  Four columns, THREADS apart, per step: four
    loads in flight and one rescale."""
    C = x.shape[1]
    tid = cuda.threadIdx.x
    m = _lowest(x, i, cap)
    s = 0.0
    sw = 0.0
    swx = 0.0
    whole = C - C % (4 * THREADS)
    for j in range(tid, whole, 4 * THREADS):
        a = logit(x, i, j, cap)
        b = logit(x, i, j + THREADS, cap)
        c = logit(x, i, j + 2 * THREADS, cap)
        d = logit(x, i, j + 3 * THREADS, cap)
        m, s = _push4(m, s, a, b, c, d)
        sw, swx = _smoothing_sums(class_weight, j, a - shift, eps, sw, swx)
        sw, swx = _smoothing_sums(class_weight, j + THREADS, b - shift, eps, sw, swx)
        sw, swx = _smoothing_sums(class_weight, j + 2 * THREADS, c - shift, eps, sw, swx)
        sw, swx = _smoothing_sums(class_weight, j + 3 * THREADS, d - shift, eps, sw, swx)
    for j in range(whole + tid, C, THREADS):
        v = logit(x, i, j, cap)
        m, s = _push(m, s, v)
        sw, swx = _smoothing_sums(class_weight, j, v - shift, eps, sw, swx)
    return m, s, sw, swx


@cuda.jit(device=True)
def _row_max_sum(m, s):
    """(M, S): the row's maximum and sum_j exp(x_j - M), from every thread's (m, s)."""
    top = block_max(m)
    if m != top:
        s = s * math.exp(m - top)
    return top, block_sum(s)


@kernel
def label_check(labels, C, ignore, class_weight, sample_weight, first_bad, sums, counts):
    """Partials of the mean's denominator, sum_i r_i w[t_i] over rows not ignored, and of
    the count of labels outside [0, C) that are not ``ignore``; the first such row into
    first_bad[0] (an atomic minimum, so the result does not depend on the order)."""
    s = 0.0
    k = 0
    for i in range(cuda.grid(1), labels.shape[0], cuda.gridsize(1)):
        t = labels[i]
        if t == ignore:
            continue
        if t < 0 or t >= C:
            k += 1
            cuda.atomic.min(first_bad, 0, i)
            continue
        s += _weight(sample_weight, i) * _weight(class_weight, t)
    store_partial(s, k, sums, counts)


@kernel
def cross_entropy_labels(x, labels, class_weight, sample_weight, ignore, eps, z, cap, scale,
                         out, hess, rows):
    N, C = x.shape
    tid = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        t = labels[i]
        if t == ignore:
            if tid == 0:
                rows[i] = 0.0
            for j in range(tid, C, THREADS):
                if out is not None:
                    out[i, j] = 0.0
                if hess is not None:
                    hess[i, j] = 0.0
            continue
        xt = capped(np.float64(x[i, t]), cap)
        # the logits shifted by the target's (softmax.row_loss_value)
        m, s, sw, swx = _row_pass(x, i, cap, class_weight, eps, xt)
        top, total = _row_max_sum(m, s)
        if eps != 0.0:
            sw = block_sum(sw)
            swx = block_sum(swx)
        log_total = math.log(total)
        lse = top + log_total
        r = _weight(sample_weight, i)
        wt = _weight(class_weight, t)
        a, bx = label_target_sums(wt, 0.0, sw, swx, eps, C)
        if tid == 0:
            rows[i] = row_loss_value(r, a, bx, (top - xt) + log_total, lse, z)
        k = softmax_coef(scale, r, a, z, lse)
        smooth = scale * r * eps / C
        hit = scale * r * (1.0 - eps) * wt
        inv = 1.0 / total
        ui = np.uint64(i)
        for j in range(tid, C, THREADS):
            uj = np.uint64(j)
            xj = np.float64(x[ui, uj])
            pj = _exp_from_top(logit(x, i, j, cap), top) * inv
            if out is not None:
                g = k * pj - smooth * _weight(class_weight, j) - (hit if j == t else 0.0)
                out[ui, uj] = g * cap_slope(xj, cap)
            if hess is not None:
                hess[ui, uj] = r * a * pj * (1.0 - pj)


@kernel
def cross_entropy_targets(x, targets, class_weight, sample_weight, eps, z, cap, scale, out, hess,
                          rows):
    N, C = x.shape
    tid = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        m = _lowest(x, i, cap)
        s = 0.0
        a = 0.0
        bx = 0.0
        shift = logit(x, i, 0, cap)             # softmax.row_loss_value
        for j in range(tid, C, THREADS):
            v = logit(x, i, j, cap)
            m, s = _push(m, s, v)
            b = target_weight(_weight(class_weight, j), np.float64(targets[i, j]), eps, C)
            a += b
            bx += b * (v - shift)
        top, total = _row_max_sum(m, s)
        a = block_sum(a)
        bx = block_sum(bx)
        log_total = math.log(total)
        lse = top + log_total
        r = _weight(sample_weight, i)
        if tid == 0:
            rows[i] = row_loss_value(r, a, bx, (top - shift) + log_total, lse, z)
        k = softmax_coef(scale, r, a, z, lse)
        inv = 1.0 / total
        ui = np.uint64(i)
        for j in range(tid, C, THREADS):
            uj = np.uint64(j)
            xj = np.float64(x[ui, uj])
            pj = _exp_from_top(logit(x, i, j, cap), top) * inv
            if out is not None:
                b = target_weight(_weight(class_weight, j), np.float64(targets[ui, uj]), eps, C)
                out[ui, uj] = (k * pj - scale * r * b) * cap_slope(xj, cap)
            if hess is not None:
                hess[ui, uj] = r * a * pj * (1.0 - pj)


@kernel
def softmax_focal(x, labels, sample_weight, gamma, scale, out, rows):
    N, C = x.shape
    tid = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        t = labels[i]
        xt = np.float64(x[i, t])
        m, s, _, _ = _row_pass(x, i, None, None, 0.0, 0.0)
        top, total = _row_max_sum(m, s)
        lp = (xt - top) - math.log(total)
        r = _weight(sample_weight, i)
        qg, factor = focal_factors(lp, gamma)
        if tid == 0:
            rows[i] = -r * qg * lp
        if out is not None:
            k = scale * r * factor
            inv = 1.0 / total
            ui = np.uint64(i)
            for j in range(tid, C, THREADS):
                uj = np.uint64(j)
                pj = _exp_from_top(x[ui, uj], top) * inv
                out[ui, uj] = k * ((1.0 if j == t else 0.0) - pj)


@kernel
def multi_margin(x, labels, class_weight, sample_weight, power, margin, scale, out, rows):
    N, C = x.shape
    tid = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        t = labels[i]
        xt = np.float64(x[i, t])
        coef = _weight(sample_weight, i) * _weight(class_weight, t) / C
        total = 0.0
        slope_t = 0.0
        for j in range(tid, C, THREADS):
            term, slope = margin_term(margin - xt + np.float64(x[i, j]), power, j == t)
            total += term
            slope_t += slope
            if out is not None:
                out[i, j] = scale * coef * slope
        total = block_sum(total)
        slope_t = block_sum(slope_t)
        if tid == 0:
            rows[i] = coef * total
            if out is not None:
                out[i, t] = -scale * coef * slope_t


@kernel
def nll(x, labels, class_weight, sample_weight, ignore, scale, out, rows):
    """-w[t] r x[i, t] per row; the gradient is -w[t] r scale at (i, t) and 0 elsewhere."""
    N, C = x.shape
    tid = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        t = labels[i]
        coef = 0.0
        if t != ignore:
            coef = _weight(sample_weight, i) * _weight(class_weight, t)
        if tid == 0:
            rows[i] = -coef * np.float64(x[i, t]) if t != ignore else 0.0
        if out is not None:
            for j in range(tid, C, THREADS):
                out[i, j] = -coef * scale if j == t else 0.0
