"""The float32 math functions against NumPy in float64, over the whole float32 range."""
import numpy as np
import pytest
from numba import njit

from fastloss.kernels import fmath, fmath32

TINY = np.finfo(np.float32).tiny
CASES = {
    "exp": (fmath32.exp, np.exp),
    "exp_nonpositive": (fmath32.exp_nonpositive, np.exp),   # its domain: x <= 0
    "expm1": (fmath32.expm1, np.expm1),
    "log": (fmath32.log, np.log),
    "log1p": (fmath32.log1p, np.log1p),
    "log1p_unit": (fmath32.log1p_unit, np.log1p),        # its domain: [0, 1]
}
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.0, 0.5, 1e-38, 1e-45, -1e-45,
            TINY, np.finfo(np.float32).max, 88.72, 88.73, -87.3, -87.336, -87.337, -103.9, -104.5,
            -1e-8, 1e-8,
            np.nextafter(np.float32(-1), np.float32(0)), -17.0, -18.0, 17.0]


def _inputs(name, rng):
    if name == "exp_nonpositive":
        x = np.concatenate([rng.uniform(-110, 0, 200_000), rng.uniform(-1e-4, 0, 10_000),
                            [s for s in SPECIALS if not s > 0]]).astype(np.float32)
        return x
    if name in ("exp", "expm1"):
        parts = [rng.uniform(-110, 90, 200_000), rng.uniform(-1, 1, 50_000),
                 rng.uniform(-1e-4, 1e-4, 10_000)]
    elif name == "log":
        parts = [np.exp(rng.uniform(-103, 88, 200_000)), rng.uniform(0.5, 2.0, 50_000),
                 rng.uniform(0, 1e-38, 1000)]
    elif name == "log1p_unit":
        edge = np.float32(np.sqrt(2.0) - 1.0)
        return np.concatenate([rng.uniform(0, 1, 200_000), np.exp(-rng.uniform(0, 104, 100_000)),
                               edge + rng.uniform(-1e-6, 1e-6, 1000),
                               [0.0, 1.0, edge, 0.5, np.nextafter(np.float32(0.5), 0), 1e-45,
                                TINY, np.nan]]).astype(np.float32)
    else:
        parts = [rng.uniform(-1, 1, 100_000), np.exp(rng.uniform(-100, 88, 100_000)),
                 -np.exp(rng.uniform(-100, -1e-6, 20_000))]
    return np.concatenate(parts + [SPECIALS]).astype(np.float32)


def _vectorized(f):
    @njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i])
    return apply


@pytest.mark.parametrize("name", sorted(CASES))
def test_within_two_ulp_of_the_exact_value(name):
    f, ref = CASES[name]
    x = _inputs(name, np.random.default_rng(3))
    out = np.empty_like(x)
    _vectorized(f)(x, out)
    assert out.dtype == np.float32
    with np.errstate(all="ignore"):
        exact = ref(x.astype(np.float64))
        if name in ("exp", "exp_nonpositive"):      # flush results near or below FLT_MIN to 0
            exact[x < np.float32(-125.5 * np.log(2))] = 0.0
        rounded = exact.astype(np.float32)
    assert np.array_equal(np.isnan(out), np.isnan(exact))
    nonfinite = ~np.isfinite(rounded)
    assert np.array_equal(out[nonfinite], rounded[nonfinite], equal_nan=True)
    normal = np.isfinite(rounded) & (np.abs(rounded) >= TINY)
    ulps = np.abs(out[normal] - exact[normal]) / np.spacing(np.abs(rounded[normal]))
    worst = ulps.argmax()
    assert ulps.max() <= 2.0, f"{name}: {ulps.max()} ulp at x={x[normal][worst]!r}"
    # subnormal results: within two subnormal steps
    sub = np.isfinite(rounded) & (np.abs(rounded) < TINY)
    assert np.all(np.abs(out[sub] - exact[sub]) <= 2 * 1.4e-45)


@njit
def _apply_generic(x, out):
    for i in range(x.shape[0]):
        out[i] = fmath.log1p_unit(fmath.exp(-abs(x[i]))) + fmath.log(fmath.expm1(abs(x[i]) + 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_generic_functions_compute_in_their_argument_type(dtype):
    x = np.linspace(-20, 5, 1001).astype(dtype)
    out = np.empty_like(x)
    _apply_generic(x, out)
    wide = x.astype(np.float64)
    exact = np.log1p(np.exp(-np.abs(wide))) + np.log(np.expm1(np.abs(wide) + 1))
    if dtype == np.float64:
        np.testing.assert_allclose(out, exact, rtol=1e-15)
    else:
        np.testing.assert_allclose(out, exact, rtol=6e-7)
        assert not np.allclose(out.astype(np.float64), exact, rtol=1e-9, atol=0)


@njit
def _apply_like(x, like, out):
    for i in range(x.shape[0]):
        out[i] = fmath.exp_in_precision_of(x[i], like[i])


def test_precision_follows_the_data_type():
    x = np.linspace(-20, 5, 1001)
    out = np.empty_like(x)
    _apply_like(x, x, out)
    np.testing.assert_allclose(out, np.exp(x), rtol=1e-15)
    _apply_like(x, x.astype(np.float32), out)
    np.testing.assert_allclose(out, np.exp(x.astype(np.float32).astype(np.float64)), rtol=2e-7)
    assert not np.allclose(out, np.exp(x), rtol=1e-12, atol=0)


@njit
def _apply_pair(p, a, b, c, d):
    floor = fmath.as_type_of(-100.0, p[0])
    for i in range(p.shape[0]):
        a[i], b[i] = fmath.log_and_log1m_floored(p[i], floor)
        c[i] = fmath.log_or_log1m_floored(p[i], False, floor)
        d[i] = fmath.log_or_log1m_floored(p[i], True, floor)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_and_log1m_within_two_ulp_on_the_unit_interval(dtype):
    """Both logarithms, from the pair and one at a time, floored at -100 as BCE needs."""
    rng = np.random.default_rng(11)
    tiny = np.finfo(dtype).tiny
    edges = [0.0, 1.0, 0.5, 1 - 2 ** -24, 2 ** -24, 1 - np.sqrt(0.5), np.sqrt(0.5), 1e-30, tiny,
             1e-43, 3e-44, np.exp(-100.0), np.exp(-99.99), 1e-320]
    p = np.concatenate([rng.uniform(0, 1, 200_000), np.exp(-rng.uniform(0, 80, 50_000)),
                        1 - np.exp(-rng.uniform(0, 16, 50_000)), 0.5 + rng.uniform(-1e-6, 1e-6, 1000),
                        (1 - np.sqrt(0.5)) + rng.uniform(-1e-6, 1e-6, 1000),
                        np.exp(-rng.uniform(95, 110, 1000)), edges]).astype(dtype)
    a, b, c, d = (np.empty_like(p) for _ in range(4))
    _apply_pair(p, a, b, c, d)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, d)
    wide = p.astype(np.float64)
    with np.errstate(divide="ignore"):
        # log(1 - p) from the exact 1 - p (log1p of the exact -p)
        for got, exact in ((a, np.log(wide)), (b, np.log1p(-wide))):
            exact = np.maximum(exact, -100.0)
            rounded = exact.astype(dtype)
            ulps = np.abs(got - exact) / np.spacing(np.abs(rounded))
            assert ulps.max() <= 2.0, f"{ulps.max()} ulp at p={p[ulps.argmax()]!r}"
            assert np.all(got[exact == -100.0] == -100.0)
    one = np.ones(1, dtype)
    for v in (np.nan, -np.nan):
        _apply_pair(one * v, a[:1], b[:1], c[:1], d[:1])
        assert np.isnan(a[0]) and np.isnan(b[0]) and np.isnan(c[0]) and np.isnan(d[0])


@njit(fastmath={"contract"})
def _sum_terms(x, out):
    for i in range(x.shape[0]):
        out[i] = fmath32.exp_sum_term(x[i])


def test_exp_sum_term_as_the_softmax_kernels_compile_it():
    """Within 2 ulp plus |k| 1.9e-9 relative of e^x (k = x / ln 2 rounded), 0 below
    e^-86.99, NaN for NaN: compiled with contraction, as in the kernels."""
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-90, 0, 300_000), rng.uniform(-1e-3, 0, 10_000),
                        [0.0, -0.0, -np.inf, np.nan, -86.98, -86.995, -87.3, -88.0, -1e30]])
    x = x.astype(np.float32)
    out = np.empty_like(x)
    _sum_terms(x, out)
    exact = np.exp(x.astype(np.float64))
    flushed = x < np.float32(-86.99)
    assert np.all(out[flushed & (x < -86.995)] == 0.0)
    assert np.array_equal(np.isnan(out), np.isnan(x))
    keep = ~flushed & ~np.isnan(x)
    k = np.abs(np.round(x[keep] / np.log(2.0)))
    err = np.abs(out[keep] - exact[keep])
    bound = 2 * np.spacing(exact[keep].astype(np.float32)) + (k * 1.9e-9 + 1e-12) * exact[keep]
    assert np.all(err <= bound), (err / bound).max()
    assert out[x == 0][0] == 1.0
