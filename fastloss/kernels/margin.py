"""Multi-class margin loss over rows of scores (Numba), as ``F.multi_margin_loss``.

    l_i = r_i w_t / C * sum_{j != t} max(0, margin - x_it + x_ij)^p,   p in {1, 2}

The gradient of each hinge term is p h^(p-1) for x_ij and its negative for
x_it (h the term's positive part), its second derivative 0 for p = 1 and 2
where h > 0 for p = 2, in x_ij and in x_it alike (the Hessian's diagonal); one
pass over the row gives the value and, when ``out`` (and ``hess``) is given,
the gradient (and the Hessian's diagonal) times ``scale``.
"""
import numpy as np
from numba import njit, prange

from .as_kernel import as_kernel
from .llvm_attributes import inlined_jit


@inlined_jit(error_model="numpy")
def margin_term(d, power, is_target):
    """(max(0, d)^p, its first and second derivatives in d) for p in {1, 2}; zeros for the
    target's own class.  A NaN d gives NaN for all three (PyTorch's kernel skips it, a 0)."""
    h = 0.0 if d <= 0.0 or is_target else d
    term = h if power == 1 else h * h
    positive = 1.0 if h > 0.0 else (0.0 if h == 0.0 else h)     # NaN stays NaN
    slope = positive if power == 1 else 2.0 * h
    curvature = (0.0 if power == 1 else 2.0) * positive
    return term, slope, curvature


@njit(parallel=True, error_model="numpy", nogil=True)
def multi_margin_rows(x, labels, class_weight, sample_weight, power, margin, scale, out, hess,
                      row_loss):
    N, C = x.shape
    for i in prange(N):
        t = labels[i]
        r = 1.0 if sample_weight is None else np.float64(sample_weight[i])
        wt = 1.0 if class_weight is None else np.float64(class_weight[t])
        coef = r * wt / C
        xt = np.float64(x[i, t])
        total = 0.0
        slope_t = 0.0
        curvature_t = 0.0
        for j in range(np.uint64(0), np.uint64(C)):
            term, slope, curvature = margin_term(margin - xt + np.float64(x[i, j]), power, j == t)
            total += term
            slope_t += slope
            if out is not None:
                out[i, j] = scale * coef * slope
            if hess is not None:
                curvature_t += curvature
                hess[i, j] = scale * coef * curvature
        row_loss[i] = coef * total
        if out is not None:
            out[i, t] = -scale * coef * slope_t
        if hess is not None:
            hess[i, t] = scale * coef * curvature_t


as_kernel(multi_margin_rows, "margin-multi_margin_rows")
