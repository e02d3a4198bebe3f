"""cross_entropy: against PyTorch, the NumPy reference and finite differences."""
import itertools

import numpy as np
import pytest

import fastloss as fl

torch = pytest.importorskip("torch")
F = torch.nn.functional

OPTIONS = [dict(class_weight=cw, label_smoothing=ls)
           for cw, ls in itertools.product([None, "random"], [0.0, 0.15])]


def _problem(rng, N=50, C=13, dtype=np.float64, scale=4.0):
    x = (rng.normal(size=(N, C)) * scale).astype(dtype)
    labels = rng.integers(0, C, N)
    labels[[1, N // 2]] = -100
    probs = rng.dirichlet(np.ones(C), N).astype(dtype)
    return x, labels, probs


def _options(opts, rng, C):
    opts = dict(opts)
    if opts["class_weight"] == "random":
        opts["class_weight"] = rng.uniform(0.2, 3.0, C)
    return opts


def _torch(x, target, reduction, class_weight=None, label_smoothing=0.0, dtype=torch.float64):
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    tt = torch.tensor(target) if target.dtype.kind == "i" else torch.tensor(target, dtype=dtype)
    w = None if class_weight is None else torch.tensor(class_weight, dtype=dtype)
    loss = F.cross_entropy(xt, tt, weight=w, label_smoothing=label_smoothing, reduction=reduction)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: f"w={o['class_weight']}-ls={o['label_smoothing']}")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("C", [13, 40])          # labels: the few-classes kernel, the row kernel
def test_matches_pytorch(opts, reduction, targets, dtype, backend, C, rng):
    x, labels, probs = _problem(rng, C=C, dtype=dtype)
    opts = _options(opts, rng, x.shape[1])
    y = labels if targets == "labels" else probs
    loss = fl.get("cross_entropy", **opts)
    value, grad = loss.value_and_grad(y, x, reduction=reduction, backend=backend)
    expected, expected_grad = _torch(x.astype(np.float64), y if targets == "labels" else y.astype(np.float64),
                                     reduction, **opts)
    rtol = 1e-11 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(value, expected, rtol=rtol, atol=1e-300)
    assert grad.dtype == dtype and grad.shape == x.shape
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=rtol * np.abs(expected_grad).max())
    assert loss(y, x, reduction=reduction, backend=backend) == pytest.approx(value, rel=1e-14) \
        if reduction != "none" else True


@pytest.mark.parametrize("z_loss,softcap", [(1e-3, None), (0.0, 5.0), (2e-2, 3.0)])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_z_loss_and_softcap_against_reference_and_finite_differences(z_loss, softcap, targets, rng):
    x, labels, probs = _problem(rng, N=20, C=7)
    y = labels if targets == "labels" else probs
    w = rng.uniform(0.5, 2.0, 20)
    loss = fl.get("cross_entropy", z_loss=z_loss, softcap=softcap, label_smoothing=0.1)
    value, grad = loss.value_and_grad(y, x, sample_weight=w)
    ref_value, ref_grad = loss.value_and_grad(y, x, sample_weight=w, backend="numpy")
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-14)
    # central differences of the mean loss
    h = 1e-6
    fd = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (loss(y, xp, sample_weight=w) - loss(y, xm, sample_weight=w)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


def test_z_loss_adds_the_squared_log_sum_exp(rng):
    x, labels, _ = _problem(rng, N=10, C=5)
    labels[:] = np.abs(labels) % 5
    plain = fl.cross_entropy(labels, x, reduction="none")
    with_z = fl.cross_entropy(labels, x, z_loss=0.5, reduction="none")
    lse = np.log(np.exp(x).sum(axis=1))
    np.testing.assert_allclose(with_z - plain, 0.5 * lse ** 2, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_stay_finite(dtype):
    C = 6
    x = np.array([[1e4, -1e4, 0, 0, 0, 0],
                  [-1e4] * C,
                  [3.0] * C,
                  [0, 0, 0, 0, 0, 1e4],
                  [-3e38 if dtype == np.float32 else -1e300, 0, 0, 0, 0, 0]], dtype=dtype)
    labels = np.array([1, 2, 0, 5, 0])
    value, grad = fl.get("cross_entropy").value_and_grad(labels, x, reduction="none")
    expected, expected_grad = _torch(x.astype(np.float64), labels, "none")
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("C", [12, 40])
def test_masked_classes_with_minus_infinity_logits(backend, C, rng):
    """Masking a class with a logit of -inf (as attention masks do) leaves the loss finite
    wherever the label is not masked, and the masked classes get a zero gradient."""
    x = rng.standard_normal((6, C)) * 3
    x[:, 7] = -np.inf
    x[2, :C // 2] = -np.inf
    x[4, 1::2] = -np.inf
    labels = np.array([0, 3, C - 2, C - 1, 2, 11])
    value, grad = fl.get("cross_entropy").value_and_grad(labels, x, reduction="none", backend=backend)
    expected, expected_grad = _torch(x, labels, "none")
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
    assert np.all(grad[np.isinf(x)] == 0.0)


@pytest.mark.parametrize("C", [5, 50])
def test_in_place_gradient_over_the_logits(C, rng):
    x, labels, _ = _problem(rng, N=300, C=C, dtype=np.float32)
    loss = fl.get("cross_entropy", label_smoothing=0.1)
    value, grad = loss.value_and_grad(labels, x)
    x2 = x.copy()
    value2, grad2 = loss.value_and_grad(labels, x2, out=x2)
    assert grad2 is x2
    assert value2 == value
    np.testing.assert_array_equal(grad2, grad)


def test_bad_labels_are_rejected_before_any_indexing():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"row 2 has 3"):
        fl.cross_entropy(np.array([0, 1, 3, -100]), x)
    with pytest.raises(ValueError, match=r"row 0 has -1"):
        fl.cross_entropy(np.array([-1, 1, 2, 0]), x)
    with pytest.raises(ValueError, match=r"row 1 has 9223372036854775808"):   # as given,
        fl.cross_entropy(np.array([0, 2**63, 2, 0], dtype=np.uint64), x)   # not wrapped
    with pytest.raises(ValueError, match="y_true must be integer class labels"):
        fl.cross_entropy(np.array([0.0, 1.0, 2.0, 0.0]), x)
    with pytest.raises(ValueError, match="logits must have shape"):
        fl.cross_entropy(np.array([0]), np.zeros(3))
    with pytest.raises(ValueError, match="class_weight must have shape"):
        fl.cross_entropy(np.array([0, 1, 2, 0]), x, class_weight=np.ones(2))
    with pytest.raises(ValueError, match="label_smoothing"):
        fl.get("cross_entropy", label_smoothing=1.5)
    with pytest.raises(ValueError, match="softcap"):
        fl.get("cross_entropy", softcap=0.0)
    with pytest.raises(ValueError, match="z_loss"):
        fl.get("cross_entropy", z_loss=-1.0)


def test_all_ignored_mean_is_nan_with_a_warning_and_shapes_at_the_edges():
    x = np.zeros((3, 4))
    with pytest.warns(RuntimeWarning, match="no weight"):
        assert np.isnan(fl.cross_entropy(np.full(3, -100), x))
    assert fl.cross_entropy(np.full(3, -100), x, reduction="sum") == 0.0
    # N = 0, C = 1, N = 1
    assert fl.cross_entropy(np.zeros(0, int), np.zeros((0, 4)), reduction="sum") == 0.0
    assert fl.cross_entropy(np.zeros(5, int), np.random.rand(5, 1)) == pytest.approx(0.0, abs=1e-15)
    value, grad = fl.get("cross_entropy").value_and_grad(np.array([2]), np.array([[1.0, 2.0, 3.0]]))
    expected, expected_grad = _torch(np.array([[1.0, 2.0, 3.0]]), np.array([2]), "mean")
    np.testing.assert_allclose(value, expected, rtol=1e-14)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-13)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("C", [3, 40])
def test_mean_over_no_weight_gives_ignored_rows_a_zero_gradient(backend, C, rng):
    """As PyTorch: where the mean's denominator is 0 (zero class weights here), the rows
    that count get NaN gradients and the ignored ones 0."""
    x = rng.normal(size=(4, C))
    labels = np.array([0, -100, 2, -100])
    loss = fl.get("cross_entropy", class_weight=np.zeros(C))
    with pytest.warns(RuntimeWarning, match="no weight"):
        value, grad = loss.value_and_grad(labels, x, backend=backend)
    xt = torch.tensor(x, requires_grad=True)
    F.cross_entropy(xt, torch.tensor(labels), weight=torch.zeros(C, dtype=torch.float64)).backward()
    assert np.isnan(value)
    np.testing.assert_array_equal(grad, xt.grad.numpy())      # NaN rows and zero rows
    assert np.isnan(grad[[0, 2]]).all() and (grad[[1, 3]] == 0).all()


def test_grad_hess_is_the_boosting_convention(rng):
    x, labels, _ = _problem(rng, N=40, C=6)
    labels[:] = np.abs(labels) % 6
    w = rng.uniform(0.5, 2, 6)
    g, h = fl.get("cross_entropy", class_weight=w).grad_hess(labels, x)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(6)[labels]
    np.testing.assert_allclose(g, w[labels][:, None] * (p - onehot), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h, w[labels][:, None] * p * (1 - p), rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="z_loss"):
        fl.get("cross_entropy", z_loss=0.1).grad_hess(labels, x)


@pytest.mark.parametrize("C", [7, 257])
def test_parallel_rows_are_deterministic(C, rng):
    x = rng.normal(size=(3000, C)).astype(np.float32)
    labels = rng.integers(0, C, 3000)
    loss = fl.get("cross_entropy")
    results = []
    for threads in (1, 2):
        fl.set_num_threads(threads)
        results.append(loss.value_and_grad(labels, x))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [1, 255, 256, 257, 511, 512, 1000, 1536])
def test_rows_across_chunks_wherever_the_maximum_lies(dtype, C, rng):
    """The row kernel reads a row in chunks of ``CHUNK`` and takes the next chunk's
    maximum while summing the current one: the maximum in the first, a middle or
    the last (shorter) chunk, or rising through the row, gives the same loss."""
    from fastloss.kernels.softmax import CHUNK
    assert CHUNK == 256                          # the sizes above straddle its multiples
    x = rng.normal(size=(6, C)).astype(dtype)
    for row, at in enumerate([0, C // 2, C - 1, min(C - 1, 300)]):
        x[row, at] += 40.0                       # one dominant class: a tiny loss
    x[4] = np.linspace(-30, 30, C)               # a rising row: a new maximum in every chunk
    labels = np.array([0, C // 2, C - 1, min(C - 1, 300), C - 1, 0])
    z = x.astype(np.float64)
    # log sum_j e^(z_j - max) as log1p of the terms other than the maximum's (which is 1):
    # the dominant rows' losses, about 1e-15, are not lost to the size of lse or of the sum
    shifted = z - z.max(1, keepdims=True)
    top = np.argmax(z, axis=1)
    others = np.array([np.delete(np.exp(shifted[i]), top[i]).sum() for i in range(6)])
    expected = np.log1p(others) - shifted[np.arange(6), labels]
    got = fl.cross_entropy(labels, x, reduction="none")
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    # the kernel's sum of exponentials includes the 1, whose rounding costs an ulp of 1
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=4 * np.finfo(np.float64).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", [0, 255, 256, 700, 999])
def test_a_nan_logit_makes_its_row_nan_in_any_chunk(dtype, where, rng):
    x = rng.normal(size=(3, 1000)).astype(dtype)
    x[0, where] = np.nan
    x[1, where] = -np.nan                        # the sign bit set: orders below -inf
    x[2, where] = np.inf
    loss = fl.cross_entropy(np.array([1, 1, 1]), x, reduction="none")
    assert np.isnan(loss[0]) and np.isnan(loss[1])
    assert np.isnan(loss[2]) or np.isinf(loss[2])
    clean = fl.cross_entropy(np.array([1]), x[:1, np.arange(1000) != where], reduction="none")
    assert np.isfinite(clean).all()


OFFSET_CASES = [("cross_entropy", {}, "labels"), ("cross_entropy", {"label_smoothing": 0.1}, "labels"),
                ("cross_entropy", {"z_loss": 1e-4}, "labels"), ("cross_entropy", {}, "targets"),
                ("cross_entropy", {"label_smoothing": 0.1}, "targets"),
                ("softmax_focal", {"gamma": 0.5}, "labels")]


@pytest.mark.parametrize("C", [10, 300])
@pytest.mark.parametrize("name,params,kind", OFFSET_CASES)
def test_a_large_common_logit_offset_keeps_float64_accuracy(name, params, kind, C, rng):
    """Softmax is unchanged by a common offset, and so must the loss be: logits near 1e8,
    whose ulp (1.5e-8) lse = m + log sum would round the loss to, against the reference
    (from logits less their maximum)."""
    x = 1e8 + rng.normal(size=(40, C)) * 3
    x[::3, 0] += 12.0                                   # confident rows too
    labels = rng.integers(0, C, 40)
    labels[::3] = 0
    y = labels if kind == "labels" else rng.dirichlet(np.ones(C), 40)
    loss = fl.get(name, **params)
    got = loss(y, x, reduction="none", backend="cpu")
    expected = loss(y, x, reduction="none", backend="numpy")
    # (and an ulp or two of 1: the sum of exponentials, which includes a 1, is rounded)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=4 * np.finfo(np.float64).eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("N", [1, 255, 256, 257, 1500])
@pytest.mark.parametrize("C", [1, 2, 5, 16, 17])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_every_block_and_option_against_the_reference(targets, dtype, N, C, rng):
    """Rows of at most ``softmax_few.FEW`` classes go through blocks of ``BLOCK`` rows: the
    last block partial or full, one block or several, ignored rows, class and sample
    weights, smoothing and z_loss give the reference's losses, gradient and Hessian."""
    from fastloss.kernels import softmax_few
    assert softmax_few.FEW == 16 and softmax_few.BLOCK == 256     # the sizes above straddle them
    x = (rng.normal(size=(N, C)) * 3).astype(dtype)
    labels = rng.integers(0, C, N)
    labels[::7] = -100
    if targets == "probabilities":
        labels = rng.dirichlet(np.ones(C), N).astype(dtype)
    w = rng.uniform(0.0, 2.0, N)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    for opts in ({}, dict(class_weight=rng.uniform(0.2, 3.0, C), label_smoothing=0.1),
                 dict(z_loss=1e-2, label_smoothing=0.05)):
        loss = fl.get("cross_entropy", **opts)
        for weights in (None, w):
            value, grad = loss.value_and_grad(labels, x, sample_weight=weights, reduction="none")
            ref_value, ref_grad = loss.value_and_grad(labels, x.astype(np.float64),
                                                      sample_weight=weights, reduction="none",
                                                      backend="numpy")
            np.testing.assert_allclose(value, ref_value, rtol=rtol, atol=1e-15)
            np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=rtol * np.abs(ref_grad).max())
            assert loss(labels, x, sample_weight=weights, reduction="sum") == pytest.approx(
                float(np.sum(ref_value)), rel=rtol)
            if "z_loss" not in opts:
                g, h = loss.grad_hess(labels, x, sample_weight=weights)
                ref_g, ref_h = loss.grad_hess(labels, x.astype(np.float64), sample_weight=weights,
                                              backend="numpy")
                assert g.dtype == h.dtype == dtype
                np.testing.assert_allclose(g, ref_g, rtol=rtol, atol=rtol * np.abs(ref_g).max())
                np.testing.assert_allclose(h, ref_h, rtol=rtol, atol=rtol * np.abs(ref_h).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [3, 12])
def test_special_logits_in_rows_of_few_classes(dtype, C, rng):
    """NaN and +inf make their row NaN (not its neighbours in the block); -inf is a class of
    probability 0; an ignored row is 0 whatever its logits."""
    x = rng.normal(size=(300, C)).astype(dtype)
    labels = rng.integers(0, C, 300)
    x[3, 0] = np.nan
    x[4, C - 1] = np.nan
    x[5, 1] = -np.nan
    x[6, 2] = np.inf
    x[7, :] = -np.inf
    x[8, labels[8]] = -np.inf
    x[9, 0] = np.nan
    labels[9] = -100
    loss = fl.get("cross_entropy")
    value, grad = loss.value_and_grad(labels, x, reduction="none")
    for row in (3, 4, 5, 6, 7):
        assert np.isnan(value[row]) and np.isnan(grad[row]).all()
    assert value[8] == np.inf
    assert value[9] == 0.0 and np.all(grad[9] == 0.0)
    assert np.all(grad[8, labels[8]] == -1.0) and np.isfinite(grad[8]).all()
    g, h = loss.grad_hess(labels, x)
    assert np.all(h[9] == 0.0) and np.all(g[9] == 0.0) and np.isnan(h[3]).all()
    clean = np.ones(300, bool)
    clean[3:10] = False
    expected, expected_grad = _torch(x[clean].astype(np.float64), labels[clean], "none")
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(value[clean], expected, rtol=rtol)
    np.testing.assert_allclose(grad[clean], expected_grad, rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize("C", [4, 30])
@pytest.mark.parametrize("targets", ["labels", "probabilities"])
def test_grad_hess_in_place_over_the_logits(C, targets, rng):
    x, labels, probs = _problem(rng, N=600, C=C, dtype=np.float32)
    y = labels if targets == "labels" else probs
    loss = fl.get("cross_entropy", label_smoothing=0.1)
    g, h = loss.grad_hess(y, x)
    for which in (0, 1):
        x2 = x.copy()
        other = np.empty_like(x)
        out = (x2, other) if which == 0 else (other, x2)
        g2, h2 = loss.grad_hess(y, x2, out=out)
        assert (g2, h2)[which] is x2 and (g2, h2)[1 - which] is other
        np.testing.assert_array_equal(g2, g)
        np.testing.assert_array_equal(h2, h)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("C", [5, 40])
def test_a_masked_class_of_zero_target_probability_adds_nothing(backend, C, rng):
    """Probability targets: a class masked with a logit of -inf and a target of 0 adds
    0 log 0 = 0 (PyTorch's 0 * -inf is NaN); with a positive target the loss is +inf."""
    x = rng.normal(size=(30, C)) * 3
    q = rng.dirichlet(np.ones(C), 30)
    x[:, 1] = -np.inf
    q[:, 1] = 0.0
    x[3, C - 1] = -np.inf
    q[3, C - 1] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    loss = fl.get("cross_entropy")
    value, grad = loss.value_and_grad(q, x, reduction="none", backend=backend)
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -(q * np.where(q > 0, logp, 0.0)).sum(axis=1)
    assert np.isfinite(value).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    np.testing.assert_allclose(grad, np.exp(logp) - q, rtol=1e-12, atol=1e-15)
    q[5, 1] = 0.25
    assert loss(q, x, reduction="none", backend=backend)[5] == np.inf
