"""linear_cross_entropy: equal to F.linear + F.cross_entropy, values and all three gradients."""
import numpy as np
import pytest

import fastloss as fl

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch(y, h, w, b, reduction, label_smoothing=0.0, class_weight=None):
    ht = torch.tensor(h, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    target = torch.tensor(y)
    cw = None if class_weight is None else torch.tensor(class_weight, dtype=ht.dtype)
    loss = F.cross_entropy(F.linear(ht, wt, bt), target, weight=cw, reduction=reduction,
                           label_smoothing=label_smoothing)
    loss.sum().backward()
    return (loss.detach().numpy(), ht.grad.numpy(), wt.grad.numpy(),
            None if bt is None else bt.grad.numpy())


@pytest.mark.parametrize("chunk_size", [1, 37, None])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_matches_linear_then_cross_entropy(chunk_size, with_bias, reduction, targets, rng):
    N, H, C = 120, 16, 29
    h = rng.normal(size=(N, H))
    w = rng.normal(size=(C, H)) * 0.5
    b = rng.normal(size=C) if with_bias else None
    if targets == "labels":
        y = rng.integers(0, C, N)
        y[[4, 50]] = -100
    else:
        y = rng.dirichlet(np.ones(C), N)
    cw = rng.uniform(0.5, 2.0, C)
    loss = fl.get("linear_cross_entropy", chunk_size=chunk_size, label_smoothing=0.05,
                  class_weight=cw)
    value, (gh, gw, gb) = loss.value_and_grad(y, h, w, b, reduction=reduction)
    ev, egh, egw, egb = _torch(y, h, w, b, reduction, 0.05, cw)
    np.testing.assert_allclose(value, ev, rtol=1e-11)
    # for "none", the gradients of the sum of the rows' losses (torch's loss.sum())
    for got, expected in ((gh, egh), (gw, egw), (gb, egb)):
        if expected is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)
    for got, expected in zip(loss.grad(y, h, w, b, reduction=reduction), (gh, gw, gb)):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(fl.linear_cross_entropy(y, h, w, b, label_smoothing=0.05,
                                                       class_weight=cw, reduction=reduction),
                               value, rtol=1e-12)


def test_float32_and_bad_shapes(rng):
    h = rng.normal(size=(64, 8)).astype(np.float32)
    w = rng.normal(size=(10, 8)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    value, (gh, gw, gb) = fl.get("linear_cross_entropy").value_and_grad(y, h, w)
    assert gh.dtype == gw.dtype == np.float32 and gb is None
    ev, egh, egw, _ = _torch(y, h.astype(float), w.astype(float), None, "mean")
    np.testing.assert_allclose(value, ev, rtol=1e-6)
    np.testing.assert_allclose(gw, egw, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="hidden must be"):
        fl.linear_cross_entropy(y, h, w[:, :7])
    with pytest.raises(ValueError, match="row 0"):
        fl.linear_cross_entropy(np.full(64, 10), h, w)
    with pytest.raises(ValueError, match="chunk_size"):
        fl.get("linear_cross_entropy", chunk_size=0)
