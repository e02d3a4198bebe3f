"""Differential tests against PyTorch and scikit-learn, where they have the loss.

PyTorch's functional losses (and autograd for the gradients) and
scikit-learn's metrics and private ``sklearn._loss`` classes are independent
implementations; these tests skip when the peers are not installed (the
``peers`` extra installs them, and CI does).
"""
import numpy as np
import pytest

import fastloss as fl

from .conftest import loss_case, sample, weights

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _focal(x, y, alpha, gamma):
    # torchvision.ops.sigmoid_focal_loss, written out (torchvision is not a dependency)
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


TORCH_ELEMENTWISE = {
    "mse": lambda x, y: F.mse_loss(x, y, reduction="none"),
    "mae": lambda x, y: F.l1_loss(x, y, reduction="none"),
    "huber": lambda x, y, delta=1.0: F.huber_loss(x, y, reduction="none", delta=delta),
    "smooth_l1": lambda x, y, beta=1.0: F.smooth_l1_loss(x, y, reduction="none", beta=beta),
    "poisson_nll": lambda x, y, full=False: F.poisson_nll_loss(x, y, log_input=True, full=full,
                                                             reduction="none"),
    "binary_cross_entropy": lambda x, y: F.binary_cross_entropy(x, y, reduction="none"),
    "binary_cross_entropy_with_logits": lambda x, y, pos_weight=None: (
        F.binary_cross_entropy_with_logits(
            x, y, reduction="none",
            pos_weight=None if pos_weight is None else torch.tensor(pos_weight, dtype=x.dtype))),
    "sigmoid_focal": lambda x, y, alpha=0.25, gamma=2.0: _focal(x, y, alpha, gamma),
    # no torch.nn.functional loss: the formula in torch ops, still an independent autograd
    "log_cosh": lambda x, y: torch.log(torch.cosh(x - y)),
    "pinball": lambda x, y, quantile=0.5: torch.maximum(quantile * (y - x), (quantile - 1) * (y - x)),
    "hinge": lambda x, y: torch.clamp(1 - torch.where(y > 0, 1.0, -1.0).to(x.dtype) * x, min=0),
    "squared_hinge": lambda x, y: torch.clamp(
        1 - torch.where(y > 0, 1.0, -1.0).to(x.dtype) * x, min=0) ** 2,
}


def _torch_reduced(name, params, y, p, w, reduction):
    x = torch.tensor(p, requires_grad=True)
    t = torch.tensor(y)
    elementwise = TORCH_ELEMENTWISE[name](x, t, **params)
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


@loss_case
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


sk_loss = pytest.importorskip("sklearn._loss.loss")

# (fastloss name, scikit-learn class, factor: fastloss = factor * sklearn)
SKLEARN_LOSSES = [
    ("mse", lambda: sk_loss.HalfSquaredError(), 2.0),
    ("mae", lambda: sk_loss.AbsoluteError(), 1.0),
    ("pinball", lambda: sk_loss.PinballLoss(quantile=0.5), 1.0),
    ("poisson_nll", lambda: sk_loss.HalfPoissonLoss(), 1.0),
    ("binary_cross_entropy_with_logits", lambda: sk_loss.HalfBinomialLoss(), 1.0),
]


@pytest.mark.parametrize("name,make,factor", SKLEARN_LOSSES, ids=[c[0] for c in SKLEARN_LOSSES])
def test_matches_sklearn_private_losses(name, make, factor, rng):
    y, p = sample(name, 3000, rng)
    if name == "binary_cross_entropy_with_logits":
        y = np.round(y)
    w = weights(3000, rng)
    sk = make()
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
