"""Branch-free float32 exp, expm1, log, log1p and log1p on [0, 1], computed in float32.

The float64 versions (``fmath``) run eight lanes of an AVX-512 register; these
run sixteen, with shorter polynomials and no division, which is what makes
the transcendental losses' values on float32 data close to memory-bound.
Float32 constants throughout (a float64 literal would promote the arithmetic
to float64); polynomials fitted for the least maximum relative error, each
coefficient refitted after the previous ones were rounded to float32:

* ``exp``: x = k ln2 + r with |r| <= ln2/2 (1.5 * 2^23 shifter), 2 e^r by
  Horner, times 2^(k-1) built from its bits; ``exp_nonpositive`` the same for
  x <= 0 with one clamp fewer.  ``expm1``: e^r - 1 to r^6 and 2^(k-1).
* ``log``: x = 2^e m with m in [sqrt(2)/2, sqrt(2)) (``log_reduce``),
  log(1 + f) = f + f^2 Q(f) for f = m - 1 (Q of degree 7).
* ``log1p``: log(u) - ((u - 1) - x) / u with u = 1 + x.
* ``log1p_unit``: log(1 + f) for f in [0, 1] as f + f^2 Q(f), Q of degree 8
  fitted on the whole interval (no exponent to extract).

Each is within 2 ulp of the correctly rounded result over the whole float32
range, special values included (tests/test_fmath32.py), except that ``exp``
(and ``exp_nonpositive``) flushes results below 2^-125.5 to 0: producing subnormals is slow.  Integer steps use
int32 values (Numba widens integer arithmetic to int64; the explicit int32
conversions let LLVM narrow it back) so that no 64-bit value halves the vector
width.
"""
import numpy as np

from .fmath import SCALAR_OPTIONS, clamp, f32_as_i32, i32_as_f32
from .llvm_attributes import inlined_jit

_F = np.float32
_I = np.int32

_ZERO = _F(0.0)
_HALF = _F(0.5)
_ONE = _F(1.0)
_TWO = _F(2.0)
_INF = _F(np.inf)
_NAN = _F(np.nan)

_LOG2E = _F(1.4426950408889634)
_SHIFTER = _F(12582912.0)                 # 1.5 * 2**23
_SHIFTER_BITS = _I(0x4B400000)
_LN2_HI = _F(0.693145751953125)           # 16 significant bits: k * _LN2_HI is exact
_LN2_LO = _F(1.428606765330187045e-06)
_EXP_LO = _F(-104.0)                      # exp(x) rounds to 0 below about -103.97
_EXP_HI = _F(89.0)                        # exp(x) overflows above about 88.72
_EXPM1_LO = _F(-40.0)                     # expm1(x) rounds to -1 below about -17.3
_SUM_TERM_LO = _F(-87.3)                  # k >= -126: the exponent field k + 126 is not negative
_LN2 = _F(0.6931471805599453)
# e^r = 1 + r + r^2 P(r) on |r| <= ln2/2: P fitted for the least maximum relative
# error of e^r (3.1e-9, a twentieth of a float32 ulp), one term shorter than Taylor's.
_E2, _E3, _E4, _E5, _E6 = (_F(0.4999999345108168), _F(0.1666652068322852),
                           _F(0.041668387483836236), _F(0.008368710452056177),
                           _F(0.0013814607677477865))

# log(1 + f) = f + f^2 Q(f) on [sqrt(2)/2 - 1, sqrt(2) - 1], Q of degree 7 fitted as _L1.._L9
# below (3.0e-8 relative, half a float32 ulp)
_K1, _K2, _K3, _K4, _K5, _K6, _K7, _K8 = (
    _F(-0.49999991059303284), _F(0.3333394527435303), _F(-0.2500177323818207),
    _F(0.19962234795093536), _F(-0.16570395231246948), _F(0.14916500449180603),
    _F(-0.1430717408657074), _F(0.08737681061029434))
_FLT_MIN = _F(1.1754943508222875e-38)
_TWO25 = _F(33554432.0)
_SQRT_HALF_BITS = _I(0x3F3504F3)          # sqrt(2)/2 rounded down
_SCALED_SQRT_HALF_BITS = _I(0x3F3504F3 + (25 << 23))
_TINY_ARG = _F(2.0 ** -26)
# log1p(f) = f + f^2 Q(f) on [0, 1]: Q of degree 8 fitted for the least maximum relative
# error (5.3e-9), each coefficient refitted after the previous ones were rounded to float32
_L1, _L2, _L3, _L4, _L5, _L6, _L7, _L8, _L9 = (
    _F(-0.4999993145465851), _F(0.33330464363098145), _F(-0.24958018958568573),
    _F(0.19692102074623108), _F(-0.15344880521297455), _F(0.10661128163337708),
    _F(-0.05745723098516464), _F(0.020086241886019707), _F(-0.003290468594059348))
# 2 e^r = 2 + 2r + r^2 (X2 + X3 r + ... + X6 r^4) on |r| <= ln2/2, fitted (3.1e-9 relative,
# a twentieth of a float32 ulp) with each coefficient refitted after the previous ones were
# rounded: ``exp`` evaluates it by Horner, the doubling for its 2^(k-1) scale folded in.
_X2, _X3, _X4, _X5, _X6 = (_F(0.9999998807907104), _F(0.3333304524421692),
                           _F(0.08333658427000046), _F(0.016737064346671104),
                           _F(0.0027636592276394367))
_MANTISSA = _I(0x007FFFFF)
# 2 atanh(s/2) = s + s^3/12 + s^5/80 + s^7/448 + ...: its coefficients 1/((2n+1) 4^n)
_Q1, _Q2, _Q3 = _F(1.0 / 12.0), _F(1.0 / 80.0), _F(1.0 / 448.0)


@inlined_jit(**SCALAR_OPTIONS)
def _clamp_below(x, lo):
    """max(x, lo), NaN staying NaN (one vmaxps)."""
    return lo if lo > x else x


@inlined_jit(**SCALAR_OPTIONS)
def _reduce(x):
    """(t, k, r): x = k ln2 + r with |r| <= ln2/2; t holds k in its low bits."""
    t = x * _LOG2E + _SHIFTER
    k = t - _SHIFTER
    r = (x - k * _LN2_HI) - k * _LN2_LO
    return t, k, r


@inlined_jit(**SCALAR_OPTIONS)
def _exp_of_clamped(x):
    """e^x for x in [-104, 89] or NaN: 2 e^r by Horner, times 2^(k-1) from its bits.

    The exponent field k + 126 is cut at 0, so e^x is 0.0 for k <= -126.
    """
    t, k, r = _reduce(x)
    twice = (((((_X6 * r + _X5) * r + _X4) * r + _X3) * r + _X2) * r + _TWO) * r + _TWO
    scale = i32_as_f32(_I(max(_I(f32_as_i32(t) - _SHIFTER_BITS) + _I(126), _I(0)) << _I(23)))
    return twice * scale


@inlined_jit(**SCALAR_OPTIONS)
def exp(x):
    """e^x; 0 below e^-86.99 (2^-125.5), where it would be near or below FLT_MIN.

    Making a subnormal float32 costs the vector unit about a hundred cycles; no
    loss needs e^x below 1.2e-38 (it enters as e^-|x| beside terms of order 1,
    or as a softmax term beside a sum of at least 1).
    """
    return _exp_of_clamped(clamp(x, _EXP_LO, _EXP_HI))


@inlined_jit(**SCALAR_OPTIONS)
def exp_nonpositive(x):
    """``exp`` for x <= 0 (or NaN), one clamp shorter: e^-|x|, softmax terms x - max."""
    return _exp_of_clamped(_clamp_below(x, _EXP_LO))


@inlined_jit(**SCALAR_OPTIONS)
def exp_sum_term(x):
    """e^x for x <= 0 (or NaN) as a term of a sum that is at least 1 (softmax's).

    Two operations shorter than ``exp_nonpositive``.  ln 2 is one float32
    constant in the reduction r = x - k ln 2, a fused multiply-add in the
    kernels (compiled with contraction): relative error up to |k| 1.9e-9 more,
    2.4e-7 at the bottom of the range, where a term is below 1e-37 of the sum.
    And no separate flush: x is clamped at -87.3, which keeps k >= -126, and
    k = -126 (x below about -86.99) gives the exponent field 0: the term 0.0.
    """
    xc = _clamp_below(x, _SUM_TERM_LO)
    t = xc * _LOG2E + _SHIFTER
    k = t - _SHIFTER
    r = xc - k * _LN2
    twice = (((((_X6 * r + _X5) * r + _X4) * r + _X3) * r + _X2) * r + _TWO) * r + _TWO
    return twice * i32_as_f32(_I(_I(f32_as_i32(t) - _SHIFTER_BITS) + _I(126)) << _I(23))


@inlined_jit(**SCALAR_OPTIONS)
def expm1(x):
    """e^x - 1, accurate near 0: with h = 2^(k-1), e^x - 1 = 2 (p h + (h - 1/2)), p = e^r - 1.

    h - 1/2 is exact while it matters (k <= 24) and the doubling is exact, so
    k = 0 gives p itself; h stays finite up to the overflow of e^x.
    """
    xc = clamp(x, _EXPM1_LO, _EXP_HI)
    t, k, r = _reduce(xc)
    p = (((_E6 * r + _E5) * r + _E4) * r + _E3) * r + _E2
    p = r + (r * r) * p
    h = i32_as_f32(_I((_I(f32_as_i32(t) - _SHIFTER_BITS) + _I(126)) << _I(23)))
    return (p * h + (h - _HALF)) * _TWO


@inlined_jit(**SCALAR_OPTIONS)
def _log_kernel(k, f):
    """k log 2 + log(1 + f) for f in [sqrt(2)/2 - 1, sqrt(2) - 1], as f + f^2 Q(f): no division.

    ln 2 as one float32 constant, k ln 2 + (f + f^2 Q) one fused multiply-add: the
    constant is 1.9e-9 above ln 2 (2.7e-9 relative), so k ln 2 is off by less than
    a twentieth of an ulp of the result for every k, and the usual split of ln 2
    into two parts would cost two operations more.

    Q is evaluated by powers of f^2 (Estrin's scheme) rather than by Horner's:
    one multiplication more (f^4; f^2 serves f + f^2 Q too), but a chain of four
    dependent operations instead of eight.  Where the scheduler cannot hold
    enough iterations of a loop to cover a long chain (AVX2, binary_cross_entropy's
    two logarithms in one loop), that made the loss 8-10% faster.
    """
    f2 = f * f
    f4 = f2 * f2
    q = (((_K2 * f + _K1) + (_K4 * f + _K3) * f2)
         + ((_K6 * f + _K5) + (_K8 * f + _K7) * f2) * f4)
    return k * _LN2 + (f2 * q + f)


@inlined_jit(**SCALAR_OPTIONS)
def log_reduce(x):
    """(k, f) with x = 2^k (1 + f), f in [sqrt(2)/2 - 1, sqrt(2) - 1), k a float, for
    x > 0 finite (subnormals included); for 0, k = -152 and f = 0.

    Subtracting the bits of sqrt(2)/2 first makes the exponent field count from
    sqrt(2)/2 rather than 1, so the mantissa lands in [sqrt(2)/2, sqrt(2))
    without a compare-and-halve step (as musl's logf).
    """
    tiny = x < _FLT_MIN
    xs = x * _TWO25 if tiny else x
    ix = _I(f32_as_i32(xs) - _SQRT_HALF_BITS)
    k = _I((ix >> _I(23)) - (_I(25) if tiny else _I(0)))
    return _F(k), i32_as_f32(_I((ix & _MANTISSA) + _SQRT_HALF_BITS)) - _ONE


@inlined_jit(**SCALAR_OPTIONS)
def log_reduce_small(x):
    """``log_reduce`` for x in [0, 1/2] (or NaN, which gives finite nonsense), with no
    compare: x 2^25 is exact and normal for every such x but 0, and the 25 comes off
    k through the bias subtracted from the bits (a multiple of 2^23: the mantissa
    bits are unchanged).  For 0, k = -152 and f = 0, as ``log_reduce`` gives."""
    ix = _I(f32_as_i32(x * _TWO25) - _SCALED_SQRT_HALF_BITS)
    return _F(_I(ix >> _I(23))), i32_as_f32(_I((ix & _MANTISSA) + _SQRT_HALF_BITS)) - _ONE


@inlined_jit(**SCALAR_OPTIONS)
def log(x):
    """Natural logarithm: -inf at 0, nan below 0."""
    k, f = log_reduce(x)
    y = _log_kernel(k, f)
    y = x if (x == _INF or x != x) else y
    y = _NAN if x < _ZERO else y
    return -_INF if x == _ZERO else y


@inlined_jit(**SCALAR_OPTIONS)
def log1p(x):
    """log(1 + x), accurate near 0."""
    u = _ONE + x
    y = log(u) - ((u - _ONE) - x) / u
    y = x if (x == _INF or x != x) else y
    return -_INF if x == -_ONE else y


@inlined_jit(**SCALAR_OPTIONS)
def log1p_unit(f):
    """log(1 + f) for f in [0, 1] (NaN stays NaN) as f + f (f Q(f)): no division.

    The nearest singularity of log1p(f)/f, at f = -1, lets a polynomial of
    degree 8 reach 5.3e-9 relative on [0, 1], a tenth of a float32 ulp; the
    last step is one fused multiply-add.  Below 2^-26 the polynomial runs on
    2^-26, where f (2^-26 Q) is below half an ulp of f, so the result is f and
    no power of f is subnormal (a subnormal costs a hundred cycles per
    operation: the tail of log(1 + e^-|x|) for |x| > 80, in every lane).
    """
    fc = _clamp_below(f, _TINY_ARG)
    q = ((((((((_L9 * fc + _L8) * fc + _L7) * fc + _L6) * fc + _L5) * fc + _L4) * fc
           + _L3) * fc + _L2) * fc + _L1)
    return f * (fc * q) + f


@inlined_jit(**SCALAR_OPTIONS)
def log1p_quotient(a, b):
    """log(1 + a/b) for a/b in [0, 0.26] (b > 0), NaN staying NaN: one division.

    With s = 2a/(a + 2b) = 2 (a/b)/(2 + a/b), log(1 + a/b) = 2 atanh(s/2), and
    s <= 0.23 on this range: three terms of its series after s give 4e-9
    relative, a fifteenth of a float32 ulp.  For losses that form 1 + a/b from
    two numbers, where log1p_unit would need a/b divided out first.
    """
    s = a / (_HALF * a + b)
    w = s * s
    return (s * w) * ((_Q3 * w + _Q2) * w + _Q1) + s

