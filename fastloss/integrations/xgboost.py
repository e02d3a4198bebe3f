"""fastloss losses as XGBoost objectives and metrics (``pip install "fastloss[xgboost]"``).

    obj = fastloss.integrations.xgboost.objective("huber", delta=1.0)
    booster = xgboost.train(params, dtrain, obj=obj,
                            custom_metric=fastloss.integrations.xgboost.metric("huber"))
    model = xgboost.XGBRegressor(objective=obj, eval_metric=metric("huber"))

XGBoost gives custom objectives raw margins (logits for the logistic losses,
(n, K) scores for multiclass): use ``binary_cross_entropy_with_logits`` or
``cross_entropy`` there.  The multiclass Hessian is the diagonal
p (1 - p) (scikit-learn's convention; XGBoost's own softprob doubles it).
"""
import xgboost  # noqa: F401  (a clear ImportError when the extra is missing)

from ._boosting import Metric, Objective


class XGBMetric(Metric):
    def __call__(self, a, b, sample_weight=None):
        if hasattr(b, "get_label"):                      # train(): (preds, dmatrix) -> (name, value)
            return self.name, self.value(b.get_label(), a, b.get_weight())
        return self.value(a, b, sample_weight)           # estimators: a float, lower is better


def objective(name, *, linear_hessian=1.0, **params):
    """A callable for ``xgboost.train(obj=...)`` and the estimators' ``objective=``:
    the gradient and Hessian of loss ``name`` (``grad_hess``), with ``linear_hessian``
    per unit of sample weight where the loss is linear (its Hessian 0, its gradient
    not; as reg:absoluteerror and reg:quantileerror take 1); None keeps the 0."""
    return Objective(name, linear_hessian, **params)


def metric(name, **params):
    """A callable for ``xgboost.train(custom_metric=...)`` and ``eval_metric=``."""
    return XGBMetric(name, **params)
