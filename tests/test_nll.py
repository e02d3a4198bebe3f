"""nll against torch.nn.functional.nll_loss."""
import numpy as np
import pytest

import fastloss as fl

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pytorch(weighted, reduction, dtype, rng):
    N, C = 40, 9
    logp = np.log(rng.dirichlet(np.ones(C), N)).astype(dtype)
    labels = rng.integers(0, C, N)
    labels[[2, 30]] = -100
    cw = rng.uniform(0.2, 2.0, C) if weighted else None
    value, grad = fl.get("nll", class_weight=cw).value_and_grad(labels, logp, reduction=reduction)
    xt = torch.tensor(logp, requires_grad=True)
    ref = F.nll_loss(xt, torch.tensor(labels), reduction=reduction,
                     weight=None if cw is None else torch.tensor(cw, dtype=xt.dtype))
    ref.sum().backward()
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(value, ref.detach().numpy(), rtol=rtol)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=rtol)
    g, h = fl.get("nll").grad_hess(labels, logp)
    assert not h.any() and g.shape == logp.shape


def test_nll_of_log_softmax_is_cross_entropy(rng):
    x = rng.normal(size=(30, 7))
    labels = rng.integers(0, 7, 30)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    assert fl.nll(labels, logp) == pytest.approx(fl.cross_entropy(labels, x), rel=1e-13)
    with pytest.raises(ValueError, match="row 0"):
        fl.nll(np.full(30, 7), logp)
    with pytest.raises(ValueError, match="integer class labels"):
        fl.nll(np.exp(logp), logp)
