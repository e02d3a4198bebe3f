"""fastloss losses as scikit-learn scorers (``pip install "fastloss[sklearn]"``).

    cross_val_score(model, X, y, scoring=fastloss.integrations.sklearn.scorer("log_loss"))

A scorer is greater-is-better, so it gives minus the loss, as scikit-learn's
``neg_*`` scorers do.  It reads the estimator's output the loss takes:
``predict`` for the regression losses (``poisson_nll``, whose input is a log
rate, the logarithm of it), ``decision_function`` for the losses of logits and
margins, ``predict_proba`` for ``binary_cross_entropy`` and ``"log_loss"`` (as
``sklearn.metrics.log_loss``), ``predict_log_proba`` for ``nll``.  Class labels
are numbered by the estimator's ``classes_``, the order of its score columns,
so a fold that lacks a class is scored right.
"""
import numpy as np

from ..loss import get

# the estimator method whose output each loss scores; "predict" for the others
_RESPONSE = {"binary_cross_entropy": "predict_proba", "log_loss": "predict_proba",
             "nll": "predict_log_proba"}
_RESPONSE.update(dict.fromkeys(("binary_cross_entropy_with_logits", "sigmoid_focal", "hinge",
                                "squared_hinge", "cross_entropy", "multi_margin",
                                "softmax_focal"), "decision_function"))


def _class_codes(y_true, classes, n_columns):
    """y_true as 0..K-1 in the order of ``classes`` (the estimator's classes_, sorted); without
    them, in sorted order when y_true holds every one of the n_columns classes."""
    y = np.asarray(y_true)
    if classes is None:
        found, codes = np.unique(y, return_inverse=True)
        if found.size != n_columns:
            raise ValueError(f"y_true has {found.size} classes but the scores have {n_columns} "
                             f"columns; pass labels= (or score a fitted estimator, whose "
                             f"classes_ number them)")
        return codes
    classes = np.asarray(classes)
    codes = np.clip(np.searchsorted(classes, y), 0, classes.size - 1)
    unknown = classes[codes] != y
    if unknown.any():
        raise ValueError(f"y_true has labels the estimator was not fitted on: "
                         f"{np.unique(y[unknown])[:5].tolist()}")
    return codes


def log_loss(y_true, proba, sample_weight=None, labels=None):
    """sklearn.metrics.log_loss from fused kernels: binary (n,) or multiclass (n, K) probabilities.

    ``labels`` (sorted) number the columns; by default the classes found in y_true.
    """
    proba = np.asarray(proba, dtype=np.float64)
    eps = np.finfo(proba.dtype).eps
    if proba.ndim == 1 or proba.shape[1] == 1:
        codes = _class_codes(y_true, labels, 2)
        p = np.clip(proba.reshape(-1), eps, 1 - eps)
        return get("binary_cross_entropy")(codes.astype(np.float64), p,
                                           sample_weight=sample_weight)
    codes = _class_codes(y_true, labels, proba.shape[1])
    p = np.clip(proba, eps, 1 - eps)
    log_p = np.log(p / p.sum(axis=1, keepdims=True))
    return get("nll")(codes, log_p, sample_weight=sample_weight)


class LossScorer:
    """``scorer(estimator, X, y_true, sample_weight=None)``: minus the mean loss of the
    estimator's scores for X; see ``scorer``."""

    def __init__(self, name, **params):
        self.name = name
        self.loss = None if name == "log_loss" else get(name, **params)
        if name == "log_loss" and params:
            raise TypeError("log_loss takes no parameters")
        self.response_method = _RESPONSE.get(name, "predict")
        self._sample_weight_request = None

    def set_score_request(self, *, sample_weight=None):
        """With scikit-learn's metadata routing on: whether this scorer takes the sample
        weights that ``cross_validate(..., params=...)`` routes (as ``make_scorer``'s do)."""
        self._sample_weight_request = sample_weight
        return self

    def get_metadata_routing(self):
        from sklearn.utils.metadata_routing import MetadataRequest
        request = MetadataRequest(owner=type(self).__name__)
        request.score.add_request(param="sample_weight", alias=self._sample_weight_request)
        return request

    def __repr__(self):
        params = {} if self.loss is None else self.loss.params
        return f"scorer({self.name!r}{''.join(f', {k}={v!r}' for k, v in params.items())})"

    def __call__(self, estimator, X, y_true, sample_weight=None):
        scores = np.asarray(getattr(estimator, self.response_method)(X))
        classes = getattr(estimator, "classes_", None)
        if self.name == "log_loss":
            return -log_loss(y_true, scores, sample_weight, labels=classes)
        y = y_true
        if self.response_method != "predict":
            y = _class_codes(y_true, classes, scores.shape[1] if scores.ndim == 2 else 2)
        if scores.ndim == 1 and self.response_method == "decision_function" and not hasattr(
                self.loss, "spec"):
            # a binary classifier's one margin m: the scores (0, m) of its two classes
            scores = np.stack([np.zeros_like(scores), scores], axis=1)
        if self.name == "binary_cross_entropy" and scores.ndim == 2:
            if scores.shape[1] != 2:
                raise ValueError(f"binary_cross_entropy scores two classes; the estimator has "
                                 f"{scores.shape[1]}")
            scores = scores[:, 1]
        if self.name == "poisson_nll":
            with np.errstate(divide="ignore"):
                scores = np.log(scores)             # the loss takes the log of the rate
        return -self.loss(y, scores, sample_weight=sample_weight)


def scorer(name, **params):
    """A scorer for ``cross_val_score``, ``GridSearchCV`` and friends: minus the mean loss."""
    return LossScorer(name, **params)
