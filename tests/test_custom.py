"""fastloss.custom_loss: derivatives by jets, user derivatives, compile reuse and clear errors.

(The test loss registered in conftest also runs through every test
parametrized over the registry.)
"""
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastloss as fl
from fastloss.backends import cpu
from fastloss.kernels.jet import FUNCTIONS, Jet

from .helpers import assert_close


@pytest.fixture(autouse=True)
def _unregister_new_losses():
    """Losses defined by a test leave the registry after it (other tests iterate over it)."""
    before = set(fl.REGISTRY)
    yield
    for name in set(fl.REGISTRY) - before:
        fl.custom.unregister(name)

# Each differentiable function on inputs inside its domain, through a loss f(0.5 p + 0.1 y).
DOMAIN_INPUTS = {"log": "pos", "log2": "pos", "log10": "pos", "sqrt": "pos", "log1p": "pos",
                 "tan": "small"}
UNARY = sorted(n for n in FUNCTIONS if n not in (
    "maximum", "minimum", "fmax", "fmin", "where", "clip", "power", "pow"))


def _inputs(kind, rng, n=400):
    y = rng.standard_normal(n)
    p = rng.standard_normal(n) * 2
    if kind == "pos":
        y, p = np.abs(y) + 0.1, np.abs(p) + 0.1
    elif kind == "small":
        p = np.clip(p, -2, 2)
    return y, p


def _central(f, y, p, h=1e-5):
    return (f(y, p + h) - f(y, p - h)) / (2 * h)


@pytest.mark.parametrize("fname", UNARY)
def test_jets_through_each_function_match_finite_differences(fname, rng):
    module = "math" if hasattr(math, fname) and fname not in ("abs",) else "np"
    src = f"lambda y, p: {module}.{fname}(0.5 * p + 0.1 * y)"
    loss = fl.custom_loss(eval(src, {"np": np, "math": math}), name=f"jet_{fname}")
    y, p = _inputs(DOMAIN_INPUTS.get(fname), rng)
    obj = fl.get(f"jet_{fname}")
    values = loss(y, p, reduction="none")
    g, h = obj.grad_hess(y, p)
    # the NumPy reference runs the same function on Python jets
    rv = loss(y, p, reduction="none", backend="numpy")
    rg, rh = obj.grad_hess(y, p, backend="numpy")
    assert_close(values, rv, np.float64, fname)
    assert_close(g, rg, np.float64, fname)
    assert_close(h, rh, np.float64, fname)
    # and both agree with finite differences of the value (and of the gradient)
    if fname not in ("sign", "abs"):
        fd_g = _central(lambda yy, pp: loss(yy, pp, reduction="none"), y, p)
        fd_h = _central(lambda yy, pp: obj.grad_hess(yy, pp)[0], y, p)
        np.testing.assert_allclose(g, fd_g, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(h, fd_h, rtol=1e-5, atol=1e-6)


def test_branches_parameters_and_the_issue_example(rng):
    @fl.custom_loss
    def asymmetric(y, p, *, tau=0.7):
        r = y - p
        return tau * r * r if r > 0 else (1 - tau) * r * r

    y, p = rng.standard_normal(5000), rng.standard_normal(5000)
    r = y - p
    for tau in (0.7, 0.6):
        w = np.where(r > 0, tau, 1 - tau)
        kwargs = {} if tau == 0.7 else {"tau": tau}
        np.testing.assert_allclose(asymmetric(y, p, reduction="none", **kwargs), w * r * r,
                                   rtol=1e-15)
        g, h = fl.get("asymmetric", **kwargs).grad_hess(y, p)
        np.testing.assert_allclose(g, -2 * w * r, rtol=1e-15)
        np.testing.assert_allclose(h, 2 * w, rtol=1e-15)
    assert asymmetric(y, p, tau=0.6) == pytest.approx(np.mean(np.where(r > 0, 0.6, 0.4) * r * r),
                                                      rel=1e-13)
    with pytest.raises(ValueError, match="tau"):
        asymmetric(y, p, tau=float("nan"))
    with pytest.raises(TypeError, match="delta"):
        asymmetric(y, p, delta=1.0)


def test_max_min_where_clip_and_powers(rng):
    @fl.custom_loss
    def mixed(y, p, *, k=1.5):
        r = p - y
        hinge = max(0.0, 1.0 - y * p)
        capped = np.clip(r, -2.0, 2.0)
        return hinge ** 2 + np.where(r > 0, capped ** 3, k ** r) + np.minimum(r, 0.5) \
            + abs(r) ** 1.5 + np.maximum(r * r, 0.25)

    y, p = rng.standard_normal(3000), rng.standard_normal(3000)
    obj = fl.get("mixed")
    g, h = obj.grad_hess(y, p)
    rg, rh = obj.grad_hess(y, p, backend="numpy")
    assert_close(g, rg, np.float64)
    assert_close(h, rh, np.float64)
    r = p - y
    hinge = np.maximum(0, 1 - y * p)
    expected = (2 * hinge * -y + np.where(r > 0, 3 * np.clip(r, -2, 2) ** 2 * (np.abs(r) < 2),
                                          np.log(1.5) * 1.5 ** r)
                + (r < 0.5) + 1.5 * np.sign(r) * np.abs(r) ** 0.5
                + np.where(r * r >= 0.25, 2 * r, 0.0))
    np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-12)


def test_user_derivatives_are_used(rng):
    calls = []

    def grad(y, p):
        return 3.0 * (p - y)               # deliberately not the derivative of the value

    @fl.custom_loss(grad=grad)
    def given_grad(y, p):
        return (p - y) ** 2

    y, p = rng.standard_normal(100), rng.standard_normal(100)
    g, h = fl.get("given_grad").grad_hess(y, p)
    np.testing.assert_allclose(g, 3.0 * (p - y), rtol=1e-15)
    np.testing.assert_allclose(h, 3.0, rtol=1e-15)          # derived from grad= by jets
    assert not calls

    @fl.custom_loss(grad=lambda y, p: math.gamma(p), hess=lambda y, p: 0.0)
    def not_differentiable(y, p):
        return math.lgamma(p)                                 # fine: nothing to differentiate

    x = np.array([1.5, 2.5, 4.0])
    np.testing.assert_allclose(not_differentiable(x, x, reduction="none"),
                               [math.lgamma(v) for v in x], rtol=1e-13)
    np.testing.assert_allclose(fl.get("not_differentiable").grad(x, x, reduction="sum"),
                               [math.gamma(v) for v in x], rtol=1e-13)


def test_what_jets_cannot_take_is_named():
    with pytest.raises(TypeError) as info:
        @fl.custom_loss
        def uses_gamma(y, p):
            r = p - y
            return math.gamma(r)
    message = str(info.value)
    assert "math.gamma(r)" in message and "grad=" in message


def test_numba_compile_errors_are_type_errors():
    @fl.custom_loss(grad=lambda y, p: 0.0, hess=lambda y, p: 0.0)
    def uncompilable(y, p):
        return np.float32(p).view(np.int32) + y

    with pytest.raises(TypeError, match="could not be compiled"):
        uncompilable(np.ones(3), np.ones(3))


@pytest.mark.parametrize("bad,match", [
    (lambda y: y, "takes \\(y, p"),
    (lambda y, p, tau=1.0: y, "keyword-only"),
    (eval("lambda y, p, *, tau: y"), "keyword-only with a default"),
    (eval("lambda y, p, *, tau='x': y"), "number"),
    (eval("lambda y, p, *, reduction=1.0: y"), "argument of every loss function"),
    (eval("lambda y, p, *, backend=1.0: y"), "argument of every loss function"),
])
def test_bad_signatures(bad, match):
    with pytest.raises(TypeError, match=match):
        fl.custom_loss(bad, name="bad_signature")


def test_names_and_domains():
    with pytest.raises(ValueError, match="built-in"):
        fl.custom_loss(lambda y, p: p, name="mse")
    for row_loss in ("cross_entropy", "nll", "linear_cross_entropy"):   # registered apart
        with pytest.raises(ValueError, match="built-in"):
            fl.custom_loss(lambda y, p: p, name=row_loss)
        assert row_loss not in fl.REGISTRY
    with pytest.raises(ValueError, match="y_domain"):
        fl.custom_loss(lambda y, p: p, name="odd", y_domain="positive")
    with pytest.raises(TypeError, match="Python function"):
        fl.custom_loss(np.exp, name="ufunc")

    @fl.custom_loss(name="log_ratio", y_domain="nonneg", p_domain="nonneg")
    def _(y, p):
        return np.log1p(p) - np.log1p(y)
    with pytest.raises(ValueError, match="y_pred must be >= 0"):
        fl.get("log_ratio")(np.ones(3), -np.ones(3))


def test_same_source_reuses_kernels_and_new_code_replaces_them(rng):
    y, p = rng.standard_normal(100), rng.standard_normal(100)

    def define(scale):
        @fl.custom_loss(name="redefined")
        def f(y, p):
            return 2.0 * (p - y) ** 2 if scale == 2 else 3.0 * (p - y) ** 2
        return f

    first = define(2)
    assert first(y, p) == pytest.approx(2 * np.mean((p - y) ** 2))
    kernels = cpu._kernels[("redefined", False)]
    define(2)                                          # the same code: nothing rebuilt
    assert cpu._kernels[("redefined", False)] is kernels

    @fl.custom_loss(name="redefined")
    def g(y, p):
        return 5.0 * (p - y) ** 2
    assert g(y, p) == pytest.approx(5 * np.mean((p - y) ** 2))
    assert fl.get("redefined")(y, p) == pytest.approx(5 * np.mean((p - y) ** 2))


CACHE_SCRIPT = textwrap.dedent("""
    import numpy as np, fastloss as fl
    from fastloss.backends import cpu

    @fl.custom_loss
    def cached_custom_loss(y, p, *, tau=0.25):
        r = p - y
        return tau * r * r if r > 0 else np.log1p(r * r)

    x = np.linspace(-2, 2, 1000)
    value = cached_custom_loss(x, x[::-1], tau=0.5)
    stats = cpu.kernels("cached_custom_loss", False)["reduce_value"].stats
    print(value, stats.cache_hits.total(), stats.cache_misses.total())
""")


def test_kernels_are_cached_on_disk_across_processes(tmp_path):
    script = tmp_path / "cached.py"
    script.write_text(CACHE_SCRIPT)
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    runs = [subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           env=env, timeout=300) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    (v1, hits1, misses1), (v2, hits2, misses2) = [map(float, r.stdout.split()) for r in runs]
    assert v1 == v2
    assert (hits1, misses1) == (0, 1)                  # compiled, then saved
    assert (hits2, misses2) == (1, 0)                  # loaded, not compiled


def test_unregister():
    fl.custom_loss(lambda y, p: p - y, name="short_lived")
    assert "short_lived" in fl.available()
    fl.custom.unregister("short_lived")
    assert "short_lived" not in fl.available()
    with pytest.raises(ValueError, match="unknown loss"):
        fl.get("short_lived")
    with pytest.raises(ValueError, match="not a custom loss"):
        fl.custom.unregister("mse")


def test_python_jets():
    a = Jet(2.0, 1.0, 0.0)
    b = a * a * a                      # x^3: 8, 12, 12
    assert (b.v, b.g, b.h) == (8.0, 12.0, 12.0)
    c = 1.0 / a                        # 1/x: 0.5, -0.25, 0.25
    assert (c.v, c.g, c.h) == (0.5, -0.25, 0.25)
    assert a > 1.5 and not a < 1.5 and max(a, 1.0) is a


def test_a_changed_global_gives_new_kernels_not_a_stale_cache_entry(tmp_path):
    """Numba compiles the values of the globals a loss reads into its kernels; a run with
    another value must not load the kernels cached by the first (it gave 2.0 for 3.0)."""
    script = tmp_path / "scaled.py"
    script.write_text(textwrap.dedent("""
        import sys, types
        import numpy as np, fastloss as fl
        SCALE = float(sys.argv[1])
        settings = types.ModuleType("settings")
        settings.OFFSET = float(sys.argv[2])

        @fl.custom_loss
        def scaled_square(y, p):
            return SCALE * (p - y) ** 2 + settings.OFFSET

        y, p = np.zeros(3), np.ones(3)
        print(scaled_square(y, p), fl.get("scaled_square").grad(y, p, reduction="sum")[0])
    """))
    for scale, offset in ((2.0, 0.0), (3.0, 0.0), (3.0, 0.5), (2.0, 0.0)):
        done = subprocess.run([sys.executable, str(script), str(scale), str(offset)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert [float(v) for v in done.stdout.split()] == [scale + offset, 2.0 * scale]


def test_losses_closing_over_different_values_are_different_losses():
    def defined_with(scale):
        def closure_scaled(y, p):
            return scale * (p - y) ** 2
        return fl.custom_loss(closure_scaled)

    y, p = np.zeros(4), np.ones(4)
    assert defined_with(2.0)(y, p) == 2.0
    assert defined_with(3.0)(y, p) == 3.0
    assert fl.get("closure_scaled").grad(y, p, reduction="sum")[0] == 6.0


def test_defining_a_loss_whose_probe_point_is_outside_its_domain_warns_nothing():
    """custom_loss runs the function once on a jet at (0.5, 0.25) to check that jets can
    take it; sqrt(p - y) is NaN there, which used to warn at definition."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = fl.custom_loss(lambda y, p: math.sqrt(p - y), name="root_gap")
    assert f(np.zeros(3), np.full(3, 4.0)) == 2.0
