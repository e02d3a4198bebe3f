"""fastloss losses as LightGBM objectives and metrics (``pip install "fastloss[lightgbm]"``).

    params = {"objective": fastloss.integrations.lightgbm.objective("huber", delta=1.0)}
    booster = lightgbm.train(params, train_set, feval=fastloss.integrations.lightgbm.metric("huber"))
    model = lightgbm.LGBMRegressor(objective=objective("huber"))

LightGBM gives custom objectives raw scores ((n, K) for multiclass), and
does not boost from the average with them: the intercept starts at 0.
"""
import lightgbm  # noqa: F401  (a clear ImportError when the extra is missing)

from ._boosting import Metric, Objective


class LGBMMetric(Metric):
    def __call__(self, a, b, sample_weight=None):
        if hasattr(b, "get_label"):               # train(): (preds, dataset)
            value = self.value(b.get_label(), a, b.get_weight())
        else:                                     # estimators: (y_true, y_pred[, weight])
            value = self.value(a, b, sample_weight)
        return self.name, value, False            # (name, value, is_higher_better)


def objective(name, *, linear_hessian=1.0, **params):
    """A callable for ``params["objective"]`` and the estimators' ``objective=``: the
    gradient and Hessian of loss ``name`` (``grad_hess``), with ``linear_hessian`` per
    unit of sample weight where the loss is linear (its Hessian 0, its gradient not;
    as the built-in l1, quantile and huber take 1); None keeps the 0."""
    return Objective(name, linear_hessian, **params)


def metric(name, **params):
    """A callable for ``lightgbm.train(feval=...)`` and the estimators' ``eval_metric=``."""
    return LGBMMetric(name, **params)
