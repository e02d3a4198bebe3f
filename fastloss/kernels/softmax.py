"""Fused softmax cross-entropy over rows of logits (Numba).

One kernel computes, for every row i of the (N, C) logits x, the row's loss

    l_i = r_i [ (1 - eps) w_t (lse_i - x_it) + eps / C * sum_j w_j (lse_i - x_ij) + z lse_i^2 ]

(integer labels t; with class-probability targets q the bracket is
sum_j w_j q'_ij (lse_i - x_ij), q' = (1 - eps) q + eps / C), where
lse_i = log sum_j exp(x_ij), w are class weights and r_i sample weights, and,
when asked, writes the gradient with respect to x into ``out`` in the same
pass over the row:  d l_i / d x_ij = r_i [a_i p_ij - b_ij + 2 z lse_i p_ij],
with p = softmax(x_i), a_i the total target weight of the row and b_ij the
weight of class j in the target.  Logits optionally go through
softcap * tanh(x / softcap) first (and the gradient through its derivative).

The row is read in chunks: each chunk's maximum rescales the running sum of
exponentials once (the streaming log-sum-exp), so nothing of size (N, C) is
allocated, and a second read of the row, from cache, writes the gradient.
Rows are independent and run in parallel; per-row results are summed in row
order by the caller, so results do not depend on the thread count.
"""
import numpy as np
from numba import njit, prange

from . import fmath
from .as_kernel import as_kernel
from .llvm_attributes import inlined_jit
from .memory import prefetch_range

CHUNK = 256
# Rows longer than a chunk ask, chunk by chunk, for the cache lines this many elements
# ahead (memory.prefetch_range, across row ends): the exponentials kept the loop slow
# enough that the hardware prefetchers fell behind, and the next chunk's maximum,
# read while a chunk is summed, is too near to hide the memory's latency.  At
# (1024, 32000) float32 the forward went from 7.5-8.1 to 4.5-5.2 ms on 2 cores of an
# Intel AVX-512 host (54% -> 78% of a read of the logits on one core); at C <= 256
# they run as before, within 5-10% (noise on that host).
_PREFETCH_AHEAD = 4096
# "contract" lets LLVM fuse a * b + c into one FMA (the exp polynomial's Horner
# steps: without it, the row sums ran a multiply and an add per step).
_OPTIONS = dict(fastmath={"contract"}, error_model="numpy", nogil=True)


@njit(fastmath={"reassoc"}, error_model="numpy")
def _add(s, v):
    return s + v


@inlined_jit(error_model="numpy")
def capped(x, cap):
    """softcap * tanh(x / softcap), or x when cap is None."""
    if cap is None:
        return x
    m = fmath.fexpm1(-2.0 * abs(x / cap))
    t = -m / (2.0 + m)
    return cap * (t if x >= 0.0 else -t)


@inlined_jit(error_model="numpy")
def cap_slope(x, cap):
    """d/dx of softcap * tanh(x / softcap), or 1."""
    if cap is None:
        return 1.0
    e = fmath.fexp(-2.0 * abs(x / cap))
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


@inlined_jit(error_model="numpy")
def _logit(x, i, j, cap):
    """x[i, j] in its own precision, or capped (in float64) when a softcap is set."""
    if cap is None:
        return x[i, j]
    return capped(np.float64(x[i, j]), cap)


@njit(**_OPTIONS)
def _chunk_max(x, i, lo, hi, cap):
    """max of the (capped) logits x[i, lo:hi], lo < hi, in the logits' precision.

    A maximum of ``fmath.order_key``s.  A NaN with its sign bit clear is the
    maximum; one with the sign bit set is skipped, but still makes the row's
    sum, and so its loss, NaN.
    """
    k = fmath.order_key(_logit(x, i, lo, cap))
    for j in range(np.uint64(lo), np.uint64(hi)):
        k = max(k, fmath.order_key(_logit(x, i, j, cap)))
    return np.float64(fmath.from_order_key(k))


@njit(**_OPTIONS)
def _row_max_sum(x, i, cap):
    """(m, s) with log sum_j exp(x_ij) = m + log s, m the row's maximum.

    By chunks: one rescale of the running sum per chunk.  The loop that sums a
    chunk's exponentials also takes the maximum of the next chunk (when it is
    as long), so the row streams from memory while the exponentials are
    computed: with a separate maximum pass per chunk, the memory stream and
    the arithmetic alternated.
    For float32 logits the differences and exponentials are float32 (the
    maximum is one of the logits, so x - max is exact near it); the sums are
    float64.
    """
    C = x.shape[1]
    m = -np.inf
    s = 0.0
    base = np.uint64(i) * np.uint64(C)
    cm = _chunk_max(x, i, np.int64(0), min(C, CHUNK), cap)
    for lo in range(0, C, CHUNK):
        hi = min(C, lo + CHUNK)
        if C > CHUNK:
            prefetch_range(x, base + np.uint64(lo + _PREFETCH_AHEAD),
                           base + np.uint64(hi + _PREFETCH_AHEAD))
        if cm > m:
            s = s * fmath.fexp(m - cm) if m > -np.inf else 0.0
            m = cm
        elif cm != cm:
            m = cm      # a NaN maximum (its sign bit clear): the row's loss is NaN
        ahead = np.uint64(hi - lo if hi + (hi - lo) <= C else 0)
        shift = fmath.as_type_of(m, _logit(x, i, lo, cap))
        # The exponentials are summed in the logits' own precision (float32:
        # twice the lanes), the chunks in float64.  In a chunk that holds the
        # running maximum, terms equal to it (exactly 1) are counted instead of
        # added, so when one class dominates the row, and its loss is tiny, the
        # float32 sum holds only small terms and loses nothing the float64
        # result would keep.  Other chunks have no such term.
        zero = fmath.as_type_of(0.0, shift)
        one = fmath.as_type_of(1.0, shift)
        part = zero
        ones = zero                            # exact: a chunk has at most 2^24 terms
        k = fmath.order_key(_logit(x, i, lo + ahead, cap))
        if cm == m:
            for j in range(np.uint64(lo), np.uint64(hi)):
                d = _logit(x, i, j, cap) - shift
                e = fmath.exp_sum_term(d)
                top = d == zero
                part = _add(part, zero if top else e)
                ones = _add(ones, one if top else zero)
                k = max(k, fmath.order_key(_logit(x, i, j + ahead, cap)))
        else:
            for j in range(np.uint64(lo), np.uint64(hi)):
                part = _add(part, fmath.exp_sum_term(_logit(x, i, j, cap) - shift))
                k = max(k, fmath.order_key(_logit(x, i, j + ahead, cap)))
        s += np.float64(ones) + np.float64(part)
        if ahead:
            cm = np.float64(fmath.from_order_key(k))
        elif hi < C:
            cm = _chunk_max(x, i, hi, C, cap)  # the last chunk, a shorter one
    return m, s


@inlined_jit(error_model="numpy")
def row_loss_value(r, a, bx, lse_shifted, lse, z):
    """l_i = r_i (a_i lse_i - sum_j b_ij x_ij + z lse_i^2), a_i = sum_j b_ij, from logits
    shifted by a c_i near them: ``lse_shifted`` = lse_i - c_i, ``bx`` = sum_j b_ij (x_ij - c_i)
    (as a_i = sum_j b_ij, the same value).  Unshifted, a row's offset swallows its loss:
    a confident row's 2.5e-8 was 4e-8 relative off at logits near 25, and lost at 1e5."""
    return r * (a * lse_shifted - bx + z * lse * lse)


@inlined_jit(error_model="numpy")
def softmax_coef(scale, r, a, z, lse):
    """The factor of p_ij in d l_i / d x_ij (times ``scale``): r_i (a_i + 2 z lse_i)."""
    return scale * r * (a + 2.0 * z * lse)


@inlined_jit(error_model="numpy")
def diag_hess(k, p):
    """The Hessian's diagonal term k p (1 - p) of a class of probability p, k = r_i a_i
    (times the reduction's scale): d2 l_i / d x_ij^2 without z_loss or softcap."""
    return k * p * (1.0 - p)


@inlined_jit(error_model="numpy")
def label_target_sums(wt, xt, sw, swx, eps, C):
    """(a, sum_j b_j x_j) of a label t with smoothing eps: b_j = (1 - eps) w_t [j = t] + eps w_j / C.

    ``wt``, ``xt``: the target's weight and logit; ``sw``, ``swx``: sum_j w_j and
    sum_j w_j x_j (unused when eps is 0).
    """
    a = (1.0 - eps) * wt
    bx = a * xt
    if eps != 0.0:
        a += eps / C * sw
        bx += eps / C * swx
    return a, bx


@inlined_jit(error_model="numpy")
def target_weight(wj, q, eps, C):
    """b_j for class-probability targets q: w_j ((1 - eps) q_j + eps / C)."""
    return wj * ((1.0 - eps) * q + eps / C)


@inlined_jit(error_model="numpy")
def _weight(w, j):
    """w[j] as float64, or 1 when there are no weights."""
    if w is None:
        return 1.0
    return np.float64(w[j])


@njit(parallel=True, **_OPTIONS)
def cross_entropy_labels(x, labels, class_weight, sample_weight, ignore_index, eps, z, cap, scale,
                         out, hess, row_loss):
    """Integer labels: per-row losses into ``row_loss``, gradient times ``scale`` into ``out``
    and, where ``hess`` is given (with ``out``), the diagonal Hessian r_i a_i p_ij (1 - p_ij)
    times ``scale`` (no z_loss or softcap: their terms are left out)."""
    N, C = x.shape
    for i in prange(N):
        t = labels[i]
        if t == ignore_index:
            row_loss[i] = 0.0
            if out is not None:
                for j in range(np.uint64(0), np.uint64(C)):
                    out[i, j] = 0.0
                    if hess is not None:
                        hess[i, j] = 0.0
            continue
        m, total = _row_max_sum(x, np.uint64(i), cap)
        log_total = fmath.flog(total)
        lse = m + log_total
        r = _weight(sample_weight, i)
        wt = _weight(class_weight, t)
        sw = 0.0
        swx = 0.0
        if eps != 0.0:
            for j in range(np.uint64(0), np.uint64(C)):
                wj = _weight(class_weight, j)
                sw = _add(sw, wj)
                swx = _add(swx, wj * (capped(np.float64(x[i, j]), cap) - m))
        a, bx = label_target_sums(wt, capped(np.float64(x[i, t]), cap) - m, sw, swx, eps, C)
        row_loss[i] = row_loss_value(r, a, bx, log_total, lse, z)
        if out is not None:
            k = softmax_coef(scale, r, a, z, lse)
            # p_j = exp(x_j - m) / total: x_j - m is exact near the maximum
            m_x = fmath.as_type_of(m, _logit(x, i, 0, cap))
            inv_total = 1.0 / total
            smooth = scale * r * eps / C
            # the target's own term is folded in before the store, so a float32
            # gradient is rounded once (and is exactly 0 where it should be)
            hit = scale * r * (1.0 - eps) * wt
            # in the logits' precision (float32: twice the lanes; float64 when
            # a softcap is set, whose logits are computed in float64)
            k_x = fmath.as_type_of(k, m_x)
            inv_x = fmath.as_type_of(inv_total, m_x)
            smooth_x = fmath.as_type_of(smooth, m_x)
            hit_x = fmath.as_type_of(hit, m_x)
            zero = fmath.as_type_of(0.0, m_x)
            for j in range(np.uint64(0), np.uint64(C)):
                xj = np.float64(x[i, j])     # read before out[i, j]: out may be x
                pj = fmath.exp_nonpositive(_logit(x, i, j, cap) - m_x) * inv_x
                g = (k_x * pj - smooth_x * fmath.as_type_of(_weight(class_weight, j), m_x)
                     - (hit_x if j == t else zero))
                out[i, j] = g * fmath.as_type_of(cap_slope(xj, cap), m_x)
                if hess is not None:    # p in float64: 1 - p cancels where p is near 1
                    p64 = fmath.fexp(xj - m) * inv_total
                    hess[i, j] = diag_hess(scale * r * a, p64)


@njit(parallel=True, **_OPTIONS)
def cross_entropy_targets(x, targets, class_weight, sample_weight, eps, z, cap, scale, out,
                          hess, row_loss):
    """Class-probability targets: per-row losses, the gradient times ``scale`` and, where
    ``hess`` is given (with ``out``), the diagonal Hessian times ``scale``."""
    N, C = x.shape
    for i in prange(N):
        m, total = _row_max_sum(x, np.uint64(i), cap)
        log_total = fmath.flog(total)
        lse = m + log_total
        r = _weight(sample_weight, i)
        a = 0.0
        bx = 0.0
        for j in range(np.uint64(0), np.uint64(C)):
            b = target_weight(_weight(class_weight, j), np.float64(targets[i, j]), eps, C)
            a = _add(a, b)
            # a class of no weight adds nothing, even where its logit is -inf (masked)
            bx = _add(bx, b * (capped(np.float64(x[i, j]), cap) - m) if b != 0.0 else 0.0)
        row_loss[i] = row_loss_value(r, a, bx, log_total, lse, z)
        if out is not None:
            k = softmax_coef(scale, r, a, z, lse)
            # p_j = exp(x_j - m) / total: x_j - m is exact near the maximum
            m_x = fmath.as_type_of(m, _logit(x, i, 0, cap))
            inv_total = 1.0 / total
            for j in range(np.uint64(0), np.uint64(C)):
                xj = np.float64(x[i, j])
                pj = fmath.exp_in_precision_of(_logit(x, i, j, cap) - m_x, x[i, j]) * inv_total
                b = target_weight(_weight(class_weight, j), np.float64(targets[i, j]), eps, C)
                out[i, j] = (k * pj - scale * r * b) * cap_slope(xj, cap)
                if hess is not None:    # p in float64: 1 - p cancels where p is near 1
                    p64 = fmath.fexp(xj - m) * inv_total
                    hess[i, j] = diag_hess(scale * r * a, p64)


@inlined_jit(error_model="numpy")
def focal_factors(lp, gamma):
    """(q^gamma, A) for log p_t = lp, q = 1 - p_t, with d l / d x_j = A (delta_tj - p_j).

    l = -q^gamma lp, so A = q^gamma (gamma p_t lp / q - 1); lp / q tends to -1 as
    q -> 0, which keeps A finite for any gamma >= 0 (q^(gamma - 1) alone is not).
    """
    q = -fmath.fexpm1(lp)
    qg = 1.0 if gamma == 0.0 else (fmath.fexp(gamma * fmath.flog(q)) if q > 0.0 else 0.0)
    ratio = lp / q if q > 1e-300 else -1.0
    return qg, qg * (gamma * fmath.fexp(lp) * ratio - 1.0)


@inlined_jit(error_model="numpy")
def focal_curvature(lp, gamma):
    """(B, 1 / q) for log p_t = lp, q = 1 - p_t, with the Hessian's diagonal
    d2 l / dx_j^2 = B ((delta_tj - p_j) / q)^2 - A p_j (1 - p_j), A from ``focal_factors``.

    B = gamma p_t q^gamma ((1 - gamma p_t) lp + 2 q), the derivative of A in p_t times
    p_t q^2 (see ``reference.softmax_focal_diag_hess``); (delta_tj - p_j) / q is at most 1,
    and taken as 0 where q = 0 (p_t = 1, every other p_j = 0).
    """
    q = -fmath.fexpm1(lp)
    if gamma == 0.0 or q <= 0.0:
        return 0.0, (1.0 / q if q > 0.0 else 0.0)
    u = fmath.fexp(lp)
    qg = fmath.fexp(gamma * fmath.flog(q))
    return gamma * u * qg * ((1.0 - gamma * u) * lp + 2.0 * q), 1.0 / q


@inlined_jit(error_model="numpy")
def focal_diag_hess(pj, is_target, k, kb, inv_q):
    """The Hessian's diagonal term of class j (``focal_curvature``), k = scale r A, kb = scale r B."""
    d = 1.0 if is_target else -pj * inv_q
    return kb * d * d - k * pj * (1.0 - pj)


@njit(parallel=True, **_OPTIONS)
def softmax_focal_rows(x, labels, sample_weight, gamma, scale, out, hess, row_loss):
    """Softmax focal loss -(1 - p_t)^gamma log p_t per row; gradient (and the Hessian's
    diagonal, where ``hess`` is given) times ``scale``."""
    N, C = x.shape
    for i in prange(N):
        t = labels[i]
        m, total = _row_max_sum(x, np.uint64(i), None)
        lp = (np.float64(x[i, t]) - m) - fmath.flog(total)
        r = _weight(sample_weight, i)
        qg, a = focal_factors(lp, gamma)
        row_loss[i] = -r * qg * lp
        if out is not None:
            k = scale * r * a
            b, inv_q = focal_curvature(lp, gamma) if hess is not None else (0.0, 0.0)
            kb = scale * r * b
            m_x = fmath.as_type_of(m, x[i, 0])
            inv_total = 1.0 / total
            for j in range(np.uint64(0), np.uint64(C)):
                pj = fmath.exp_in_precision_of(x[i, j] - m_x, x[i, j]) * inv_total
                out[i, j] = k * ((1.0 if j == t else 0.0) - pj)
                if hess is not None:
                    hess[i, j] = focal_diag_hess(np.float64(pj), j == t, k, kb, inv_q)


# On-disk caches keyed on all kernel sources (Numba's own cache=True would not
# notice an edit to fmath, whose functions are compiled into these kernels).
for _kernel in (cross_entropy_labels, cross_entropy_targets, softmax_focal_rows):
    as_kernel(_kernel, f"softmax-{_kernel.__name__}")
