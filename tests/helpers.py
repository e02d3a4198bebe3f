import numpy as np


def assert_close(actual, expected, dtype, what=""):
    """Elementwise agreement to float64 (1e-12) or float32 (2e-6) accuracy.

    The absolute floor scales with the typical magnitude of ``expected`` so
    that values that cancel to near zero (a gradient sigmoid(x) - y, say) are
    judged against the size of the terms they came from.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if np.dtype(dtype) != np.float64:
        # what the output dtype can hold (tiny values flush to 0, huge ones to inf)
        with np.errstate(over="ignore", under="ignore"):
            expected = expected.astype(dtype).astype(np.float64)
    rtol = 1e-12 if np.dtype(dtype) == np.float64 else 2e-6
    finite = np.isfinite(expected)
    scale = np.mean(np.abs(expected[finite])) if finite.any() else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale + 1e-300,
                               err_msg=what)


def assert_scalar_close(actual, expected, dtype, what=""):
    rtol = 1e-12 if np.dtype(dtype) == np.float64 else 1e-6
    assert isinstance(actual, float), f"{what}: expected a Python float, got {type(actual)}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-300, err_msg=what)
