"""Softmax cross-entropy over rows of few classes, by blocks of rows.

The row kernels (``softmax.cross_entropy_labels`` and ``_targets``) walk one row at
a time: its maximum, its sum of exponentials, its logarithm and its gradient are
each a loop over the row's C classes, and at C = 2 that fixed work cost about 45 ns
a row on 2 cores, twice PyTorch's.  Here a block of ``BLOCK`` rows is copied,
transposed, into a (C, BLOCK) scratch of the logits' type, so that every step
(maximum, x - max, the exponentials, the logarithm) is a loop across rows that runs
in vector lanes.  As in the row kernels, float32 logits take float32 exponentials
(twice the lanes; at (250000, 10) the forward took 2.5 ms with float64 ones), the
row's largest exactly 1, summed in float64; differences of logits are float64.
The value is the same formula as the row kernels',

    l_i = r_i [ a_i (lse_i - m_i) - sum_j b_ij (x_ij - m_i) + z lse_i^2 ],

with b_ij the weight of class j in row i's target (integer labels t:
(1 - eps) w_t [j = t] + eps w_j / C; class probabilities q: w_j ((1 - eps) q_ij + eps / C))
and a_i = sum_j b_ij, from logits less their row maximum m_i (so a common offset costs
no accuracy); the gradient r_i [(a_i + 2 z lse_i) p_ij - b_ij] and the diagonal Hessian
r_i a_i p_ij (1 - p_ij) come from the same exponentials.

Special values: a NaN logit makes its row NaN (the maximum skips it, its
exponential does not); a +inf logit makes it NaN (inf - inf); a -inf logit is
a class of probability 0 (a masked class), which adds nothing where its weight in
the target is 0.  A row whose label is ``ignore_index`` gets 0 loss, gradient and
Hessian whatever its logits, as in PyTorch.
"""
import numpy as np
from numba import njit, prange

from . import fmath
from .as_kernel import as_kernel
from .softmax import (_OPTIONS, _weight, diag_hess, focal_curvature, focal_diag_hess,
                      focal_factors, target_weight)

FEW = 16        # rows of at most this many classes take this kernel
BLOCK = 256
# blocks that share one allocation of the scratch arrays: allocated for each block, they
# cost about a third of the time at C = 2
_BLOCKS_A_TASK = 4


@njit(**_OPTIONS)
def _load(x, lo, n, e, m):
    """e[j, k] = x[lo + k, j] for the n rows from ``lo``, and m[k] = max_j e[j, k] (e and m
    of x's type): a NaN in column 0 stays, later ones are skipped (their exponentials make
    the row NaN)."""
    for k in range(n):
        for j in range(x.shape[1]):
            e[j, k] = x[lo + k, j]
    for k in range(n):
        m[k] = e[0, k]
    for j in range(1, e.shape[0]):
        for k in range(n):
            v = e[j, k]
            m[k] = v if v > m[k] else m[k]


@njit(**_OPTIONS)
def _shifted(v, m):
    """v - m in float64: exact for float32 logits."""
    return np.float64(v) - np.float64(m)


@njit(**_OPTIONS)
def _shifted_exponentials(e, n, m, total):
    """e[j, k] <- exp(e[j, k] - m[k]) in e's type (e^0 = 1 exactly) and total[k] = sum_j
    of them in float64."""
    for k in range(n):
        total[k] = 0.0
    for j in range(e.shape[0]):
        for k in range(n):
            v = fmath.exp_sum_term(e[j, k] - m[k])
            e[j, k] = v
            total[k] += np.float64(v)


@njit(**_OPTIONS)
def _row_values(n, m, total, a, bx, r, keep, z, coef, row_loss):
    """Each row's loss (0 for an ignored row) and the factor of exp(x_ij - m_i) in its
    gradient over r_i; total <- 1 / total."""
    for k in range(n):
        log_total = fmath.flog(total[k])
        lse = np.float64(m[k]) + log_total
        value = r[k] * (a[k] * log_total - bx[k] + z * lse * lse)
        row_loss[k] = value if keep[k] else 0.0
        inv = 1.0 / total[k]
        total[k] = inv
        coef[k] = (a[k] + 2.0 * z * lse) * inv


@njit(parallel=True, **_OPTIONS)
def cross_entropy_few(x, labels, targets, class_weight, sample_weight, ignore_index, eps, z,
                      scale, out, hess, row_loss):
    """Per-row losses into ``row_loss``; the gradient times ``scale`` into ``out`` and the
    diagonal Hessian times ``scale`` into ``hess`` where given.  The target is integer
    ``labels`` (N,) or class probabilities ``targets`` (N, C), the other an empty array
    (not None: Numba did not prune the branches on it in the parallel loop).  Labels are
    checked before the call: each is in [0, C) or ``ignore_index``."""
    N, C = x.shape
    by_label = labels.shape[0] == N
    spread = np.empty(C)                    # eps w_j / C: each class's share of the smoothing
    for j in range(C):
        spread[j] = eps / C * _weight(class_weight, j)
    total_spread = np.sum(spread)
    blocks = (N + BLOCK - 1) // BLOCK
    for task in prange((blocks + _BLOCKS_A_TASK - 1) // _BLOCKS_A_TASK):
        # rows BLOCK + 8 apart: not a multiple of 4 KiB, so not all in one cache set
        e = np.empty((C, BLOCK + 8), x.dtype)
        m = np.empty(BLOCK, x.dtype)
        total = np.empty(BLOCK)
        hit = np.empty(BLOCK)               # labels: (1 - eps) w_t
        a = np.empty(BLOCK)                 # a_i = sum_j b_ij
        bx = np.empty(BLOCK)                # sum_j b_ij (x_ij - m_i)
        r = np.empty(BLOCK)                 # r_i
        keep = np.empty(BLOCK, np.bool_)    # not an ignored row
        coef = np.empty(BLOCK)
        for b in range(task * _BLOCKS_A_TASK, min(blocks, (task + 1) * _BLOCKS_A_TASK)):
            lo = b * BLOCK
            n = min(N - lo, BLOCK)
            _load(x, lo, n, e, m)
            if by_label:
                _label_sums(labels, class_weight, sample_weight, ignore_index, eps, spread,
                            total_spread, lo, n, e, m, hit, a, bx, r, keep)
            else:
                _target_sums(targets, class_weight, sample_weight, eps, lo, n, e, m, a, bx, r,
                             keep)
            _shifted_exponentials(e, n, m, total)
            _row_values(n, m, total, a, bx, r, keep, z, coef, row_loss[lo:lo + n])
            if out is not None or hess is not None:
                _store(by_label, labels, targets, class_weight, eps, scale, spread, lo, n, e,
                       total, hit, a, r, keep, coef, out, hess)


@njit(**_OPTIONS)
def _label_sums(labels, class_weight, sample_weight, ignore_index, eps, spread, total_spread,
                lo, n, e, m, hit, a, bx, r, keep):
    """a_i, sum_j b_ij (x_ij - m_i), r_i and keep_i of the block's rows of labels."""
    C = e.shape[0]
    for k in range(n):
        i = lo + k
        t = labels[i]
        keep[k] = t != ignore_index
        r[k] = _weight(sample_weight, i)
        hit[k] = (1.0 - eps) * _weight(class_weight, t) if keep[k] else 0.0
        a[k] = hit[k] + total_spread
        # a masked (-inf) target of weight 0 adds nothing
        bx[k] = hit[k] * _shifted(e[t, k], m[k]) if hit[k] != 0.0 else 0.0
    for j in range(C):
        if spread[j] != 0.0:
            for k in range(n):
                bx[k] += spread[j] * _shifted(e[j, k], m[k])


@njit(**_OPTIONS)
def _target_sums(targets, class_weight, sample_weight, eps, lo, n, e, m, a, bx, r, keep):
    """a_i, sum_j b_ij (x_ij - m_i), r_i and keep_i of the block's rows of class
    probabilities."""
    C = e.shape[0]
    for k in range(n):
        i = lo + k
        keep[k] = True
        r[k] = _weight(sample_weight, i)
        ak = 0.0
        bxk = 0.0
        for j in range(C):
            bj = target_weight(_weight(class_weight, j), np.float64(targets[i, j]), eps, C)
            ak += bj
            bxk += bj * _shifted(e[j, k], m[k]) if bj != 0.0 else 0.0
        a[k] = ak
        bx[k] = bxk


@njit(**_OPTIONS)
def _store(by_label, labels, targets, class_weight, eps, scale, spread, lo, n, e, total, hit,
           a, r, keep, coef, out, hess):
    """The block's gradient (times ``scale``) into ``out`` and Hessian into ``hess``, each
    where given, from e = exp(x - m), total = 1 / sum_j e_j and coef (``_row_values``)."""
    C = e.shape[0]
    for k in range(n):
        i = lo + k
        sr = scale * r[k]
        for j in range(C):
            if out is not None:
                if by_label:
                    b = spread[j] + (hit[k] if j == labels[i] else 0.0)
                else:
                    b = target_weight(_weight(class_weight, j), np.float64(targets[i, j]), eps, C)
                # a_i p_ij - b_ij, b_ij summed as a_i is: exactly 0 where p_ij = 1
                out[i, j] = sr * (coef[k] * e[j, k] - b) if keep[k] else 0.0
            if hess is not None:
                hess[i, j] = diag_hess(sr * a[k], e[j, k] * total[k]) if keep[k] else 0.0

@njit(parallel=True, **_OPTIONS)
def softmax_focal_few(x, labels, sample_weight, gamma, scale, out, hess, row_loss):
    """``softmax.softmax_focal_rows`` by blocks of rows: the loss -(1 - p_t)^gamma log p_t of
    each row, its gradient (and the Hessian's diagonal, where ``hess`` is given) times
    ``scale``.  Labels are checked before the call: each is in [0, C)."""
    N, C = x.shape
    blocks = (N + BLOCK - 1) // BLOCK
    for task in prange((blocks + _BLOCKS_A_TASK - 1) // _BLOCKS_A_TASK):
        e = np.empty((C, BLOCK + 8), x.dtype)   # as in cross_entropy_few
        m = np.empty(BLOCK, x.dtype)
        total = np.empty(BLOCK)
        lp = np.empty(BLOCK)                # log p_t
        k_grad = np.empty(BLOCK)            # scale r A (focal_factors)
        k_hess = np.empty(BLOCK)            # scale r B (focal_curvature)
        inv_q = np.empty(BLOCK)
        for b in range(task * _BLOCKS_A_TASK, min(blocks, (task + 1) * _BLOCKS_A_TASK)):
            lo = b * BLOCK
            n = min(N - lo, BLOCK)
            _load(x, lo, n, e, m)
            for k in range(n):
                lp[k] = _shifted(e[labels[lo + k], k], m[k])
            _shifted_exponentials(e, n, m, total)
            for k in range(n):
                lp[k] -= fmath.flog(total[k])
                total[k] = 1.0 / total[k]
                r = _weight(sample_weight, lo + k)
                qg, a = focal_factors(lp[k], gamma)
                row_loss[lo + k] = -r * qg * lp[k]
                k_grad[k] = scale * r * a
                if hess is not None:
                    curvature, inv_q[k] = focal_curvature(lp[k], gamma)
                    k_hess[k] = scale * r * curvature
            if out is None:
                continue
            for k in range(n):
                i = lo + k
                t = labels[i]
                for j in range(C):
                    pj = e[j, k] * total[k]
                    out[i, j] = k_grad[k] * ((1.0 if j == t else 0.0) - pj)
                    if hess is not None:
                        hess[i, j] = focal_diag_hess(pj, j == t, k_grad[k], k_hess[k], inv_q[k])


for _kernel in (cross_entropy_few, softmax_focal_few):
    as_kernel(_kernel, f"softmax-{_kernel.__name__}")
