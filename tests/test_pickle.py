"""Loss objects and the trainer adapters pickle: to worker processes (multiprocessing,
joblib, Dask) and into saved models.

A loss pickles as its name and parameters, a custom loss also as its
definition, so the receiving process makes it again; the tests unpickle in a
fresh interpreter, where nothing was registered or cached by this one.
"""
import copy
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastloss as fl

from .conftest import LOSS_CASES, LOSS_IDS, loss_case, sample

ROOT = Path(__file__).resolve().parents[1]

ROW_CASES = [("cross_entropy", {"label_smoothing": 0.1, "class_weight": [1.0, 2.0, 0.5, 1.0]}),
             ("nll", {"ignore_index": 2}), ("multi_margin", {"p": 2, "margin": 0.5}),
             ("softmax_focal", {"gamma": 1.5})]

# Unpickles (losses, inputs) from stdin and pickles each loss's value back.
_UNPICKLE_AND_EVALUATE = """
import pickle, sys
losses, inputs = pickle.loads(sys.stdin.buffer.read())
values = [(repr(loss), loss(*args)) for loss, args in zip(losses, inputs)]
sys.stdout.buffer.write(pickle.dumps(values))
"""


def _in_fresh_process(blob, cwd=ROOT):
    done = subprocess.run([sys.executable, "-c", _UNPICKLE_AND_EVALUATE], input=blob, cwd=cwd,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return pickle.loads(done.stdout)


def _row_inputs(rng):
    logits = rng.standard_normal((6, 4))
    return rng.integers(0, 4, 6), logits


@loss_case
def test_round_trip_in_process(name, params, rng):
    loss = fl.get(name, **params)
    y, p = sample(name, 40, rng)
    for back in (pickle.loads(pickle.dumps(loss)), copy.deepcopy(loss)):
        assert repr(back) == repr(loss)
        assert back(y, p) == loss(y, p)
        np.testing.assert_array_equal(back.grad(y, p), loss.grad(y, p))


@pytest.mark.parametrize("name,params", ROW_CASES, ids=[n for n, _ in ROW_CASES])
def test_row_losses_round_trip_with_their_parameters(name, params, rng):
    loss = fl.get(name, **params)
    back = pickle.loads(pickle.dumps(loss))
    assert repr(back) == repr(loss) and repr(loss).startswith(f"fastloss.get({name!r}")
    y, x = _row_inputs(rng)
    assert back(y, x) == loss(y, x)


def test_every_loss_unpickles_in_a_fresh_process(rng):
    """Built-in and custom losses (conftest's, re-registered by importing its module),
    elementwise and row losses, with parameters other than their defaults."""
    losses, inputs = [], []
    for name, params in LOSS_CASES:
        losses.append(fl.get(name, **params))
        inputs.append(sample(name, 40, rng))
    for name, params in ROW_CASES:
        losses.append(fl.get(name, **params))
        inputs.append(_row_inputs(rng))
    there = _in_fresh_process(pickle.dumps((losses, inputs)))
    here = [(repr(loss), loss(*args)) for loss, args in zip(losses, inputs)]
    assert [r for r, _ in there] == [r for r, _ in here]
    for (label, a), (_, b), case in zip(there, here, LOSS_IDS + [n for n, _ in ROW_CASES]):
        assert a == b, (case, label)


def test_custom_loss_defined_in_a_function_travels_by_value_with_cloudpickle(rng):
    """Dask, joblib and Ray pickle with cloudpickle, which copies functions it cannot refer to
    by name; the receiving process registers the loss from the copy."""
    cloudpickle = pytest.importorskip("cloudpickle")

    def pickled_only_here(y, p, *, s=2.0):
        return s * math.log(math.cosh(p - y))

    fl.custom_loss(pickled_only_here)
    try:
        loss = fl.get("pickled_only_here", s=3.0)
        with pytest.raises((pickle.PicklingError, AttributeError)):
            pickle.dumps(loss)                    # a local function: pickle cannot refer to it
        y, p = sample("log_cosh", 40, rng)
        [(label, value)] = _in_fresh_process(cloudpickle.dumps(([loss], [(y, p)])))
        assert label == repr(loss)
        assert value == pytest.approx(loss(y, p), rel=1e-14)
        assert value == pytest.approx(3.0 * np.mean(np.log(np.cosh(p - y))), rel=1e-12)
    finally:
        fl.custom.unregister("pickled_only_here")


def test_custom_loss_from_a_module_copied_by_value(rng, tmp_path):
    """A decorated custom loss whose module the receiving process does not import (a
    notebook's or a script's ``__main__`` under cloudpickle): its loss function is copied,
    and carries the definition the loss is registered from."""
    cloudpickle = pytest.importorskip("cloudpickle")
    function = fl.custom.get_custom("custom_weighted_log_cosh").function
    module = sys.modules[function.__module__]
    loss = fl.get("custom_weighted_log_cosh", tau=0.8)
    cloudpickle.register_pickle_by_value(module)
    try:
        blob = cloudpickle.dumps(([loss], [sample("log_cosh", 40, rng)]))
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    # run away from the checkout, where the test modules cannot be imported
    [(label, value)] = _in_fresh_process(blob, cwd=tmp_path)
    y, p = pickle.loads(blob)[1][0]
    assert label == repr(loss) and value == loss(y, p)


def test_custom_loss_function_is_found_where_it_was_decorated():
    function = fl.custom.get_custom("custom_weighted_log_cosh").function
    assert getattr(sys.modules[function.__module__], function.__qualname__) is function
    assert pickle.loads(pickle.dumps(function)) is function


def test_trainer_adapters_pickle(rng):
    y, p = sample("huber", 200, rng)
    xgb = pytest.importorskip("fastloss.integrations.xgboost")
    objective = pickle.loads(pickle.dumps(xgb.objective("huber", delta=0.5, linear_hessian=2.0)))
    g, h = objective.grad_hess(y, p)
    g_ref, h_ref = fl.get("huber", delta=0.5).grad_hess(y, p)
    np.testing.assert_array_equal(g, g_ref)
    linear = (h_ref == 0) & (g_ref != 0)
    assert linear.any()
    np.testing.assert_array_equal(h, np.where(linear, 2.0, h_ref))
    metric = pickle.loads(pickle.dumps(xgb.metric("huber", delta=0.5)))
    assert metric.value(y, p) == fl.huber(y, p, delta=0.5)


def test_scorer_pickles_with_a_fitted_search(rng):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV

    from fastloss.integrations import sklearn as fls
    X = rng.standard_normal((120, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.standard_normal(120)
    search = GridSearchCV(Ridge(), {"alpha": [0.1, 10.0]}, cv=3,
                          scoring=fls.scorer("huber", delta=0.5)).fit(X, y)
    back = pickle.loads(pickle.dumps(search))
    assert back.scorer_(back.best_estimator_, X, y) == search.scorer_(search.best_estimator_, X, y)
    assert back.scorer_(back.best_estimator_, X, y) == -fl.huber(y, search.predict(X), delta=0.5)
