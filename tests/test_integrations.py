"""The trainer adapters: PyTorch modules, XGBoost and LightGBM objectives, scikit-learn scorers."""
import inspect

import numpy as np
import pytest

import fastloss as fl


def _binary_data(rng, n=600, d=5):
    X = rng.standard_normal((n, d))
    logits = X @ rng.standard_normal(d) + 0.3 * rng.standard_normal(n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logits))).astype(np.float64)
    return X, y


# -- PyTorch ---------------------------------------------------------------------------

torch_cases = [
    ("FastMSELoss", {}, "MSELoss", {}, "real"),
    ("FastL1Loss", {}, "L1Loss", {}, "real"),
    ("FastHuberLoss", {"delta": 0.7}, "HuberLoss", {"delta": 0.7}, "real"),
    ("FastSmoothL1Loss", {"beta": 0.5}, "SmoothL1Loss", {"beta": 0.5}, "real"),
    ("FastBCELoss", {}, "BCELoss", {}, "prob"),
    ("FastBCEWithLogitsLoss", {"pos_weight": 2.0}, "BCEWithLogitsLoss", {"pos_weight": 2.0},
     "logit"),
    ("FastKLDivLoss", {"reduction": "batchmean"}, "KLDivLoss", {"reduction": "batchmean"},
     "kl"),
    ("FastPoissonNLLLoss", {}, "PoissonNLLLoss", {}, "poisson"),
    ("FastCrossEntropyLoss", {"label_smoothing": 0.1, "weight": [0.5, 1.0, 2.0, 1.5]},
     "CrossEntropyLoss", {"label_smoothing": 0.1, "weight": [0.5, 1.0, 2.0, 1.5]}, "classes"),
    ("FastNLLLoss", {"ignore_index": 1}, "NLLLoss", {"ignore_index": 1}, "log_probs"),
    ("FastMultiMarginLoss", {"p": 2, "margin": 0.5}, "MultiMarginLoss", {"p": 2, "margin": 0.5},
     "classes"),
]


def _torch_inputs(torch, kind, rng, dtype):
    n, c = 64, 4
    t = lambda a: torch.tensor(a, dtype=dtype)  # noqa: E731
    if kind == "real":
        return t(rng.standard_normal((n, 3))), t(rng.standard_normal((n, 3)))
    if kind == "prob":
        return t(rng.uniform(0.05, 0.95, n)), t(rng.integers(0, 2, n).astype(float))
    if kind == "logit":
        return t(rng.standard_normal(n) * 3), t(rng.integers(0, 2, n).astype(float))
    if kind == "kl":
        return (t(np.log(rng.dirichlet(np.ones(c), n))), t(rng.dirichlet(np.ones(c), n)))
    if kind == "poisson":
        return t(rng.standard_normal(n)), t(rng.poisson(2.0, n).astype(float))
    x = rng.standard_normal((n, c))
    if kind == "log_probs":
        x = x - np.log(np.exp(x).sum(1, keepdims=True))
    return t(x), torch.tensor(rng.integers(0, c, n))


def _module_kwargs(torch, kwargs, dtype):
    out = dict(kwargs)
    for key in ("weight", "pos_weight"):
        if key in out:
            out[key] = torch.tensor(out[key], dtype=dtype)
    return out


@pytest.mark.parametrize("fast,fast_kwargs,ref,ref_kwargs,kind", torch_cases,
                         ids=[c[0] for c in torch_cases])
def test_torch_modules_match_pytorch_and_pass_gradcheck(fast, fast_kwargs, ref, ref_kwargs, kind,
                                                        rng):
    torch = pytest.importorskip("torch")
    ft = pytest.importorskip("fastloss.integrations.torch")
    x, target = _torch_inputs(torch, kind, rng, torch.float64)
    module = getattr(ft, fast)(**_module_kwargs(torch, fast_kwargs, torch.float64))
    reference = getattr(torch.nn, ref)(**_module_kwargs(torch, ref_kwargs, torch.float64))
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = module(xa, target), reference(xb, target)
    a.backward()
    b.backward()
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-12)
    np.testing.assert_allclose(xa.grad.numpy(), xb.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert torch.autograd.gradcheck(lambda v: module(v, target), (x.clone().requires_grad_(),))
    if "reduction" not in fast_kwargs:
        per = getattr(ft, fast)(reduction="none", **_module_kwargs(torch, fast_kwargs,
                                                                    torch.float64))
        assert torch.autograd.gradcheck(lambda v: per(v, target), (x.clone().requires_grad_(),))


def test_torch_float32_sample_weights_and_errors(rng):
    torch = pytest.importorskip("torch")
    ft = pytest.importorskip("fastloss.integrations.torch")
    x = torch.tensor(rng.standard_normal(1000), dtype=torch.float32, requires_grad=True)
    t = torch.tensor(rng.standard_normal(1000), dtype=torch.float32)
    w = torch.tensor(rng.uniform(0, 2, 1000), dtype=torch.float32)
    value = ft.FastHuberLoss()(x, t, w)
    assert value.dtype == torch.float32
    value.backward()
    loss = fl.get("huber")
    np.testing.assert_allclose(value.item(), loss(t.numpy(), x.detach().numpy(),
                                                  sample_weight=w.numpy()), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), loss.grad(t.numpy(), x.detach().numpy(),
                                                         sample_weight=w.numpy()), rtol=1e-6)
    with pytest.raises(TypeError, match="meta"):
        ft.FastMSELoss()(torch.empty(3, device="meta"), torch.empty(3, device="meta"))
    with pytest.raises(ValueError, match="same shape"):
        ft.FastMSELoss()(torch.zeros(3), torch.zeros(4))


@pytest.mark.parametrize("fast,fast_kwargs,ref,ref_kwargs,kind", torch_cases,
                         ids=[c[0] for c in torch_cases])
def test_torch_target_that_requires_grad(fast, fast_kwargs, ref, ref_kwargs, kind, rng):
    """A target that requires grad (one network's output against another's) gets PyTorch's
    gradient where the loss is a function of input - target; elsewhere a ValueError, where
    the gradient used to be dropped silently."""
    torch = pytest.importorskip("torch")
    ft = pytest.importorskip("fastloss.integrations.torch")
    x, target = _torch_inputs(torch, kind, rng, torch.float64)
    if not target.is_floating_point():
        return                                              # labels take no gradient
    module = getattr(ft, fast)(**_module_kwargs(torch, fast_kwargs, torch.float64))
    reference = getattr(torch.nn, ref)(**_module_kwargs(torch, ref_kwargs, torch.float64))
    ta, tb = target.clone().requires_grad_(True), target.clone().requires_grad_(True)
    if not module.loss.spec.difference:
        with pytest.raises(ValueError, match="target requires grad"):
            module(x, ta)
        return
    (module(x, ta) * 1.5).backward()
    (reference(x, tb) * 1.5).backward()
    np.testing.assert_allclose(ta.grad.numpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert torch.autograd.gradcheck(lambda u, v: module(u, v), (x.clone().requires_grad_(),
                                                                 target.clone().requires_grad_()))


def test_torch_bfloat16_and_scalar_pos_weight(rng):
    torch = pytest.importorskip("torch")
    ft = pytest.importorskip("fastloss.integrations.torch")
    x64 = torch.tensor(rng.standard_normal(500))
    t64 = torch.tensor(rng.standard_normal(500))
    x = x64.to(torch.bfloat16).requires_grad_(True)
    value = ft.FastSmoothL1Loss(beta=0.5)(x, t64.to(torch.bfloat16))
    value.backward()
    assert value.dtype == x.grad.dtype == torch.bfloat16
    # computed from float32 copies: equal to the float32 result, rounded to bfloat16
    x32 = x.detach().float().requires_grad_(True)
    expected = ft.FastSmoothL1Loss(beta=0.5)(x32, t64.to(torch.bfloat16).float())
    expected.backward()
    assert value.item() == expected.to(torch.bfloat16).item()
    assert torch.equal(x.grad, x32.grad.to(torch.bfloat16))
    with pytest.raises(ValueError, match="pos_weight must be one number"):
        ft.FastBCEWithLogitsLoss(pos_weight=torch.ones(3))
    with pytest.raises(ValueError, match="weight requires grad"):     # not dropped silently
        ft.FastMSELoss()(x64.clone().requires_grad_(), t64, torch.ones(500, dtype=torch.float64,
                                                                       requires_grad=True))


@pytest.mark.parametrize("fast,ref,targets", [
    ("FastCrossEntropyLoss", "CrossEntropyLoss", "labels"),
    ("FastCrossEntropyLoss", "CrossEntropyLoss", "probabilities"),
    ("FastNLLLoss", "NLLLoss", "labels"),
    ("FastMultiMarginLoss", "MultiMarginLoss", "labels")])
@pytest.mark.parametrize("shape", [(4,), (3, 4, 5), (2, 4, 3, 2)], ids=["C", "NCd", "NCdd"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_row_losses_take_pytorchs_other_shapes(fast, ref, targets, shape, reduction, rng):
    """(C,) scores with one label, and (N, C, d1, ...) as for segmentation, as PyTorch takes them."""
    torch = pytest.importorskip("torch")
    ft = pytest.importorskip("fastloss.integrations.torch")
    x = torch.tensor(rng.standard_normal(shape))
    C = shape[0] if len(shape) == 1 else shape[1]
    rows = shape[:1] + shape[2:] if len(shape) > 1 else ()
    if targets == "labels":
        target = torch.tensor(rng.integers(0, C, rows))
    else:
        target = torch.softmax(torch.tensor(rng.standard_normal(shape)), dim=0 if len(shape) == 1
                               else 1)
    weight = torch.tensor(rng.uniform(0.5, 2.0, C))
    module = getattr(ft, fast)(weight=weight, reduction=reduction)
    reference = getattr(torch.nn, ref)(weight=weight, reduction=reduction)
    if fast == "FastMultiMarginLoss" and len(shape) > 2:
        with pytest.raises(ValueError, match=r"\(N, C\)"):
            module(x, target)
        return
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = module(xa, target), reference(xb, target)
    assert a.shape == b.shape
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12)
    (a.sum() * 0.7).backward()
    (b.sum() * 0.7).backward()
    np.testing.assert_allclose(xa.grad.numpy(), xb.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_torch_training_converges_exactly_as_with_torch_losses(rng):
    torch = pytest.importorskip("torch")
    ft = pytest.importorskip("fastloss.integrations.torch")
    X = torch.tensor(rng.standard_normal((256, 8)))
    labels = torch.tensor(rng.integers(0, 3, 256))
    targets = torch.tensor(rng.standard_normal(256))

    def train(criterion, out_dim, target):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, out_dim).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for _ in range(40):
            opt.zero_grad()
            out = model(X)
            loss = criterion(out.squeeze(-1) if out_dim == 1 else out, target)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, [p.detach().numpy().copy() for p in model.parameters()]

    for fast, ref, out_dim, target in ((ft.FastCrossEntropyLoss(), torch.nn.CrossEntropyLoss(),
                                        3, labels),
                                       (ft.FastMSELoss(), torch.nn.MSELoss(), 1, targets)):
        fast_losses, fast_params = train(fast, out_dim, target)
        ref_losses, ref_params = train(ref, out_dim, target)
        assert fast_losses[-1] < 0.9 * fast_losses[0]
        np.testing.assert_allclose(fast_losses, ref_losses, rtol=1e-12)
        for a, b in zip(fast_params, ref_params):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


# -- XGBoost ----------------------------------------------------------------------------

def test_a_loss_without_a_hessian_is_refused_as_a_boosting_objective():
    from fastloss.integrations._boosting import Objective
    assert not hasattr(fl.get("linear_cross_entropy"), "grad_hess")
    with pytest.raises(ValueError, match="linear_cross_entropy.*no grad_hess"):
        Objective("linear_cross_entropy")


def test_softmax_focal_objective_at_gamma_zero_is_the_cross_entropy_one(rng):
    """A multiclass focal objective for boosting: at gamma = 0 it is cross_entropy's."""
    from fastloss.integrations._boosting import Objective
    scores = rng.normal(size=(30, 4)) * 2
    labels = rng.integers(0, 4, 30).astype(float)
    w = rng.uniform(0.5, 2.0, 30)
    g, h = Objective("softmax_focal", gamma=0.0)(labels, scores, w)
    eg, eh = Objective("cross_entropy")(labels, scores, w)
    np.testing.assert_allclose(g, eg, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h, eh, rtol=1e-13, atol=1e-15)
    g2, h2 = Objective("softmax_focal", gamma=2.0)(labels, scores, w)
    assert not np.allclose(h2, eh)


@pytest.mark.parametrize("name,params,labels", [
    ("mae", {}, False), ("pinball", {"quantile": 0.8}, False), ("huber", {"delta": 0.5}, False),
    ("smooth_l1", {"beta": 0.5}, False), ("hinge", {}, True), ("mse", {}, False)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_objectives_take_a_unit_hessian_where_the_loss_is_linear(name, params, labels, weighted,
                                                                 dtype, rng):
    """Where grad_hess's Hessian is 0 and its gradient is not, the objectives give the
    sample's weight (times linear_hessian); elsewhere, and with linear_hessian=None,
    exactly grad_hess's."""
    from fastloss.integrations._boosting import Objective
    n = 2000
    y = (rng.integers(0, 2, n) * 2 - 1 if labels else rng.standard_normal(n)).astype(dtype)
    p = rng.standard_normal(n).astype(dtype)
    p[:5] = y[:5]                                   # gradient 0 for mae, Hessian 0: left as is
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    w_or_1 = np.ones(n) if w is None else w
    eg, eh = fl.get(name, **params).grad_hess(y, p, sample_weight=w)
    linear = (eh == 0) & (eg != 0)
    assert linear.any() == (name != "mse")
    for scale in (1.0, 2.5):
        g, h = Objective(name, linear_hessian=scale, **params)(y, p, w)
        assert g.dtype == h.dtype == eh.dtype
        np.testing.assert_array_equal(g, eg)
        np.testing.assert_array_equal(h[~linear], eh[~linear])
        np.testing.assert_array_equal(h[linear], (scale * w_or_1[linear]).astype(dtype))
    g, h = Objective(name, linear_hessian=None, **params)(y, p, w)
    np.testing.assert_array_equal(h, eh)
    for bad in (0, -1.0, float("inf"), float("nan"), "1", True):
        with pytest.raises(ValueError, match="linear_hessian"):
            Objective(name, linear_hessian=bad, **params)


def test_multiclass_objectives_take_each_rows_weight_where_the_loss_is_linear(rng):
    """multi_margin (p = 1) is linear where a class's margin is violated: there an (n, K)
    objective's Hessian is the row's weight."""
    from fastloss.integrations._boosting import Objective
    scores = rng.standard_normal((50, 4)) * 3
    labels = rng.integers(0, 4, 50)
    w = rng.uniform(0.5, 2.0, 50)
    eg, eh = fl.get("multi_margin").grad_hess(labels, scores, sample_weight=w)
    linear = (eh == 0) & (eg != 0)
    assert 0 < linear.sum() < linear.size
    g, h = Objective("multi_margin")(labels.astype(float), scores, w)
    np.testing.assert_array_equal(g, eg)
    np.testing.assert_array_equal(h[~linear], eh[~linear])
    np.testing.assert_array_equal(h[linear], np.broadcast_to(w[:, None], h.shape)[linear])


def test_lightgbm_huber_objective_equals_the_builtin(rng):
    """LightGBM's huber takes the Hessian 1 everywhere (its weight, weighted): fastloss's
    huber objective, whose Hessian is 1 inside delta and linear_hessian beyond, trains
    the same model, outliers beyond delta included."""
    lgb = pytest.importorskip("lightgbm")
    flgb = pytest.importorskip("fastloss.integrations.lightgbm")
    X = rng.standard_normal((800, 5))
    y = X @ rng.standard_normal(5) + rng.standard_t(2, 800)
    assert np.mean(np.abs(y) > 1.0) > 0.3          # many residuals beyond delta at the start
    w = rng.uniform(0.5, 2.0, y.size)
    base = {"num_leaves": 7, "learning_rate": 0.2, "verbose": -1, "num_threads": 1,
            "boost_from_average": False, "deterministic": True}
    preds = []
    for obj in ("huber", flgb.objective("huber", delta=1.0)):
        data = lgb.Dataset(X, label=y, weight=w, params={"verbose": -1})
        booster = lgb.train(dict(base, objective=obj, alpha=1.0), data, num_boost_round=20)
        preds.append(booster.predict(X, raw_score=True))
    np.testing.assert_allclose(preds[1], preds[0], rtol=1e-6, atol=1e-6)
    assert fl.huber(y, preds[0], sample_weight=w) < 0.7 * fl.huber(y, 0 * y, sample_weight=w)


@pytest.mark.parametrize("name,params", [("mae", {}), ("pinball", {"quantile": 0.5})])
def test_xgboost_trains_with_the_linear_losses(name, params, rng):
    """mae and pinball have Hessian 0 everywhere: with it, XGBoost's trees would not split."""
    xgb = pytest.importorskip("xgboost")
    fx = pytest.importorskip("fastloss.integrations.xgboost")
    X = rng.standard_normal((800, 5))
    y = X @ rng.standard_normal(5) + rng.standard_t(2, 800)
    d = xgb.DMatrix(X, label=y)
    booster = xgb.train({"max_depth": 3, "eta": 0.3, "base_score": 0.0, "nthread": 1}, d, 30,
                        obj=fx.objective(name, **params))
    loss = fl.get(name, **params)
    assert loss(y, booster.predict(d)) < 0.9 * loss(y, np.zeros_like(y))


def test_xgboost_logistic_objective_equals_the_builtin(rng):
    xgb = pytest.importorskip("xgboost")
    fx = pytest.importorskip("fastloss.integrations.xgboost")
    X, y = _binary_data(rng)
    w = rng.uniform(0.5, 2.0, y.size)
    params = {"max_depth": 3, "eta": 0.3, "tree_method": "hist", "nthread": 1}
    preds = []
    for obj in (None, fx.objective("binary_cross_entropy_with_logits")):
        d = xgb.DMatrix(X, label=y, weight=w, base_margin=np.zeros(y.size))
        p = dict(params, objective="binary:logistic") if obj is None else params
        booster = xgb.train(p, d, num_boost_round=20, obj=obj)
        preds.append(booster.predict(xgb.DMatrix(X, base_margin=np.zeros(y.size)),
                                     output_margin=True))
    np.testing.assert_allclose(preds[1], preds[0], rtol=1e-6, atol=1e-6)

    # the estimator API, with the metric
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, learning_rate=0.3, n_jobs=1,
                              base_score=0.5, tree_method="hist")
    model.fit(X, y)
    custom = xgb.XGBRegressor(n_estimators=20, max_depth=3, learning_rate=0.3, n_jobs=1,
                              base_score=0.0, tree_method="hist",
                              objective=fx.objective("binary_cross_entropy_with_logits"),
                              eval_metric=fx.metric("binary_cross_entropy_with_logits"))
    custom.fit(X, y, eval_set=[(X, y)], verbose=False)
    np.testing.assert_allclose(custom.predict(X), model.predict(X, output_margin=True),
                               rtol=1e-6, atol=1e-6)
    history = custom.evals_result()["validation_0"]["fastloss_binary_cross_entropy_with_logits"]
    assert history[-1] < history[0]
    assert history[-1] == pytest.approx(
        fl.binary_cross_entropy_with_logits(y, custom.predict(X)), rel=1e-5)   # XGBoost keeps 6 digits


def test_xgboost_multiclass_and_regression(rng):
    xgb = pytest.importorskip("xgboost")
    fx = pytest.importorskip("fastloss.integrations.xgboost")
    X = rng.standard_normal((500, 4))
    labels = np.argmax(X[:, :3] + 0.3 * rng.standard_normal((500, 3)), axis=1)
    obj = fx.objective("cross_entropy")
    d = xgb.DMatrix(X, label=labels)
    booster = xgb.train({"num_class": 3, "max_depth": 3, "nthread": 1}, d, 15, obj=obj,
                        custom_metric=fx.metric("cross_entropy"), evals=[(d, "train")],
                        verbose_eval=False)
    scores = booster.predict(d, output_margin=True)
    assert scores.shape == (500, 3)
    assert np.mean(np.argmax(scores, 1) == labels) > 0.8
    g, h = obj(scores, d)
    eg, eh = fl.get("cross_entropy").grad_hess(labels, scores)
    np.testing.assert_array_equal(g, eg)
    np.testing.assert_array_equal(h, eh)
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.standard_normal(500)
    reg = xgb.XGBRegressor(n_estimators=30, objective=fx.objective("huber", delta=1.0), n_jobs=1)
    reg.fit(X, y)
    assert fl.huber(y, reg.predict(X)) < 0.5 * fl.huber(y, np.full_like(y, y.mean()))


# -- LightGBM ---------------------------------------------------------------------------

def test_lightgbm_logistic_objective_equals_the_builtin(rng):
    lgb = pytest.importorskip("lightgbm")
    flgb = pytest.importorskip("fastloss.integrations.lightgbm")
    X, y = _binary_data(rng)
    w = rng.uniform(0.5, 2.0, y.size)
    base = {"num_leaves": 7, "learning_rate": 0.2, "verbose": -1, "num_threads": 1,
            "boost_from_average": False, "deterministic": True}
    preds = []
    for obj in ("binary", flgb.objective("binary_cross_entropy_with_logits")):
        data = lgb.Dataset(X, label=y, weight=w, params={"verbose": -1})
        booster = lgb.train(dict(base, objective=obj), data, num_boost_round=20)
        preds.append(booster.predict(X, raw_score=True))
    np.testing.assert_allclose(preds[1], preds[0], rtol=1e-6, atol=1e-6)

    model = lgb.LGBMRegressor(objective=flgb.objective("binary_cross_entropy_with_logits"),
                              n_estimators=20, num_leaves=7, learning_rate=0.2, verbose=-1,
                              n_jobs=1, deterministic=True)
    # LightGBM 4.7 renamed eval_set to eval_X and eval_y
    evals = ({"eval_X": X, "eval_y": y} if "eval_X" in inspect.signature(model.fit).parameters
             else {"eval_set": [(X, y)]})
    model.fit(X, y, sample_weight=w, eval_metric=flgb.metric("binary_cross_entropy_with_logits"),
              **evals)
    np.testing.assert_allclose(model.predict(X, raw_score=True), preds[0], rtol=1e-6, atol=1e-6)
    history = model.evals_result_["training"]["binary_cross_entropy_with_logits"]
    assert history[-1] < history[0]


def test_lightgbm_multiclass(rng):
    lgb = pytest.importorskip("lightgbm")
    flgb = pytest.importorskip("fastloss.integrations.lightgbm")
    X = rng.standard_normal((500, 4))
    labels = np.argmax(X[:, :3] + 0.3 * rng.standard_normal((500, 3)), axis=1)
    booster = lgb.train({"objective": flgb.objective("cross_entropy"), "num_class": 3,
                         "verbose": -1, "num_threads": 1},
                        lgb.Dataset(X, label=labels), num_boost_round=15)
    scores = booster.predict(X, raw_score=True)
    assert scores.shape == (500, 3)
    assert np.mean(np.argmax(scores, 1) == labels) > 0.8


# -- scikit-learn ---------------------------------------------------------------------------

def test_sklearn_scorers_agree_with_sklearn(rng):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GridSearchCV, cross_val_score
    fsk = pytest.importorskip("fastloss.integrations.sklearn")
    X, y = _binary_data(rng)
    clf = LogisticRegression(max_iter=500)
    ours = cross_val_score(clf, X, y, cv=4, scoring=fsk.scorer("log_loss"))
    theirs = cross_val_score(clf, X, y, cv=4, scoring="neg_log_loss")
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert np.all(ours < 0)                                   # greater is better: -loss
    # multiclass, and a grid search choosing the same model
    labels = np.argmax(X[:, :3] + 0.5 * rng.standard_normal((y.size, 3)), axis=1)
    grid = {"C": [0.01, 0.1, 1.0]}
    a = GridSearchCV(clf, grid, cv=3, scoring=fsk.scorer("log_loss")).fit(X, labels)
    b = GridSearchCV(clf, grid, cv=3, scoring="neg_log_loss").fit(X, labels)
    assert a.best_params_ == b.best_params_
    np.testing.assert_allclose(a.cv_results_["mean_test_score"], b.cv_results_["mean_test_score"],
                               rtol=1e-12)
    target = X @ rng.standard_normal(5) + rng.standard_normal(y.size)
    for name, sk in (("mse", "neg_mean_squared_error"), ("mae", "neg_mean_absolute_error")):
        np.testing.assert_allclose(cross_val_score(Ridge(), X, target, cv=3,
                                                   scoring=fsk.scorer(name)),
                                   cross_val_score(Ridge(), X, target, cv=3, scoring=sk),
                                   rtol=1e-12)


def test_sklearn_scorers_number_classes_by_the_estimators_classes(rng):
    """A fold that lacks a class, or holds one class only, is scored against the estimator's
    score columns (the labels used to be numbered by the fold's own classes: a hinge scorer on a
    fold of positives read them as negatives, -5.45 for -0.06)."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression, PoissonRegressor
    from sklearn.metrics import log_loss
    fsk = pytest.importorskip("fastloss.integrations.sklearn")
    X, y = _binary_data(rng)
    names = np.array(["no", "yes"])[y.astype(int)]
    clf = LogisticRegression().fit(X, names)
    positives = names == "yes"
    Xp = X[positives]
    margins = clf.decision_function(Xp)
    ones = np.ones(positives.sum())
    for name in ("hinge", "squared_hinge", "binary_cross_entropy_with_logits", "sigmoid_focal"):
        assert fsk.scorer(name)(clf, Xp, names[positives]) == -fl.get(name)(ones, margins)
    assert fsk.scorer("binary_cross_entropy")(clf, Xp, names[positives]) == pytest.approx(
        log_loss(names[positives], clf.predict_proba(Xp), labels=clf.classes_) * -1, rel=1e-12)
    assert fsk.scorer("log_loss")(clf, Xp, names[positives]) == pytest.approx(
        -log_loss(names[positives], clf.predict_proba(Xp), labels=clf.classes_), rel=1e-12)
    with pytest.raises(ValueError, match="not fitted on"):
        fsk.scorer("hinge")(clf, X[:3], ["no", "maybe", "yes"])

    labels = np.argmax(X[:, :3] + 0.5 * rng.standard_normal((y.size, 3)), axis=1)
    clf3 = LogisticRegression().fit(X, labels)
    fold = labels != 1
    for name in ("cross_entropy", "multi_margin", "softmax_focal"):
        assert fsk.scorer(name)(clf3, X[fold], labels[fold]) == -fl.get(name)(
            labels[fold], clf3.decision_function(X[fold]))
    expected = -log_loss(labels[fold], clf3.predict_proba(X[fold]), labels=clf3.classes_)
    assert fsk.scorer("log_loss")(clf3, X[fold], labels[fold]) == pytest.approx(expected,
                                                                                rel=1e-12)
    assert fsk.scorer("nll")(clf3, X[fold], labels[fold]) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="3 columns"):
        fsk.log_loss(labels[fold], clf3.predict_proba(X[fold]))       # no labels= given

    counts = rng.poisson(np.exp(0.4 * X[:, 0]))
    model = PoissonRegressor().fit(X, counts)
    rate = model.predict(X)
    assert fsk.scorer("poisson_nll")(model, X, counts) == pytest.approx(
        -np.mean(rate - counts * np.log(rate)), rel=1e-12)


def test_sklearn_scorer_takes_routed_sample_weights(rng):
    """With metadata routing on, set_score_request(sample_weight=True) routes the weights,
    as for make_scorer's scorers."""
    sklearn = pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge
    from sklearn.metrics import make_scorer, mean_squared_error
    from sklearn.model_selection import cross_validate
    fsk = pytest.importorskip("fastloss.integrations.sklearn")
    X = rng.standard_normal((240, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.standard_normal(240)
    w = rng.uniform(0.0, 2.0, 240)
    with sklearn.config_context(enable_metadata_routing=True):
        model = Ridge().set_fit_request(sample_weight=False)
        theirs = make_scorer(mean_squared_error, greater_is_better=False).set_score_request(
            sample_weight=True)
        ours = fsk.scorer("mse").set_score_request(sample_weight=True)
        a, b = (cross_validate(model, X, y, cv=3, scoring=s, params={"sample_weight": w})
                ["test_score"] for s in (ours, theirs))
        unweighted = cross_validate(model, X, y, cv=3, scoring=fsk.scorer("mse"))["test_score"]
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert not np.allclose(a, unweighted)


def test_sklearn_softmax_scorers_take_a_binary_classifiers_one_margin(rng):
    """decision_function gives one column m for two classes: scored as the logits (0, m), so
    cross_entropy equals the logistic loss of m (it was a shape error)."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    fsk = pytest.importorskip("fastloss.integrations.sklearn")
    X, y = _binary_data(rng)
    clf = LogisticRegression().fit(X, y)
    margin = clf.decision_function(X)
    assert fsk.scorer("cross_entropy")(clf, X, y) == pytest.approx(
        -fl.binary_cross_entropy_with_logits(y, margin), rel=1e-12)
    assert fsk.scorer("cross_entropy")(clf, X, y) == pytest.approx(
        fsk.scorer("log_loss")(clf, X, y), rel=1e-9)
    assert fsk.scorer("multi_margin")(clf, X, y) == -fl.multi_margin(
        y.astype(int), np.stack([np.zeros_like(margin), margin], axis=1))
