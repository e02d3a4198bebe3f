"""backend="cuda" against the NumPy reference, for every registered elementwise loss."""
import warnings

import numpy as np
import pytest
from numba import cuda

import fastloss as fl
from fastloss.examples import inputs as sample
from fastloss.specs import REGISTRY
from tests.conftest import LOSS_CASES, LOSS_IDS, loss_function, weights
from tests.helpers import assert_close, assert_scalar_close

from .conftest import SIMULATED

loss_case = pytest.mark.parametrize("name,params", LOSS_CASES, ids=LOSS_IDS)
N = 37        # more than the simulator's grid of 8 threads takes in one step of 4 each


def _host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


@loss_case
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_host_inputs_match_reference(name, params, dtype, rng):
    y, p = sample(name, N, rng, dtype)
    w = weights(N, rng, dtype)
    yr, pr, wr = y.astype(np.float64), p.astype(np.float64), w.astype(np.float64)
    loss = fl.get(name, **params)
    for reduction in ("mean", "sum"):
        assert_scalar_close(loss(y, p, reduction=reduction, backend="cuda"),
                            loss(yr, pr, reduction=reduction, backend="numpy"), dtype, reduction)
    none = loss(y, p, sample_weight=w, reduction="none", backend="cuda")
    assert type(none) is np.ndarray and none.dtype == dtype
    assert_close(none, loss(yr, pr, sample_weight=wr, reduction="none", backend="numpy"), dtype)
    value, grad = loss.value_and_grad(y, p, sample_weight=w, backend="cuda")
    assert_scalar_close(value, loss(yr, pr, sample_weight=wr, backend="numpy"), dtype, "value")
    assert grad.dtype == dtype
    assert_close(grad, loss.grad(yr, pr, sample_weight=wr, backend="numpy"), dtype, "grad")
    g, h = loss.grad_hess(y, p, sample_weight=w, backend="cuda")
    gr, hr = loss.grad_hess(yr, pr, sample_weight=wr, backend="numpy")
    assert_close(g, gr, dtype, "grad_hess g")
    assert_close(h, hr, dtype, "grad_hess h")


@pytest.mark.parametrize("name", sorted({n for n, _ in LOSS_CASES}))
def test_device_inputs_stay_on_the_device(name, rng):
    """(n, k) float32 device arrays with row weights: device results, out= written in place."""
    y, p = sample(name, 0, rng, np.float32, shape=(9, 4))
    w = weights(9, rng)
    dy, dp, dw = cuda.to_device(y), cuda.to_device(p), cuda.to_device(w)
    loss = fl.get(name)
    expected_value = loss(y, p, sample_weight=w, backend="numpy")
    expected_grad = loss.grad(y, p, sample_weight=w, backend="numpy")

    value, grad = loss.value_and_grad(dy, dp, sample_weight=dw)            # backend "auto"
    assert isinstance(value, float)
    assert fl.backends.on_device(grad) and grad.shape == (9, 4) and grad.dtype == np.float32
    assert_scalar_close(value, expected_value, np.float32)
    assert_close(_host(grad), expected_grad, np.float32)

    out = cuda.device_array((9, 4), np.float32)
    assert loss.grad(dy, dp, sample_weight=dw, out=out) is out
    assert_close(out.copy_to_host(), expected_grad, np.float32)
    none = loss(dy, dp, reduction="none")
    assert fl.backends.on_device(none)
    assert_close(_host(none), loss(y, p, reduction="none", backend="numpy"), np.float32)


def test_strided_and_transposed_device_arrays(rng):
    y, p = sample("huber", 0, rng, np.float64, shape=(6, 5))
    dy, dp = cuda.to_device(y), cuda.to_device(p)
    loss = fl.get("huber", delta=0.7)
    assert_close(_host(loss.grad(dy.T, dp.T, reduction="sum")),
                 loss.grad(y.T, p.T, reduction="sum", backend="numpy"), np.float64)
    assert_scalar_close(loss(dy[::2, 1], dp[::2, 1]), loss(y[::2, 1], p[::2, 1], backend="numpy"),
                        np.float64)


def test_integer_labels_and_half_precision_on_the_device(rng):
    labels = rng.choice([-1, 1], 20).astype(np.int8)
    scores = rng.standard_normal(20).astype(np.float16)
    grad = fl.get("hinge").grad(cuda.to_device(labels), cuda.to_device(scores), reduction="none")
    assert grad.dtype == np.float16
    expected = fl.get("hinge").grad(labels, scores.astype(np.float64), reduction="none",
                                    backend="numpy")
    np.testing.assert_array_equal(_host(grad), expected.astype(np.float16))


def test_scalar_and_empty_inputs():
    assert fl.mse(2.0, 3.5, backend="cuda") == pytest.approx(2.25)
    assert fl.mse(np.zeros(0), np.zeros(0), reduction="sum", backend="cuda") == 0.0
    with pytest.warns(RuntimeWarning):
        assert np.isnan(fl.mse(cuda.to_device(np.zeros(0)), cuda.to_device(np.zeros(0))))
    assert fl.get("mse").grad(np.zeros(0), np.zeros(0), backend="cuda").shape == (0,)


def test_bad_inputs_are_clear_errors(rng):
    y, p = sample("binary_cross_entropy", 12, rng)
    p[7] = 1.5
    with pytest.raises(ValueError, match=r"y_pred must be in \[0, 1\].*index 7"):
        fl.binary_cross_entropy(cuda.to_device(y), cuda.to_device(p))
    with pytest.raises(ValueError, match="same shape"):
        fl.mse(cuda.to_device(np.zeros(3)), cuda.to_device(np.zeros(4)))
    with pytest.raises(ValueError, match="sample_weight must be >= 0"):
        fl.mse(cuda.to_device(np.zeros(3)), cuda.to_device(np.zeros(3)),
               sample_weight=cuda.to_device(np.array([1.0, -1.0, 1.0])))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(3,\)"):
        fl.mse(cuda.to_device(np.zeros(3)), cuda.to_device(np.zeros(3)),
               sample_weight=cuda.to_device(np.ones(2)))
    dy, dp = cuda.to_device(np.zeros(3)), cuda.to_device(np.ones(3))
    with pytest.raises(ValueError, match="out must have shape"):
        fl.get("mse").grad(dy, dp, out=cuda.device_array(4))
    with pytest.raises(ValueError, match="out must have dtype"):
        fl.get("mse").grad(dy, dp, out=cuda.device_array(3, np.float32))
    with pytest.raises(TypeError, match="out must be a CUDA array"):
        fl.get("mse").grad(dy, dp, out=np.zeros(3))
    with pytest.raises(TypeError, match="y_pred must hold real numbers"):
        fl.mse(dy, cuda.to_device(np.zeros(3, np.complex128)))


def test_nan_propagates_and_extreme_logits_stay_finite():
    y = np.array([0.0, 1.0, 1.0, 0.0])
    x = np.array([1e4, -1e4, 1e4, -1e4])
    loss = fl.get("binary_cross_entropy_with_logits")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)   # overflow; not Numba's small-grid note
        value, grad = loss.value_and_grad(y, x, backend="cuda")
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(loss(y, x, backend="numpy"), rel=1e-12)
    x[2] = np.nan
    assert np.isnan(loss(y, x, backend="cuda"))


def test_results_are_bitwise_reproducible(rng):
    y, p = sample("log_cosh", 200, rng, np.float32)
    dy, dp = cuda.to_device(y), cuda.to_device(p)
    first = fl.log_cosh(dy, dp)
    assert all(fl.log_cosh(dy, dp) == first for _ in range(2))


def test_reductions_reuse_their_buffers_across_grid_sizes(rng):
    """One launch per reduction: the last block adds the partials and re-arms the ticket, so
    calls on one- and many-block grids, one after another on the same buffers, all agree
    with the reference (a ticket left armed would return an earlier call's result)."""
    from fastloss.backends.cuda import launch

    parts = launch.partials()
    sizes = (3, 5 * launch.THREADS * launch.MAX_BLOCKS, 1, 2 * launch.THREADS, 3)
    assert [launch.blocks_for(n) for n in sizes] == [1, launch.MAX_BLOCKS, 1, 2, 1]
    for n in sizes:
        y, p = sample("mse", n, rng, np.float64)
        assert fl.mse(y, p, backend="cuda", reduction="sum") == pytest.approx(
            fl.mse(y, p, backend="numpy", reduction="sum"), rel=1e-12)
        assert launch.partials() is parts
        assert parts.counts.copy_to_host()[launch.TICKET] == 0
        assert parts.total() == (pytest.approx(np.sum((p - y) ** 2), rel=1e-12), 0)


def test_accumulator_takes_device_chunks(rng):
    y, p = sample("mse", 40, rng)
    acc = fl.Accumulator(["mse", "mae"])
    for lo in range(0, 40, 16):
        acc.update(cuda.to_device(y[lo:lo + 16]), cuda.to_device(p[lo:lo + 16]))
    result = acc.result()
    assert result["mse"] == pytest.approx(fl.mse(y, p, backend="numpy"), rel=1e-12)
    assert result["mae"] == pytest.approx(fl.mae(y, p, backend="numpy"), rel=1e-12)


def test_backend_report_and_auto_choice(rng):
    assert fl.backend_info()["cuda"].startswith("available")
    assert "cuda" in fl.available_backends()
    if SIMULATED:
        assert "simulator" in fl.backend_info()["cuda"]
    y, p = sample("mse", 10, rng)
    assert type(fl.get("mse").grad(y, p)) is np.ndarray                     # host: cpu
    assert fl.backends.on_device(fl.get("mse").grad(cuda.to_device(y), cuda.to_device(p)))
    with fl.use_backend("cuda"):
        assert type(fl.get("mse").grad(y, p)) is np.ndarray                 # copied back
    assert loss_function("mse") is fl.mse


def test_a_redefined_custom_loss_gets_new_cuda_kernels():
    y, p = np.zeros(5), np.full(5, 2.0)
    try:
        fl.custom_loss(lambda y, p: (p - y) ** 2, name="cuda_redefined")
        assert fl.get("cuda_redefined")(y, p, backend="cuda") == 4.0
        fl.custom_loss(lambda y, p: 3.0 * abs(p - y), name="cuda_redefined")
        assert fl.get("cuda_redefined")(y, p, backend="cuda") == 6.0
        grad = fl.get("cuda_redefined").grad(cuda.to_device(y), cuda.to_device(p), reduction="none")
        np.testing.assert_array_equal(_host(grad), np.full(5, 3.0))
    finally:
        fl.custom.unregister("cuda_redefined")


def test_gpu_check_runs_under_the_simulator(capsys):
    """benchmarks/gpu_check.py --simulate: every check passes and every table prints."""
    from fastloss.bench import gpu
    assert gpu.main(["--simulate", "--losses", "log_cosh,hinge"]) == 0
    out = capsys.readouterr().out
    for line in ("ok   log_cosh", "ok   hinge", "ok   cross_entropy probs ['class_weight', "
                 "'label_smoothing']", "ok   cross_entropy in place", "ok   linear_cross_entropy",
                 "ok   softmax_focal", "fastloss forward+backward", "0 failed check(s)"):
        assert line in out, line


def test_gpu_check_goes_on_after_a_part_that_raises(capsys, monkeypatch):
    """One failing part of the report (one try on a lent GPU) must not cost the rest of it."""
    from fastloss.bench import gpu

    def broken():
        raise RuntimeError("no such kernel")

    monkeypatch.setattr(gpu, "check_rows", broken)
    assert gpu.main(["--simulate", "--losses", "hinge"]) == 1
    out = capsys.readouterr().out
    assert "FAIL broken raised" in out and "RuntimeError: no such kernel" in out
    assert "fastloss forward+backward" in out and "1 failed check(s)" in out


def test_a_none_argument_launches_as_the_null_pointer_of_its_data_model():
    """numba-cuda's launcher marshals no ``none`` argument (the simulator does); the kernels'
    extension hands it over as a pointer-sized zero, which is what the compiled kernel expects."""
    from numba import types
    from numba.cuda.datamodel import registry

    from fastloss.backends.cuda.launch import NoneAsNullPointer
    extension = NoneAsNullPointer()
    assert extension.prepare_args(types.none, None) == (types.uintp, 0)
    array = types.float32[::1]
    assert extension.prepare_args(array, "the array") == (array, "the array")
    assert str(registry.default_manager.lookup(types.none).get_argument_type()) == "i8*"
    assert types.uintp.bitwidth == 64


def test_float32_values_past_float32_range_are_summed_in_float64():
    """mse of float32 differences of 1e20: each value overflows float32, the sum does not."""
    y = np.zeros(N, np.float32)
    p = np.full(N, 1e20, np.float32)
    p[::3] = 1.0
    expected = fl.mse(y.astype(float), p.astype(float), reduction="sum", backend="numpy")
    np.testing.assert_allclose(fl.mse(y, p, reduction="sum", backend="cuda"), expected,
                               rtol=1e-6)


@pytest.mark.parametrize("alias", ["sample_weight", "y_pred", "y_pred shifted"])
def test_device_out_overlapping_an_input_gives_the_same_gradient(alias, rng):
    y, p = sample("binary_cross_entropy_with_logits", N, rng, np.float32)
    w = weights(N, rng, np.float32)
    loss = fl.get("binary_cross_entropy_with_logits")
    expected = loss.grad(y, p, sample_weight=w, backend="numpy")
    room = cuda.to_device(np.concatenate([p, p[:1]]))
    dp, dw = cuda.to_device(p), cuda.to_device(w)
    out = {"sample_weight": dw, "y_pred": dp, "y_pred shifted": room[1:]}[alias]
    if alias == "y_pred shifted":
        dp = room[:N]
    got = loss.grad(cuda.to_device(y), dp, sample_weight=dw, out=out, backend="cuda")
    assert got is out
    assert_close(_host(got), expected, np.float32)


def test_grad_hess_refuses_one_device_buffer_for_both(rng):
    y, p = sample("mse", N, rng, np.float32)
    g = cuda.device_array(N, np.float32)
    with pytest.raises(ValueError, match="overlap"):
        fl.get("mse").grad_hess(cuda.to_device(y), cuda.to_device(p), out=(g, g))
    room = cuda.device_array(N + 1, np.float32)                 # overlapping by N - 1
    with pytest.raises(ValueError, match="overlap"):
        fl.get("mse").grad_hess(cuda.to_device(y), cuda.to_device(p), out=(room[:N], room[1:]))


@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if s.float32_value
                                        and not s.custom))
def test_a_gradient_written_over_y_pred_survives_the_float64_second_pass(name, rng):
    """value_and_grad of float32 device arrays runs the float32 kernel; where its sum is not
    finite (a NaN here) the float64 kernel runs again, and must not read the gradient the
    first wrote over y_pred (out=y_pred)."""
    y, p = sample(name, N, rng, np.float32)
    p[N // 2] = np.nan
    loss = fl.get(name)
    dy = cuda.to_device(y)
    expected_value, expected_grad = loss.value_and_grad(dy, cuda.to_device(p), reduction="sum")
    dp = cuda.to_device(p)
    value, grad = loss.value_and_grad(dy, dp, reduction="sum", out=dp)
    assert grad is dp and np.isnan(value) and np.isnan(expected_value)
    np.testing.assert_array_equal(dp.copy_to_host(), _host(expected_grad))
    finite = np.delete(np.arange(N), N // 2)
    assert_close(dp.copy_to_host()[finite],
                 loss.grad(y, p, reduction="sum", backend="numpy")[finite], np.float32)
