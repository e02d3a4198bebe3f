"""Both layouts of the CPU backend's float32 kernels, whichever one this CPU takes.

The float32 kinds of the transcendental losses are built by the float32
templates (a block's values to a buffer, then summed) on AVX-512 CPUs and by
the one-pass templates elsewhere (``cpu.float32_in_one_pass``); the rest of
the suite runs the layout of the machine it runs on.  These tests build each
loss's serial kernels in the other layout too and check both against the
float64 reference: soft and 0/1 label blocks in one call, the edge predictions,
weights, every kernel that computes in float32, an input outside the domain in
either kind of block, and a gradient written over y_pred.
"""
import numpy as np
import pytest

import fastloss as fl
from fastloss.backends import cpu
from fastloss.specs import REGISTRY
from .conftest import sample
from .helpers import assert_close, assert_scalar_close

NAMES = sorted(name for name, spec in REGISTRY.items()
               if spec.float32_value and not spec.float32_in_one_pass)
B = cpu.BLOCK


@pytest.fixture(params=["one pass", "two passes"])
def layout(request, monkeypatch):
    one_pass = request.param == "one pass"
    monkeypatch.setattr(cpu, "float32_in_one_pass",
                        lambda spec: spec.float32_in_one_pass or one_pass)
    for name in NAMES:
        cpu.forget(name)
    yield request.param
    for name in NAMES:
        cpu.forget(name)


def _blocks(name, rng):
    """float32 (y, p) over four blocks and a part: the second block with soft labels where
    the loss allows them (binary_cross_entropy), the edge predictions in each block."""
    n = 4 * B + 333
    y, p = sample(name, n, rng, np.float32)
    if REGISTRY[name].y_domain == "unit":
        y = rng.integers(0, 2, n).astype(np.float32)
        y[B:2 * B] = rng.uniform(0, 1, B)
    if REGISTRY[name].p_domain == "unit":
        edges = [0.0, 1.0, 1e-30, 2 ** -24, 1 - 2 ** -24, 0.5, 1e-45, 0.2928932]
    else:
        edges = [1e4, -1e4, 88.0, -88.0, 105.0, 0.0, 1e-30, -17.0, 30.5]
    edges = np.repeat(np.array(edges, np.float32), 2)
    for start in range(0, n - edges.size, B):
        p[start:start + edges.size] = edges
    return y, p


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_each_layout_matches_the_reference(name, weighted, layout, rng):
    y, p = _blocks(name, rng)
    assert y.size < cpu.PARALLEL_MIN_SIZE
    w = rng.uniform(0.0, 2.0, y.size).astype(np.float32) if weighted else None
    yr, pr, wr = (None if a is None else a.astype(np.float64) for a in (y, p, w))
    loss = fl.get(name)
    for reduction in ("mean", "sum"):
        assert_scalar_close(loss(y, p, sample_weight=w, reduction=reduction, backend="cpu"),
                            loss(yr, pr, sample_weight=wr, reduction=reduction, backend="numpy"),
                            np.float32, f"{layout}: {reduction} value")
    values = loss(y, p, sample_weight=w, reduction="none", backend="cpu")
    assert values.dtype == np.float32
    assert_close(values, loss(yr, pr, sample_weight=wr, reduction="none", backend="numpy"),
                 np.float32, f"{layout}: none")
    expected_grad = loss.grad(yr, pr, sample_weight=wr, reduction="sum", backend="numpy")
    grad = loss.grad(y, p, sample_weight=w, reduction="sum", backend="cpu")
    assert_close(grad, expected_grad, np.float32, f"{layout}: grad")
    total, grad = loss.value_and_grad(y, p, sample_weight=w, reduction="sum", backend="cpu")
    assert_scalar_close(total, loss(yr, pr, sample_weight=wr, reduction="sum", backend="numpy"),
                        np.float32, f"{layout}: value_and_grad's value")
    assert_close(grad, expected_grad, np.float32, f"{layout}: value_and_grad's gradient")
    kinds = cpu.kernels(name, False)
    one_pass = layout == "one pass"
    assert ("value_none_f32" in kinds) and (
        kinds["value_none_f32"].py_func.__name__ == ("value_none" if one_pass
                                                     else "value_none_f32"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("block", [0, 1], ids=["in a 0/1-label block", "in a soft-label block"])
def test_each_layout_rejects_an_input_outside_the_domain(name, block, layout, rng):
    y, p = _blocks(name, rng)
    spec = REGISTRY[name]
    if spec.p_domain == "unit":
        p[block * B + 100] = 1.5
        arg = "y_pred"
    elif spec.y_domain != "real":
        y[block * B + 100] = 2.0 if spec.y_domain != "unit" else -0.5
        arg = "y_true"
    else:
        pytest.skip(f"{name} takes every real input")
    loss = fl.get(name)
    for call in (lambda: loss(y, p, backend="cpu"),
                 lambda: loss(y, p, reduction="none", backend="cpu"),
                 lambda: loss.value_and_grad(y, p, backend="cpu")):
        with pytest.raises(ValueError, match=arg):
            call()


@pytest.mark.parametrize("name", NAMES)
def test_each_layout_writes_a_gradient_over_y_pred(name, layout, rng):
    y, p = _blocks(name, rng)
    expected = fl.get(name).value_and_grad(y, p.copy(), backend="cpu")
    total, grad = fl.get(name).value_and_grad(y, p, out=p, backend="cpu")
    assert grad is p
    assert total == expected[0]
    np.testing.assert_array_equal(grad, expected[1])
