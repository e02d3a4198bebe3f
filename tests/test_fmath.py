"""The vectorizable math functions against NumPy over the whole float64 range."""
import numpy as np
import pytest
from numba import njit

from fastloss.kernels import fmath


def _vectorized(f):
    @njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i])
    return apply


CASES = {
    "fexp": (fmath.fexp, np.exp),
    "fexpm1": (fmath.fexpm1, np.expm1),
    "flog": (fmath.flog, np.log),
    "flog1p": (fmath.flog1p, np.log1p),
    "flog1p_unit": (fmath.flog1p_unit, np.log1p),       # its domain: [0, 1]
}

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.0, 0.5, 1e-300, 5e-324,
                     -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 709.78, 709.79,
                     -708.4, -745.13, -745.2, -1e-17, 1e-17, -1 + 1e-16, -1 - 1e-16, 36.0, -36.0])


def _inputs(name, rng):
    if name in ("fexp", "fexpm1"):
        parts = [rng.uniform(-750, 712, 200_000), rng.uniform(-1, 1, 50_000),
                 rng.uniform(-1e-8, 1e-8, 10_000)]
    elif name == "flog":
        parts = [np.exp(rng.uniform(-744, 709, 200_000)), rng.uniform(0.5, 2.0, 50_000),
                 rng.uniform(0, 1e-310, 1000)]
    elif name == "flog1p_unit":
        edge = np.sqrt(2.0) - 1.0
        return np.concatenate([rng.uniform(0, 1, 200_000), np.exp(-rng.uniform(0, 746, 100_000)),
                               edge + rng.uniform(-1e-12, 1e-12, 1000),
                               [0.0, 1.0, edge, np.nextafter(edge, 0), np.nextafter(edge, 1),
                                0.5, np.nextafter(0.5, 0), 5e-324, 2.2250738585072014e-308,
                                np.nan]])
    else:
        parts = [rng.uniform(-1, 1, 100_000), np.exp(rng.uniform(-700, 700, 100_000)),
                 -np.exp(rng.uniform(-700, -1e-9, 20_000))]
    return np.concatenate(parts + [SPECIALS])


@pytest.mark.parametrize("name", sorted(CASES))
def test_within_few_ulp_of_numpy(name):
    f, ref = CASES[name]
    x = _inputs(name, np.random.default_rng(7))
    out = np.empty_like(x)
    _vectorized(f)(x, out)
    with np.errstate(all="ignore"):
        expected = ref(x)
    # special values: same infinities, NaNs and signed zeros... as NumPy
    assert np.array_equal(np.isnan(out), np.isnan(expected))
    nonfinite = ~np.isfinite(expected)
    assert np.array_equal(out[nonfinite], expected[nonfinite], equal_nan=True)
    finite = np.isfinite(expected) & (np.abs(expected) >= 2.2250738585072014e-308)
    ulps = np.abs(out[finite] - expected[finite]) / np.spacing(np.abs(expected[finite]))
    assert ulps.max() <= 3, f"{name}: max error {ulps.max()} ulp at x={x[finite][ulps.argmax()]!r}"
    # subnormal results: within one subnormal step or two
    sub = np.isfinite(expected) & (np.abs(expected) < 2.2250738585072014e-308)
    assert np.all(np.abs(out[sub] - expected[sub]) <= 2 * 5e-324)


def test_sigmoid_pair_sums_to_one_and_is_accurate_in_the_tails():
    @njit
    def apply(x, a, b):
        for i in range(x.shape[0]):
            a[i], b[i] = fmath.sigmoid_pair(x[i])

    x = np.array([-1e4, -800.0, -40.0, -1.0, 0.0, 1.0, 40.0, 800.0, 1e4])
    a, b = np.empty_like(x), np.empty_like(x)
    apply(x, a, b)
    np.testing.assert_allclose(a + b, 1.0, rtol=1e-15)
    with np.errstate(over="ignore"):
        expected_small = np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))
    np.testing.assert_allclose(np.minimum(a, b), expected_small, rtol=1e-14, atol=0)


@njit
def _keys(a):
    out = np.empty(a.shape[0], np.int64)
    back = np.empty_like(a)
    for i in range(a.shape[0]):
        k = fmath.order_key(a[i])
        out[i] = k
        back[i] = fmath.from_order_key(k)
    return out, back


@njit
def _max_of(a):
    k = fmath.order_key(a[0])
    for v in a:
        k = max(k, fmath.order_key(v))
    return fmath.from_order_key(k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_order_keys_order_like_the_floats(dtype):
    rng = np.random.default_rng(0)
    info = np.finfo(dtype)
    span = 0.99 * np.log(info.max)
    a = np.concatenate([rng.standard_normal(1000), -np.exp(rng.uniform(-span, span, 500)),
                        np.exp(rng.uniform(-span, span, 500)),
                        [0.0, -0.0, np.inf, -np.inf, info.max, -info.max, info.tiny, -info.tiny,
                         info.smallest_subnormal, -info.smallest_subnormal]]).astype(dtype)
    keys, back = _keys(a)
    assert np.array_equal(back.view(np.uint8), a.view(np.uint8))       # bit for bit, -0.0 too
    order = np.argsort(keys, kind="stable")
    assert np.all(np.diff(a[order]) >= 0)                                 # sorted as floats
    assert _max_of(a) == a.max() and _max_of(a[:1000]) == a[:1000].max()
    nan = np.array([1.0, np.nan, 3.0], dtype)
    assert np.isnan(_max_of(nan))                     # a NaN with its sign bit clear is the maximum
    assert _max_of(-nan) == -1.0                      # with its sign bit set, the minimum


@njit
def _log_of_positive(x, out):
    for i in range(x.shape[0]):
        out[i] = fmath.log_of_positive(x[i])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_of_positive_matches_log_on_positive_numbers(dtype):
    """The same kernel as ``log`` without its special-value selects: within two ulp for
    every positive number (subnormals too), and finite and positive at +inf."""
    rng = np.random.default_rng(5)
    info = np.finfo(dtype)
    x = np.concatenate([np.exp(rng.uniform(np.log(info.tiny), np.log(info.max), 100_000)),
                        rng.uniform(0.5, 2.0, 10_000), rng.uniform(0, 1, 1000) * info.tiny,
                        [info.smallest_subnormal, info.tiny, info.max, 1.0, 0.5, 2.0,
                         np.sqrt(0.5), np.nextafter(np.sqrt(0.5), 1)]]).astype(dtype)
    x = x[x > 0]
    out = np.empty_like(x)
    _log_of_positive(x, out)
    exact = np.log(x.astype(np.longdouble))
    ulps = np.abs(out - exact) / np.spacing(np.abs(exact.astype(dtype)))
    assert ulps.max() <= 2.0, f"{ulps.max()} ulp at x={x[ulps.argmax()]!r}"
    _log_of_positive(np.array([np.inf], dtype), out[:1])
    assert np.isfinite(out[0]) and out[0] > 700 * (dtype == np.float64) + 80 * (dtype == np.float32)


@njit
def _log_in_float64(x, out):
    for i in range(x.shape[0]):
        out[i] = fmath.log_of_positive_in_float64(x[i])


def test_log_of_float32_in_float64_is_float64_accurate():
    """A float32 argument's log in float64 (kl_div's y log y for float32 data) is as
    accurate as a float64 log: within 1.5 float64 ulp for every
    positive float32 (random bit patterns over all binades, a whole binade around 1,
    the reduction's edge at sqrt(2)/2, subnormals); finite at 0 and +inf."""
    rng = np.random.default_rng(23)
    random_bits = rng.integers(1, 0x7F800000, 2_000_000).astype(np.uint32)
    around_one = np.arange(0x3F000000, 0x3F800000 + (1 << 20), 7, dtype=np.uint32)
    edge = np.arange(0x3F3504F3 - 5000, 0x3F3504F3 + 5000, dtype=np.uint32)
    subnormal = np.arange(1, 1 << 23, 997, dtype=np.uint32)
    x = np.concatenate([random_bits, around_one, edge, subnormal]).view(np.float32)
    out = np.empty(x.shape[0])
    _log_in_float64(x, out)
    exact = np.log(x.astype(np.longdouble))
    ulps = np.abs(out - exact) / np.spacing(np.abs(exact.astype(np.float64)))
    ulps[exact == 0] = np.abs(out[exact == 0]) / 5e-324
    assert ulps.max() <= 1.5, f"{ulps.max()} ulp at x={x[ulps.argmax()]!r}"
    _log_in_float64(np.array([0.0, np.inf], np.float32), out[:2])
    assert np.all(np.isfinite(out[:2])) and out[0] < -100 and out[1] > 80


@njit
def _exp_in_float64(x, out):
    for i in range(x.shape[0]):
        out[i] = fmath.exp_in_float64(x[i])


def test_exp_of_float32_in_float64_is_float64_accurate():
    """A float32 argument's exponential in float64 (poisson_nll's e^p for float32 data):
    within four float64 ulp for every float32 whose e^x is a normal float64 above 1e-307
    (random bit patterns over all binades, a whole binade around 0, the overflow edge);
    +inf past 709.78 and at +inf, NaN at NaN, and 0 below x = -707."""
    rng = np.random.default_rng(31)
    random_bits = rng.integers(0, 1 << 32, 2_000_000, dtype=np.uint64).astype(np.uint32)
    near_zero = np.arange(0x3E800000, 0x3F000000, 3, dtype=np.uint32)   # [1/4, 1/2)
    x = np.concatenate([random_bits.view(np.float32), near_zero.view(np.float32),
                        -near_zero.view(np.float32),
                        np.float32(709.7827) + np.arange(-2000, 2000, dtype=np.float32) * 6e-5,
                        rng.uniform(-707, 709.78, 1_000_000).astype(np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -707.0, 710.0],
                                 np.float32)])
    out = np.empty(x.shape[0])
    _exp_in_float64(x, out)
    with np.errstate(over="ignore", invalid="ignore"):
        exact = np.exp(x.astype(np.longdouble))
    normal = np.isfinite(x) & (exact >= 1e-307) & (exact <= np.finfo(np.float64).max)
    ulps = (np.abs(out[normal] - exact[normal])
            / np.spacing(exact[normal].astype(np.float64)))
    assert ulps.max() <= 4.0, f"{ulps.max()} ulp at x={x[normal][ulps.argmax()]!r}"
    overflows = exact > np.finfo(np.float64).max
    assert np.all(np.isposinf(out[overflows])) and overflows.sum() > 1000
    below = ~np.isnan(x) & (x < -707)
    assert np.all(out[below] == 0) and below.sum() > 1000
    assert out[x == -707][0] == np.exp(np.float64(-707)) and np.all(out[exact > 9e-308] > 0)
    assert np.all(np.isnan(out[np.isnan(x)]))
    _exp_in_float64(np.array([1.5, -700.0, 300.25]), out[:3])          # float64: fexp's
    expected = np.empty(3)
    _vectorized(fmath.fexp)(np.array([1.5, -700.0, 300.25]), expected)
    assert np.array_equal(out[:3], expected)


@njit
def _quotients_by_fma(f, d, out):
    for i in range(f.shape[0]):
        out[i] = fmath.quotient_by_fma(f[i], d[i])


def test_quotient_by_fma_is_within_an_ulp_of_the_division():
    """flog_of_float32's division on AVX-512 CPUs, tested on any CPU: f / (2 + f) over
    the log's reduced range, its ends included, against the correctly rounded quotient."""
    rng = np.random.default_rng(29)
    lo, hi = np.sqrt(0.5) - 1.0, np.sqrt(2.0) - 1.0
    f = np.concatenate([rng.uniform(lo, hi, 500_000), rng.uniform(-1e-6, 1e-6, 10_000),
                        [lo, hi, 0.0, -0.0, np.nextafter(lo, 0), np.nextafter(hi, 0)]])
    d = 2.0 + f
    out = np.empty_like(f)
    _quotients_by_fma(f, d, out)
    exact = f.astype(np.longdouble) / d.astype(np.longdouble)
    nonzero = exact != 0
    ulps = np.abs(out[nonzero] - exact[nonzero]) / np.spacing(np.abs(exact[nonzero]).astype(np.float64))
    assert ulps.max() <= 1.0, f"{ulps.max()} ulp at f={f[nonzero][ulps.argmax()]!r}"
    assert np.all(out[~nonzero] == 0.0)


@njit
def _quotients(a, b, out):
    for i in range(a.shape[0]):
        out[i] = fmath.log1p_quotient(a[i], b[i])


@pytest.mark.parametrize("dtype, max_ulp", [(np.float64, 2.5), (np.float32, 2.5)])
def test_log1p_quotient_is_log1p_of_the_quotient(dtype, max_ulp):
    rng = np.random.default_rng(11)
    b = np.exp(rng.uniform(-30, 30, 100_000)).astype(dtype)
    f = np.concatenate([rng.uniform(0, 0.26, 90_000), np.exp(-rng.uniform(1.35, 60, 10_000))])
    a = (f * b).astype(dtype)
    a[:3], b[:3] = [0.0, np.nan, 1.0], [1.0, 1.0, np.nan]
    out = np.empty_like(a)
    _quotients(a, b, out)
    assert out.dtype == dtype
    exact = np.log1p(a.astype(np.longdouble) / b.astype(np.longdouble))
    assert out[0] == 0.0 and np.isnan(out[1]) and np.isnan(out[2])
    normal = np.abs(exact) >= np.finfo(dtype).tiny
    normal[:3] = False
    # s = 2a/(a + 2b) rounds twice before the series: up to about 2 ulp
    ulps = np.abs(out[normal] - exact[normal]) / np.spacing(np.abs(exact[normal]).astype(dtype))
    assert ulps.max() <= max_ulp, f"{ulps.max()} ulp at a={a[normal][ulps.argmax()]!r}"
