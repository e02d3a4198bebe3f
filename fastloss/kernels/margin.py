"""Multi-class margin loss over rows of scores (Numba), as ``F.multi_margin_loss``.

    l_i = r_i w_t / C * sum_{j != t} max(0, margin - x_it + x_ij)^p,   p in {1, 2}

The gradient of each hinge term is p h^(p-1) for x_ij and its negative for
x_it (h the term's positive part); one pass over the row gives the value
and, when ``out`` is given, the gradient times ``scale``.
"""
import numpy as np
from numba import njit, prange

from .as_kernel import as_kernel
from .llvm_attributes import inlined_jit


@inlined_jit(error_model="numpy")
def margin_term(d, power, is_target):
    """(max(0, d)^p, its derivative in d) for p in {1, 2}; (0, 0) for the target's own class."""
    h = d if d > 0.0 and not is_target else 0.0
    term = h if power == 1 else h * h
    slope = (1.0 if h > 0.0 else 0.0) if power == 1 else 2.0 * h
    return term, slope


@njit(parallel=True, error_model="numpy", nogil=True)
def multi_margin_rows(x, labels, class_weight, sample_weight, power, margin, scale, out, row_loss):
    N, C = x.shape
    for i in prange(N):
        t = labels[i]
        r = 1.0 if sample_weight is None else np.float64(sample_weight[i])
        wt = 1.0 if class_weight is None else np.float64(class_weight[t])
        coef = r * wt / C
        xt = np.float64(x[i, t])
        total = 0.0
        slope_t = 0.0
        for j in range(np.uint64(0), np.uint64(C)):
            term, slope = margin_term(margin - xt + np.float64(x[i, j]), power, j == t)
            total += term
            slope_t += slope
            if out is not None:
                out[i, j] = scale * coef * slope
        row_loss[i] = coef * total
        if out is not None:
            out[i, t] = -scale * coef * slope_t


as_kernel(multi_margin_rows, "margin-multi_margin_rows")
