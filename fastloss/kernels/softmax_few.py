"""Softmax cross-entropy of integer labels over rows of few classes, by blocks of rows.

The row kernel (``softmax.cross_entropy_labels``) walks one row at a time: its
maximum, its sum of exponentials, its logarithm and its gradient are each a
loop over the row's C classes, and at C = 2 that fixed work cost about 45 ns a
row on 2 cores, twice PyTorch's.  Here a block of ``BLOCK`` rows is copied,
transposed and in float64, into a (C, BLOCK) scratch, so that every step
(maximum, x - max, the exponentials, the logarithm, the gradient and Hessian)
is a loop across rows that runs in vector lanes.  The value is the same
formula as the row kernel's,

    l_i = r_i [ a_i (lse_i - m_i) - sum_j b_ij (x_ij - m_i) + z lse_i^2 ],

with b_ij = (1 - eps) w_t [j = t_i] + eps w_j / C and a_i = sum_j b_ij, from
logits less their row maximum m_i (so a common offset costs no accuracy); the
gradient r_i [(a_i + 2 z lse_i) p_ij - b_ij] and the diagonal Hessian
r_i a_i p_ij (1 - p_ij) come from the same exponentials.

Special values: a NaN logit makes its row NaN (the maximum skips it, its
exponential does not); a +inf logit makes it NaN (inf - inf); a -inf logit is
a class of probability 0 (a masked class), whose weight in the target, where
it is 0, adds nothing.  A row whose label is ``ignore_index`` gets 0 loss,
gradient and Hessian whatever its logits, as in PyTorch.
"""
import numpy as np
from numba import njit, prange

from . import fmath
from .as_kernel import as_kernel
from .softmax import _OPTIONS, _weight, diag_hess

FEW = 16        # rows of at most this many classes take this kernel
BLOCK = 256
# blocks that share one allocation of the scratch arrays: allocated for each block, they
# cost about a third of the time at C = 2
_BLOCKS_A_TASK = 4


@njit(**_OPTIONS)
def _row_maxima(e, n, m):
    """m[k] = max_j e[j, k] for the first n columns; a NaN in row 0 stays, later ones are
    skipped (their exponentials make the row NaN)."""
    for k in range(n):
        m[k] = e[0, k]
    for j in range(1, e.shape[0]):
        for k in range(n):
            v = e[j, k]
            m[k] = v if v > m[k] else m[k]


@njit(**_OPTIONS)
def _shifted_exponentials(e, n, m, total):
    """e[j, k] <- exp(e[j, k] - m[k]) and total[k] = sum_j of them."""
    for k in range(n):
        total[k] = 0.0
    for j in range(e.shape[0]):
        for k in range(n):
            v = fmath.fexp(e[j, k] - m[k])
            e[j, k] = v
            total[k] += v


@njit(**_OPTIONS)
def _row_values(n, m, total, a, bx, r, z, coef, row_loss):
    """Each row's loss (0 where r is 0, an ignored row) and the factor of exp(x_ij - m_i)
    in its gradient over r_i; total <- 1 / total."""
    for k in range(n):
        log_total = fmath.flog(total[k])
        lse = m[k] + log_total
        value = r[k] * (a[k] * log_total - bx[k] + z * lse * lse)
        row_loss[k] = value if r[k] != 0.0 else 0.0
        inv = 1.0 / total[k]
        total[k] = inv
        coef[k] = (a[k] + 2.0 * z * lse) * inv


@njit(parallel=True, **_OPTIONS)
def cross_entropy_labels_few(x, labels, class_weight, sample_weight, ignore_index, eps, z, scale,
                             out, hess, row_loss):
    """Per-row losses into ``row_loss``; the gradient times ``scale`` into ``out`` and the
    diagonal Hessian times ``scale`` into ``hess`` where given.  Labels are checked before
    the call: each is in [0, C) or ``ignore_index``."""
    N, C = x.shape
    spread = np.empty(C)                    # eps w_j / C: each class's share of the smoothing
    for j in range(C):
        spread[j] = eps / C * _weight(class_weight, j)
    total_spread = np.sum(spread)
    blocks = (N + BLOCK - 1) // BLOCK
    for part in prange((blocks + _BLOCKS_A_TASK - 1) // _BLOCKS_A_TASK):
        e = np.empty((C, BLOCK + 8))        # rows 33 cache lines apart, not 32: not all in one set
        m = np.empty(BLOCK)
        total = np.empty(BLOCK)
        hit = np.empty(BLOCK)               # (1 - eps) w_t
        a = np.empty(BLOCK)                 # a_i = sum_j b_ij
        bx = np.empty(BLOCK)                # sum_j b_ij (x_ij - m_i)
        r = np.empty(BLOCK)                 # r_i, 0 for an ignored row
        coef = np.empty(BLOCK)
        for b in range(part * _BLOCKS_A_TASK, min(blocks, (part + 1) * _BLOCKS_A_TASK)):
            _block(x, labels, class_weight, sample_weight, ignore_index, eps, z, scale, out, hess,
                   row_loss, spread, total_spread, b * BLOCK, e, m, total, hit, a, bx, r, coef)


@njit(**_OPTIONS)
def _block(x, labels, class_weight, sample_weight, ignore_index, eps, z, scale, out, hess,
           row_loss, spread, total_spread, lo, e, m, total, hit, a, bx, r, coef):
    """``cross_entropy_labels_few`` for the rows from ``lo`` on, at most ``BLOCK``, in the
    scratch arrays e to coef."""
    N, C = x.shape
    n = min(N - lo, BLOCK)
    for k in range(n):
        for j in range(C):
            e[j, k] = x[lo + k, j]
    _row_maxima(e, n, m)
    for k in range(n):
        i = lo + k
        t = labels[i]
        r[k] = 0.0 if t == ignore_index else _weight(sample_weight, i)
        hit[k] = (1.0 - eps) * _weight(class_weight, t) if t != ignore_index else 0.0
        a[k] = hit[k] + total_spread
        # a masked (-inf) target of weight 0 adds nothing
        bx[k] = hit[k] * (e[t, k] - m[k]) if hit[k] != 0.0 else 0.0
    for j in range(C):
        if spread[j] != 0.0:
            for k in range(n):
                bx[k] += spread[j] * (e[j, k] - m[k])
    _shifted_exponentials(e, n, m, total)
    _row_values(n, m, total, a, bx, r, z, coef, row_loss[lo:lo + n])
    if out is None and hess is None:
        return
    for k in range(n):
        i = lo + k
        t = labels[i]
        keep = r[k] != 0.0
        sr = scale * r[k]
        for j in range(C):
            if out is not None:
                # a_i p_ij - b_ij, b_ij summed as a_i is: exactly 0 where p_ij = 1
                g = sr * (coef[k] * e[j, k] - (spread[j] + (hit[k] if j == t else 0.0)))
                out[i, j] = g if keep else 0.0
            if hess is not None:
                hess[i, j] = diag_hess(sr * a[k], e[j, k] * total[k]) if keep else 0.0

as_kernel(cross_entropy_labels_few, "softmax-cross_entropy_labels_few")
