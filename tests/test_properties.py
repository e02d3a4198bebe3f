"""Property-based tests: random shapes, dtypes, strides and extreme values, CPU kernels vs reference."""
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastloss as fl
from fastloss.specs import REGISTRY

from .helpers import assert_close

# derandomize: CI runs the same examples every time (a failure is reproducible,
# never a flake); locally, HYPOTHESIS_RANDOM=1 explores new ones.
SETTINGS = settings(max_examples=60, deadline=None,
                    derandomize=not os.environ.get("HYPOTHESIS_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _values(domain, dtype):
    width = 32 if dtype == np.float32 else 64
    if domain == "binary":
        return st.sampled_from([0.0, 1.0])
    if domain == "signed_binary":
        return st.sampled_from([-1.0, 0.0, 1.0])
    if domain == "unit":
        return st.floats(0.0, 1.0, width=width)
    if domain == "nonneg":
        return st.floats(0.0, 1e6, width=width)
    return st.floats(-1e4, 1e4, width=width, allow_subnormal=True)


@st.composite
def problems(draw):
    name = draw(st.sampled_from(sorted(REGISTRY)))
    spec = REGISTRY[name]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9))
    y = draw(hnp.arrays(dtype, shape, elements=_values(spec.y_domain, dtype)))
    p_domain = spec.p_domain if name != "poisson_nll" else "poisson_rate"
    p_elems = (st.floats(-50, 50, width=32 if dtype == np.float32 else 64)
               if p_domain == "poisson_rate" else _values(p_domain, dtype))
    p = draw(hnp.arrays(dtype, shape, elements=p_elems))
    step = draw(st.sampled_from([1, 2]))
    if step == 2 and shape:
        # a strided view of a larger array
        y = np.repeat(y, 2, axis=-1)[..., ::2]
        p = np.repeat(p, 2, axis=-1)[..., ::2]
    weighted = draw(st.booleans())
    w = (draw(hnp.arrays(np.float64, shape[:1], elements=st.floats(0.0, 10.0)))
         if weighted else None)
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    return name, y, p, w, reduction


@SETTINGS
@given(problems())
def test_cpu_matches_reference_on_random_problems(problem):
    name, y, p, w, reduction = problem
    loss = fl.get(name)
    yr, pr = y.astype(np.float64), p.astype(np.float64)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value, grad = loss.value_and_grad(y, p, sample_weight=w, reduction=reduction, backend="cpu")
            expected, expected_grad = loss.value_and_grad(yr, pr, sample_weight=w,
                                                          reduction=reduction, backend="numpy")
    assert grad.shape == p.shape and grad.dtype == p.dtype
    if reduction == "none":
        assert value.shape == p.shape
        assert_close(value, expected, p.dtype)
    else:
        rtol = 1e-10 if p.dtype == np.float64 else 1e-5
        np.testing.assert_allclose(value, expected, rtol=rtol, atol=1e-300)
    assert_close(grad, expected_grad, p.dtype)
    assert not (np.isnan(grad) & ~np.isnan(expected_grad)).any()


@SETTINGS
@given(name=st.sampled_from(sorted(REGISTRY)),
       n=st.integers(0, 3 * 4096 + 5),
       seed=st.integers(0, 2**32 - 1))
def test_fused_equals_separate(name, n, seed):
    from .conftest import sample
    y, p = sample(name, n, np.random.default_rng(seed))
    loss = fl.get(name)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value, grad = loss.value_and_grad(y, p)
        np.testing.assert_allclose(value, loss(y, p), rtol=1e-13)
    np.testing.assert_array_equal(grad, loss.grad(y, p))


@st.composite
def softmax_problems(draw):
    # up to 600 rows: several of the few-classes kernel's blocks of 256; C up to 16 takes
    # that kernel, above it the row kernels
    N = draw(st.sampled_from([0, 1, 2, 6, 255, 257, 600]))
    C = draw(st.one_of(st.integers(1, 16), st.integers(17, 300)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = draw(hnp.arrays(dtype, (N, C), elements=st.floats(-1e4, 1e4, width=32)))
    if draw(st.booleans()):
        y = draw(hnp.arrays(np.int64, (N,), elements=st.integers(0, C - 1)))
    else:
        seed = draw(st.integers(0, 2**32 - 1))
        y = np.random.default_rng(seed).dirichlet(np.ones(C) * 0.5, N).astype(dtype)
    smoothing = draw(st.sampled_from([0.0, 0.1]))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    return x, y, smoothing, reduction


@SETTINGS
@given(softmax_problems())
def test_cross_entropy_matches_reference_on_random_shapes(problem):
    x, labels, smoothing, reduction = problem
    loss = fl.get("cross_entropy", label_smoothing=smoothing)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # mean of N = 0
        value, grad = loss.value_and_grad(labels, x, reduction=reduction)
        expected, expected_grad = loss.value_and_grad(labels, x.astype(np.float64),
                                                      reduction=reduction, backend="numpy")
    g, h = loss.grad_hess(labels, x)
    expected_g, expected_h = loss.grad_hess(labels, x.astype(np.float64), backend="numpy")
    assert grad.shape == x.shape and grad.dtype == x.dtype
    assert np.isfinite(grad).all()
    rtol = 1e-11 if x.dtype == np.float64 else 2e-6
    np.testing.assert_allclose(value, expected, rtol=rtol, atol=1e-300)
    # p (1 - p) near p = 1 takes 1 - p's cancellation, in the reference too: an absolute
    # error of float64's rounding of p (1e-16), on its own the size of a confident row's
    # Hessian (3e-11 at a margin of 27), is float64-accurate
    for got, want in ((g, expected_g), (h, expected_h)):
        np.testing.assert_allclose(got, want, rtol=rtol,
                                   atol=max(1e-14, rtol * (np.abs(want).max() if want.size else 0)))
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol,
                               atol=rtol * (np.abs(expected_grad).max() if grad.size else 0))
