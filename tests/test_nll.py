"""nll against torch.nn.functional.nll_loss."""
import numpy as np
import pytest

import fastloss as fl

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_pytorch(weighted, reduction, dtype, backend, rng):
    N, C = 40, 9
    logp = np.log(rng.dirichlet(np.ones(C), N)).astype(dtype)
    labels = rng.integers(0, C, N)
    labels[[2, 30]] = -100
    cw = rng.uniform(0.2, 2.0, C) if weighted else None
    loss = fl.get("nll", class_weight=cw)
    value, grad = loss.value_and_grad(labels, logp, reduction=reduction, backend=backend)
    xt = torch.tensor(logp, requires_grad=True)
    ref = F.nll_loss(xt, torch.tensor(labels), reduction=reduction,
                     weight=None if cw is None else torch.tensor(cw, dtype=xt.dtype))
    ref.sum().backward()
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(value, ref.detach().numpy(), rtol=rtol)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=rtol)
    np.testing.assert_allclose(loss(labels, logp, reduction=reduction, backend=backend),
                               ref.detach().numpy(), rtol=rtol)
    g, h = fl.get("nll").grad_hess(labels, logp, backend=backend)
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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sample_weights_many_rows_and_the_gradient_in_place(dtype, rng):
    """The mean is sum_i r_i w_t l_i / sum_i r_i w_t over the rows not ignored; the gradient
    may overwrite the log-probabilities it reads."""
    N, C = 5000, 3
    logp = np.log(rng.dirichlet(np.ones(C), N)).astype(dtype)
    labels = rng.integers(0, C, N)
    labels[::11] = -100
    r = rng.uniform(0.0, 2.0, N)
    cw = rng.uniform(0.2, 2.0, C)
    loss = fl.get("nll", class_weight=cw)
    keep = labels != -100
    coef = np.where(keep, r * cw[np.where(keep, labels, 0)], 0.0)
    picked = np.where(keep, logp.astype(np.float64)[np.arange(N), np.where(keep, labels, 0)], 0.0)
    expected = -np.sum(coef * picked) / np.sum(coef)
    expected_grad = np.zeros((N, C))
    expected_grad[keep, labels[keep]] = -coef[keep] / np.sum(coef)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    for backend in ("cpu", "numpy"):
        value, grad = loss.value_and_grad(labels, logp, sample_weight=r, backend=backend)
        assert value == pytest.approx(expected, rel=rtol)
        np.testing.assert_allclose(grad, expected_grad, rtol=rtol)
        rows = loss(labels, logp, sample_weight=r, reduction="none", backend=backend)
        np.testing.assert_allclose(rows, -coef * picked, rtol=rtol)
        x = logp.copy()
        value2, grad2 = loss.value_and_grad(labels, x, sample_weight=r, out=x, backend=backend)
        assert grad2 is x and value2 == value
        np.testing.assert_array_equal(grad2, grad)


@pytest.mark.parametrize("bad", [-1, 3, 2**40, -(2**40)])
@pytest.mark.parametrize("row", [0, 4095, 4096, 9999])
def test_a_bad_label_in_any_block_is_named_before_it_is_indexed_with(bad, row, rng):
    """The value's one-pass kernel checks each label as it reads it (blocks of 4096 rows)."""
    logp = np.log(rng.dirichlet(np.ones(3), 10000))
    labels = rng.integers(0, 3, 10000)
    labels[row] = bad
    if row < 9999:
        labels[row + 7 if row + 7 < 10000 else 9999] = 2**40   # a later bad row is not the one named
    for reduction in ("mean", "sum", "none"):
        with pytest.raises(ValueError, match=rf"nll: .* row {row} has {bad}$"):
            fl.nll(labels, logp, reduction=reduction)
        with pytest.raises(ValueError, match=rf"row {row} has {bad}$"):
            fl.get("nll").partial(labels, logp, reduction="sum" if reduction == "none" else reduction)
    # an ignore_index inside [0, C) or past it is not a bad label
    labels = rng.integers(0, 3, 10000)
    labels[row] = 7
    assert np.isfinite(fl.nll(labels, logp, ignore_index=7))
    kept = labels != 7
    assert fl.nll(labels, logp, ignore_index=7, reduction="sum") == pytest.approx(
        -logp[np.flatnonzero(kept), labels[kept]].sum(), rel=1e-12)
