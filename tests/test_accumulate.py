"""fastloss.Accumulator: chunked updates, merges and serialized states give one call's value."""
import json
import math
import pickle
import warnings

import numpy as np
import pytest

import fastloss as fl
from fastloss import accumulate
from fastloss.accumulate import Accumulator, CompensatedSum

from .conftest import loss_case, sample, weights

# uneven chunk boundaries, an empty chunk among them
CUTS = [0, 1, 1, 777, 5000, 12_345, 40_000]


def chunks(n, *arrays):
    bounds = [c for c in CUTS if c < n] + [n]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        yield tuple(None if a is None else a[lo:hi] for a in arrays)


def rel_close(actual, expected, rtol=1e-12):
    assert isinstance(actual, float)
    assert actual == pytest.approx(expected, rel=rtol, abs=1e-300), (actual, expected)


@loss_case
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_chunked_equals_one_call(name, params, reduction, weighted, rng):
    y, p = sample(name, 40_000, rng)
    w = weights(y.size, rng) if weighted else None
    acc = Accumulator(name, reduction=reduction, **params)
    for yc, pc, wc in chunks(y.size, y, p, w):
        acc.update(yc, pc, wc)
    loss = fl.get(name, **params)
    rel_close(acc.result(), loss(y, p, sample_weight=w, reduction=reduction))
    # and the independent NumPy reference
    rel_close(acc.result(), loss(y, p, sample_weight=w, reduction=reduction, backend="numpy"),
              rtol=1e-10)
    assert acc.count == y.size
    rel_close(acc.weight_sum, float(y.size) if w is None else math.fsum(w))


@loss_case
def test_float32_chunks_give_one_calls_value_within_a_float32_rounding(name, params, rng):
    """float32 data: the kernels compute each value in float32 and may add pairs of them
    in float32 before the float64 sum (where the pairs fall depends on the chunk), so a
    chunked total may differ from one call's by float32 roundings of non-negative
    terms, at most 2^-24 relative each way; an element lost or counted twice is 1/40000."""
    y, p = sample(name, 40_000, rng, np.float32)
    acc = Accumulator(name, **params)
    for yc, pc in chunks(y.size, y, p):
        acc.update(yc, pc)
    one = fl.get(name, **params)(y, p)
    assert abs(acc.result() - one) <= 2.0 ** -23 * abs(one), (acc.result(), one)


def test_float32_chunks_sum_exactly_to_float64_accuracy(rng):
    # float64 y = 0 and float32 p: the float64 kernels run (float32 targets would take the
    # float32 ones), each p^2 is exact in float64, so math.fsum gives the exact total.
    p = rng.standard_normal(4_000_000).astype(np.float32) * np.float32(1e3)
    y = np.zeros(p.size)
    acc = Accumulator("mse", reduction="sum")
    for lo in range(0, p.size, 4_001):
        acc.update(y[lo:lo + 4_001], p[lo:lo + 4_001])
    exact = math.fsum((p.astype(np.float64) ** 2).tolist())
    assert abs(acc.result() - exact) <= 1e-14 * exact
    # a float32 running sum would be off by far more than this test allows
    assert abs(float(np.cumsum(p.astype(np.float32) ** 2, dtype=np.float32)[-1]) - exact) \
        > 1e-6 * exact


def test_compensated_sum_keeps_what_naive_float_sums_lose():
    values = [1e16, 1.0, -1e16] * 1000 + [1.0] * 1000
    s = CompensatedSum()
    for x in values:
        s.add(x)
    assert s.value == math.fsum(values) == 2000.0
    assert sum(values) != 2000.0
    a, b = CompensatedSum(), CompensatedSum()
    for i, x in enumerate(values):
        (a if i % 2 else b).add(x)
    a.merge(b)
    assert a.value == 2000.0


@pytest.mark.parametrize("case", ["labels", "probabilities", "class_weight"])
def test_cross_entropy_chunks(case, rng):
    N, C = 3000, 7
    logits = rng.standard_normal((N, C)) * 3
    params = {}
    if case == "probabilities":
        y = rng.dirichlet(np.ones(C), N)
        params = {"label_smoothing": 0.1}
    else:
        y = rng.integers(0, C, N)
        if case == "class_weight":
            y[::5] = -100
            params = {"class_weight": rng.uniform(0.5, 2, C), "z_loss": 1e-3}
    w = weights(N, rng)
    for reduction in ("mean", "sum"):
        acc = Accumulator("cross_entropy", reduction=reduction, **params)
        for yc, lc, wc in chunks(N, y, logits, w):
            acc.update(yc, lc, wc)
        rel_close(acc.result(), fl.cross_entropy(y, logits, sample_weight=w,
                                                  reduction=reduction, **params))
    assert acc.count == N


@pytest.mark.parametrize("name", ["nll", "multi_margin", "softmax_focal"])
def test_row_losses_chunks(name, rng):
    N, C = 3000, 5
    scores = rng.standard_normal((N, C))
    if name == "nll":
        scores = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    y = rng.integers(0, C, N)
    w = weights(N, rng)
    acc = Accumulator(name)
    for yc, sc, wc in chunks(N, y, scores, w):
        acc.update(yc, sc, wc)
    rel_close(acc.result(), fl.get(name)(y, scores, sample_weight=w))


def test_batchmean_over_rows(rng):
    y = rng.dirichlet(np.ones(6), 2000)
    logp = np.log(rng.dirichlet(np.ones(6), 2000))
    acc = Accumulator("kl_div", reduction="batchmean")
    for yc, pc in chunks(2000, y, logp):
        acc.update(yc, pc)
    rel_close(acc.result(), fl.kl_div(y, logp, reduction="batchmean"))
    assert acc.count == y.size
    with pytest.raises(ValueError, match="batchmean"):
        Accumulator(["kl_div", "mse"], reduction="batchmean")


@pytest.mark.parametrize("piece", [None, 1000])
def test_several_losses_in_one_pass(piece, rng, monkeypatch):
    if piece:
        monkeypatch.setattr(accumulate, "SHARED_PIECE", piece)
    y, p = sample("huber", 40_000, rng)
    y, p = y.reshape(-1, 4), p.reshape(-1, 4)
    w = weights(y.shape[0], rng)
    losses = {"mse": "mse", "mae": "mae", "h2": fl.get("huber", delta=2.0)}
    acc = Accumulator(losses)
    for yc, pc, wc in chunks(y.shape[0], y, p, w):
        acc.update(yc, pc, wc)
    result = acc.result()
    assert set(result) == {"mse", "mae", "h2"}
    rel_close(result["mse"], fl.mse(y, p, sample_weight=w))
    rel_close(result["mae"], fl.mae(y, p, sample_weight=w))
    rel_close(result["h2"], fl.huber(y, p, sample_weight=w, delta=2.0))
    assert acc.count == y.size
    rel_close(acc.weight_sum, 4 * math.fsum(w))


def test_merge_and_serialized_states(rng):
    y, p = sample("log_cosh", 30_000, rng)
    w = weights(y.size, rng)
    parts = [Accumulator(["log_cosh", "mse"]) for _ in range(3)]
    for k, (yc, pc, wc) in enumerate(chunks(y.size, y, p, w)):
        parts[k % 3].update(yc, pc, wc)
    # one part travels as JSON, one as a pickle
    via_json = Accumulator.from_dict(json.loads(json.dumps(parts[1].to_dict())))
    via_pickle = pickle.loads(pickle.dumps(parts[2]))
    total = parts[0].merge(via_json).merge(via_pickle)
    expected = {"log_cosh": fl.log_cosh(y, p, sample_weight=w), "mse": fl.mse(y, p, sample_weight=w)}
    for k in expected:
        rel_close(total.result()[k], expected[k])
    assert total.count == y.size


def test_states_with_array_parameters_round_trip(rng):
    cw = rng.uniform(0.5, 2.0, 4)
    y, x = rng.integers(0, 4, 500), rng.standard_normal((500, 4))
    acc = Accumulator("cross_entropy", class_weight=cw).update(y, x)
    again = Accumulator.from_dict(json.loads(json.dumps(acc.to_dict())))
    assert again.result() == acc.result()
    again.update(y, x)
    rel_close(again.result(), fl.cross_entropy(np.r_[y, y], np.r_[x, x], class_weight=cw))


def test_merge_refuses_different_losses():
    with pytest.raises(ValueError, match="different"):
        Accumulator("huber", delta=1.0).merge(Accumulator("huber", delta=2.0))
    with pytest.raises(ValueError, match="different"):
        Accumulator("mse").merge(Accumulator("mse", reduction="sum"))
    with pytest.raises(TypeError):
        Accumulator("mse").merge({"count": 3})


def test_bad_update_leaves_the_state_unchanged(rng):
    acc = Accumulator(["mse", "poisson_nll"])
    acc.update([1.0, 2.0], [0.5, 0.5])
    before = acc.to_dict()
    with pytest.raises(ValueError, match="same shape"):
        acc.update([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="y_true"):
        acc.update([1.0, -2.0], [0.5, 0.5])          # poisson_nll: y_true must be >= 0
    with pytest.raises(ValueError, match="sample_weight"):
        acc.update([1.0, 2.0], [0.5, 0.5], [1.0, -1.0])
    assert acc.to_dict() == before


def test_constructor_errors():
    with pytest.raises(ValueError, match="unknown loss"):
        Accumulator("msee")
    with pytest.raises(TypeError, match="parameters"):
        Accumulator(["mse", "huber"], delta=2.0)
    with pytest.raises(ValueError, match="twice"):
        Accumulator(["huber", fl.get("huber", delta=3.0)])
    with pytest.raises(ValueError, match="reduction"):
        Accumulator("mse", reduction="none")
    with pytest.raises(ValueError, match="at least one"):
        Accumulator([])
    with pytest.raises(ValueError, match="linear_cross_entropy"):
        Accumulator("linear_cross_entropy")
    with pytest.raises(ValueError, match="not an Accumulator state"):
        Accumulator.from_dict({"losses": {}})


def test_empty_results():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Accumulator("mse", reduction="sum").result() == 0.0
    with pytest.warns(RuntimeWarning, match="no data"):
        assert math.isnan(Accumulator("mse").result())
    acc = Accumulator("mse").update(np.empty(0), np.empty(0))
    assert acc.count == 0


def test_an_infinite_chunk_gives_inf_as_one_call_does():
    """poisson_nll of a log-rate of 800 is inf (e^800 overflows): a chunked total is inf
    too, not NaN (the compensation's inf - inf); adding -inf then gives NaN, as it should."""
    y = np.array([1.0, 2.0, 0.0, 3.0])
    p = np.array([0.5, 800.0, -1.0, 0.2])
    acc = Accumulator("poisson_nll", reduction="sum")
    for lo in range(0, 4, 2):
        acc.update(y[lo:lo + 2], p[lo:lo + 2])
    assert acc.result() == fl.poisson_nll(y, p, reduction="sum") == math.inf
    s = CompensatedSum()
    for v in (1.0, math.inf, 2.0):
        s.add(v)
    assert s.value == math.inf
    s.add(-math.inf)
    assert math.isnan(s.value)
