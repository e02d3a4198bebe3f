"""The trainer adapters' overhead: each against the bare fastloss call and the trainer's own loss.

* PyTorch: forward + backward of the fastloss module against
  ``loss.value_and_grad`` on the same memory, and against PyTorch's own module.
* XGBoost and LightGBM: the objective callable (label and weight reads from
  the library's dataset included) against the bare ``grad_hess`` (for XGBoost
  also cross_entropy's, over (n, 10) scores); and the
  time of boosting rounds with the fastloss objective against the library's
  built-in objective (trees included, one thread).
Best of ``repeats``; libraries that are not installed are left out.
"""

import numpy as np

import fastloss as fl

from .throughput import best_time


def _torch(n, repeats, rng):
    import torch
    from ..integrations import torch as ft
    rows = []
    y = rng.standard_normal(n).astype(np.float32)
    p = rng.standard_normal(n).astype(np.float32)
    N, C = (2048, 32000) if n >= 1_000_000 else (64, 1000)     # small n: a smoke run
    logits = rng.standard_normal((N, C)).astype(np.float32)
    labels = rng.integers(0, C, N)
    for label, name, fast, ref, target, x in (
            (f"mse n={n:.0e}", "mse", ft.FastMSELoss(), torch.nn.MSELoss(), y, p),
            (f"cross_entropy ({N}, {C})", "cross_entropy", ft.FastCrossEntropyLoss(),
             torch.nn.CrossEntropyLoss(), labels, logits)):
        loss = fl.get(name)
        tx, tt = torch.from_numpy(x), torch.from_numpy(target)

        def step(module):
            xg = tx.detach().requires_grad_(True)
            module(xg, tt).backward()
            return xg.grad

        bare = best_time(lambda: loss.value_and_grad(target, x), repeats)
        adapter = best_time(lambda: step(fast), repeats)
        own = best_time(lambda: step(ref), repeats)
        rows.append(("torch", label, bare, adapter, own))
    return rows


def _boosting_rounds(train, repeats):
    return best_time(train, repeats, warmup=False)


def _xgboost(n, repeats, rng):
    import xgboost as xgb
    from ..integrations import xgboost as fx
    X = rng.standard_normal((n, 8)).astype(np.float32)
    y = (X[:, 0] + rng.standard_normal(n) > 0).astype(np.float32)
    d = xgb.DMatrix(X, label=y, base_margin=np.zeros(n))
    obj = fx.objective("binary_cross_entropy_with_logits")
    preds = rng.standard_normal(n).astype(np.float32)
    bare = best_time(lambda: obj.loss.grad_hess(y, preds), repeats)
    adapter = best_time(lambda: obj(preds, d), repeats)
    params = {"max_depth": 4, "tree_method": "hist", "nthread": 1}
    custom = _boosting_rounds(lambda: xgb.train(params, d, 10, obj=obj), 2)
    builtin = _boosting_rounds(lambda: xgb.train(dict(params, objective="binary:logistic"), d,
                                                 10), 2)
    # multiclass: cross_entropy's grad_hess over (n, 10) scores, labels read as floats
    labels = rng.integers(0, 10, n).astype(np.float32)
    dm = xgb.DMatrix(X, label=labels)
    softmax = fx.objective("cross_entropy")
    scores = rng.standard_normal((n, 10)).astype(np.float32)
    bare_m = best_time(lambda: softmax.loss.grad_hess(labels.astype(np.int64), scores), repeats)
    adapter_m = best_time(lambda: softmax(scores, dm), repeats)
    return [("xgboost", f"logistic objective n={n:.0e}", bare, adapter, None),
            ("xgboost", "10 rounds: fastloss objective vs binary:logistic", None, custom, builtin),
            ("xgboost", f"softmax objective ({n:.0e}, 10)", bare_m, adapter_m, None)]


def _lightgbm(n, repeats, rng):
    import lightgbm as lgb
    from ..integrations import lightgbm as flgb
    X = rng.standard_normal((n, 8)).astype(np.float32)
    y = (X[:, 0] + rng.standard_normal(n) > 0).astype(np.float64)
    data = lgb.Dataset(X, label=y, params={"verbose": -1}, free_raw_data=False).construct()
    obj = flgb.objective("binary_cross_entropy_with_logits")
    preds = rng.standard_normal(n)
    bare = best_time(lambda: obj.loss.grad_hess(y, preds), repeats)
    adapter = best_time(lambda: obj(preds, data), repeats)
    params = {"num_leaves": 15, "verbose": -1, "num_threads": 1, "boost_from_average": False}
    custom = _boosting_rounds(lambda: lgb.train(dict(params, objective=obj), data, 10), 2)
    builtin = _boosting_rounds(lambda: lgb.train(dict(params, objective="binary"), data, 10), 2)
    return [("lightgbm", f"logistic objective n={n:.0e}", bare, adapter, None),
            ("lightgbm", "10 rounds: fastloss objective vs binary", None, custom, builtin)]


def measure(n=10_000_000, repeats=5):
    """Rows (library, case, bare seconds, adapter seconds, trainer's own seconds)."""
    rng = np.random.default_rng(0)
    rows = []
    for fn, size in ((_torch, n), (_xgboost, n // 10), (_lightgbm, n // 10)):
        try:
            rows += fn(size, repeats, rng)
        except ImportError:
            continue
    return rows


def table(rows):
    def ms(s):
        return "-" if s is None else f"{s * 1e3:.2f}"

    def ratio(a, b):
        return "-" if a is None or b is None else f"{a / b:.2f}x"

    lines = [f"{'library':<9} {'case':<48} {'bare ms':>8} {'adapter ms':>10} {'own ms':>8} "
             f"{'adapter/bare':>12} {'adapter/own':>11}"]
    for lib, case, bare, adapter, own in rows:
        lines.append(f"{lib:<9} {case:<48} {ms(bare):>8} {ms(adapter):>10} {ms(own):>8} "
                     f"{ratio(adapter, bare):>12} {ratio(adapter, own):>11}")
    return "\n".join(lines)
