"""softmax_focal against PyTorch autograd of the textbook formula, and at saturation."""
import numpy as np
import pytest

import fastloss as fl

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch(x, labels, gamma, reduction):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    lp = F.log_softmax(xt, dim=1)[torch.arange(x.shape[0]), torch.tensor(labels)]
    loss = -(1 - lp.exp()) ** gamma * lp
    total = {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]
    total.sum().backward()
    return total.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.5])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("C", [11, 40])         # the few-classes kernel, the row kernel
def test_matches_pytorch(gamma, reduction, dtype, backend, C, rng):
    x = (rng.normal(size=(300, C)) * 3).astype(dtype)
    labels = rng.integers(0, C, 300)
    value, grad = fl.get("softmax_focal", gamma=gamma).value_and_grad(
        labels, x, reduction=reduction, backend=backend)
    expected, expected_grad = _torch(x.astype(np.float64), labels, gamma, reduction)
    rtol = 1e-11 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(value, expected, rtol=rtol, atol=1e-300)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=rtol * np.abs(expected_grad).max())


@pytest.mark.parametrize("gamma", [0.25, 2.0])
@pytest.mark.parametrize("width", [1, 7])            # 3 classes, and 21: the row kernel
def test_finite_at_saturation(gamma, width):
    x = np.tile(np.array([[60.0, 0.0, 0.0], [-60.0, 0.0, 0.0], [1e4, -1e4, 0.0], [0.0, 0.0, 0.0]]),
                (1, width))
    labels = np.array([0, 0, 0, 2])
    value, grad = fl.get("softmax_focal", gamma=gamma).value_and_grad(labels, x, reduction="none")
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    expected, expected_grad = _torch(x, labels, gamma, "none")
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-300)
    finite = np.isfinite(expected_grad)            # torch's own gradient may be NaN there
    np.testing.assert_allclose(grad[finite], expected_grad[finite], rtol=1e-9, atol=1e-300)


def _torch_hess_diag(x, labels, gamma, w):
    """The diagonal of PyTorch's full Hessian of the weighted summed loss, row by row."""
    diag = np.empty_like(x)
    for i in range(x.shape[0]):
        def row_loss(xi):
            lp = F.log_softmax(xi, dim=0)[int(labels[i])]
            return w[i] * -(1 - lp.exp()) ** gamma * lp
        hess = torch.autograd.functional.hessian(row_loss, torch.tensor(x[i], dtype=torch.float64))
        diag[i] = np.diag(hess.numpy())
    return diag


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("C", [6, 20])
def test_grad_hess_is_the_hessian_diagonal_of_pytorch(gamma, dtype, backend, C, rng):
    x = (rng.normal(size=(12, C)) * 3).astype(dtype)
    labels = rng.integers(0, C, 12)
    w = rng.uniform(0.5, 2.0, 12)
    g, h = fl.get("softmax_focal", gamma=gamma).grad_hess(labels, x, sample_weight=w,
                                                           backend=backend)
    assert g.dtype == h.dtype == dtype
    expected = _torch_hess_diag(x.astype(np.float64), labels, gamma, w)
    rtol = 1e-11 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(h, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
    expected_grad = fl.get("softmax_focal", gamma=gamma).grad(
        labels, x.astype(np.float64), sample_weight=w, reduction="sum", backend="numpy")
    np.testing.assert_allclose(g, expected_grad, rtol=rtol, atol=rtol * np.abs(expected_grad).max())
    if gamma == 0.0:
        np.testing.assert_allclose(h, fl.get("cross_entropy").grad_hess(
            labels, x, sample_weight=w, backend=backend)[1], rtol=rtol, atol=1e-300)


@pytest.mark.parametrize("gamma", [0.25, 2.0])
def test_grad_hess_finite_at_saturation_and_equal_to_finite_differences(gamma):
    x = np.array([[60.0, 0.0, 0.0], [-60.0, 0.0, 0.0], [1e4, -1e4, 0.0], [0.0, 0.0, 0.0],
                  [-1e4, 1e4, 0.0], [3.0, -2.0, 0.5]])
    labels = np.array([0, 0, 0, 2, 0, 1])
    loss = fl.get("softmax_focal", gamma=gamma)
    _, h = loss.grad_hess(labels, x)
    assert np.isfinite(h).all()
    expected = _torch_hess_diag(x, labels, gamma, np.ones(len(x)))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(h[finite], expected[finite], rtol=1e-9, atol=1e-300)
    # rows away from saturation: central differences of the gradient
    eps = 1e-5
    for i, j in [(3, 0), (3, 2), (5, 0), (5, 1)]:
        up, down = x.copy(), x.copy()
        up[i, j] += eps
        down[i, j] -= eps
        fd = (loss.grad(labels, up, reduction="sum")[i, j]
              - loss.grad(labels, down, reduction="sum")[i, j]) / (2 * eps)
        assert h[i, j] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_gamma_zero_is_cross_entropy_and_bad_input(rng):
    x = rng.normal(size=(20, 5))
    labels = rng.integers(0, 5, 20)
    assert fl.softmax_focal(labels, x, gamma=0.0) == pytest.approx(fl.cross_entropy(labels, x),
                                                                   rel=1e-14)
    with pytest.raises(ValueError, match="gamma"):
        fl.get("softmax_focal", gamma=-1.0)
    with pytest.raises(ValueError, match="row 3 has 5"):
        fl.softmax_focal(np.array([0, 1, 2, 5] + [0] * 16), x)
