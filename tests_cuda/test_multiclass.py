"""The row losses on backend="cuda" against the NumPy reference (and the CPU kernels)."""
import warnings

import numpy as np
import pytest
from numba import cuda

import fastloss as fl
from tests.helpers import (ROW_LOSS_TARGETS, ROW_OUT_ALIASES, assert_close, assert_scalar_close,
                           row_out_overlap)

N, C = 5, 37      # 37 columns: three steps of four columns a thread (THREADS = 4 here), one partial


def _host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


def _data(rng, dtype=np.float64):
    x = (rng.standard_normal((N, C)) * 3).astype(dtype)
    labels = rng.integers(0, C, N)
    labels[1] = -100
    probs = rng.dirichlet(np.ones(C), N).astype(dtype)
    return x, labels, probs, rng.uniform(0.2, 2.0, N), rng.uniform(0.5, 2.0, C)


CE_OPTIONS = [
    dict(),
    dict(label_smoothing=0.2, class_weight="cw"),
    dict(z_loss=1e-3, softcap=4.0),
]


@pytest.mark.parametrize("options", CE_OPTIONS, ids=["plain", "smoothed-weighted", "zloss-softcap"])
@pytest.mark.parametrize("target", ["labels", "probs"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_cross_entropy_matches_reference(options, target, dtype, rng):
    x, labels, probs, sw, cw = _data(rng, dtype)
    options = {k: (cw if v == "cw" else v) for k, v in options.items()}
    loss = fl.get("cross_entropy", **options)
    y = labels if target == "labels" else probs
    for reduction, weights in (("mean", sw), ("none", None)):
        value, grad = loss.value_and_grad(y, x, sample_weight=weights, reduction=reduction,
                                          backend="cuda")
        ev, eg = loss.value_and_grad(y, x.astype(np.float64), sample_weight=weights,
                                     reduction=reduction, backend="numpy")
        if reduction == "none":
            assert value.dtype == dtype
            assert_close(value, ev, dtype, "rows")
        else:
            assert_scalar_close(value, ev, dtype, "value")
        assert grad.dtype == dtype
        assert_close(grad, eg, dtype, "grad")


def test_cross_entropy_in_place_on_the_device(rng):
    x, labels, _, sw, cw = _data(rng, np.float32)
    loss = fl.get("cross_entropy", class_weight=cw)
    expected_value, expected_grad = loss.value_and_grad(labels, x, sample_weight=sw,
                                                        backend="numpy")
    dx, dl, dw = cuda.to_device(x), cuda.to_device(labels), cuda.to_device(sw)
    value, grad = loss.value_and_grad(dl, dx, sample_weight=dw, out=dx)      # backend "auto"
    assert grad is dx
    assert_scalar_close(value, expected_value, np.float32)
    assert_close(dx.copy_to_host(), expected_grad, np.float32)
    rows = loss(dl, cuda.to_device(x), reduction="none")
    assert fl.backends.on_device(rows) and rows.dtype == np.float32
    assert_close(_host(rows), loss(labels, x, reduction="none", backend="numpy"), np.float32)
    assert loss.partial(dl, cuda.to_device(x)) == pytest.approx(
        loss.partial(labels, x, backend="cpu"), rel=1e-6)


def test_cross_entropy_grad_hess(rng):
    x, labels, probs, sw, _ = _data(rng)
    loss = fl.get("cross_entropy", label_smoothing=0.1)
    for y in (labels, probs):
        g, h = loss.grad_hess(y, x, sample_weight=sw, backend="cuda")
        eg, eh = loss.grad_hess(y, x, sample_weight=sw, backend="numpy")
        assert_close(g, eg, np.float64, "g")
        assert_close(h, eh, np.float64, "h")


def test_extreme_rows_through_the_four_column_steps():
    """Rows wide enough for the four-columns-a-step pass: a first step all -inf, -inf inside a
    step, a maximum that grows within a step and across steps."""
    x = np.tile(np.array([[1e4, -1e4, 0.0], [5.0, 5.0, 5.0], [-1e4, -1e4, -1e4],
                          [0.0, 700.0, -700.0]]), (1, 13))
    x[0, 5] = x[2, 20] = -np.inf
    x[1, :16] = -np.inf
    x[3, 30] = 750.0
    labels = np.array([1, 20, 2, 30])
    loss = fl.get("cross_entropy")
    value, grad = loss.value_and_grad(labels, x, backend="cuda", reduction="none")
    ev, eg = loss.value_and_grad(labels, x, backend="numpy", reduction="none")
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    assert_close(value, ev, np.float64)
    assert_close(grad, eg, np.float64)
    x[2, 9] = np.nan
    assert np.isnan(fl.cross_entropy(labels, x, reduction="none", backend="cuda")[2])


def test_extreme_and_degenerate_rows(rng):
    x = np.array([[1e4, -1e4, 0.0], [5.0, 5.0, 5.0], [-1e4, -1e4, -1e4], [0.0, 700.0, -700.0]])
    labels = np.array([1, 0, 2, 2])
    loss = fl.get("cross_entropy", label_smoothing=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)   # overflow; not Numba's small-grid note
        value, grad = loss.value_and_grad(labels, x, backend="cuda", reduction="none")
    ev, eg = loss.value_and_grad(labels, x, backend="numpy", reduction="none")
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    assert_close(value, ev, np.float64)
    assert_close(grad, eg, np.float64)
    one_class = fl.cross_entropy(np.zeros(3, np.int64), np.ones((3, 1)), backend="cuda")
    assert one_class == 0.0
    x[3, 1] = np.nan
    assert np.isnan(fl.cross_entropy(labels, x, reduction="none", backend="cuda")[3])
    with pytest.warns(RuntimeWarning):
        assert np.isnan(fl.cross_entropy(np.zeros(0, np.int64), np.zeros((0, 4)), backend="cuda"))


def test_bad_labels_and_weights_are_clear_errors(rng):
    x, labels, _, _, _ = _data(rng)
    labels[3] = C
    with pytest.raises(ValueError, match=rf"cross_entropy: .*\[0, {C}\).*row 3 has {C}"):
        fl.cross_entropy(cuda.to_device(labels), cuda.to_device(x))
    labels[3] = 0
    with pytest.raises(ValueError, match="sample_weight must be >= 0"):
        fl.cross_entropy(labels, x, sample_weight=-np.ones(N), backend="cuda")
    with pytest.raises(ValueError, match="integer class labels"):
        fl.cross_entropy(cuda.to_device(labels[:3]), cuda.to_device(x))
    with pytest.raises(ValueError, match="out must have shape"):
        fl.get("cross_entropy").grad(cuda.to_device(labels), cuda.to_device(x),
                                     out=cuda.device_array((N, C + 1)))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        fl.get("cross_entropy").grad(cuda.to_device(labels), cuda.to_device(x),
                                     out=cuda.device_array((C, N)).T)
    labels[1:3] = [0, -1]
    with pytest.raises(ValueError, match=rf"multi_margin: .*must be in \[0, {C}\); row 2 has -1"):
        fl.multi_margin(labels, x, backend="cuda")
    with pytest.raises(ValueError, match=rf"multi_margin: .*must be in \[0, {C}\); row 2 has -1"):
        fl.multi_margin(labels, x, backend="cpu")


@pytest.mark.parametrize("name,options", [
    ("nll", dict(class_weight="cw")),
    ("multi_margin", dict(p=2, margin=0.5, class_weight="cw")),
    ("multi_margin", dict()),
    ("softmax_focal", dict(gamma=1.5)),
])
def test_label_row_losses_match_reference(name, options, rng):
    x, labels, _, sw, cw = _data(rng)
    options = {k: (cw if v == "cw" else v) for k, v in options.items()}
    if name != "nll":
        labels[1] = 0
    loss = fl.get(name, **options)
    value, grad = loss.value_and_grad(labels, x, sample_weight=sw, backend="cuda")
    ev, eg = loss.value_and_grad(labels, x, sample_weight=sw, backend="numpy")
    assert_scalar_close(value, ev, np.float64)
    assert_close(grad, eg, np.float64)
    rows = loss(cuda.to_device(labels), cuda.to_device(x), reduction="none")
    assert_close(_host(rows), loss(labels, x, reduction="none", backend="numpy"), np.float64)
    if name == "nll":
        g, h = loss.grad_hess(cuda.to_device(labels), cuda.to_device(x))
        assert_close(_host(g), loss.grad(labels, x, reduction="sum", backend="numpy"), np.float64)
        assert not np.any(_host(h))
    else:
        g, h = loss.grad_hess(cuda.to_device(labels), cuda.to_device(x), sample_weight=sw)
        eg, eh = loss.grad_hess(labels, x, sample_weight=sw, backend="numpy")
        assert_close(_host(g), eg, np.float64, "g")
        assert_close(_host(h), eh, np.float64, "h")


@pytest.mark.parametrize("target", ["labels", "probs"])
def test_linear_cross_entropy_matches_cpu(target, rng):
    n, hidden, classes = 9, 4, 7
    h = rng.standard_normal((n, hidden))
    w = rng.standard_normal((classes, hidden))
    b = rng.standard_normal(classes)
    y = rng.integers(0, classes, n) if target == "labels" else rng.dirichlet(np.ones(classes), n)
    sw = rng.uniform(0.5, 2.0, n)
    loss = fl.get("linear_cross_entropy", chunk_size=4, label_smoothing=0.1)
    value, grads = loss.value_and_grad(y, h, w, b, sample_weight=sw, backend="cuda")
    ev, egrads = loss.value_and_grad(y, h, w, b, sample_weight=sw, backend="cpu")
    assert_scalar_close(value, ev, np.float64)
    for got, expected in zip(grads, egrads):
        assert_close(got, expected, np.float64)
    rows = loss(y, h, w, b, reduction="none", backend="cuda")
    assert_close(rows, loss(y, h, w, b, reduction="none", backend="cpu"), np.float64)


def test_host_arrays_with_out_on_the_cuda_backend(rng):
    x, labels, _, sw, _ = _data(rng, np.float32)
    loss = fl.get("cross_entropy", label_smoothing=0.1)
    expected_value, expected_grad = loss.value_and_grad(labels, x, sample_weight=sw,
                                                        backend="numpy")
    out = np.empty_like(x)
    value, grad = loss.value_and_grad(labels, x, sample_weight=sw, out=out, backend="cuda")
    assert grad is out
    assert_scalar_close(value, expected_value, np.float32)
    assert_close(out, expected_grad, np.float32)
    logits = x.copy()
    _, grad = loss.value_and_grad(labels, logits, sample_weight=sw, out=logits, backend="cuda")
    assert grad is logits
    assert_close(logits, expected_grad, np.float32)
    with pytest.raises(ValueError, match="out must have dtype"):
        loss.grad(labels, x, out=np.empty(x.shape), backend="cuda")


@pytest.mark.parametrize("name,params,kind", [
    ("cross_entropy", {}, "labels"), ("cross_entropy", {"label_smoothing": 0.1}, "labels"),
    ("cross_entropy", {"label_smoothing": 0.1}, "probs"), ("softmax_focal", {"gamma": 0.5}, "labels")])
def test_a_large_common_logit_offset_keeps_float64_accuracy(name, params, kind, rng):
    """Logits near 1e8 (ulp 1.5e-8): the row losses are computed from shifted logits, as the
    reference's are (kernels.softmax.row_loss_value)."""
    x, labels, probs, _, _ = _data(rng)
    x = x + 1e8
    labels[1] = 3
    y = labels if kind == "labels" else probs
    loss = fl.get(name, **params)
    np.testing.assert_allclose(_host(loss(y, x, reduction="none", backend="cuda")),
                               loss(y, x, reduction="none", backend="numpy"),
                               rtol=1e-12, atol=4 * np.finfo(np.float64).eps)


@pytest.mark.parametrize("alias", ROW_OUT_ALIASES)
@pytest.mark.parametrize("name, target", ROW_LOSS_TARGETS, ids=lambda v: v)
def test_row_loss_out_overlapping_an_input_gives_the_same_gradient(name, target, alias, rng):
    """As on the CPU (tests/test_bad_input.py): an out= one row off the logits, or over the
    weights or targets, gets what a fresh buffer gets."""
    if alias == "targets" and target == "labels":
        pytest.skip("targets are labels")
    x, labels, probs, sw, _ = _data(rng, np.float32)
    y = labels if target == "labels" else probs
    if name != "cross_entropy":
        y = np.where(labels < 0, 0, labels)
    loss = fl.get(name)
    expected_value, expected = loss.value_and_grad(*map(cuda.to_device, (y, x)),
                                                   sample_weight=cuda.to_device(sw.astype(x.dtype)))
    yy, xx, ww, out = row_out_overlap(alias, x, y, sw.astype(x.dtype), cuda.to_device)
    value, got = loss.value_and_grad(yy, xx, sample_weight=ww, out=out)
    assert got is out
    assert value == expected_value
    np.testing.assert_array_equal(_host(got), _host(expected))


@pytest.mark.parametrize("name", ["cross_entropy", "softmax_focal", "multi_margin"])
def test_row_loss_grad_hess_in_place_and_one_buffer_for_both(name, rng):
    x, labels, _, _, _ = _data(rng)
    labels[1] = 0
    loss = fl.get(name, **({"p": 2} if name == "multi_margin" else {}))
    eg, eh = loss.grad_hess(labels, cuda.to_device(x))
    dx, h = cuda.to_device(x), cuda.device_array(x.shape)
    g, h2 = loss.grad_hess(labels, dx, out=(dx, h))
    assert g is dx and h2 is h
    np.testing.assert_array_equal(_host(g), _host(eg))
    np.testing.assert_array_equal(_host(h), _host(eh))
    with pytest.raises(ValueError, match="out: the grad and hess buffers overlap"):
        loss.grad_hess(labels, dx, out=(h, h))


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_nan_scores_give_nan_rows(p, rng):
    x, labels, _, _, _ = _data(rng)
    labels[1] = 0
    x[2, 3] = np.nan
    x[4, labels[4]] = np.nan
    loss = fl.get("multi_margin", p=p)
    value, grad = loss.value_and_grad(labels, x, reduction="none", backend="cuda")
    g, h = loss.grad_hess(labels, x, backend="cuda")
    ev, eg = loss.value_and_grad(labels, x, reduction="none", backend="numpy")
    _, eh = loss.grad_hess(labels, x, backend="numpy")
    assert np.isnan(_host(value)[[2, 4]]).all() and np.isnan(_host(h)[4]).any()
    for got, expected in ((value, ev), (grad, eg), (g, eg), (h, eh)):
        np.testing.assert_array_equal(np.isnan(_host(got)), np.isnan(expected))
        assert_close(_host(got), expected, np.float64)


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name,params", [("cross_entropy", {"label_smoothing": 0.1}),
                                         ("cross_entropy", {"targets": "probs"}),
                                         ("softmax_focal", {"gamma": 0.5}), ("multi_margin", {"p": 2})])
def test_row_losses_nan_and_inf_patterns_match_the_reference(name, params, special, rng):
    """A special score in another class, in the target's, in both, in the first column: the
    same NaN and inf as the NumPy reference (cross_entropy's rows were shifted by the
    target's logit, or the first column's for probabilities, which gave NaN for inf where
    one of those was -inf)."""
    x = rng.normal(size=(6, 5))
    labels = np.array([0, 1, 2, 3, 4, 0])
    x[1, 3] = x[2, 2] = x[4, 0] = special
    params = dict(params)
    if params.pop("targets", None):
        labels = rng.dirichlet(np.ones(5), 6)
    loss = fl.get(name, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value, grad = loss.value_and_grad(labels, x, reduction="none", backend="cuda")
        g, h = loss.grad_hess(labels, x, backend="cuda")
        ev, eg = loss.value_and_grad(labels, x, reduction="none", backend="numpy")
        eg2, eh = loss.grad_hess(labels, x, backend="numpy")
    for what, got, expected in (("value", value, ev), ("grad", grad, eg), ("hess", h, eh),
                                ("grad_hess grad", g, eg2)):
        got = _host(got)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=what)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(expected), err_msg=what)


def test_a_masked_class_of_zero_target_probability_adds_nothing(rng):
    """As on the cpu: a class of logit -inf and target 0 adds 0 log 0 = 0, not 0 * -inf."""
    x = rng.normal(size=(6, 40)) * 3
    q = rng.dirichlet(np.ones(40), 6)
    x[:, 1] = x[3, 39] = -np.inf
    q[:, 1] = q[3, 39] = 0.0
    loss = fl.get("cross_entropy")
    value, grad = loss.value_and_grad(q, x, reduction="none", backend="cuda")
    ev, eg = loss.value_and_grad(q, x, reduction="none", backend="numpy")
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    assert_close(value, ev, np.float64)
    assert_close(grad, eg, np.float64)
