"""multi_margin against torch.nn.functional.multi_margin_loss."""
import numpy as np
import pytest

import fastloss as fl

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_matches_pytorch(p, weighted, reduction, dtype, backend, rng):
    x = rng.normal(size=(40, 9)).astype(dtype)
    labels = rng.integers(0, 9, 40)
    cw = rng.uniform(0.3, 2.0, 9) if weighted else None
    loss = fl.get("multi_margin", p=p, margin=0.7, class_weight=cw)
    value, grad = loss.value_and_grad(labels, x, reduction=reduction, backend=backend)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    ref = F.multi_margin_loss(xt, torch.tensor(labels), p=p, margin=0.7, reduction=reduction,
                              weight=None if cw is None else torch.tensor(cw))
    ref.sum().backward()
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(value, ref.detach().numpy(), rtol=rtol, atol=1e-300)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_grad_hess_is_the_hessian_diagonal_of_pytorch(p, dtype, backend, rng):
    x = rng.normal(size=(15, 6)).astype(dtype)
    labels = rng.integers(0, 6, 15)
    cw, sw = rng.uniform(0.3, 2.0, 6), rng.uniform(0.5, 2.0, 15)
    loss = fl.get("multi_margin", p=p, margin=0.7, class_weight=cw)
    g, h = loss.grad_hess(labels, x, sample_weight=sw, backend=backend)
    assert g.dtype == h.dtype == dtype
    diag = np.empty(x.shape)
    for i in range(x.shape[0]):
        def row_loss(xi):     # F.multi_margin_loss written out: its backward has no derivative
            t = int(labels[i])
            terms = torch.clamp(0.7 - xi[t] + xi, min=0) ** p
            return sw[i] * cw[t] / x.shape[1] * (terms.sum() - terms[t])
        xi = torch.tensor(x[i].astype(np.float64))
        diag[i] = np.diag(torch.autograd.functional.hessian(row_loss, xi).numpy())
    assert (p == 1) == (not diag.any())
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(h, diag, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(g, loss.grad(labels, x, sample_weight=sw, reduction="sum",
                                            backend="numpy"), rtol=rtol, atol=1e-300)


def test_bad_input():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="row 1 has 4"):
        fl.multi_margin(np.array([0, 4, 1]), x)
    with pytest.raises(ValueError, match="row 0 has -100"):
        fl.multi_margin(np.array([-100, 1, 1]), x)
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        fl.get("multi_margin", p=3)
    with pytest.raises(ValueError, match="integer class labels"):
        fl.multi_margin(np.zeros((3, 4)), x)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_nan_scores_give_nan_rows(p, backend, rng):
    """A NaN score makes its row's loss, gradient and Hessian NaN (PyTorch's kernel skips
    NaN terms and returns 0 there); the other rows are untouched."""
    x = rng.normal(size=(4, 5))
    labels = np.array([0, 1, 2, 3])
    x[1, 3] = np.nan                   # another class's score
    x[2, 2] = np.nan                   # the target's own score
    loss = fl.get("multi_margin", p=p)
    value, grad = loss.value_and_grad(labels, x, reduction="none", backend=backend)
    g, h = loss.grad_hess(labels, x, backend=backend)
    assert np.isnan(value[1:3]).all() and np.isfinite(value[[0, 3]]).all()
    assert np.isnan(grad[2]).all() and np.isnan(grad[1, [1, 3]]).all()
    assert np.isnan(h[2, [0, 1, 3, 4]]).all() and np.isnan(h[1, [1, 3]]).all()
    for arr in (grad, g, h):
        assert np.isfinite(arr[[0, 3]]).all()
    clean = np.nan_to_num(x)
    np.testing.assert_array_equal(value[[0, 3]], loss(labels, clean, reduction="none",
                                                      backend=backend)[[0, 3]])
    assert np.isnan(loss(labels, x, backend=backend))
