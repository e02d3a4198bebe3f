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
