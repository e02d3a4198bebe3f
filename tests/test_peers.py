"""Differential tests against PyTorch and scikit-learn, where they have the loss.

PyTorch's functional losses (and autograd for the gradients) and
scikit-learn's metrics and private ``sklearn._loss`` classes are independent
implementations; these tests skip when the peers are not installed (the
``peers`` extra installs them, and CI does).
"""
import numpy as np
import pytest

import fastloss as fl
from fastloss.peers import sklearn_loss, torch_loss
from fastloss.specs import REGISTRY

from .conftest import builtin_loss_case, sample, weights

torch = pytest.importorskip("torch")
F = torch.nn.functional


def test_every_builtin_loss_has_a_pytorch_oracle():
    assert all(torch_loss(name) is not None for name, spec in REGISTRY.items() if not spec.custom)


def _torch_reduced(name, params, y, p, w, reduction):
    x = torch.tensor(p, requires_grad=True)
    t = torch.tensor(y)
    elementwise = torch_loss(name)(x, t, "none", **params)
    if w is not None:
        elementwise = elementwise * torch.tensor(w)
    if reduction == "sum":
        total = elementwise.sum()
    elif w is None:
        total = elementwise.mean()
    else:
        total = elementwise.sum() / float(np.sum(w))
    total.backward()
    return total.item(), x.grad.numpy()


@builtin_loss_case
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_value_and_grad_match_pytorch(name, params, dtype, reduction, weighted, rng):
    y, p = sample(name, 2000, rng, dtype)
    if name == "log_cosh":
        p = np.clip(p, -20, 20)               # torch's cosh overflows beyond about 89
    w = weights(2000, rng, dtype) if weighted else None
    value, grad = fl.get(name, **params).value_and_grad(y, p, sample_weight=w, reduction=reduction)
    expected, expected_grad = _torch_reduced(name, params, y, p, w, reduction)
    rtol = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(value, expected, rtol=rtol)
    scale = np.mean(np.abs(expected_grad))
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("x", [-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4])
@pytest.mark.parametrize("label", [0.0, 1.0])
def test_logit_losses_match_pytorch_at_extremes(x, label):
    # float32 in fastloss against PyTorch in float64: PyTorch's float32
    # log1p(exp(-20)) already rounds to 0, fastloss's does not.
    p = np.array([x], dtype=np.float32)
    y = np.array([label], dtype=np.float32)
    for name in ("binary_cross_entropy_with_logits", "sigmoid_focal"):
        value, grad = fl.get(name).value_and_grad(y, p, reduction="sum")
        expected, expected_grad = _torch_reduced(name, {}, y.astype(float), p.astype(float),
                                                 None, "sum")
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-30)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-30)


def test_pytorch_log_terms_clamp():
    y = np.array([1.0, 0.0, 0.3])
    p = np.array([0.0, 1.0, 1e-50])
    expected = F.binary_cross_entropy(torch.tensor(p), torch.tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(fl.binary_cross_entropy(y, p, reduction="none"), expected, rtol=1e-12)


sklearn_metrics = pytest.importorskip("sklearn.metrics")

SKLEARN_METRICS = {
    "mse": lambda y, p, w: sklearn_metrics.mean_squared_error(y, p, sample_weight=w),
    "mae": lambda y, p, w: sklearn_metrics.mean_absolute_error(y, p, sample_weight=w),
    "pinball": lambda y, p, w: sklearn_metrics.mean_pinball_loss(y, p, sample_weight=w, alpha=0.5),
    "binary_cross_entropy": lambda y, p, w: sklearn_metrics.log_loss(y, p, sample_weight=w,
                                                                     labels=[0, 1]),
    "hinge": lambda y, p, w: sklearn_metrics.hinge_loss(y, p, sample_weight=w),
}


@pytest.mark.parametrize("name", sorted(SKLEARN_METRICS))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_value_matches_sklearn_metrics(name, weighted, rng):
    y, p = sample(name, 3000, rng)
    if name == "binary_cross_entropy":
        y = np.round(y)                  # log_loss wants class labels
    w = weights(3000, rng) if weighted else None
    np.testing.assert_allclose(getattr(fl, name)(y, p, sample_weight=w),
                               SKLEARN_METRICS[name](y, p, w), rtol=1e-12)


pytest.importorskip("sklearn._loss.loss")
SKLEARN_LOSSES = [name for name in REGISTRY if sklearn_loss(name) is not None]


@pytest.mark.parametrize("name", SKLEARN_LOSSES)
def test_matches_sklearn_private_losses(name, rng):
    y, p = sample(name, 3000, rng)
    if name == "binary_cross_entropy_with_logits":
        y = np.round(y)
    w = weights(3000, rng)
    sk, factor = sklearn_loss(name)
    sk_value, sk_grad = sk.loss_gradient(y_true=y, raw_prediction=p, sample_weight=w)
    _, sk_hess = sk.gradient_hessian(y_true=y, raw_prediction=p, sample_weight=w)
    loss = fl.get(name)
    g, h = loss.grad_hess(y, p, sample_weight=w)
    elementwise = loss(y, p, sample_weight=w, reduction="none")
    # scikit-learn drops terms that do not depend on the prediction for some losses
    constant = elementwise - factor * sk_value
    np.testing.assert_allclose(constant, constant[0] if name != "poisson_nll" else constant,
                               atol=1e-9 * np.max(np.abs(elementwise)))
    np.testing.assert_allclose(g, factor * sk_grad, rtol=1e-12, atol=1e-14)
    if name not in ("mae", "pinball"):           # scikit-learn's Hessian there is 1 by convention
        np.testing.assert_allclose(h, factor * sk_hess, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_kl_div_batchmean_matches_pytorch(log_target, weighted, rng):
    x = np.log(rng.dirichlet(np.ones(6), 25))
    y = rng.dirichlet(np.ones(6), 25)
    y[0, :2] = 0.0
    if log_target:
        y = np.log(y + 1e-4)
    w = weights(25, rng) if weighted else None
    value, grad = fl.get("kl_div", log_target=log_target).value_and_grad(
        y, x, sample_weight=w, reduction="batchmean")
    xt = torch.tensor(x, requires_grad=True)
    elementwise = F.kl_div(xt, torch.tensor(y), reduction="none", log_target=log_target)
    if w is None:
        total = elementwise.sum() / 25
    else:
        total = (elementwise * torch.tensor(w)[:, None]).sum() / float(np.sum(w))
    total.backward()
    np.testing.assert_allclose(value, total.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_batchmean_is_only_for_kl_div():
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none', got 'batchmean'"):
        fl.mse([1.0], [2.0], reduction="batchmean")
    assert fl.kl_div([[0.5, 0.5]], [[-0.7, -0.7]], reduction="batchmean") == pytest.approx(
        2 * 0.5 * (np.log(0.5) + 0.7))
