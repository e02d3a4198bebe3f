"""Bool and small-integer targets are read by the kernels as they are, with the same results."""
import numpy as np
import pytest

import fastloss as fl
from fastloss import _validation
from fastloss.backends import cpu
from .helpers import assert_scalar_close

LABEL_LOSSES = ["binary_cross_entropy_with_logits", "sigmoid_focal", "hinge", "mse", "poisson_nll"]


CASES = ([(name, dtype, 1001) for name in LABEL_LOSSES for dtype in (np.bool_, np.int8)]
         + [("hinge", np.dtype(">i2"), 1001), ("binary_cross_entropy_with_logits", np.uint8, 1001),
            ("binary_cross_entropy_with_logits", np.int8,
             cpu.parallel_min_size("binary_cross_entropy_with_logits") + 17)])


@pytest.mark.parametrize("name,dtype,n", CASES)
def test_small_integer_targets_match_float_targets(name, dtype, n):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, n)
    p = rng.normal(0.0, 3.0, n).astype(np.float32)
    y = labels.astype(dtype)
    assert _validation.prepare(y, p, None).y.dtype == np.dtype(dtype).newbyteorder("=")
    loss = fl.get(name)
    as_float = labels.astype(np.float32)
    # the same values, summed in an order that may differ: LLVM sizes the vectorized sum by
    # the widest type in the loop, and a bool target makes another loop than a float32 one
    # (poisson_nll on AVX2: the last two bits of its mean)
    assert_scalar_close(loss(y, p), loss(as_float, p), np.float64, "mean")
    np.testing.assert_array_equal(loss.value_and_grad(y, p)[1], loss.value_and_grad(as_float, p)[1])
    np.testing.assert_array_equal(loss(y, p, reduction="none"), loss(as_float, p, reduction="none"))


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_invalid_small_integer_labels_are_rejected(dtype):
    y = np.array([0, 1, 2, 1], dtype)
    p = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="y_true"):
        fl.sigmoid_focal(y, p)
    with pytest.raises(ValueError, match="y_true"):
        fl.hinge(y, p)
