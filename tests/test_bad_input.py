"""Bad input gets a clear error naming the argument; odd but valid input gets the right answer."""
import warnings

import numpy as np
import pytest

import fastloss as fl
from fastloss import examples
from fastloss.backends import cpu

from .conftest import builtin_loss_case, loss_case, sample, weights
from .helpers import ROW_LOSS_TARGETS, ROW_OUT_ALIASES, assert_close, row_out_overlap


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
class TestErrors:
    def test_shape_mismatch(self, backend):
        with pytest.raises(ValueError, match="y_true and y_pred must have the same shape"):
            fl.mse(np.zeros(3), np.zeros(4), backend=backend)

    def test_sample_weight_shape(self, backend):
        with pytest.raises(ValueError, match="sample_weight"):
            fl.mse(np.zeros(3), np.zeros(3), sample_weight=np.ones(4), backend=backend)
        with pytest.raises(ValueError, match="sample_weight"):
            fl.mse(np.zeros((3, 2)), np.zeros((3, 2)), sample_weight=np.ones(6), backend=backend)

    def test_negative_weights(self, backend):
        with pytest.raises(ValueError, match="sample_weight must be >= 0"):
            fl.mse(np.zeros(3), np.zeros(3), sample_weight=[1.0, -1.0, 1.0], backend=backend)

    @pytest.mark.parametrize("bad", [np.array([1 + 2j, 0]), np.array(["a", "b"]),
                                     np.array([object(), object()], dtype=object)])
    def test_non_real_dtypes(self, backend, bad):
        with pytest.raises(TypeError, match="y_pred"):
            fl.mse(np.zeros(2), bad, backend=backend)
        with pytest.raises(TypeError, match="y_true"):
            fl.mse(bad, np.zeros(2), backend=backend)
        with pytest.raises(TypeError, match="sample_weight"):
            fl.mse(np.zeros(2), np.zeros(2), sample_weight=bad, backend=backend)

    def test_ragged_list(self, backend):
        with pytest.raises(ValueError, match="y_pred"):
            fl.mse([1.0, 2.0], [[1.0], [2.0, 3.0]], backend=backend)

    def test_unknown_reduction(self, backend):
        with pytest.raises(ValueError, match="reduction"):
            fl.mse([1.0], [2.0], reduction="avg", backend=backend)
        with pytest.raises(ValueError, match="reduction"):
            fl.get("mse").grad([1.0], [2.0], reduction="batchmean", backend=backend)

    @pytest.mark.parametrize("labels", [[2.0, 1.0], [0.5, 1.0], [-2.0, 1.0]])
    def test_invalid_margin_labels(self, backend, labels):
        with pytest.raises(ValueError, match=r"y_true must be in \{-1, \+1\}.*index 0"):
            fl.hinge(labels, [0.3, 0.2], backend=backend)
        with pytest.raises(ValueError, match="y_true"):
            fl.get("squared_hinge").grad(labels, [0.3, 0.2], backend=backend)

    def test_invalid_focal_labels(self, backend):
        with pytest.raises(ValueError, match=r"y_true must be in \{0, 1\}.*index 1"):
            fl.sigmoid_focal([1.0, 0.5, 0.0], [0.3, 0.2, 0.1], backend=backend)

    def test_probabilities_out_of_range(self, backend):
        with pytest.raises(ValueError, match=r"y_pred must be in \[0, 1\].*index 2"):
            fl.binary_cross_entropy([1.0, 0.0, 1.0], [0.5, 0.5, 1.5], backend=backend)
        with pytest.raises(ValueError, match=r"y_true must be in \[0, 1\]"):
            fl.get("binary_cross_entropy_with_logits").value_and_grad([2.0], [0.5], backend=backend)

    def test_first_bad_index_in_2d(self, backend):
        y = np.ones((3, 4))
        y[2, 1] = 5.0
        with pytest.raises(ValueError, match=r"index \(2, 1\)"):
            fl.hinge(y, np.zeros((3, 4)), backend=backend)

    def test_negative_counts(self, backend):
        with pytest.raises(ValueError, match="y_true must be >= 0"):
            fl.poisson_nll([-1.0, 2.0], [0.0, 0.0], backend=backend)

    def test_out_buffer_checks(self, backend):
        loss = fl.get("mse")
        y, p = np.zeros(4), np.ones(4)
        with pytest.raises(ValueError, match="out must have shape"):
            loss.grad(y, p, out=np.empty(5), backend=backend)
        with pytest.raises(ValueError, match="out must have dtype"):
            loss.grad(y, p, out=np.empty(4, np.float32), backend=backend)
        readonly = np.empty(4)
        readonly.flags.writeable = False
        with pytest.raises(ValueError, match="writeable"):
            loss.value_and_grad(y, p, out=readonly, backend=backend)
        with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
            loss.grad(y, p, out=[0.0] * 4, backend=backend)
        with pytest.raises(TypeError, match="pair"):
            loss.grad_hess(y, p, out=np.empty(4), backend=backend)
        with pytest.raises(ValueError, match=r"out\[1\] must have shape"):
            loss.grad_hess(y, p, out=(np.empty(4), np.empty(3)), backend=backend)


@pytest.mark.parametrize("name,params,message", [
    ("huber", {"delta": 0.0}, "'delta' must be a finite number > 0"),
    ("huber", {"delta": -1.0}, "'delta'"),
    ("huber", {"delta": float("nan")}, "'delta'"),
    ("smooth_l1", {"beta": -0.5}, "'beta'"),
    ("pinball", {"quantile": 1.0}, r"'quantile' must be in \(0, 1\)"),
    ("pinball", {"quantile": 0.0}, "'quantile'"),
    ("binary_cross_entropy_with_logits", {"pos_weight": -1.0}, "'pos_weight'"),
    ("sigmoid_focal", {"gamma": -1.0}, "'gamma'"),
    ("sigmoid_focal", {"alpha": 1.5}, "'alpha'"),
])
def test_invalid_parameters(name, params, message):
    with pytest.raises(ValueError, match=message):
        fl.get(name, **params)
    with pytest.raises(ValueError, match=message):
        getattr(fl, name)([0.0], [0.5], **params)


def test_parameter_type_and_name_errors():
    with pytest.raises(TypeError, match="unexpected parameter.*delt"):
        fl.get("huber", delt=1.0)
    with pytest.raises(TypeError, match="'delta' must be a real number"):
        fl.get("huber", delta="1")
    with pytest.raises(TypeError, match="unexpected parameter"):
        fl.mse([0.0], [1.0], delta=2.0)
    with pytest.raises(ValueError, match="unknown loss 'msee'"):
        fl.get("msee")
    with pytest.raises(TypeError):
        fl.get(None)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        fl.mse([0.0], [1.0], backend="gpu")
    with pytest.raises(ValueError, match="unknown backend"):
        fl.set_backend("tpu")
    with pytest.raises(TypeError, match="backend must be a string"):
        fl.mse([0.0], [1.0], backend=3)


def test_cuda_backend_is_a_clear_error_not_a_crash():
    """This process has no GPU and no simulator (the CUDA tests run apart): the error and
    fl.backend_info() name what is missing."""
    import importlib.util
    missing = ("numba-cuda package, which is not installed"
               if importlib.util.find_spec("numba_cuda") is None else "no CUDA GPU or driver")
    state = fl.backend_info()["cuda"]
    if state.startswith("available"):
        pytest.skip(f"this machine has a GPU: {state}")
    assert missing in state and "cuda" not in fl.available_backends()
    for call in (lambda: fl.mse([0.0], [1.0], backend="cuda"),
                 lambda: fl.get("huber").grad([0.0], [1.0], backend="cuda"),
                 lambda: fl.cross_entropy([0], [[1.0, 2.0]], backend="cuda"),
                 lambda: fl.linear_cross_entropy([0], [[1.0]], [[1.0], [2.0]], backend="cuda")):
        with pytest.raises(fl.backends.cuda.CudaUnavailable, match=missing):
            call()


@loss_case
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_empty_inputs(name, params, backend):
    loss = fl.get(name, **params)
    empty = np.zeros(0)
    assert loss(empty, empty, reduction="sum", backend=backend) == 0.0
    with pytest.warns(RuntimeWarning, match="empty"):
        assert np.isnan(loss(empty, empty, backend=backend))
    assert loss(empty, empty, reduction="none", backend=backend).shape == (0,)
    assert loss.grad(empty, empty, backend=backend).shape == (0,)
    g, h = loss.grad_hess(empty, empty, backend=backend)
    assert g.shape == h.shape == (0,)


def test_zero_weight_sum_is_nan_with_a_warning():
    with pytest.warns(RuntimeWarning, match="sums to 0"):
        assert np.isnan(fl.mse([1.0, 2.0], [0.0, 0.0], sample_weight=[0.0, 0.0]))
    assert fl.mse([1.0, 2.0], [0.0, 0.0], sample_weight=[0.0, 0.0], reduction="sum") == 0.0


@loss_case
def test_odd_layouts_give_the_same_answer(name, params, rng):
    y, p = sample(name, 0, rng, shape=(40, 6))
    w = weights(40, rng)
    loss = fl.get(name, **params)
    expected = loss.value_and_grad(y, p, sample_weight=w, reduction="sum")

    fortran = (np.asfortranarray(y), np.asfortranarray(p))
    strided = (np.repeat(y, 2, axis=1)[:, ::2], np.repeat(p, 2, axis=1)[:, ::2])
    swapped = (y.astype(y.dtype.newbyteorder()), p.astype(p.dtype.newbyteorder()))
    readonly = (y.copy(), p.copy())
    for a in readonly:
        a.flags.writeable = False
    for yy, pp in (fortran, strided, swapped, readonly):
        assert not np.shares_memory(yy, y)
        value, grad = loss.value_and_grad(yy, pp, sample_weight=w, reduction="sum")
        np.testing.assert_allclose(value, expected[0], rtol=1e-14)
        np.testing.assert_array_equal(grad, expected[1])
        assert grad.dtype.isnative


def test_lists_scalars_and_integer_inputs():
    assert fl.mse([1, 2, 3], [1.5, 2, 2]) == pytest.approx((0.25 + 0 + 1) / 3, rel=1e-15)
    assert fl.mse(1.0, 3.0) == 4.0
    assert fl.mse(1.0, 3.0, reduction="none").shape == ()
    g = fl.get("mse").grad(np.array([1, 2]), np.array([3, 3]))
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [2.0, 1.0])
    assert fl.hinge(np.array([True, False]), np.array([0.5, 0.5])) == pytest.approx((0.5 + 1.5) / 2)


def test_tensors_that_require_grad_are_refused_with_the_way_to_gradients():
    """np.asarray raised PyTorch's RuntimeError, naming no argument; a detached tensor reads."""
    torch = pytest.importorskip("torch")
    y, p = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0.5, 1.5, 1.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"y_pred is a tensor that requires grad.*detach"):
        fl.mse(y, p)
    with pytest.raises(TypeError, match="logits is a tensor that requires grad"):
        fl.cross_entropy(torch.tensor([0, 1]), torch.zeros((2, 3), requires_grad=True))
    assert fl.mse(y, p.detach()) == fl.mse(y.numpy(), p.detach().numpy())


def test_masked_arrays_are_refused_and_other_subclasses_read_as_arrays(tmp_path):
    """A masked array reached the kernels as a subclass Numba does not take (a NumbaTypeError
    naming no argument); reading it as a plain array would ignore its mask."""
    y, p = np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.5, 1.0])
    with pytest.raises(TypeError, match="y_true is a masked array"):
        fl.mse(np.ma.masked_array(y, mask=[0, 1, 0]), p)
    with pytest.raises(TypeError, match="logits is a masked array"):
        fl.cross_entropy([0, 1], np.ma.masked_array(np.zeros((2, 3))))
    mapped = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=p.dtype, shape=p.shape)
    mapped[:] = p
    assert fl.mse(y, mapped) == fl.mse(y, p)
    class Tagged(np.ndarray):
        pass
    assert fl.mse(y.view(Tagged), p.view(Tagged)) == fl.mse(y, p)


@pytest.mark.parametrize("dtype,expected", [(np.float16, np.float16), (np.float32, np.float32),
                                            (np.float64, np.float64), (np.int32, np.float64),
                                            (np.bool_, np.float64)])
def test_output_dtype_follows_y_pred(dtype, expected):
    y = np.array([0, 1, 1], dtype=np.float32)
    p = np.array([0, 1, 0], dtype=dtype)
    loss = fl.get("mse")
    assert loss(y, p, reduction="none").dtype == expected
    assert loss.grad(y, p).dtype == expected
    assert all(a.dtype == expected for a in loss.grad_hess(y, p))
    assert isinstance(loss(y, p), float)


@pytest.mark.parametrize("name", ["cross_entropy", "nll", "multi_margin", "softmax_focal"])
@pytest.mark.parametrize("dtype,expected", [(np.float16, np.float16), (np.float32, np.float32),
                                            (np.int32, np.float64)])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_row_losses_arrays_follow_the_scores_dtype(name, dtype, expected, backend):
    x = np.array([[-1.0, 0.0, 2.0], [0.0, -3.0, 1.0]]).astype(dtype)
    labels = np.array([2, 0])
    loss = fl.get(name)
    value, grad = loss.value_and_grad(labels, x, reduction="none", backend=backend)
    assert value.dtype == grad.dtype == expected
    assert loss.grad(labels, x, backend=backend).dtype == expected
    assert all(a.dtype == expected for a in loss.grad_hess(labels, x, backend=backend))
    other = "numpy" if backend == "cpu" else "cpu"
    rtol = {np.float16: 2.0 ** -10, np.float32: 1e-6, np.float64: 1e-12}[expected]
    np.testing.assert_allclose(grad, loss.grad(labels, x, reduction="none", backend=other),
                               rtol=rtol, atol=rtol)


def test_out_buffers_are_filled_and_returned(rng):
    y, p = sample("huber", 1000, rng, np.float32)
    loss = fl.get("huber")
    out = np.empty_like(p)
    value, g = loss.value_and_grad(y, p, out=out)
    assert g is out
    np.testing.assert_array_equal(out, loss.grad(y, p))
    gout, hout = np.empty_like(p), np.empty_like(p)
    g2, h2 = loss.grad_hess(y, p, out=(gout, hout))
    assert g2 is gout and h2 is hout
    # a non-contiguous out is accepted too
    wide = np.zeros((1000, 2), np.float32)
    res = loss.grad(y, p, out=wide[:, 1])
    assert res.base is wide or res is wide[:, 1] or np.shares_memory(res, wide)
    np.testing.assert_array_equal(wide[:, 1], loss.grad(y, p))
    np.testing.assert_array_equal(wide[:, 0], 0)


@loss_case
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("n", [1000, None], ids=["serial", "parallel"])
@pytest.mark.parametrize("alias", ["y_pred", "y_true"])
def test_gradients_written_over_an_input_are_those_written_elsewhere(name, params, dtype, n,
                                                                      alias, rng):
    """out= y_pred (or y_true) itself: each element's inputs are read before its outputs are
    stored.  The float64 kernels checked the inputs' domain after the store, on the
    gradient: binary_cross_entropy's value_and_grad(y, p, out=p) raised a ValueError
    for valid probabilities (only mse, whose domain is every real, was tested)."""
    n = n or cpu.parallel_min_size(name) + 5
    y, p = sample(name, n, rng, dtype)
    loss = fl.get(name, **params)
    expected_value, expected_grad = loss.value_and_grad(y, p)
    expected_g, expected_h = loss.grad_hess(y, p)

    def inputs():
        yc, pc = y.copy(), p.copy()
        return yc, pc, (pc if alias == "y_pred" else yc)

    yc, pc, target = inputs()
    value, grad = loss.value_and_grad(yc, pc, out=target)
    assert grad is target
    # the same maths, but maybe not the same instructions: where out may alias an input,
    # LLVM's vectorized loop falls back to its scalar copy (another order of the sum; a
    # custom loss's gradient a float64 ulp off)
    np.testing.assert_allclose(value, expected_value, rtol=1e-13)
    same = dict(rtol=1e-14, atol=0)
    np.testing.assert_allclose(grad, expected_grad, **same)
    yc, pc, target = inputs()
    assert loss.grad(yc, pc, out=target) is target
    np.testing.assert_allclose(target, expected_grad, **same)
    yc, pc, target = inputs()
    other = yc if alias == "y_pred" else pc
    g, h = loss.grad_hess(yc, pc, out=(target, other))
    assert g is target and h is other
    np.testing.assert_allclose(g, expected_g, **same)
    np.testing.assert_allclose(h, expected_h, **same)


@loss_case
def test_nan_propagates(name, params, rng):
    y, p = sample(name, 10, rng)
    p[3] = np.nan
    y[6] = np.nan
    loss = fl.get(name, **params)
    values = loss(y, p, reduction="none")
    g, h = loss.grad_hess(y, p)
    for arr in (values, g, h):
        assert np.isnan(arr[3]) and np.isnan(arr[6])
        assert np.isfinite(np.delete(arr, [3, 6])).all()
    assert np.isnan(loss(y, p))


@builtin_loss_case
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_inputs_at_the_ends_of_the_range_give_no_nan(name, params, backend, dtype):
    """Targets and predictions of opposite signs at the largest magnitudes the dtype holds,
    where p - y overflows to inf: values and derivatives may be inf, never NaN.  The
    derivatives that are constant in pieces propagated NaN as 0 (p - y), which was NaN
    there (pinball's gradient, the Hessians of mse, mae, huber, smooth_l1 and pinball)."""
    spec = fl.REGISTRY[name]
    big = float(np.finfo(dtype).max)
    if spec.p_domain != "real":
        pytest.skip("predictions confined to an interval")
    if spec.y_domain in ("real", "nonneg") and not spec.difference:
        # kl_div (NaN for y < 0 by definition, as PyTorch's) and poisson_nll: with both
        # y and p near the largest float, their terms y log y and y p, e^p and y p,
        # overflow apart, to inf - inf (a limitation the README names)
        pytest.skip("terms that overflow apart where y and p are both huge")
    y_values = {"real": [big, -big, 0.0], "nonneg": [big, 0.0], "unit": [0.0, 1.0],
                "binary": [0.0, 1.0], "signed_binary": [-1.0, 1.0]}[spec.y_domain]
    y = np.repeat(np.array(y_values, dtype), 3)
    p = np.tile(np.array([big, -big, 0.0], dtype), len(y_values))
    loss = fl.get(name, **params)
    with np.errstate(over="ignore"):
        arrays = {"value": loss(y, p, reduction="none", backend=backend),
                  "grad": loss.grad(y, p, reduction="none", backend=backend)}
        arrays["grad_hess grad"], arrays["hess"] = loss.grad_hess(y, p, backend=backend)
    for what, arr in arrays.items():
        assert not np.isnan(arr).any(), (what, y[np.isnan(arr)], p[np.isnan(arr)])


LOGIT_LOSSES = ["binary_cross_entropy_with_logits", "sigmoid_focal", "hinge", "squared_hinge",
                "log_cosh", "huber", "smooth_l1", "mae", "pinball"]


@pytest.mark.parametrize("name", LOGIT_LOSSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_predictions_stay_finite(name, dtype):
    x = np.array([-1e4, -800, -100, -40, -1e-30, 0.0, 1e-30, 40, 100, 800, 1e4], dtype=dtype)
    spec = fl.REGISTRY[name]
    labels = {"binary": [0.0, 1.0], "signed_binary": [-1.0, 1.0], "unit": [0.0, 0.3, 1.0]}.get(
        spec.y_domain, [0.0, 5.0])
    loss = fl.get(name)
    for label in labels:
        y = np.full_like(x, label)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = loss(y, x, reduction="none")
            g, h = loss.grad_hess(y, x)
        for arr in (values, g, h):
            assert np.isfinite(arr).all(), (label, arr)
        expected = loss(y.astype(float), x.astype(float), reduction="none", backend="numpy")
        # float32 values are computed in float32, and results below its smallest
        # normal number (1.2e-38, e.g. log(1 + e^-100)) may come out as 0
        np.testing.assert_allclose(values, expected.astype(dtype),
                                   rtol=2e-6 if dtype == np.float32 else 1e-12,
                                   atol=np.finfo(np.float32).tiny if dtype == np.float32 else 0)


def test_binary_cross_entropy_clamps_log_terms_at_minus_100():
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(fl.binary_cross_entropy(y, p, reduction="none"), [100, 100, 0, 0])
    g, h = fl.get("binary_cross_entropy").grad_hess(y, p)
    assert np.isfinite(g).all() and np.isfinite(h).all()


def test_gpu_check_without_a_gpu_is_one_line_and_exit_2():
    import os
    import subprocess
    import sys
    if fl.backend_info()["cuda"].startswith("available"):
        pytest.skip("this machine has a GPU")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    run = subprocess.run([sys.executable, "-m", "fastloss", "bench", "--gpu"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stdout == "" and len(run.stderr.strip().splitlines()) == 1
    assert "gpu check:" in run.stderr and "--simulate" in run.stderr


@loss_case
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_largest_finite_predictions_give_no_nan(name, params, dtype):
    """Predictions up to the type's largest number: a result may overflow to inf where the
    true one does, but no method of either backend makes a NaN (sigmoid_focal's gradient
    once did: gamma ce overflowed to inf, times p_t = 0)."""
    spec = fl.REGISTRY[name]
    if spec.p_domain != "real":
        pytest.skip("predictions confined to an interval")
    big = np.finfo(dtype).max
    x = np.array([-big, -big / 2, -1e30, -1e4, 0.0, 1e4, 1e30, big / 2, big], dtype=dtype)
    labels = {"binary": [0.0, 1.0], "signed_binary": [-1.0, 1.0],
              "unit": [0.0, 0.3, 1.0], "nonneg": [0.0, 3.0]}.get(examples.domains(name)[0],
                                                                  [-2.0, 0.0, 5.0])
    loss = fl.get(name, **params)
    for backend in ("cpu", "numpy"):
        for label in labels:
            y = np.full_like(x, label)
            with np.errstate(over="ignore"):
                results = [loss(y, x, reduction="none", backend=backend),
                           loss.grad(y, x, reduction="none", backend=backend),
                           *loss.grad_hess(y, x, backend=backend)]
            for what, arr in zip(("value", "grad", "grad_hess grad", "grad_hess hess"), results):
                assert not np.isnan(arr).any(), (backend, label, what, arr)


@loss_case
@pytest.mark.parametrize("method", ["value", "value_and_grad"])
def test_float32_sums_beyond_float32_range_match_the_float64_reference(name, params, method):
    """An element's value may pass float32's range (mse of a difference of 1e20) where the
    float64 sum holds it: the sum is still the float64 reference's."""
    spec = fl.REGISTRY[name]
    if spec.p_domain != "real":
        pytest.skip("predictions confined to an interval")
    rng = np.random.default_rng(7)
    y, x = examples.inputs(name, 3000, rng, dtype=np.float32)
    x[::100] = np.float32(1e20) * np.sign(rng.standard_normal(30)).astype(np.float32)
    x[50] = np.finfo(np.float32).max
    loss = fl.get(name, **params)
    expected = loss(y.astype(float), x.astype(float), reduction="sum", backend="numpy")
    if method == "value":
        total = loss(y, x, reduction="sum", backend="cpu")
    else:
        total, _ = loss.value_and_grad(y, x, reduction="sum", backend="cpu")
    if not np.isfinite(expected):
        pytest.skip("the value overflows float64 too (poisson_nll's e^p)")
    np.testing.assert_allclose(total, expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["mse", "squared_hinge"])
def test_float32_values_whose_pairs_pass_float32_range_are_summed_in_float64(name):
    """Each element's float32 value fits (2.25e38 < 3.4e38) but a pair of them does not:
    the float32 kernels add the halves of each block in pairs, and the sum is still the
    float64 reference's."""
    n = cpu.parallel_min_size(name) + 3
    y = np.ones(n, np.float32)
    x = np.full(n, -1.5e19, np.float32)
    loss = fl.get(name)
    expected = loss(y.astype(float), x.astype(float), backend="numpy")
    assert np.isfinite(expected)
    np.testing.assert_allclose(loss(y, x, backend="cpu"), expected, rtol=1e-6)


# the serial kernels of one loss per template, and one parallel (the same template)
_WEIGHTED_CASES = [(name, 1000) for name in ("mse", "hinge", "binary_cross_entropy", "log_cosh",
                                             "kl_div")] + [("mse", cpu.parallel_min_size("mse") + 5)]


@pytest.mark.parametrize("name,n", _WEIGHTED_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_negative_weights_are_counted_by_the_weighted_value_kernels(name, dtype, n, reduction,
                                                                    rng):
    """A weighted value's kernel sums the weights and counts the negative ones in its own
    pass (cpu.reduce_weighted_value): every negative weight is counted, wherever it lies,
    and the weighted mean divides by the weights' sum."""
    y, p = sample(name, n, rng, dtype=dtype)
    w = weights(n, rng, dtype)
    loss = fl.get(name)
    expected = loss(y, p, sample_weight=w, reduction=reduction, backend="numpy")
    np.testing.assert_allclose(loss(y, p, sample_weight=w, reduction=reduction, backend="cpu"),
                               expected, rtol=1e-6 if dtype == np.float32 else 1e-12)
    w[[3, n // 2, n - 1]] = -w[[3, n // 2, n - 1]] - dtype(0.5)
    with pytest.raises(ValueError, match=r"sample_weight must be >= 0; it has 3 negative"):
        loss(y, p, sample_weight=w, reduction=reduction, backend="cpu")
    w[[3, n // 2, n - 1]] = 0.0
    np.testing.assert_allclose(loss(y, p, sample_weight=w, reduction=reduction, backend="cpu"),
                               loss(y, p, sample_weight=w, reduction=reduction, backend="numpy"),
                               rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name,n", [("mse", 1000), ("binary_cross_entropy_with_logits", 1000),
                                    ("sigmoid_focal", 1000),
                                    ("mse", cpu.parallel_min_size("mse") + 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_grad_hess_kernels_refuse_a_negative_weight_anywhere(name, n, dtype, rng):
    """grad_hess's kernels check the weights themselves (cpu.GRAD_HESS_CHECKS_WEIGHTS):
    one negative weight, first, in the middle or last, is the sample_weight error."""
    y, p = sample(name, n, rng, dtype=dtype)
    w = weights(n, rng, dtype)
    loss = fl.get(name)
    for i in (0, n // 2 + 1, n - 1):
        wb = w.copy()
        wb[i] = -1e-30
        with pytest.raises(ValueError, match=r"sample_weight must be >= 0; it has 1 negative"):
            loss.grad_hess(y, p, sample_weight=wb, backend="cpu")
    w[5] = 0.0
    g, h = loss.grad_hess(y, p, sample_weight=w, backend="cpu")
    expected_g, expected_h = loss.grad_hess(y, p, sample_weight=w, backend="numpy")
    assert_close(g, expected_g, dtype, "grad")
    assert_close(h, expected_h, dtype, "hess")


_OUTSIDE = {"unit": 1.5, "nonneg": -0.5, "binary": 0.5, "signed_binary": 0.5}


@builtin_loss_case
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("method", ["value", "value_and_grad"])
def test_an_input_outside_its_domain_is_found_anywhere_in_a_block(name, params, dtype, method,
                                                                  rng):
    """The kernels' domain checks see every element: in a block's first half and its
    second (which the float32 arithmetic kernels take side by side) and in the odd
    element of a block of odd length."""
    spec = fl.REGISTRY[name]
    n = 2 * cpu.BLOCK + 7
    y, p = sample(name, n, rng, dtype=dtype)
    loss = fl.get(name, **params)
    for which, domain in (("y_true", spec.y_domain), ("y_pred", spec.p_domain)):
        if domain == "real":
            continue
        for i in (5, cpu.BLOCK // 2 + 3, 2 * cpu.BLOCK + 3, n - 1):
            yb, pb = y.copy(), p.copy()
            (yb if which == "y_true" else pb)[i] = _OUTSIDE[domain]
            with pytest.raises(ValueError, match=rf"{which} .*index {i}\b"):
                getattr(loss, "__call__" if method == "value" else method)(yb, pb, backend="cpu")


@builtin_loss_case
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("method", ["grad", "value_and_grad", "grad_hess"])
def test_an_invalid_input_computed_over_in_place_is_reported(name, params, backend, method,
                                                                  rng):
    """out= y_pred (or y_true) with invalid elements: the gradient has replaced that input by
    the time the error is raised, so the message says which input held them without naming
    one.  It named a gradient as the first invalid input (binary_cross_entropy: "3 invalid
    values, the first 1e12" for one p of 1.5), and the NumPy backend refused valid inputs,
    checking its gradients."""
    spec = fl.REGISTRY[name]
    n = 50
    y, p = sample(name, n, rng)
    loss = fl.get(name, **params)
    run = getattr(loss, method)
    for which, domain in (("y_true", spec.y_domain), ("y_pred", spec.p_domain)):
        if domain == "real":
            continue
        yb, pb = y.copy(), p.copy()
        inplace = yb if which == "y_true" else pb
        out = (inplace, np.empty_like(pb)) if method == "grad_hess" else inplace
        if method == "grad_hess" and which == "y_true" and yb.dtype != pb.dtype:
            continue                          # labels of another dtype: no in-place buffer
        if method != "grad_hess" and inplace.dtype != pb.dtype:
            continue
        run(yb, pb, out=out, backend=backend)            # valid inputs: no error
        yb, pb = y.copy(), p.copy()
        inplace = yb if which == "y_true" else pb
        inplace[[3, 40]] = _OUTSIDE[domain]
        out = (inplace, np.empty_like(pb)) if method == "grad_hess" else inplace
        with pytest.raises(ValueError, match=rf"{which} must be .*found invalid value\(s\) in "
                                             rf"{which}, now overwritten by out="):
            run(yb, pb, out=out, backend=backend)
        # with the invalid values in the input that is not computed over, they are named
        yb, pb = y.copy(), p.copy()
        other, other_domain = (pb, spec.p_domain) if which == "y_true" else (yb, spec.y_domain)
        if other_domain != "real":
            other[7] = _OUTSIDE[other_domain]
            out = ((yb if which == "y_true" else pb, np.empty_like(pb)) if method == "grad_hess"
                   else (yb if which == "y_true" else pb))
            with pytest.raises(ValueError, match=r"found 1 invalid value\(s\), the first .* "
                                                 r"at index 7"):
                run(yb, pb, out=out, backend=backend)


@loss_case
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("alias", ["sample_weight", "y_true", "y_pred", "y_pred shifted"])
def test_out_overlapping_an_input_gives_the_same_gradient(name, params, dtype, alias, rng):
    """out= may be any writeable array of the right shape and dtype, an input included: the
    result is what a fresh buffer gets (the float32 transcendental kernels read the weights
    after writing out, so out=sample_weight was squared; an out shifted by one element
    over y_pred was read after being written)."""
    n = cpu.parallel_min_size(name) + 1001
    y, p = sample(name, n, rng, dtype)
    if alias == "y_true" and y.dtype != dtype:
        pytest.skip("labels of another dtype")
    w = weights(n, rng, dtype)
    loss = fl.get(name, **params)
    expected_value, expected = loss.value_and_grad(y, p, sample_weight=w)
    for method in ("grad", "value_and_grad"):
        yy, pp, ww = y.copy(), p.copy(), w.copy()
        if alias == "y_pred shifted":
            room = np.empty(n + 1, dtype)
            room[:n] = p
            pp, out = room[:n], room[1:]
        else:
            out = {"sample_weight": ww, "y_true": yy, "y_pred": pp}[alias]
        if method == "grad":
            got = loss.grad(yy, pp, sample_weight=ww, out=out)
        else:
            value, got = loss.value_and_grad(yy, pp, sample_weight=ww, out=out)
            assert value == expected_value
        assert got is out
        np.testing.assert_array_equal(got, expected)


def test_grad_hess_refuses_one_buffer_for_both():
    g = np.empty(5)
    with pytest.raises(ValueError, match="out"):
        fl.get("mse").grad_hess(np.ones(5), np.zeros(5), out=(g, g))


@pytest.mark.parametrize("alias", ROW_OUT_ALIASES)
@pytest.mark.parametrize("name, target", ROW_LOSS_TARGETS, ids=lambda v: v)
def test_row_loss_out_overlapping_an_input_gives_the_same_gradient(name, target, alias, rng):
    """The row losses' out= may overlap the inputs in any way: the result is what a fresh
    buffer gets (an out one row off the logits was written by one row's kernel while
    another row's read it, a silent wrong answer)."""
    if alias == "targets" and target == "labels":
        pytest.skip("targets are labels")
    N, C = 64, 37
    x = (rng.standard_normal((N, C)) * 3).astype(np.float32)
    y = rng.integers(0, C, N) if target == "labels" else rng.dirichlet(np.ones(C), N).astype(x.dtype)
    w = rng.uniform(0.5, 2.0, N).astype(np.float32)
    loss = fl.get(name)
    expected_value, expected = loss.value_and_grad(y, x, sample_weight=w)
    yy, xx, ww, out = row_out_overlap(alias, x, y, w)
    value, got = loss.value_and_grad(yy, xx, sample_weight=ww, out=out)
    assert got is out
    assert value == expected_value
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", ["cross_entropy", "nll", "softmax_focal", "multi_margin"])
def test_row_loss_grad_hess_in_place_and_one_buffer_for_both(name, rng):
    """grad_hess(out=(logits, h)) computes the Hessian from the logits before the gradient
    overwrites them; one array for both is refused."""
    x = rng.standard_normal((20, 7))
    y = rng.integers(0, 7, 20)
    loss = fl.get(name, **({"p": 2} if name == "multi_margin" else {}))
    eg, eh = loss.grad_hess(y, x)
    xx, h = x.copy(), np.empty_like(x)
    g, h2 = loss.grad_hess(y, xx, out=(xx, h))
    assert g is xx and h2 is h
    np.testing.assert_array_equal(g, eg)
    np.testing.assert_array_equal(h, eh)
    with pytest.raises(ValueError, match="out: the grad and hess buffers overlap"):
        loss.grad_hess(y, x, out=(h, h))


def _methods_on_cpu_and_numpy(loss, y, x):
    """[value ("none"), grad ("none"), grad_hess grad, grad_hess hess] on the cpu and numpy
    backends, warnings about the special values silenced."""
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for backend in ("cpu", "numpy"):
            results[backend] = [loss(y, x, reduction="none", backend=backend),
                                loss.grad(y, x, reduction="none", backend=backend),
                                *loss.grad_hess(y, x, backend=backend)]
    return results["cpu"], results["numpy"]


def _assert_same_specials(cpu_results, numpy_results):
    """The same NaN and inf positions in each of ``_methods_on_cpu_and_numpy``'s results."""
    for what, got, expected in zip(("value", "grad", "grad_hess grad", "grad_hess hess"),
                                   cpu_results, numpy_results):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=what)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(expected), err_msg=what)


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
@builtin_loss_case
def test_nan_and_inf_give_the_same_pattern_on_every_host_backend(name, params, special, rng):
    """Where NaN and infinities land in value, grad and grad_hess is the same on the cpu
    backend as in the NumPy reference (the Hessians of the piecewise losses included).
    Built-in losses only: a custom loss's reference is its author's NumPy code."""
    if np.isinf(special) and fl.REGISTRY[name].p_domain != "real":
        pytest.skip("predictions confined to an interval")
    y, p = sample(name, 12, rng)
    p[3] = special
    if np.isnan(special):
        y[7] = special
    _assert_same_specials(*_methods_on_cpu_and_numpy(fl.get(name, **params), y, p))


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name,params", [("cross_entropy", {}), ("cross_entropy", {"label_smoothing": 0.1}),
                                         ("nll", {}), ("softmax_focal", {"gamma": 0.5}),
                                         ("multi_margin", {}), ("multi_margin", {"p": 2})])
def test_row_losses_nan_and_inf_patterns_match_the_reference(name, params, special, rng):
    x = rng.normal(size=(6, 5))
    labels = np.array([0, 1, 2, 3, 4, 0])
    x[1, 3] = x[2, 2] = x[4, 0] = special      # another class's score, the target's, both
    cpu_results, numpy_results = _methods_on_cpu_and_numpy(fl.get(name, **params), labels, x)
    _assert_same_specials(cpu_results, numpy_results)
    for got, expected in zip(cpu_results, numpy_results):
        finite = np.isfinite(expected)
        np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-12, atol=1e-300)
    assert np.isfinite(cpu_results[0][[0, 3, 5]]).all()


@pytest.mark.parametrize("name", ["cross_entropy", "nll", "softmax_focal", "multi_margin",
                                  "linear_cross_entropy"])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_a_mean_over_no_weight_warns_naming_the_loss(name, backend, rng):
    """Zero sample weights: the mean is NaN with a RuntimeWarning that names the loss used
    (it named cross_entropy for every row loss), raised at the caller's line."""
    x = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    loss = fl.get(name)
    args = (y, x, np.eye(4)) if name == "linear_cross_entropy" else (y, x)
    for method in (loss, loss.value_and_grad):
        with pytest.warns(RuntimeWarning, match=rf"^{name}: the mean is over no weight") as record:
            result = method(*args, sample_weight=np.zeros(6), backend=backend)
        value = result if method is loss else result[0]
        assert np.isnan(value)
        assert record[0].filename == __file__


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_elementwise_mean_warnings_name_the_loss_at_the_callers_line(backend):
    """An empty input or zero total weight under "mean": NaN with a RuntimeWarning that
    names the loss and is attributed to the caller's line on every path (fl.mse went
    through one more frame than Loss.__call__, so a fixed stacklevel pointed inside
    fastloss)."""
    huber = fl.get("huber")
    empty = np.zeros(0)
    y, p, zero_w = np.ones(3), np.zeros(3), np.zeros(3)
    calls = [
        (lambda: fl.huber(empty, empty, backend=backend), "empty"),
        (lambda: huber(empty, empty, backend=backend), "empty"),
        (lambda: huber.value_and_grad(empty, empty, backend=backend)[0], "empty"),
        (lambda: fl.huber(y, p, sample_weight=zero_w, backend=backend), "sums to 0"),
        (lambda: huber(y, p, sample_weight=zero_w, backend=backend), "sums to 0"),
        (lambda: huber.value_and_grad(y, p, sample_weight=zero_w, backend=backend)[0],
         "sums to 0"),
        (lambda: huber.grad(y, p, sample_weight=zero_w, backend=backend)[0], "sums to 0"),
        (lambda: fl.Accumulator("huber").result(), "no data"),
    ]
    for call, what in calls:
        with pytest.warns(RuntimeWarning, match=rf"^huber: .*{what}") as record:
            assert np.isnan(call())
        assert len(record) == 1
        assert record[0].filename == __file__, (what, record[0].filename)
