"""fastloss losses as scikit-learn scorers (``pip install "fastloss[sklearn]"``).

    cross_val_score(model, X, y, scoring=fastloss.integrations.sklearn.scorer("log_loss"))

A scorer is greater-is-better, so it gives minus the loss, as scikit-learn's
``neg_*`` scorers do.  ``"log_loss"`` scores ``predict_proba`` like
``sklearn.metrics.log_loss`` (binary or multiclass); elementwise losses score
``predict`` (``"binary_cross_entropy_with_logits"`` and the softmax losses
score ``decision_function``).
"""
import numpy as np
from sklearn.metrics import make_scorer

from ..loss import get

# the scores each loss reads from an estimator
_RESPONSE = {"binary_cross_entropy": "predict_proba", "binary_cross_entropy_with_logits":
             "decision_function", "cross_entropy": "decision_function",
             "multi_margin": "decision_function", "softmax_focal": "decision_function",
             "hinge": "decision_function", "squared_hinge": "decision_function"}


def _encoded(y_true):
    classes, codes = np.unique(y_true, return_inverse=True)
    return classes, codes


def log_loss(y_true, proba, sample_weight=None):
    """sklearn.metrics.log_loss from fused kernels: binary (n,) or multiclass (n, K) probabilities."""
    proba = np.asarray(proba, dtype=np.float64)
    classes, codes = _encoded(y_true)
    eps = np.finfo(proba.dtype).eps
    if proba.ndim == 1 or proba.shape[1] == 1:
        p = np.clip(proba.reshape(-1), eps, 1 - eps)
        return get("binary_cross_entropy")(codes.astype(np.float64), p,
                                           sample_weight=sample_weight)
    if proba.shape[1] != classes.size:
        raise ValueError(f"y_true has {classes.size} classes but proba has {proba.shape[1]} "
                         "columns")
    p = np.clip(proba, eps, 1 - eps)
    log_p = np.log(p / p.sum(axis=1, keepdims=True))
    return get("nll")(codes, log_p, sample_weight=sample_weight)


def scorer(name, **params):
    """A scorer for ``cross_val_score``, ``GridSearchCV`` and friends: minus the mean loss."""
    if name == "log_loss":
        if params:
            raise TypeError("log_loss takes no parameters")
        return make_scorer(log_loss, greater_is_better=False, response_method="predict_proba")
    return make_scorer(_LossScore(get(name, **params)), greater_is_better=False,
                       response_method=_RESPONSE.get(name, "predict"))


class _LossScore:
    """The score function of ``scorer``: the mean loss, class labels encoded as 0..K-1 for
    the label losses.  A class rather than a closure, so fitted searches pickle."""

    def __init__(self, loss):
        self.loss = loss
        self.__name__ = loss.name

    def __call__(self, y_true, y_pred, sample_weight=None):
        y = np.asarray(y_true)
        if not hasattr(self.loss, "spec") or self.loss.spec.y_domain in ("binary",
                                                                         "signed_binary"):
            y = _encoded(y)[1]
        return self.loss(y, y_pred, sample_weight=sample_weight)
