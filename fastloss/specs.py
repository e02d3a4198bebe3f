"""The registry of losses: names, parameters, input domains and documentation.

This module is plain Python: it is what ``import fastloss`` loads.  The maths
of each loss lives in two places on purpose:

* ``fastloss.kernels.scalar``: the per-element value, first and second
  derivative as Numba scalar functions, from which every compiled kernel (CPU
  now, CUDA later) is generated;
* ``fastloss.backends.reference``: an independent vectorized NumPy version,
  written from the textbook formulas, used as the test oracle and the
  benchmark baseline.

Adding a loss means one ``LossSpec`` here, its three scalar functions, and its
reference formulas.  The test suite and the benchmarks iterate over
``REGISTRY``, so a registered loss is tested and benchmarked automatically.
"""
from dataclasses import dataclass, field
import math

# Domains of y_true / y_pred values.  Each backend implements the check on its
# own (kernels.scalar.DOMAIN_CHECKS, backends.reference.DOMAIN_MASKS).
DOMAINS = {
    "real": "any real number",
    "unit": "in [0, 1]",
    "nonneg": ">= 0",
    "binary": "in {0, 1}",
    "signed_binary": "in {-1, +1} (0 is read as -1)",
}


@dataclass(frozen=True)
class Param:
    """A keyword parameter of a loss, validated before any kernel runs."""

    name: str
    default: object
    check: object          # value -> bool, on the already converted value
    requirement: str       # what check demands, for the error message
    convert: object = float
    none_value: float = math.nan     # what kernels receive for None

    def to_float(self, value):
        """The parameter as the float64 that kernels receive."""
        return self.none_value if value is None else float(value)


# LossSpec.value_in_float32's answers: (y_domain, y dtype, p dtype) -> bool
_FLOAT32_VALUES = {}


@dataclass(frozen=True)
class LossSpec:
    """One loss: its public name, parameters and documentation."""

    name: str
    summary: str
    formula: str
    params: tuple = ()
    y_domain: str = "real"
    p_domain: str = "real"
    hessian_note: str = ""
    reference: str = ""
    # Parameter values other than the defaults that the test suite also runs.
    test_params: tuple = field(default_factory=tuple)
    # Reductions beyond "mean", "sum" and "none" (kl_div's "batchmean").
    extra_reductions: tuple = ()
    # The domain example inputs draw y_true from, when narrower than y_domain.
    example_y_domain: str = ""
    # Made by fastloss.custom_loss from a user's function (no peer, no textbook reference).
    custom: bool = False
    # A function of y_pred - y_true alone, so d l / d y_true = -d l / d y_pred: the gradient
    # the PyTorch adapters give a target that requires one.
    difference: bool = False
    # Its value and gradient are computed in float32 for float32 data by the CPU and CUDA
    # backends: a few ulp of float32, within the float32 accuracy contract, twice the
    # vector lanes of float64 (and the GPU's float32 units).  Set for the losses whose scalar value
    # and gradient functions are written for either precision (or, with
    # float64_value_maths, whose value takes float32 operands into float64 maths).
    float32_value: bool = False
    # (param, value): the CPU kernels are also built with this parameter as a compiled
    # constant, used when a call passes that value (its default, usually; see backends.cpu).
    constant_param: tuple = ()
    # LLVM's loop interleave count for the CPU kernels over float32 targets and predictions,
    # on CPUs with AVX-512 (0: LLVM's own choice).  LLVM picks 1 or 2 for these long loop
    # bodies; four independent vectors in flight keep the vector units busier where a chain
    # of dependent polynomial steps would leave them waiting (see backends.cpu.tuned_for_float32).
    float32_interleave: int = 0
    # float32_interleave's counterpart on CPUs with AVX2 but not AVX-512 (16 registers of
    # eight float32 lanes), for the float32 kinds only: sigmoid_focal's value ran 24%
    # faster at two (AMD Zen 3, 2 threads, n = 1e7); binary_cross_entropy's at two was
    # 11% faster with soft labels but 12% slower with 0/1 labels, log_cosh's and the
    # logits one's the same.
    float32_interleave_avx2: int = 0
    # With float32_value: the CPU kernels compute the float32 value and gradient in the
    # float64 kernels' one pass over the inputs (summed in float64 as they go), not in a
    # first pass to a buffer of float32 values and a second that sums them.  For the
    # arithmetic losses, a handful of operations per element: the second pass would cost
    # more than the float32 lanes save.  On CPUs with AVX2 but not AVX-512 every
    # float32_value loss takes one pass (backends.cpu.float32_in_one_pass).
    float32_in_one_pass: bool = False
    # With float32_value: the value function computes in float64 from the float32
    # operands it is given.  kl_div's terms cancel where the divergence is small, so
    # float32 arithmetic would leave its total far outside the float32 accuracy contract.
    # Its float32 kernels read float32 (sixteen lanes) and take a shorter float64 log of
    # float32 arguments (fmath.flog_of_float32); its gradient is float32 arithmetic.
    # poisson_nll's e^p and y p cancel where the rate fits the count: its value, gradient
    # and Hessian compute in float64, e^p by the shorter fmath.fexp_of_float32.
    float64_value_maths: bool = False
    # With float32_in_one_pass: grad_hess of float32 data has a float32 kind too, as the
    # float32_value losses without float32_in_one_pass have (backends.cpu.float32_grad_hess).
    # poisson_nll's, whose derivatives are exponentials, ran 5% faster so; kl_div's, -y and
    # 0 from float32 reads, 6% slower (Intel AVX-512, 2 threads, n = 1e7, out= buffers).
    float32_grad_hess: bool = False
    # Kinds among those (FLOAT32_KINDS of backends.cpu) compiled at LLVM's own vector width,
    # the float64 sum's eight lanes, instead of sixteen: where the float32 maths is a
    # subtraction and a square or an absolute value, the eight-lane value loop read memory
    # faster (mse 93-98 against 80-81 GB/s, mae 104-109 against 83-87, with the host's
    # memory quiet; from cache as well), while every other kind and loss gained from sixteen.
    float32_sum_width_kinds: tuple = ()

    def interleave_for(self, kind, avx512=True):
        """LLVM's interleave count for CPU kernel ``kind``: float32_interleave, or on CPUs
        without AVX-512 float32_interleave_avx2 for the float32 kinds (0 for the others)."""
        if not avx512:
            return self.float32_interleave_avx2 if "_f32" in kind else 0
        return self.float32_interleave

    @property
    def arithmetic(self):
        """A few arithmetic operations per element, no exponential or logarithm: the
        one-pass float32 losses but those whose maths is float64 (kl_div, poisson_nll)."""
        return self.float32_in_one_pass and not self.float64_value_maths

    def value_in_float32(self, y_dtype, p_dtype):
        """Whether the compiled backends compute this loss's value in float32 for these dtypes.

        For float32_value losses with float32 predictions, when float32 holds the
        targets exactly or they lie in [-1, 1] (labels, probabilities: rounding one
        to float32 changes the loss by a float32 rounding error, and the kernels
        check the domain on the target as given).
        """
        if not self.float32_value:
            return False
        # asked on every call: remembered per (target domain, dtypes), all it depends on
        key = (self.y_domain, y_dtype, p_dtype)
        answer = _FLOAT32_VALUES.get(key)
        if answer is None:
            import numpy as np
            answer = _FLOAT32_VALUES[key] = bool(
                p_dtype == np.float32
                and (np.can_cast(y_dtype, np.float32, "safe")
                     or self.y_domain in ("unit", "binary", "signed_binary")))
        return answer

    def resolve_params(self, given):
        """Validated parameters in declaration order, as a dict."""
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise TypeError(f"{self.name}() got unexpected parameter(s) {', '.join(unknown)}; "
                            f"its parameters are: {allowed}")
        out = {}
        for p in self.params:
            value = given.get(p.name, p.default)
            if value is not None:
                if isinstance(value, (str, bytes, complex)) or not _is_real_scalar(value):
                    raise TypeError(f"{self.name}: parameter {p.name!r} must be a real number, "
                                    f"got {value!r}")
                value = p.convert(value)
            if not p.check(value):
                raise ValueError(f"{self.name}: parameter {p.name!r} must be {p.requirement}, "
                                 f"got {value!r}")
            out[p.name] = value
        return out

    def theta(self, params):
        """The parameters as the tuple of floats that kernels receive."""
        return tuple(p.to_float(params[p.name]) for p in self.params)

    @property
    def doc(self):
        lines = [self.summary, "", "    " + self.formula.replace("\n", "\n    ")]
        if self.params:
            lines += ["", "Parameters: " + ", ".join(f"{p.name}={p.default!r} ({p.requirement})"
                                                    for p in self.params)]
        if self.y_domain != "real":
            lines += ["", f"y_true must be {DOMAINS[self.y_domain]}."]
        if self.p_domain != "real":
            lines += ["", f"y_pred must be {DOMAINS[self.p_domain]}."]
        if self.hessian_note:
            lines += ["", "Hessian: " + self.hessian_note]
        if self.reference:
            lines += ["", "Reference: " + self.reference]
        return "\n".join(lines)


def _is_real_scalar(value):
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        return isinstance(value, (int, float, bool))
    return isinstance(value, (int, float, bool, np.integer, np.floating, np.bool_))


def _positive(v):
    return v > 0


def _nonnegative(v):
    return v >= 0


def _open_unit(v):
    return 0 < v < 1


def _finite_or_none(check):
    return lambda v: v is None or (math.isfinite(v) and check(v))


_finite = _finite_or_none(lambda v: True)

REGISTRY = {}


def register(spec):
    if spec.name in REGISTRY:
        raise ValueError(f"a loss named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


register(LossSpec(
    name="mse",
    summary="Mean squared error.",
    formula="l(y, p) = (p - y)^2",
    hessian_note="2 everywhere.",
    reference="torch.nn.functional.mse_loss.",
    float32_value=True,
    float32_in_one_pass=True,
    float32_sum_width_kinds=("reduce_value", "reduce_weighted_value"),
    difference=True,
))
register(LossSpec(
    name="mae",
    summary="Mean absolute error (L1 loss).",
    formula="l(y, p) = |p - y|;  dl/dp = sign(p - y), 0 at p = y (as PyTorch)",
    hessian_note="0 (piecewise linear).",
    reference="torch.nn.functional.l1_loss.",
    float32_value=True,
    float32_in_one_pass=True,
    float32_sum_width_kinds=("reduce_value", "reduce_weighted_value"),
    difference=True,
))
register(LossSpec(
    name="huber",
    summary="Huber loss: quadratic near zero, linear beyond delta.",
    formula="r = p - y;  l = r^2 / 2 if |r| < delta else delta * (|r| - delta / 2)",
    params=(Param("delta", 1.0, _finite_or_none(_positive), "a finite number > 0"),),
    hessian_note="1 where |r| < delta, else 0.",
    reference="Huber (1964); torch.nn.functional.huber_loss.",
    test_params=({"delta": 0.3},),
    float32_value=True,
    float32_in_one_pass=True,
    difference=True,
))
register(LossSpec(
    name="smooth_l1",
    summary="Smooth L1 loss: Huber divided by beta; beta = 0 is the L1 loss.",
    formula="r = p - y;  l = r^2 / (2 beta) if |r| < beta else |r| - beta / 2",
    params=(Param("beta", 1.0, _finite_or_none(_nonnegative), "a finite number >= 0"),),
    hessian_note="1 / beta where |r| < beta, else 0.",
    reference="Girshick, Fast R-CNN (2015); torch.nn.functional.smooth_l1_loss.",
    test_params=({"beta": 0.25}, {"beta": 0.0}),
    float32_value=True,
    float32_in_one_pass=True,
    difference=True,
))
register(LossSpec(
    name="log_cosh",
    summary="Log-cosh loss: r^2/2 near zero, |r| - log 2 far from it.",
    formula="r = p - y;  l = log(cosh(r));  dl/dp = tanh(r)",
    hessian_note="1 - tanh(r)^2.",
    reference="tf.keras.losses.log_cosh; optax.log_cosh.",
    float32_value=True,
    float32_interleave=4,
    difference=True,
))
register(LossSpec(
    name="pinball",
    summary="Pinball (quantile) loss.",
    formula="r = y - p;  l = quantile * r if r >= 0 else (quantile - 1) * r;\n"
            "dl/dp = -quantile if y >= p else 1 - quantile (as scikit-learn)",
    params=(Param("quantile", 0.5, _finite_or_none(_open_unit), "in (0, 1)"),),
    hessian_note="0 (piecewise linear).",
    reference="Koenker & Bassett (1978); sklearn.metrics.mean_pinball_loss.",
    test_params=({"quantile": 0.9},),
    float32_value=True,
    float32_in_one_pass=True,
    difference=True,
))
register(LossSpec(
    name="poisson_nll",
    summary="Poisson negative log-likelihood with the log of the rate as input.",
    formula="l = exp(p) - y * p  [+ y log y - y + log(2 pi y) / 2 for y > 1 when full=True]",
    params=(Param("full", False, lambda v: isinstance(v, bool), "True or False", convert=bool),),
    y_domain="nonneg",
    hessian_note="exp(p).",
    reference="torch.nn.functional.poisson_nll_loss(log_input=True).",
    test_params=({"full": True},),
    constant_param=("full", False),
    float32_value=True,
    float32_in_one_pass=True,
    float64_value_maths=True,
    float32_grad_hess=True,
    # two, its float64 maths at sixteen lanes spilling at four: value 3.5-3.8 -> 3.3-3.5 ms
    # and value_and_grad 4.6-4.8 -> 4.1-4.2 (Intel AVX-512, 2 threads, n = 1e7 float32)
    float32_interleave=2,
))
register(LossSpec(
    name="hinge",
    summary="Hinge loss for labels in {-1, +1} ({0, 1} accepted, 0 meaning -1).",
    formula="t = +1 if y > 0 else -1;  l = max(0, 1 - t * p)",
    y_domain="signed_binary",
    hessian_note="0 (piecewise linear).",
    reference="sklearn.metrics.hinge_loss; optax.hinge_loss.",
    float32_value=True,
    float32_in_one_pass=True,
))
register(LossSpec(
    name="squared_hinge",
    summary="Squared hinge loss for labels in {-1, +1} ({0, 1} accepted, 0 meaning -1).",
    formula="t = +1 if y > 0 else -1;  l = max(0, 1 - t * p)^2",
    y_domain="signed_binary",
    hessian_note="2 where t * p < 1, else 0.",
    reference="tf.keras.losses.squared_hinge.",
    float32_value=True,
    float32_in_one_pass=True,
))
register(LossSpec(
    name="binary_cross_entropy",
    summary="Binary cross-entropy on probabilities.",
    formula="l = -(y * max(log p, -100) + (1 - y) * max(log(1 - p), -100));\n"
            "dl/dp = (p - y) / max(p (1 - p), 1e-12) (as PyTorch)",
    y_domain="unit",
    p_domain="unit",
    hessian_note="y / max(p^2, 1e-12) + (1 - y) / max((1 - p)^2, 1e-12).",
    reference="torch.nn.functional.binary_cross_entropy (log terms clamped at -100).",
    float32_value=True,
    # two (four before): value_and_grad 4.2-5.3 -> 3.6-4.0 ms, the value the same (Intel
    # AVX-512, 2 threads, n = 1e7 float32, old and new alternated)
    float32_interleave=2,
))
register(LossSpec(
    name="binary_cross_entropy_with_logits",
    summary="Binary cross-entropy on logits, with an optional weight of the positive class.",
    formula="w = 1 + (pos_weight - 1) * y;\n"
            "l = (1 - y) * p + w * log(1 + exp(-p)), computed as "
            "max(p, 0) terms + log1p(exp(-|p|));\n"
            "dl/dp = (1 - y) sigmoid(p) - pos_weight * y * sigmoid(-p)",
    params=(Param("pos_weight", None, _finite_or_none(_nonnegative),
                  "None or a finite number >= 0", none_value=1.0),),
    y_domain="unit",
    hessian_note="(1 + (pos_weight - 1) y) sigmoid(p) sigmoid(-p).",
    reference="torch.nn.functional.binary_cross_entropy_with_logits "
              "(pos_weight a scalar here).",
    test_params=({"pos_weight": 3.0},),
    float32_value=True,
    float32_interleave=4,
))
register(LossSpec(
    name="kl_div",
    summary="Kullback-Leibler divergence of y_pred (log-probabilities) from y_true.",
    formula="l = y (log y - p), 0 where y = 0 (xlogy), NaN for y < 0;\n"
            "with log_target=True, y holds log-probabilities: l = e^y (y - p)",
    params=(Param("log_target", False, lambda v: isinstance(v, bool), "True or False",
                  convert=bool),),
    hessian_note="0 (linear in y_pred).",
    reference="torch.nn.functional.kl_div (reduction 'batchmean' divides the sum by the "
              "first dimension).",
    test_params=({"log_target": True},),
    extra_reductions=("batchmean",),
    example_y_domain="unit",
    constant_param=("log_target", False),
    float32_value=True,
    float32_in_one_pass=True,
    float64_value_maths=True,
    # its value kernels too: 11 -> 5.5-6.2 ms at n = 1e7 float32 on 2 threads of an Intel
    # AVX-512 host, where an earlier one had measured them 10% slower at four
    float32_interleave=4,
))
register(LossSpec(
    name="sigmoid_focal",
    summary="Sigmoid focal loss on logits, for binary labels.",
    formula="p_t = sigmoid(p) if y = 1 else sigmoid(-p);  ce = -log p_t;\n"
            "l = alpha_t * ce * (1 - p_t)^gamma, alpha_t = alpha if y = 1 else 1 - alpha\n"
            "(alpha < 0 turns the class weighting off); (1 - p_t) and p_t come from\n"
            "log-sigmoid terms, so gradients stay finite at saturation for any gamma >= 0.",
    params=(Param("alpha", 0.25, _finite_or_none(lambda v: v <= 1), "a finite number <= 1"),
            Param("gamma", 2.0, _finite_or_none(_nonnegative), "a finite number >= 0")),
    y_domain="binary",
    hessian_note="the exact second derivative, "
                 "alpha_t (1 - p_t)^gamma p_t [(1 + 2 gamma)(1 - p_t) + gamma ce (gamma p_t - (1 - p_t))].",
    reference="Lin et al., Focal Loss for Dense Object Detection (2017); "
              "torchvision.ops.sigmoid_focal_loss.",
    test_params=({"alpha": 0.6, "gamma": 0.5}, {"alpha": -1.0, "gamma": 1.5}),
    float32_value=True,
    constant_param=("gamma", 2.0),
    float32_interleave=4,
    float32_interleave_avx2=2,
))
