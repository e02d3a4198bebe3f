"""The CPU kernels against the independent NumPy reference, for every registered loss."""
import numpy as np
import pytest

import fastloss as fl
from fastloss.backends import cpu

from fastloss.specs import REGISTRY
from .conftest import loss_case, sample, weights
from .helpers import assert_close, assert_scalar_close

DTYPES = [np.float64, np.float32]
REDUCTIONS = ["mean", "sum", "none"]


def _reference_inputs(y, p):
    """The reference computes in float64 from the very values the kernel read."""
    return y.astype(np.float64), p.astype(np.float64)


@loss_case
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_value_and_grad_match_reference(name, params, dtype, weighted, reduction, rng):
    y, p = sample(name, 1001, rng, dtype)
    w = weights(1001, rng, dtype) if weighted else None
    loss = fl.get(name, **params)
    yr, pr = _reference_inputs(y, p)
    wr = None if w is None else w.astype(np.float64)

    value = loss(y, p, sample_weight=w, reduction=reduction, backend="cpu")
    expected = loss(yr, pr, sample_weight=wr, reduction=reduction, backend="numpy")
    grad = loss.grad(y, p, sample_weight=w, reduction=reduction, backend="cpu")
    expected_grad = loss.grad(yr, pr, sample_weight=wr, reduction=reduction, backend="numpy")
    fused_value, fused_grad = loss.value_and_grad(y, p, sample_weight=w, reduction=reduction,
                                                  backend="cpu")

    if reduction == "none":
        assert value.dtype == dtype and value.shape == p.shape
        assert_close(value, expected, dtype, "value")
        np.testing.assert_array_equal(fused_value, value)
    else:
        assert_scalar_close(value, expected, dtype, "value")
        # the same sum, possibly vectorized differently; the float32 arithmetic losses' values
        # add each block's halves in float32 first (cpu._one_pass_templates), one rounding of
        # a sum of non-negative values: at most 2**-24 of it
        np.testing.assert_allclose(fused_value, value, rtol=1e-14 if dtype == np.float64 else 2**-24)
    assert grad.dtype == dtype
    assert_close(grad, expected_grad, dtype, "grad")
    np.testing.assert_array_equal(fused_grad, grad)


@loss_case
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_grad_hess_matches_reference(name, params, dtype, weighted, rng):
    y, p = sample(name, 777, rng, dtype)
    w = weights(777, rng, dtype) if weighted else None
    loss = fl.get(name, **params)
    g, h = loss.grad_hess(y, p, sample_weight=w, backend="cpu")
    yr, pr = _reference_inputs(y, p)
    gr, hr = loss.grad_hess(yr, pr, sample_weight=None if w is None else w.astype(np.float64),
                            backend="numpy")
    assert g.dtype == h.dtype == dtype
    assert_close(g, gr, dtype, "grad")
    assert_close(h, hr, dtype, "hess")
    # the boosting convention: grad_hess's gradient is the "none"/"sum" gradient (for
    # float32 data of the float32_value losses, grad computes in float32, grad_hess in
    # float64: equal to float32 accuracy)
    plain = loss.grad(y, p, sample_weight=w, reduction="none", backend="cpu")
    if dtype == np.float32 and REGISTRY[name].float32_value:
        assert_close(plain, g, dtype, "grad against grad_hess")
    else:
        np.testing.assert_array_equal(g, plain)


@loss_case
def test_parallel_kernels_match_reference_and_serial(name, params, rng):
    n = cpu.parallel_min_size(name) + 2 * cpu.BLOCK + 17     # a ragged last block
    y, p = sample(name, n, rng, np.float32)
    w = weights(n, rng, np.float32)
    loss = fl.get(name, **params)
    theta = loss._theta
    yv, pv, wv = (a.copy() for a in (y, p, w))
    par, ser = cpu.kernels(name, True), cpu.kernels(name, False)
    for weight in (None, wv):
        total_par, bad_par = par["reduce_value"](yv, pv, weight, theta)
        total_ser, bad_ser = ser["reduce_value"](yv, pv, weight, theta)
        np.testing.assert_allclose(total_par, total_ser, rtol=1e-14)
        assert bad_par == bad_ser == 0
    g_par, g_ser = np.empty(n, np.float32), np.empty(n, np.float32)
    v_par, _ = par["value_and_grad"](yv, pv, wv, theta, 0.5, g_par)
    v_ser, _ = ser["value_and_grad"](yv, pv, wv, theta, 0.5, g_ser)
    np.testing.assert_allclose(v_par, v_ser, rtol=1e-14)
    np.testing.assert_array_equal(g_par, g_ser)      # elementwise: no reassociation
    h_par, h2 = np.empty(n, np.float32), np.empty(n, np.float32)
    par["grad_hess"](yv, pv, None, theta, g_par, h_par)
    ser["grad_hess"](yv, pv, None, theta, g_ser, h2)
    np.testing.assert_array_equal(h_par, h2)

    value, grad = loss.value_and_grad(y, p, sample_weight=w, backend="cpu")
    yr, pr = _reference_inputs(y, p)
    expected, expected_grad = loss.value_and_grad(yr, pr, sample_weight=w.astype(np.float64),
                                                  backend="numpy")
    assert_scalar_close(value, expected, np.float32)
    assert_close(grad, expected_grad, np.float32)
    assert_close(h_par, loss.grad_hess(yr, pr, backend="numpy")[1], np.float32)


@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy_with_logits", "log_cosh"])
def test_same_bits_for_any_thread_count(name, rng):
    y, p = sample(name, 500_000, rng, np.float32)
    loss = fl.get(name)
    results = []
    for threads in (1, 2, None):
        fl.set_num_threads(threads)
        results.append(loss.value_and_grad(y, p, backend="cpu"))
    for value, grad in results[1:]:
        assert value == results[0][0]
        np.testing.assert_array_equal(grad, results[0][1])


@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy_with_logits", "huber"])
def test_float32_accuracy_at_scale(name):
    """float32 inputs within 1e-6 of the float64 reference, at n = 2e7."""
    n = 20_000_000
    rng = np.random.default_rng(3)
    y, p = sample(name, n, rng, np.float32)
    value = fl.get(name)(y, p, backend="cpu")
    expected = fl.get(name)(y.astype(np.float64), p.astype(np.float64), backend="numpy")
    assert abs(value - expected) <= 1e-6 * abs(expected)


def _central_difference(f, name, y, p):
    """(f(p + h) - f(p - h)) / 2h elementwise, staying inside y_pred's domain."""
    h = 1e-6 * np.maximum(1.0, np.abs(p))
    lo, hi = p - h, p + h
    if fl.REGISTRY[name].p_domain == "unit":
        lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
    return (f(y, hi) - f(y, lo)) / (hi - lo)


@loss_case
def test_grad_is_derivative_of_value(name, params, rng):
    y, p = sample(name, 400, rng)
    loss = fl.get(name, **params)
    fd = _central_difference(lambda y, p: loss(y, p, reduction="none"), name, y, p)
    assert_fd_close(loss.grad(y, p, reduction="none"), fd)


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.difference])
def test_difference_losses_derivative_in_y_true_is_minus_the_gradient(name, rng):
    """LossSpec.difference (a function of y_pred - y_true alone) is what lets the PyTorch
    adapters give a target its gradient: check it on the NumPy reference's values."""
    y, p = sample(name, 400, rng)
    value = lambda p, y: fl.get(name)(y, p, reduction="none", backend="numpy")  # noqa: E731
    fd_y = _central_difference(value, name, p, y)
    assert_fd_close(-fl.get(name).grad(y, p, reduction="none", backend="numpy"), fd_y)


@loss_case
def test_hess_is_derivative_of_grad(name, params, rng):
    y, p = sample(name, 400, rng)
    loss = fl.get(name, **params)
    fd = _central_difference(lambda y, p: loss.grad(y, p, reduction="none"), name, y, p)
    assert_fd_close(loss.grad_hess(y, p)[1], fd)


def assert_fd_close(analytic, fd):
    scale = np.mean(np.abs(fd)) + 1e-12
    err = np.abs(analytic - fd)
    ok = err <= 1e-4 * np.abs(fd) + 1e-5 * scale
    # A kink within h of a sample point is possible but rare; allow at most one.
    assert np.count_nonzero(~ok) <= 1, (analytic[~ok][:5], fd[~ok][:5])


@loss_case
def test_reductions_are_consistent(name, params, rng):
    y, p = sample(name, 300, rng)
    w = weights(300, rng)
    loss = fl.get(name, **params)
    elementwise = loss(y, p, sample_weight=w, reduction="none")
    total = loss(y, p, sample_weight=w, reduction="sum")
    mean = loss(y, p, sample_weight=w, reduction="mean")
    np.testing.assert_allclose(total, np.sum(elementwise), rtol=1e-12)
    np.testing.assert_allclose(mean, total / np.sum(w), rtol=1e-12)
    g_mean = loss.grad(y, p, sample_weight=w, reduction="mean")
    g_none = loss.grad(y, p, sample_weight=w, reduction="none")
    np.testing.assert_allclose(g_mean, g_none / np.sum(w), rtol=1e-12, atol=1e-300)
    # an unweighted mean is the mean over all elements
    np.testing.assert_allclose(loss(y, p), np.mean(loss(y, p, reduction="none")), rtol=1e-12)


@loss_case
def test_two_dimensional_inputs_with_row_weights(name, params, rng):
    y, p = sample(name, 0, rng, shape=(50, 3))
    w = weights(50, rng)
    loss = fl.get(name, **params)
    value = loss(y, p, sample_weight=w)
    elementwise = loss(y.ravel(), p.ravel(), reduction="none")
    full_w = np.repeat(w, 3)
    np.testing.assert_allclose(value, np.sum(full_w * elementwise) / np.sum(full_w), rtol=1e-12)
    g = loss.grad(y, p, sample_weight=w, reduction="sum")
    assert g.shape == (50, 3)
    np.testing.assert_allclose(g.ravel(), full_w * loss.grad(y.ravel(), p.ravel(), reduction="none"),
                               rtol=1e-12, atol=1e-300)
