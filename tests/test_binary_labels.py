"""The cheaper value functions the CPU kernels use for blocks whose labels are all 0 or 1.

``scalar.BINARY_LABEL_VALUES`` gives, for some losses, a value function that holds
for labels in {0, 1} only; a block of ``cpu.BLOCK`` elements takes it when all
its labels are 0 or 1, and the general function otherwise.  These tests mix
both kinds of block in one call and check the two against each other (to the
last bit: they run the same logarithm kernel on the same arguments) and
against the float64 reference, with the edge predictions and NaN.
"""
import numpy as np
import pytest

import fastloss as fl
from fastloss.backends import cpu
from fastloss.kernels import scalar
from .helpers import assert_close, assert_scalar_close

NAMES = sorted(scalar.BINARY_LABEL_VALUES)
B = cpu.BLOCK


def _mixed_blocks(rng, dtype):
    """Labels over five blocks: binary, soft from the first element, binary but for the
    last element, binary, and a partial binary block; predictions with edges."""
    n = 4 * B + 777
    y = rng.integers(0, 2, n).astype(dtype)
    y[B:2 * B] = rng.uniform(0, 1, B)
    y[3 * B - 1] = 0.25
    p = rng.uniform(0, 1, n)
    edges = np.array([0.0, 1.0, 1e-30, 2 ** -24, 1 - 2 ** -24, 0.5, 1e-45, 0.2928932, 0.7071067])
    for start in (0, B, 2 * B, 4 * B):              # the same edges in each kind of block
        p[start:start + 2 * edges.size] = np.repeat(edges, 2)
        y[start:start + 2 * edges.size] = np.tile([0.0, 1.0], edges.size)
    return y, p.astype(dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_and_general_blocks_agree_with_the_reference(name, dtype, rng):
    y, p = _mixed_blocks(rng, dtype)
    loss = fl.get(name)
    yr, pr = y.astype(np.float64), p.astype(np.float64)
    values = loss(y, p, reduction="none", backend="cpu")
    assert_close(values, loss(yr, pr, reduction="none", backend="numpy"), dtype, "none")
    for reduction in ("mean", "sum"):
        assert_scalar_close(loss(y, p, reduction=reduction, backend="cpu"),
                            loss(yr, pr, reduction=reduction, backend="numpy"), dtype, reduction)
    total, _ = loss.value_and_grad(y, p, reduction="sum", backend="cpu")
    assert_scalar_close(total, loss(yr, pr, reduction="sum", backend="numpy"), dtype, "v&g")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_binary_block_gives_the_bits_of_the_general_one(name, dtype, rng):
    """The same (label, prediction) pairs in a binary block and in a block made general by
    one soft label elsewhere: the same values."""
    y, p = _mixed_blocks(rng, dtype)
    y[:B] = y[2 * B:3 * B]
    p[:B] = p[2 * B:3 * B]                          # block 0 binary, block 2 general
    y[3 * B - 1] = y[B - 1] = 0.25                  # ...but for their last element
    y[B - 1] = 1.0
    values = fl.get(name)(y, p, reduction="none", backend="cpu")
    np.testing.assert_array_equal(values[:B - 1], values[2 * B:3 * B - 1])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_predictions_in_binary_blocks_give_nan(name, dtype, rng):
    y = rng.integers(0, 2, 2 * B).astype(dtype)
    p = rng.uniform(0, 1, 2 * B).astype(dtype)
    p[[3, 4, B + 5]] = np.nan
    y[[3, 4]] = [0.0, 1.0]
    values = fl.get(name)(y, p, reduction="none", backend="cpu")
    assert np.array_equal(np.flatnonzero(np.isnan(values)), [3, 4, B + 5])
    assert np.isnan(fl.get(name)(y, p, backend="cpu"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [1.5, -0.5, np.inf, -np.inf])
def test_predictions_outside_the_domain_in_binary_blocks_are_rejected(name, dtype, bad, rng):
    y = rng.integers(0, 2, 2 * B).astype(dtype)
    p = rng.uniform(0, 1, 2 * B).astype(dtype)
    p[B + 7] = bad
    for reduction in ("mean", "none"):
        with pytest.raises(ValueError, match="y_pred"):
            fl.get(name)(y, p, reduction=reduction, backend="cpu")
    with pytest.raises(ValueError, match="y_pred"):
        fl.get(name).value_and_grad(y, p, backend="cpu")
