"""Values of the float32_value losses computed in float32 for float32 data.

Those kernels run the loss's own scalar function on float32 (y, p); these
tests check that it stays within the float32 accuracy contract against the
float64 reference, on both the serial and the parallel kernels, with extreme
inputs, and that the float32 path is the one taken exactly when
``LossSpec.value_in_float32`` says so.
"""
import numpy as np
import pytest
from numba import njit

import fastloss as fl
from fastloss.backends import cpu
from fastloss.kernels import scalar
from fastloss.specs import REGISTRY
from .conftest import LOSS_CASES, LOSS_IDS, sample
from .helpers import assert_close, assert_scalar_close

CASES = [(name, params) for name, params in LOSS_CASES if REGISTRY[name].float32_value]
IDS = [i for i, (name, _) in zip(LOSS_IDS, LOSS_CASES) if REGISTRY[name].float32_value]
float32_case = pytest.mark.parametrize("name,params", CASES, ids=IDS)
SIZES = [1000, "parallel"]     # serial and parallel kernels (_size)


def _size(n, name):
    """n, or for "parallel" a size that runs loss ``name``'s parallel kernels."""
    return cpu.parallel_min_size(name) + 4097 if n == "parallel" else n


def _with_extremes(name, y, p):
    """The sample plus the extreme predictions the loss's domain allows."""
    if REGISTRY[name].p_domain == "unit":
        edge = np.array([0.0, 1.0, 1e-30, 1e-7, 0.5, 1 - 2 ** -24, 2 ** -24], np.float32)
    elif name == "poisson_nll":         # e^p: float32 holds it up to p = 88.7
        edge = np.array([88.0, -88.0, 80.5, -105.0, -800.0, -1e4, 0.0, 1e-30, -17.0, 30.5],
                        np.float32)
    else:
        edge = np.array([1e4, -1e4, 88.0, -88.0, 105.0, -105.0, 0.0, 1e-30, -17.0, 30.5],
                        np.float32)
    labels = np.resize(np.unique(y), edge.size).astype(y.dtype)
    return np.concatenate([y, labels]), np.concatenate([p, edge])


@float32_case
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_float32_values_within_the_float32_contract(name, params, n, weighted, rng):
    n = _size(n, name)
    y, p = _with_extremes(name, *sample(name, n, rng, np.float32))
    assert REGISTRY[name].value_in_float32(y.dtype, p.dtype)
    w = rng.uniform(0.0, 2.0, y.size).astype(np.float32) if weighted else None
    wr = None if w is None else w.astype(np.float64)
    loss = fl.get(name, **params)
    yr, pr = y.astype(np.float64), p.astype(np.float64)
    for reduction in ("mean", "sum"):
        value = loss(y, p, sample_weight=w, reduction=reduction, backend="cpu")
        expected = loss(yr, pr, sample_weight=wr, reduction=reduction, backend="numpy")
        assert np.isfinite(value)
        assert_scalar_close(value, expected, np.float32, f"{reduction} value")
    values = loss(y, p, sample_weight=w, reduction="none", backend="cpu")
    assert values.dtype == np.float32 and np.all(np.isfinite(values))
    expected = loss(yr, pr, sample_weight=wr, reduction="none", backend="numpy")
    assert_close(values, expected, np.float32, "none")


@pytest.mark.parametrize(
    "name,params", [c for c in CASES if not REGISTRY[c[0]].float64_value_maths],
    ids=[i for i, c in zip(IDS, CASES) if not REGISTRY[c[0]].float64_value_maths])
def test_float32_path_is_float32_arithmetic(name, params, rng):
    """The float32 kernel's sum differs from the float64 kernel's on the same numbers."""
    y, p = sample(name, 5000, rng, np.float32)
    loss = fl.get(name, **params)
    single = loss(y, p, reduction="sum", backend="cpu")
    double = loss(y.astype(np.float64), p.astype(np.float64), reduction="sum", backend="cpu")
    np.testing.assert_allclose(single, double, rtol=1e-6)
    assert single != double


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items()
                                  if s.float32_value and not s.float32_in_one_pass])
def test_transcendental_second_derivatives_of_float32_data_are_float32_arithmetic(name, rng):
    """grad_hess of float32 data: float32 maths for the transcendental losses (the
    cpu backend's grad_hess_f32), within the float32 contract of the float64 reference
    but not its float32 rounding."""
    y, p = sample(name, 5000, rng, np.float32)
    loss = fl.get(name)
    g, h = loss.grad_hess(y, p, backend="cpu")
    g64, h64 = loss.grad_hess(y.astype(np.float64), p.astype(np.float64), backend="cpu")
    assert g.dtype == h.dtype == np.float32
    assert_close(g, g64, np.float32, "grad")
    assert_close(h, h64, np.float32, "hess")
    assert not (np.array_equal(g, g64.astype(np.float32))
                and np.array_equal(h, h64.astype(np.float32)))


@float32_case
def test_targets_outside_float32_take_the_float64_path(name, params, rng):
    y, p = sample(name, 5000, rng, np.float32)
    loss = fl.get(name, **params)
    bounded = REGISTRY[name].y_domain in ("unit", "binary", "signed_binary")
    y_wide = y.astype(np.float64)
    assert REGISTRY[name].value_in_float32(y_wide.dtype, p.dtype) == bounded
    assert not REGISTRY[name].value_in_float32(y.dtype, np.dtype(np.float64))
    double = loss(y_wide, p.astype(np.float64), reduction="sum", backend="cpu")
    if not bounded:
        assert loss(y_wide, p, reduction="sum", backend="cpu") == double


@pytest.mark.parametrize("name", [n for n, s in REGISTRY.items() if s.float32_value
                                  and s.y_domain in ("unit", "binary")])
def test_float64_targets_just_outside_the_domain_are_still_rejected(name):
    """Rounded to float32, 1 + 1e-12 would be 1.0: the domain check reads the target as given."""
    y = np.array([0.0, 1.0 + 1e-12, 1.0])
    p = np.full(3, 0.5 if REGISTRY[name].p_domain == "unit" else 0.3, np.float32)
    with pytest.raises(ValueError, match="y_true"):
        fl.get(name)(y, p, backend="cpu")


def test_constant_gamma_build_matches_the_general_one(rng):
    """sigmoid_focal at gamma = 2 runs a build with gamma compiled in; a gamma one
    float64 ulp away runs the general build (q^gamma through exp and log)."""
    y, p = sample("sigmoid_focal", 20_000, rng, np.float32)
    at_two = fl.sigmoid_focal(y, p, gamma=2.0, reduction="none")
    near_two = fl.sigmoid_focal(y, p, gamma=np.nextafter(2.0, 3.0), reduction="none")
    assert_close(at_two, near_two, np.float32, "gamma = 2 vs the general build")
    expected = fl.sigmoid_focal(y.astype(np.float64), p.astype(np.float64), gamma=2.0,
                                reduction="none", backend="numpy")
    assert_close(at_two, expected, np.float32, "gamma = 2")


OUTSIDE = {"unit": 1.5, "binary": 0.5, "signed_binary": 0.5, "nonneg": -1.0}


@pytest.mark.parametrize("name,params", [
    (name, params) for name, params in CASES
    if {REGISTRY[name].y_domain, REGISTRY[name].p_domain} & set(OUTSIDE)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_inputs_outside_the_domain_are_counted_in_the_float32_kernels(name, params, reduction, rng):
    spec = REGISTRY[name]
    y, p = sample(name, _size("parallel", name), rng, np.float32)
    cases = []
    if spec.y_domain in OUTSIDE:
        cases.append(("y_true", y.copy(), p, OUTSIDE[spec.y_domain]))
    if spec.p_domain in OUTSIDE:
        cases.append(("y_pred", y, p.copy(), OUTSIDE[spec.p_domain]))
    assert cases
    for argument, yy, pp, value in cases:
        target = yy if argument == "y_true" else pp
        target[-3] = value                     # in the last, partial block
        with pytest.raises(ValueError, match=argument):
            fl.get(name, **params)(yy, pp, reduction=reduction, backend="cpu")


@pytest.mark.parametrize("domain", sorted(scalar.DOMAIN_SHORTFALLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_domain_shortfalls_are_negative_exactly_outside_the_domain(domain, dtype):
    """The float32 kernels' numeric domain check against the boolean one, on the edges."""
    f = np.finfo(dtype)
    v = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, np.nan, -np.nan, np.inf, -np.inf,
                  f.tiny, -f.tiny, f.smallest_subnormal, -f.smallest_subnormal, f.max, -f.max,
                  1 + f.eps, 1 - f.epsneg, -f.eps, 3.0, -3.0], dtype)
    ok, short = scalar.DOMAIN_CHECKS[domain], scalar.DOMAIN_SHORTFALLS[domain]

    @njit
    def apply(v, inside, shortfall):
        for i in range(v.shape[0]):
            inside[i] = ok(v[i])
            shortfall[i] = short(v[i])

    inside, shortfall = np.empty(v.size, bool), np.empty_like(v)
    apply(v, inside, shortfall)
    assert shortfall.dtype == dtype
    np.testing.assert_array_equal(shortfall < 0, ~inside)
    np.testing.assert_array_equal(shortfall[inside], 0)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_of_float32_data_keeps_float64_accuracy_where_its_terms_cancel(n, log_target,
                                                                             rng):
    """kl_div's float32 kernels read float32 but compute its value in float64
    (``float64_value_maths``): where the divergence is small, y log y and y p nearly
    cancel in every term.  Float64 maths keeps the total's error to float64
    roundings of the terms' parts; float32 arithmetic would leave a thousand times
    more (checked below), far outside the float32 contract's 1e-6 of the total."""
    assert REGISTRY["kl_div"].float64_value_maths
    n = _size(n, "kl_div")
    y = rng.dirichlet(np.ones(50), size=n // 50).ravel().astype(np.float32)
    y[:7] = [0.0, 1.0, 1e-40, 1e-30, 2.0 ** -126, 0.5, 1e-8]
    log_y = np.log(y.astype(np.float64), where=y > 0, out=np.full(y.size, -30.0))
    p = (log_y + rng.normal(0.0, 1e-4, y.size)).astype(np.float32)
    target = log_y.astype(np.float32) if log_target else y
    assert REGISTRY["kl_div"].value_in_float32(target.dtype, p.dtype)
    loss = fl.get("kl_div", log_target=log_target)
    yr, pr = target.astype(np.float64), p.astype(np.float64)
    # the magnitude of what the terms' parts add up to: y log y and y p (e^y y and e^y p)
    weight = np.exp(yr) if log_target else yr
    parts = np.abs(weight * pr).sum() + np.abs(weight * (yr if log_target else log_y)).sum()
    for reduction, denominator in (("sum", 1), ("mean", y.size), ("batchmean", y.size)):
        value = loss(target, p, reduction=reduction, backend="cpu")
        expected = loss(yr, pr, reduction=reduction, backend="numpy")
        assert abs(value - expected) <= 1e-14 * parts / denominator, reduction
    values = loss(target, p, reduction="none", backend="cpu")
    expected = loss(yr, pr, reduction="none", backend="numpy")
    # each value: its float32 rounding, and float64 roundings of its own parts (which the
    # reference has too: where the parts cancel to 1e-7 of themselves, those reach 1e-9
    # of the value, above its float32 rounding)
    own_parts = np.abs(weight * pr) + np.abs(weight * (yr if log_target else log_y))
    error = np.abs(values - expected)
    assert np.all(error <= 2.0 ** -24 * np.abs(expected) + 1e-15 * own_parts + 1e-45)
    if not log_target:
        # the same terms in float32 arithmetic, summed in float64
        with np.errstate(divide="ignore", invalid="ignore"):
            single = y * np.log(y) - y * p
        single = np.where(y > 0, single, np.float32(0.0) - y * p).astype(np.float64).sum()
        assert abs(single - expected.sum()) > 1e-11 * parts


@pytest.mark.parametrize("n", SIZES)
def test_poisson_nll_of_float32_data_keeps_float64_accuracy_where_its_terms_cancel(n, rng):
    """poisson_nll's float32 kernels compute e^p - y p in float64 (``float64_value_maths``,
    e^p by ``fmath.fexp_of_float32``): with counts near e and log-rates near log y, both
    parts of every term are near e and the terms near 0.  The total stays within
    float64 roundings of the parts; float32 arithmetic would not (checked below)."""
    assert REGISTRY["poisson_nll"].float64_value_maths
    n = _size(n, "poisson_nll")
    y = rng.uniform(np.e - 1e-3, np.e + 1e-3, n).astype(np.float32)
    p = (np.log(y.astype(np.float64)) + rng.normal(0.0, 1e-4, n)).astype(np.float32)
    assert REGISTRY["poisson_nll"].value_in_float32(y.dtype, p.dtype)
    yr, pr = y.astype(np.float64), p.astype(np.float64)
    parts = np.exp(pr).sum() + np.abs(yr * pr).sum()
    for reduction, denominator in (("sum", 1), ("mean", n)):
        for w in (None, np.ones(n, np.float32)):
            value = fl.poisson_nll(y, p, sample_weight=w, reduction=reduction, backend="cpu")
            expected = fl.poisson_nll(yr, pr, reduction=reduction, backend="numpy")
            assert abs(value - expected) <= 1e-14 * parts / denominator, reduction
    value, grad = fl.get("poisson_nll").value_and_grad(y, p, reduction="sum", backend="cpu")
    assert abs(value - expected * n) <= 1e-14 * parts
    np.testing.assert_allclose(grad, np.exp(pr) - yr, rtol=2.0 ** -23, atol=1e-14 * np.e)
    single = (np.exp(p) - y * p).astype(np.float64).sum()        # float32 arithmetic
    assert abs(single - expected * n) > 1e-11 * parts


@float32_case
@pytest.mark.parametrize("n", SIZES)
def test_a_gradient_written_over_y_pred_survives_the_float64_second_pass(name, params, n, rng):
    """value_and_grad(y, p, out=p) where the float32 pass's sum is not finite (a NaN here;
    a float32 value past float32's range does the same): the float64 pass that then
    computes the value again must not read the gradient the first pass wrote over p."""
    n = _size(n, name)
    y, p = sample(name, n, rng, np.float32)
    p[n // 2] = np.nan
    loss = fl.get(name, **params)
    expected_value, expected_grad = loss.value_and_grad(y, p, reduction="sum")
    in_place = p.copy()
    value, grad = loss.value_and_grad(y, in_place, reduction="sum", out=in_place)
    assert grad is in_place and np.isnan(value) and np.isnan(expected_value)
    np.testing.assert_array_equal(grad, expected_grad)


def test_mse_past_float32_range_in_place_gives_the_float64_value_and_gradient():
    y = np.zeros(5, np.float32)
    p = np.array([1.0, 2.0, 4.0, 3.0, 1e20], np.float32)
    expected = fl.get("mse").value_and_grad(y.astype(float), p.astype(float), reduction="sum",
                                            backend="numpy")
    value, grad = fl.get("mse").value_and_grad(y, p, reduction="sum", out=p)
    assert_scalar_close(value, expected[0], np.float32)
    assert_close(grad, expected[1], np.float32)
