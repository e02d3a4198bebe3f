"""The float32 exp used by the softmax kernels for float32 logits."""
import numpy as np
from numba import njit

from fastloss.kernels import fmath


@njit
def _apply(x, out):
    for i in range(x.shape[0]):
        out[i] = fmath.fexp32(x[i])


@njit
def _apply_like(x, like, out):
    for i in range(x.shape[0]):
        out[i] = fmath.exp_in_precision_of(x[i], like[i])


def test_fexp32_within_one_ulp_of_the_rounded_exact_value():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-110, 90, 200_000), rng.uniform(-1, 1, 50_000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 88.7, 88.8, -87.3, -103.9, -104.5]])
    x = x.astype(np.float32)
    out = np.empty_like(x)
    _apply(x, out)
    with np.errstate(all="ignore"):
        exact = np.exp(x.astype(np.float64))
        rounded = exact.astype(np.float32)
    assert np.array_equal(np.isnan(out), np.isnan(exact))
    normal = np.isfinite(rounded) & (rounded >= np.finfo(np.float32).tiny)
    ulps = np.abs(out[normal].astype(np.float64) - exact[normal]) / np.spacing(rounded[normal])
    assert ulps.max() <= 1.0
    big = exact > np.finfo(np.float32).max
    assert np.all(out[big] == np.inf)
    tiny = np.isfinite(exact) & (exact < np.finfo(np.float32).tiny)
    assert np.all(np.abs(out[tiny] - exact[tiny]) <= 2 * 1.4e-45)


def test_precision_follows_the_data_type():
    x = np.linspace(-20, 5, 1001)
    out = np.empty_like(x)
    _apply_like(x, x, out)
    np.testing.assert_allclose(out, np.exp(x), rtol=1e-15)
    _apply_like(x, x.astype(np.float32), out)
    np.testing.assert_allclose(out, np.exp(x.astype(np.float32).astype(np.float64)), rtol=2e-7)
    assert not np.allclose(out, np.exp(x), rtol=1e-12, atol=0)
