"""The maths of every elementwise loss, once: value, dl/dp and d2l/dp2 per element.

Each function takes (y, p, theta): the target, the prediction (both float64)
and the loss's parameters as a tuple of floats in the order of its
``LossSpec.params``.  The value and gradient functions of the losses marked
``LossSpec.float32_value`` are written for either precision (constants through
``fmath.as_type_of``, transcendentals from ``fmath``'s type-generic functions):
for float32 data the CPU kernels run them on float32 (y, p), the float64
kernels on float64, from the same source (kl_div's value and poisson_nll's maths
compute in float64 from float32 operands: ``LossSpec.float64_value_maths``).  The kernel
templates (``fastloss.backends.cpu``) turn these into fused parallel loops;
they are compiled without fast-math so that the stable forms below are kept as
written.  Transcendental functions come from ``fmath`` so that the loops
vectorize.
"""
import math

import numpy as np

from . import fmath
from .fmath import SCALAR_OPTIONS
from .llvm_attributes import inlined_jit

# Inlined into the kernels by LLVM, whatever their length: a call left in a loop
# stops it vectorizing (llvm_attributes).
jit = inlined_jit(**SCALAR_OPTIONS)
_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@jit
def _sign(x):
    one = fmath.as_type_of(1.0, x)
    zero = fmath.as_type_of(0.0, x)
    return one if x > zero else (-one if x < zero else zero * x)     # 0 at 0, nan for nan


@jit
def _nan_passed(c, y, p):
    """c in p - y's float type, NaN where y or p is NaN (or infinite): a derivative that
    is constant in pieces passes NaN inputs on.  c + 0 (p - y) did so too, but was NaN
    for finite inputs whose difference overflows to inf.  Two fused multiply-adds where
    that was one: the float64 grad_hess of mse, mae and pinball 10-25% slower from the
    cache of an Intel host whose vector ports bind (a compare and select of p - y cost
    as much); memory-bound, the same."""
    zero = fmath.as_type_of(0.0, p - y)
    return (fmath.as_type_of(c, zero) + zero * p) + zero * fmath.as_type_of(y, zero)


# -- squared and absolute errors -------------------------------------------

@jit
def mse_value(y, p, th):
    r = p - y
    return r * r


@jit
def mse_grad(y, p, th):
    r = p - y
    return fmath.as_type_of(2.0, r) * r


@jit
def mse_hess(y, p, th):
    return _nan_passed(2.0, y, p)


@jit
def mae_value(y, p, th):
    return abs(p - y)


@jit
def mae_grad(y, p, th):
    return _sign(p - y)


@jit
def mae_hess(y, p, th):
    return _nan_passed(0.0, y, p)


# -- robust regression ------------------------------------------------------

@jit
def huber_value(y, p, th):
    a = abs(p - y)
    d = fmath.as_type_of(th[0], a)
    # m = min(|r|, delta) gives both pieces, m (|r| - m / 2): r^2 / 2 (|r| - |r| / 2 is
    # exact) or delta (|r| - delta / 2), with no select between them; a NaN stays in a
    m = a if a < d else d
    return m * (a - fmath.as_type_of(0.5, a) * m)


@jit
def huber_grad(y, p, th):
    r = p - y
    d = fmath.as_type_of(th[0], r)
    return fmath.clamp(r, -d, d)


@jit
def huber_hess(y, p, th):
    r = p - y
    return _nan_passed(1.0 if abs(r) < th[0] else 0.0, y, p)


@jit
def smooth_l1_value(y, p, th):
    b = th[0]
    r = p - y
    a = abs(r)
    # 0.5 / b: once per kernel (loop-invariant), not per element; only where a < b, so
    # never at b = 0 (the CUDA simulator runs this as Python, where 0.5 / 0.0 raises)
    return (fmath.as_type_of(0.5 / b, r) * (r * r) if a < fmath.as_type_of(b, r)
            else a - fmath.as_type_of(0.5 * b, r))


@jit
def smooth_l1_grad(y, p, th):
    b = th[0]
    r = p - y
    return r * fmath.as_type_of(1.0 / b, r) if abs(r) < fmath.as_type_of(b, r) else _sign(r)


@jit
def smooth_l1_hess(y, p, th):
    b = th[0]
    r = p - y
    return _nan_passed(1.0 / b if abs(r) < b else 0.0, y, p)


@jit
def log_cosh_value(y, p, th):
    # With a = |r|, u = expm1(a) and v = 1 + u = e^a, log cosh r is
    #   log1p(u^2 / (2 v))              for a < 0.7 (exact near 0)
    #   a - log 2 + log1p(1 / v^2)      beyond (no cancellation: both terms are positive).
    # Both are log1p of a quotient in [0, 0.26], one division in log1p_quotient.  a is
    # capped at 30 inside the exponential only: beyond it, 1 / v^2 < 1e-26 no longer
    # changes a - log 2.
    a = abs(p - y)
    one = fmath.as_type_of(1.0, a)
    u = fmath.expm1(min(a, fmath.as_type_of(30.0, a)))
    v = one + u
    near = a < fmath.as_type_of(0.7, a)
    tail = fmath.log1p_quotient(u * u if near else one, (v + v) if near else v * v)
    return tail + (fmath.as_type_of(0.0, a) if near else a - fmath.as_type_of(_LOG2, a))


@jit
def log_cosh_grad(y, p, th):
    # tanh |r| = (v^2 - 1) / (v^2 + 1) = n / (n + 2) with u = expm1(|r|), v = 1 + u and
    # n = v^2 - 1 = u (u + 2): exact near 0, and the same u as the value's
    # (value_and_grad computes it once).  Beyond |r| = 30, tanh rounds to 1 and so does this.
    r = p - y
    u = fmath.expm1(min(abs(r), fmath.as_type_of(30.0, r)))
    n = u * (u + fmath.as_type_of(2.0, r))
    t = n / (n + fmath.as_type_of(2.0, r))
    return t if r >= 0.0 else -t


@jit
def log_cosh_hess(y, p, th):
    # 1 - tanh^2 r = 4 e / (1 + e)^2 with e = exp(-2|r|)
    r = p - y
    one = fmath.as_type_of(1.0, r)
    e = fmath.exp_nonpositive(fmath.as_type_of(-2.0, r) * abs(r))
    return fmath.as_type_of(4.0, r) * e / ((one + e) * (one + e))


@jit
def pinball_value(y, p, th):
    r = y - p
    q = fmath.as_type_of(th[0], r)
    return q * r if r >= fmath.as_type_of(0.0, r) else (q - fmath.as_type_of(1.0, r)) * r


@jit
def pinball_grad(y, p, th):
    r = p - y
    q = fmath.as_type_of(th[0], r)
    return _nan_passed(-q if y >= p else fmath.as_type_of(1.0, r) - q, y, p)


@jit
def pinball_hess(y, p, th):
    return _nan_passed(0.0, y, p)


# -- counts -----------------------------------------------------------------

# e^x passes the largest float64 above x = 709.7827; fexp and fexp_of_float32 clamp x here
_EXP_OVERFLOWS = 710.0


@jit
def poisson_nll_value(y, p, th):
    """In float64 whatever the inputs' float type, as kl_div's: e^p and y p cancel where
    the rate fits the count.  For float32 p, e^p is ``fmath.fexp_of_float32``."""
    lam = fmath.exp_in_float64(p)
    y = np.float64(y)
    p = np.float64(p)
    # Stirling's approximation of log(y!), added for y > 1 when full=True.
    stirling = y * fmath.flog(y) - y + 0.5 * fmath.flog(y) + _HALF_LOG_2PI
    extra = stirling if (th[0] != 0.0 and y > 1.0) else 0.0
    # Once e^p overflows (p > 709.78) the value is inf: p is capped in y p there, which
    # might overflow too (to inf - inf, or, with the subtraction fused into the
    # exponential's last product, to -inf).  One vminpd, and for float32 p none: the
    # exponential caps it the same way first.
    capped = _EXP_OVERFLOWS if _EXP_OVERFLOWS < p else p
    return (lam - y * capped) + extra


@jit
def poisson_nll_grad(y, p, th):
    return fmath.exp_in_float64(p) - np.float64(y)


@jit
def poisson_nll_hess(y, p, th):
    return fmath.exp_in_float64(p) + 0.0 * np.float64(y)


# -- divergences ---------------------------------------------------------------

@jit
def kl_div_value(y, p, th):
    """In float64 whatever the inputs' float type: the terms of a small divergence cancel,
    so float32 arithmetic would not hold its float32 accuracy.  For float32 y the log
    is ``fmath.flog_of_float32``, shorter than the general float64 one."""
    log_target = th[0] != 0.0
    y64 = np.float64(y)
    p64 = np.float64(p)
    with_log_target = fmath.fexp(y64) * (y64 - p64)
    # y log y: 0 at y = 0, +inf at +inf (the log is finite there), NaN for y < 0
    ylogy = y64 * fmath.log_of_positive_in_float64(y)
    ylogy = np.nan if y < fmath.as_type_of(0.0, y) else ylogy
    return with_log_target if log_target else ylogy - y64 * p64


@jit
def kl_div_grad(y, p, th):
    return (-fmath.exp(y) if th[0] != 0.0 else -y) + fmath.as_type_of(0.0, p) * p


@jit
def kl_div_hess(y, p, th):
    return 0.0 * (y + p)


# -- margin losses (y in {-1, 0, +1}, 0 read as -1) -------------------------

@jit
def _signed_label(y):
    """+1 for the label 1, -1 for 0 and -1, as arithmetic: y (y + 1) - 1, NaN at NaN (other
    labels are the domain check's to refuse).  Two operations, as a compare and select
    take, but a NaN label stays NaN where a select would need two more to restore it."""
    one = fmath.as_type_of(1.0, y)
    return y * (y + one) - one


@jit
def _positive_part(m):
    zero = fmath.as_type_of(0.0, m)
    return zero if m <= zero else m         # max(m, 0) that keeps a NaN


@jit
def hinge_value(y, p, th):
    return _positive_part(fmath.as_type_of(1.0, p) - _signed_label(y) * p)


@jit
def hinge_grad(y, p, th):
    t = _signed_label(y)
    zero = fmath.as_type_of(0.0, p)
    return (-t if t * p < fmath.as_type_of(1.0, p) else zero) + zero * (y + p)


@jit
def hinge_hess(y, p, th):
    return 0.0 * (y + p)


@jit
def squared_hinge_value(y, p, th):
    m = hinge_value(y, p, th)
    return m * m


@jit
def squared_hinge_grad(y, p, th):
    t = _signed_label(y)
    one = fmath.as_type_of(1.0, p)
    return -(one + one) * t * _positive_part(one - t * p)


@jit
def squared_hinge_hess(y, p, th):
    return (2.0 if _signed_label(y) * p < 1.0 else 0.0) + 0.0 * (y + p)


# -- binary classification --------------------------------------------------

@jit
def binary_cross_entropy_value(y, p, th):
    floor = fmath.as_type_of(-100.0, p)
    log_p, log_q = fmath.log_and_log1m_floored(p, floor)
    return -(y * log_p + (fmath.as_type_of(1.0, p) - y) * log_q)


@jit
def binary_cross_entropy_value_binary_labels(y, p, th):
    # For y in {0, 1} only one of the two logarithms is needed.
    return -fmath.log_or_log1m_floored(p, y == fmath.as_type_of(0.0, y), fmath.as_type_of(-100.0, p))


@jit
def binary_cross_entropy_grad(y, p, th):
    return (p - y) / max(p * (fmath.as_type_of(1.0, p) - p), fmath.as_type_of(1e-12, p))


@jit
def binary_cross_entropy_hess(y, p, th):
    one = fmath.as_type_of(1.0, p)
    floor = fmath.as_type_of(1e-12, p)
    q = one - p
    return y / max(p * p, floor) + (one - y) / max(q * q, floor)


@jit
def binary_cross_entropy_with_logits_value(y, x, th):
    one = fmath.as_type_of(1.0, x)
    pw = fmath.as_type_of(th[0], x)
    lw = one + (pw - one) * y
    tail = fmath.log1p_unit(fmath.exp_nonpositive(-abs(x)))      # log(1 + e^-|x|)
    linear = (one - y) * x if x >= 0.0 else -pw * y * x
    return linear + lw * tail


@jit
def binary_cross_entropy_with_logits_grad(y, x, th):
    s_pos, s_neg = fmath.sigmoid_pair(x)
    return (fmath.as_type_of(1.0, x) - y) * s_pos - fmath.as_type_of(th[0], x) * y * s_neg


@jit
def binary_cross_entropy_with_logits_hess(y, x, th):
    one = fmath.as_type_of(1.0, x)
    s_pos, s_neg = fmath.sigmoid_pair(x)
    return (one + (fmath.as_type_of(th[0], x) - one) * y) * s_pos * s_neg


@jit
def _focal_terms(y, x, th):
    """alpha_t, ce = -log p_t, p_t, q = 1 - p_t and q^gamma for a binary label, in x's type."""
    one = fmath.as_type_of(1.0, x)
    alpha, gamma = fmath.as_type_of(th[0], x), fmath.as_type_of(th[1], x)
    e = fmath.exp_nonpositive(-abs(x))
    tail = fmath.log1p_unit(e)
    big = one / (one + e)                 # sigmoid(|x|)
    small = e * big                       # sigmoid(-|x|)
    positive = y > 0.5
    agree = positive == (x >= 0.0)        # does the logit's sign favour the label?
    # -log sigmoid(+-|x|): tail for the favoured side, |x| + tail for the other
    ce = tail if agree else abs(x) + tail
    log_q = -(abs(x) + tail) if agree else -tail
    p_t = big if agree else small
    q = small if agree else big
    # gamma = 2 (the default) as a product: no second exponential
    q_gamma = q * q if gamma == 2.0 else (fmath.exp_nonpositive(gamma * log_q)
                                          if gamma != 0.0 else one)
    alpha_t = (alpha if positive else one - alpha) if alpha >= 0.0 else one
    return alpha_t, ce, p_t, q, q_gamma


@jit
def sigmoid_focal_value(y, x, th):
    alpha_t, ce, p_t, q, q_gamma = _focal_terms(y, x, th)
    return alpha_t * ce * q_gamma + fmath.as_type_of(0.0, x) * y


@jit
def sigmoid_focal_grad(y, x, th):
    gamma = fmath.as_type_of(th[1], x)
    alpha_t, ce, p_t, q, q_gamma = _focal_terms(y, x, th)
    one = fmath.as_type_of(1.0, x)
    c = -one if y > 0.5 else one          # d(1 - p_t)/dx = c p_t (1 - p_t)
    s_minus_y = c * q                     # sigmoid(x) - y
    # ce p_t = -p_t log p_t <= 1/e: finite where gamma ce alone overflows (|x| near the
    # type's largest number, the label against it: ce = |x|, p_t = 0)
    return alpha_t * q_gamma * (s_minus_y + gamma * c * (ce * p_t)) + fmath.as_type_of(0.0, x) * y


@jit
def sigmoid_focal_hess(y, x, th):
    gamma = fmath.as_type_of(th[1], x)
    one = fmath.as_type_of(1.0, x)
    alpha_t, ce, p_t, q, q_gamma = _focal_terms(y, x, th)
    # p_t times the bracket of the formula, with ce multiplied by p_t first (as in the grad)
    p_t_inner = p_t * q * (one + (gamma + gamma)) + gamma * (ce * p_t) * (gamma * p_t - q)
    return alpha_t * q_gamma * p_t_inner + fmath.as_type_of(0.0, x) * y


# -- input domains ------------------------------------------------------------
# Each says whether a value is acceptable; NaN is accepted (it propagates).

@jit
def _any_real(v):
    return True


@jit
def _in_unit(v):
    return not (v < 0.0 or v > 1.0)


@jit
def _nonneg(v):
    return not (v < 0.0)


# (| rather than "or": no branches, which would stop a loop vectorizing)
@jit
def _binary(v):
    return (v == 0.0) | (v == 1.0) | (v != v)


@jit
def _signed_binary(v):
    return (v == -1.0) | (v == 1.0) | (v == 0.0) | (v != v)


@jit
def _unit_shortfall(v):
    # min(v, 1 - v), < 0 exactly outside [0, 1]: the s that binary_cross_entropy's
    # logarithms start from (fmath.log_and_log1m_floored), so LLVM computes it once
    s = fmath.as_type_of(1.0, v) - v if v > fmath.as_type_of(0.5, v) else v
    return _negative_or_zero(s)


@jit
def _nonneg_shortfall(v):
    return v if v < 0.0 else fmath.as_type_of(0.0, v)


@jit
def _real_shortfall(v):
    return fmath.as_type_of(0.0, v)         # every value is inside (adding it folds away)


@jit
def _as_float(v):
    return v + fmath.as_type_of(0.0, v)     # float32 stays float32; integers become float64


@jit
def _negative_or_zero(q):
    zero = fmath.as_type_of(0.0, q)
    return q if q < zero else zero     # NaN -> 0 (accepted)


@jit
def _binary_shortfall(v):
    x = _as_float(v)
    return _negative_or_zero(-abs(x * (x - fmath.as_type_of(1.0, x))))   # 0 only at 0 and 1


@jit
def _signed_binary_shortfall(v):
    # x (x^2 - 1) is 0 only at -1, 0 and 1: x^2 rounds to 1 for x = +-1 alone
    x = _as_float(v)
    return _negative_or_zero(-abs(x * (x * x - fmath.as_type_of(1.0, x))))


DOMAIN_CHECKS = {
    "real": _any_real,
    "unit": _in_unit,
    "nonneg": _nonneg,
    "binary": _binary,
    "signed_binary": _signed_binary,
}
# The same checks as numbers, for the CPU kernels: 0 inside the domain (and for NaN),
# negative outside it, in v's float type.  A sum of them is negative exactly when one
# input is outside (no term is positive), and costs fewer operations per vector than
# a count of failed comparisons for the interval domains.
DOMAIN_SHORTFALLS = {
    "real": _real_shortfall,
    "unit": _unit_shortfall,
    "nonneg": _nonneg_shortfall,
    "binary": _binary_shortfall,
    "signed_binary": _signed_binary_shortfall,
}


# Value functions that hold for labels in {0, 1} only and cost less than the general
# ones; the CPU kernels use them for each block whose labels are all 0 or 1.
BINARY_LABEL_VALUES = {
    "binary_cross_entropy": binary_cross_entropy_value_binary_labels,
}


def scalar_functions(name):
    """(value, grad, hess) of the registered loss ``name``."""
    from ..custom import get_custom
    custom = get_custom(name)
    if custom is not None:
        from .user import scalar_functions as user_functions
        return user_functions(custom)
    g = globals()
    return g[f"{name}_value"], g[f"{name}_grad"], g[f"{name}_hess"]
