"""What XGBoost and LightGBM objectives and metrics share: gradients and Hessians per row.

Both libraries call a custom objective either as ``fn(preds, dataset)`` (their
``train`` functions) or as ``fn(y_true, y_pred[, sample_weight])`` (their
scikit-learn estimators); one callable serves both.  Neither applies sample
weights to a custom objective's output, so the weights are read from the
dataset and applied here, as the built-in objectives do.  Multiclass scores
come as (n, K); the softmax losses take labels as integers.

Where a loss is locally linear (its Hessian 0 while its gradient is not: mae,
pinball and hinge, huber and smooth_l1 beyond delta and beta, multi_margin at
p = 1), a Newton step -G/H is unbounded: XGBoost and LightGBM then split
nothing (no child reaches ``min_child_weight``) or step by -G/lambda.  Their
built-in L1, quantile and Huber objectives take a Hessian of 1 per unit of
sample weight there, and so do these objectives (``linear_hessian``).
"""
import numbers

import numpy as np
from numba import njit, prange

from ..backends.cpu import call_parallel
from ..loss import get


def _labels(loss, y):
    if hasattr(loss, "spec"):
        return y
    as_int = np.asarray(y).astype(np.int64)
    if not np.array_equal(as_int, y):
        raise ValueError(f"{loss.name}: labels must be integers 0..K-1")
    return as_int


@njit(cache=True, parallel=True)
def _hessian_where_linear(g, h, w, scale):
    """h = scale times the weight where h is 0 and g is not, in place, over flat g and h:
    one weight for all (w of one element), one per element, or one per row of
    h.size // w.size elements ((n, K) scores)."""
    if w.size == 1:
        hessian = scale * w[0]
        for i in prange(h.size):
            h[i] = hessian if (h[i] == 0 and g[i] != 0) else h[i]
    elif w.size == h.size:
        for i in prange(h.size):
            h[i] = scale * w[i] if (h[i] == 0 and g[i] != 0) else h[i]
    else:
        inner = h.size // w.size
        for r in prange(w.size):
            hessian = scale * w[r]
            for i in range(r * inner, (r + 1) * inner):
                h[i] = hessian if (h[i] == 0 and g[i] != 0) else h[i]


def _weights(w):
    return None if w is None or np.size(w) == 0 else np.asarray(w)


class Objective:
    """Gradient and Hessian ("sum" convention, sample-weighted) of a fastloss loss."""

    def __init__(self, name, linear_hessian=1.0, **params):
        self.loss = get(name, **params)
        if not hasattr(self.loss, "grad_hess"):
            raise ValueError(f"name: {name!r} has no grad_hess (no Hessian), so it cannot be a "
                             "boosting objective; it can still be a metric")
        if linear_hessian is not None and not (
                isinstance(linear_hessian, numbers.Real) and not isinstance(linear_hessian, bool)
                and 0 < linear_hessian < float("inf")):
            raise ValueError("linear_hessian must be a positive number, or None for the "
                             f"loss's own Hessian (0 where it is linear), not {linear_hessian!r}")
        self.linear_hessian = linear_hessian
        self.__name__ = f"fastloss_{name}"

    def __repr__(self):
        return f"{type(self).__module__}.objective({self.loss!r})"

    def grad_hess(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred)
        y = _labels(self.loss, np.asarray(y_true))
        if hasattr(self.loss, "spec") and y_pred.ndim == 2 and y.ndim == 1:
            raise ValueError(f"{self.loss.name} is elementwise; for multiclass use cross_entropy")
        w = _weights(sample_weight)
        g, h = self.loss.grad_hess(y, y_pred, sample_weight=w)
        if self.linear_hessian is not None and h.size:
            g, h = np.ascontiguousarray(g), np.ascontiguousarray(h)
            w = np.ones(1) if w is None else np.ascontiguousarray(w, dtype=np.float64).ravel()
            call_parallel(_hessian_where_linear, g.reshape(-1), h.reshape(-1), w,
                          float(self.linear_hessian))
        return g, h

    def __call__(self, a, b, sample_weight=None):
        if hasattr(b, "get_label"):                     # train(): (preds, dataset)
            return self.grad_hess(b.get_label(), a, b.get_weight())
        return self.grad_hess(a, b, sample_weight)      # estimators: (y_true, y_pred[, w])


class Metric:
    """The loss's value as an evaluation metric (lower is better)."""

    def __init__(self, name, **params):
        self.loss = get(name, **params)
        self.name = name
        self.__name__ = f"fastloss_{name}"

    def value(self, y_true, y_pred, sample_weight=None):
        y = _labels(self.loss, np.asarray(y_true))
        return self.loss(y, np.asarray(y_pred), sample_weight=_weights(sample_weight))
