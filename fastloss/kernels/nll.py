"""Negative log-likelihood of class labels: one element of each row read, each row written.

l_i = -r_i w_t x[i, t] (0 where t is ``ignore_index``), the gradient -r_i w_t at (i, t)
and 0 elsewhere (see ``fastloss.multiclass.NLL``).  As a NumPy gather and scatter it
took 27 ns a row at C = 2, ten times PyTorch's ``nll_loss``: one parallel pass here.
"""
import numpy as np
from numba import njit, prange

from .as_kernel import as_kernel
from .softmax import _OPTIONS, _weight


@njit(parallel=True, **_OPTIONS)
def nll_rows(x, labels, class_weight, sample_weight, ignore_index, scale, out, row_loss):
    """Per-row losses into ``row_loss`` and the gradient times ``scale`` into ``out``, each
    where given.  Labels are checked before the call: each is in [0, C) or ``ignore_index``."""
    N, C = x.shape
    for i in prange(N):
        t = labels[i]
        keep = t != ignore_index
        coef = _weight(sample_weight, i) * _weight(class_weight, t) if keep else 0.0
        if row_loss is not None:
            row_loss[i] = -coef * np.float64(x[i, t]) if keep else 0.0
        if out is not None:             # after x[i, t] is read: out may be x
            for j in range(C):
                out[i, j] = 0.0
            if keep:
                out[i, t] = -coef * scale


SUM_BLOCK = 4096        # rows summed in order into one partial sum


@njit(parallel=True, **_OPTIONS)
def nll_sums(x, labels, class_weight, sample_weight, ignore_index, partial):
    """sum_i l_i and sum_i r_i w_t into ``partial[b, 0:2]`` for each block b of ``SUM_BLOCK``
    rows (summed in row order: the same for any thread count), and into ``partial[b, 2]``
    the first row of the block whose label is neither in [0, C) nor ``ignore_index`` (-1
    where there is none; such a row is not indexed with).  Labels unchecked before."""
    N, C = x.shape
    for b in prange(partial.shape[0]):
        loss = 0.0
        weight = 0.0
        bad = -1
        for i in range(b * SUM_BLOCK, min(N, (b + 1) * SUM_BLOCK)):
            t = labels[i]
            if 0 <= t < C and t != ignore_index:
                coef = _weight(sample_weight, i) * _weight(class_weight, t)
                loss -= coef * np.float64(x[i, t])
                weight += coef
            elif t != ignore_index and bad < 0:
                bad = i
        partial[b, 0] = loss
        partial[b, 1] = weight
        partial[b, 2] = bad


for _kernel in (nll_rows, nll_sums):
    as_kernel(_kernel, f"nll-{_kernel.__name__}")
