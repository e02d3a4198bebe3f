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

Every pass takes four columns per thread a step, THREADS apart (coalesced),
and issues their four loads before using any: four loads in flight per thread
in the gradient pass too, where a store between two loads would hold the
second back (the store may alias it).  Steps are guarded at the row's end
rather than followed by a remainder loop, whose unrolled copies had doubled
the kernels' registers (``ptxas -v``: cross_entropy's 121 to 64 per thread,
so four blocks of 256 fit on an SM instead of two).
"""
import math

import numpy as np
from numba import cuda

from ...kernels import fmath
from ...kernels.margin import margin_term
from ...kernels.softmax import (cap_slope, capped, focal_curvature, focal_diag_hess,
                                focal_factors, label_target_sums, row_loss_value, softmax_coef,
                                target_weight)
from .launch import SIMULATED, THREADS, block_max, block_sum, kernel, store_partial

MAX_ROW_BLOCKS = 2 if SIMULATED else 1 << 16
STEP = 4 * THREADS                 # a block's columns per step: four per thread


def row_blocks(n_rows):
    return max(1, min(MAX_ROW_BLOCKS, n_rows))


@cuda.jit(device=True)
def _weight(w, j):
    if w is None:
        return 1.0
    return np.float64(w[j])


@cuda.jit(device=True)
def _push4(m, s, a, b, c, d):
    """Add exp(a), exp(b), exp(c) and exp(d) to a running (maximum m, sum s of exp(x - m)):
    one rescale at most, and the four exponentials added in their own precision before the
    float64 sum.  A NaN makes the sum NaN; -inf adds nothing."""
    top = max(max(a, b), max(c, d))
    if top > m:
        s = s * math.exp(m - top)
        m = top
    if m == -math.inf:          # every value so far -inf, or NaN (which max may pass over)
        return m, s + (0.0 if a == m and b == m and c == m and d == m else math.nan)
    return m, s + ((math.exp(a - m) + math.exp(b - m)) + (math.exp(c - m) + math.exp(d - m)))


@cuda.jit(device=True)
def _cap(v, cap):
    """A logit ``v`` in its own precision, or capped (in float64) when a softcap is set."""
    if cap is None:
        return v
    return capped(np.float64(v), cap)


@cuda.jit(device=True)
def logit(x, i, j, cap):
    """x[i, j] in its own precision, or capped (in float64) when a softcap is set.

    (The CPU kernels' helper of the same name takes the array, which the CUDA
    simulator cannot pass to CPU-compiled code.)
    """
    return _cap(x[np.uint64(i), np.uint64(j)], cap)


@cuda.jit(device=True)
def _load4(x, ui, j, C, fill):
    """x[i, j + k THREADS] for k = 0..3, ``fill`` past the row's end: four loads issued
    before any use of them, four in flight per thread.  (A store between two loads keeps
    the compiler from issuing the second early: the store may alias it.)"""
    uj = np.uint64(j)
    step = np.uint64(THREADS)
    a = x[ui, uj] if j < C else fill
    b = x[ui, uj + step] if j + THREADS < C else fill
    c = x[ui, uj + 2 * step] if j + 2 * THREADS < C else fill
    d = x[ui, uj + 3 * step] if j + 3 * THREADS < C else fill
    return a, b, c, d


@cuda.jit(device=True)
def _logits4(x, ui, j, C, cap, lowest):
    """_load4 of the (capped) logits, ``lowest`` (-inf) past the row's end."""
    a, b, c, d = _load4(x, ui, j, C, fmath.as_type_of(-math.inf, x[ui, 0]))
    if cap is None:
        return a, b, c, d
    return (_cap(a, cap) if j < C else lowest, _cap(b, cap) if j + THREADS < C else lowest,
            _cap(c, cap) if j + 2 * THREADS < C else lowest,
            _cap(d, cap) if j + 3 * THREADS < C else lowest)


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
def _smoothing_sums(class_weight, j, C, v, eps, sw, swx):
    """Label smoothing's running sums of w_j and w_j v_j, v_j = x_j - c (none when eps is 0,
    or j is past the row's end)."""
    if eps != 0.0 and j < C:
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
    ui = np.uint64(i)
    m = _lowest(x, i, cap)
    lowest = m
    s = 0.0
    sw = 0.0
    swx = 0.0
    for j in range(tid, C, STEP):
        a, b, c, d = _logits4(x, ui, j, C, cap, lowest)
        m, s = _push4(m, s, a, b, c, d)
        sw, swx = _smoothing_sums(class_weight, j, C, a - shift, eps, sw, swx)
        sw, swx = _smoothing_sums(class_weight, j + THREADS, C, b - shift, eps, sw, swx)
        sw, swx = _smoothing_sums(class_weight, j + 2 * THREADS, C, c - shift, eps, sw, swx)
        sw, swx = _smoothing_sums(class_weight, j + 3 * THREADS, C, d - shift, eps, sw, swx)
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
        # the logits shifted by the target's (softmax.row_loss_value), where it is finite:
        # an infinite one would make its own term inf - inf
        shift = xt if math.isfinite(xt) else 0.0
        m, s, sw, swx = _row_pass(x, i, cap, class_weight, eps, shift)
        top, total = _row_max_sum(m, s)
        if eps != 0.0:
            sw = block_sum(sw)
            swx = block_sum(swx)
        log_total = math.log(total)
        lse = top + log_total
        r = _weight(sample_weight, i)
        wt = _weight(class_weight, t)
        a, bx = label_target_sums(wt, xt - shift, sw, swx, eps, C)
        if tid == 0:
            rows[i] = row_loss_value(r, a, bx, (top - shift) + log_total, lse, z)
        k = softmax_coef(scale, r, a, z, lse)
        smooth = scale * r * eps / C
        hit = scale * r * (1.0 - eps) * wt
        inv = 1.0 / total
        ra = r * a
        ui = np.uint64(i)
        zero = fmath.as_type_of(0.0, x[ui, 0])
        for j in range(tid, C if out is not None or hess is not None else 0, STEP):
            v0, v1, v2, v3 = _load4(x, ui, j, C, zero)
            _label_grad(v0, ui, j, C, t, top, inv, k, smooth, hit, ra, cap, class_weight, out,
                        hess)
            _label_grad(v1, ui, j + THREADS, C, t, top, inv, k, smooth, hit, ra, cap,
                        class_weight, out, hess)
            _label_grad(v2, ui, j + 2 * THREADS, C, t, top, inv, k, smooth, hit, ra, cap,
                        class_weight, out, hess)
            _label_grad(v3, ui, j + 3 * THREADS, C, t, top, inv, k, smooth, hit, ra, cap,
                        class_weight, out, hess)


@cuda.jit(device=True)
def _label_grad(v, ui, j, C, t, top, inv, k, smooth, hit, ra, cap, class_weight, out, hess):
    """Store the gradient (and Hessian) of a labelled row at column j < C, whose logit is v."""
    if j >= C:
        return
    uj = np.uint64(j)
    pj = _exp_from_top(_cap(v, cap), top) * inv
    if out is not None:
        g = k * pj - smooth * _weight(class_weight, j) - (hit if j == t else 0.0)
        out[ui, uj] = g * cap_slope(np.float64(v), cap)
    if hess is not None:
        hess[ui, uj] = ra * pj * (1.0 - pj)


@kernel
def cross_entropy_targets(x, targets, class_weight, sample_weight, eps, z, cap, scale, out, hess,
                          rows):
    N, C = x.shape
    tid = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        ui = np.uint64(i)
        lowest = _lowest(x, i, cap)
        m = lowest
        s = 0.0
        a = 0.0
        bx = 0.0
        first = logit(x, i, 0, cap)            # softmax.row_loss_value; finite, or no shift
        shift = first if math.isfinite(first) else fmath.as_type_of(0.0, first)
        no_q = fmath.as_type_of(0.0, targets[ui, 0])
        for j in range(tid, C, STEP):
            v0, v1, v2, v3 = _logits4(x, ui, j, C, cap, lowest)
            q0, q1, q2, q3 = _load4(targets, ui, j, C, no_q)
            m, s = _push4(m, s, v0, v1, v2, v3)
            a, bx = _target_sums(class_weight, j, C, q0, v0 - shift, eps, a, bx)
            a, bx = _target_sums(class_weight, j + THREADS, C, q1, v1 - shift, eps, a, bx)
            a, bx = _target_sums(class_weight, j + 2 * THREADS, C, q2, v2 - shift, eps, a, bx)
            a, bx = _target_sums(class_weight, j + 3 * THREADS, C, q3, v3 - shift, eps, a, bx)
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
        sr = scale * r
        ra = r * a
        zero = fmath.as_type_of(0.0, x[ui, 0])
        for j in range(tid, C if out is not None or hess is not None else 0, STEP):
            v0, v1, v2, v3 = _load4(x, ui, j, C, zero)
            q0, q1, q2, q3 = _load4(targets, ui, j, C, no_q)
            _target_grad(v0, q0, ui, j, C, top, inv, k, sr, ra, eps, cap, class_weight, out, hess)
            _target_grad(v1, q1, ui, j + THREADS, C, top, inv, k, sr, ra, eps, cap, class_weight,
                         out, hess)
            _target_grad(v2, q2, ui, j + 2 * THREADS, C, top, inv, k, sr, ra, eps, cap,
                         class_weight, out, hess)
            _target_grad(v3, q3, ui, j + 3 * THREADS, C, top, inv, k, sr, ra, eps, cap,
                         class_weight, out, hess)


@cuda.jit(device=True)
def _target_sums(class_weight, j, C, q, v, eps, a, bx):
    """The running sums of b_j and b_j v_j of a row with target probabilities (none past
    the row's end)."""
    if j < C:
        b = target_weight(_weight(class_weight, j), np.float64(q), eps, C)
        a += b
        if b != 0.0:            # a class of no weight adds nothing, even where v is -inf
            bx += b * v
    return a, bx


@cuda.jit(device=True)
def _target_grad(v, q, ui, j, C, top, inv, k, sr, ra, eps, cap, class_weight, out, hess):
    """Store the gradient (and Hessian) of a row with target probabilities at column j < C,
    whose logit is v and target q."""
    if j >= C:
        return
    uj = np.uint64(j)
    pj = _exp_from_top(_cap(v, cap), top) * inv
    if out is not None:
        b = target_weight(_weight(class_weight, j), np.float64(q), eps, C)
        out[ui, uj] = (k * pj - sr * b) * cap_slope(np.float64(v), cap)
    if hess is not None:
        hess[ui, uj] = ra * pj * (1.0 - pj)


@kernel
def softmax_focal(x, labels, sample_weight, gamma, scale, out, hess, rows):
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
        k = scale * r * factor
        b, inv_q = focal_curvature(lp, gamma) if hess is not None else (0.0, 0.0)
        kb = scale * r * b
        inv = 1.0 / total
        ui = np.uint64(i)
        zero = fmath.as_type_of(0.0, x[ui, 0])
        for j in range(tid, C if out is not None else 0, STEP):
            v0, v1, v2, v3 = _load4(x, ui, j, C, zero)
            _focal_grad(v0, ui, j, C, t, top, inv, k, kb, inv_q, out, hess)
            _focal_grad(v1, ui, j + THREADS, C, t, top, inv, k, kb, inv_q, out, hess)
            _focal_grad(v2, ui, j + 2 * THREADS, C, t, top, inv, k, kb, inv_q, out, hess)
            _focal_grad(v3, ui, j + 3 * THREADS, C, t, top, inv, k, kb, inv_q, out, hess)


@cuda.jit(device=True)
def _focal_grad(v, ui, j, C, t, top, inv, k, kb, inv_q, out, hess):
    if j < C:
        pj = _exp_from_top(v, top) * inv
        uj = np.uint64(j)
        out[ui, uj] = k * ((1.0 if j == t else 0.0) - pj)
        if hess is not None:
            hess[ui, uj] = focal_diag_hess(pj, j == t, k, kb, inv_q)


@kernel
def multi_margin(x, labels, class_weight, sample_weight, power, margin, scale, out, hess, rows):
    N, C = x.shape
    tid = cuda.threadIdx.x
    for i in range(cuda.blockIdx.x, N, cuda.gridDim.x):
        t = labels[i]
        ui = np.uint64(i)
        xt = np.float64(x[ui, np.uint64(t)])
        if out is not None:
            cuda.syncthreads()      # x[i, t] read by every thread before any writes it in place
        coef = _weight(sample_weight, i) * _weight(class_weight, t) / C
        sc = scale * coef
        sums = (0.0, 0.0, 0.0)      # the row's terms, slopes and curvatures
        zero = fmath.as_type_of(0.0, x[ui, 0])
        for j in range(tid, C, STEP):
            v0, v1, v2, v3 = _load4(x, ui, j, C, zero)
            sums = _margin_step(v0, ui, j, C, t, xt, power, margin, sc, out, hess, sums)
            sums = _margin_step(v1, ui, j + THREADS, C, t, xt, power, margin, sc, out, hess, sums)
            sums = _margin_step(v2, ui, j + 2 * THREADS, C, t, xt, power, margin, sc, out, hess,
                                sums)
            sums = _margin_step(v3, ui, j + 3 * THREADS, C, t, xt, power, margin, sc, out, hess,
                                sums)
        total = block_sum(sums[0])
        slope_t = block_sum(sums[1])
        curvature_t = block_sum(sums[2]) if hess is not None else 0.0
        if tid == 0:
            rows[i] = coef * total
            if out is not None:
                out[ui, np.uint64(t)] = -sc * slope_t
            if hess is not None:
                hess[ui, np.uint64(t)] = sc * curvature_t


@cuda.jit(device=True)
def _margin_step(v, ui, j, C, t, xt, power, margin, sc, out, hess, sums):
    """Add column j's (j < C, score v) margin term, slope and curvature to the row's
    ``sums``; store its gradient (and Hessian)."""
    total, slope_t, curvature_t = sums
    if j < C:
        term, slope, curvature = margin_term(margin - xt + np.float64(v), power, j == t)
        total += term
        slope_t += slope
        curvature_t += curvature
        uj = np.uint64(j)
        if out is not None:
            out[ui, uj] = sc * slope
        if hess is not None:
            hess[ui, uj] = sc * curvature
    return total, slope_t, curvature_t


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
            cuda.syncthreads()      # x[i, t] read before the row is overwritten in place
            for j in range(tid, C, THREADS):
                out[i, j] = -coef * scale if j == t else 0.0
