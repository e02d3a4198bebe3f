"""Branch-free float64 exp, expm1, log and log1p that LLVM can vectorize.

PyPI's llvmlite has no SVML, so ``math.exp`` and friends inside a Numba loop
are scalar libm calls that stop the loop vectorizing.  These versions use only
arithmetic, comparisons and bit casts:

* ``fexp``: Cody-Waite reduction x = k ln2 + r with |r| <= ln2/2, a degree-11
  minimax polynomial for e^r - 1, and 2^k built from its bits in two halves so that
  subnormal and overflowing results round correctly.  k is found with the
  1.5 * 2^52 shifter, so no float-to-int conversion is needed (AVX2 has none
  for 64-bit integers).
* ``flog``: x = 2^e m with m in [sqrt(2)/2, sqrt(2)), log(m) from
  s = (m-1)/(m+1) and the fdlibm ``e_log.c`` polynomial in s^2.
* ``flog1p``: log(u) - ((u - 1) - x) / u with u = 1 + x (Goldberg's
  correction), exact for tiny x.
* ``fexpm1``: the same reduction as ``fexp``; e^r - 1 as a polynomial without
  its constant term, so it is accurate near 0.
* ``flog1p_unit``: log(1 + f) for f in [0, 1] with one division.

``exp``, ``expm1``, ``log``, ``log1p`` and ``log1p_unit`` compute in their
argument's own float type: these functions for float64, their float32
counterparts (``fmath32``) for float32.

Each is within a few ulp of NumPy over the whole float64 range, special values
included (tests/test_fmath.py).  They must be compiled *without* fast-math
reassociation, which would undo the compensated steps.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from .llvm_attributes import inlined_jit
from .vector_width import has_avx512

# Not cache=True: a function loaded from Numba's cache is linked as object code and
# cannot be inlined into the kernels that call it, which stops them vectorizing.
# The kernels themselves are cached, with these functions inlined.
#
# The fast-math flags are the kernels' own (contraction to fused multiply-adds, no signed
# zeros; never reassociation): Numba compiles a function without flags of its own with
# those of its first caller and reuses that build for every later one, so a first call
# from plain Numba code (a test, a user's function) would otherwise leave the kernels
# compiled after it with another build: without fused multiply-adds, other last bits,
# and binary_cross_entropy_with_logits 1.8x slower.  For the same reason each function
# is ``inlined_jit``, not ``njit``: marked ``alwaysinline`` only when a kernel's compilation
# compiled it first, one compiled first by the cross-entropy kernels (or any code that is
# not a loss kernel) was left to LLVM's size threshold, and kl_div's kernels compiled
# after it in the same process came out unvectorized, six times slower.
SCALAR_OPTIONS = dict(error_model="numpy", fastmath={"contract", "nsz"})


@intrinsic
def f64_as_i64(typingctx, x):
    """The bits of a float64 as an int64 (an LLVM bitcast)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def i64_as_f64(typingctx, x):
    """The float64 whose bits are the given int64 (an LLVM bitcast)."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def f32_as_i32(typingctx, x):
    """The bits of a float32 as an int32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def i32_as_f32(typingctx, x):
    """The float32 whose bits are the low 32 bits of an integer."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if x.bitwidth != 32:
            v = builder.trunc(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(x), codegen


_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453                # ln 2 rounded: 2.3e-17 below it
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_SHIFTER = 6755399441055744.0           # 1.5 * 2**52
_SHIFTER_BITS = 0x4338000000000000
_EXP_LO = -746.0                         # exp(x) rounds to 0 below about -745.13
_EXP_HI = 710.0                          # exp(x) overflows above about 709.78
_DBL_MIN = 2.2250738585072014e-308
_TWO54 = 18014398509481984.0
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCC   # sqrt(2)/2 rounded down
_CONVERTS_INT64 = has_avx512()           # vcvtqq2pd: AVX-512 (DQ, which every AVX-512 CPU has)
_INF = np.inf
_NAN = np.nan

# e^r - 1 = r + r^2 (P0 + P1 r + ... + P9 r^9) on |r| <= ln2/2 (see _expm1_poly)
_P0, _P1, _P2, _P3, _P4, _P5, _P6, _P7, _P8, _P9 = (
    0.5000000000000006, 0.16666666666666588, 0.04166666666657682, 0.008333333333389509,
    0.0013888888931540297, 0.0001984126971907887, 2.480150530553317e-05, 2.755740750709753e-06,
    2.762602451866532e-07, 2.5053775072479853e-08)

# fdlibm e_log.c: log(1+f) = f - f^2/2 + s*(f^2/2 + R(s^2)), s = f/(2+f)
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01


@inlined_jit(**SCALAR_OPTIONS)
def _exp_reduce(x):
    """(t, k, r) with x = k ln2 + r, |r| <= ln2/2, k as an exact float64 and
    t = k + 1.5 * 2^52, whose low bits hold k as an integer."""
    t = x * _LOG2E + _SHIFTER
    k = t - _SHIFTER
    r = (x - k * _LN2_HI) - k * _LN2_LO
    return t, k, r


@inlined_jit(**SCALAR_OPTIONS)
def _expm1_poly(r):
    """e^r - 1 for |r| <= ln2/2, as r + r^2 P(r): P of degree 9 fitted for the least
    maximum error relative to e^r - 1 (1.8e-17), two terms shorter than Taylor's."""
    p = _P9 * r + _P8
    p = p * r + _P7
    p = p * r + _P6
    p = p * r + _P5
    p = p * r + _P4
    p = p * r + _P3
    p = p * r + _P2
    p = p * r + _P1
    p = p * r + _P0
    return r + (r * r) * p


@inlined_jit(**SCALAR_OPTIONS)
def _pow2_halves(t):
    """Two normal float64 factors whose product is 2^k, from ``_exp_reduce``'s t, for k in
    [-1076, 1025]: their biased exponents split k + 2046 = bits(t) - bits(1.5 * 2^52) + 2046."""
    b = f64_as_i64(t) - (_SHIFTER_BITS - 2046)
    e1 = b >> 1
    return i64_as_f64(e1 << 52), i64_as_f64((b - e1) << 52)


@inlined_jit(**SCALAR_OPTIONS)
def clamp(x, lo, hi):
    """x clamped to [lo, hi], in x's type; NaN stays NaN (one vmax and one vmin, which
    pass their second operand through when one is NaN): no NaN select is needed after."""
    x = lo if lo > x else x
    return hi if hi < x else x


@inlined_jit(**SCALAR_OPTIONS)
def fexp(x):
    """e^x."""
    t, k, r = _exp_reduce(clamp(x, _EXP_LO, _EXP_HI))
    s1, s2 = _pow2_halves(t)
    return ((1.0 + _expm1_poly(r)) * s1) * s2


# e^x of a float32 x, in float64 (fexp_of_float32): on [-707, 710] e^r / 2 times 2^k is
# normal, so 2^k joins it as an integer added to its exponent field.
_EXP_F32_LO = -707.0
_EXP_F32_HI = 710.0
# e^r - 1 = r + r^2 (E0 + E1 r + ... + E8 r^8) on |r| <= ln2/2: one degree below _P0.._P9,
# fitted (Lawson's iteration) for the least maximum error relative to e^r, 2.9e-16;
# halved, for e^r / 2
_HALF_E = tuple(0.5 * c for c in (
    0.49999999999998324, 0.16666666666611554, 0.0416666666681365, 0.008333333370870702,
    0.0013888888516224414, 0.00019841185235484166, 2.480193171863555e-05,
    2.763499105982575e-06, 2.747679721556678e-07))


@inlined_jit(**SCALAR_OPTIONS)
def fexp_of_float32(x):
    """e^x of a float32 x, in float64 to four float64 ulp, flushed to 0 below 1e-307
    (x < -707), as float32 would flush it (as the float32 results it serves do).
    e^r / 2 comes from a polynomial with halved coefficients, one degree shorter than
    ``fexp``'s, and 2^(k+1) joins it as k added to its exponent field and a doubling
    that overflows to +inf past x = 709.78: three vector operations where ``fexp``'s
    two factors, for subnormal results, take eight.  Below -707 the select of 0 takes
    the place of a clamp from below (what the maths makes of those x is discarded).
    poisson_nll's float32 value."""
    xc = np.float64(x)
    t, k, r = _exp_reduce(_EXP_F32_HI if _EXP_F32_HI < xc else xc)
    e0, e1, e2, e3, e4, e5, e6, e7, e8 = _HALF_E
    q = e8 * r + e7
    q = q * r + e6
    q = q * r + e5
    q = q * r + e4
    q = q * r + e3
    q = q * r + e2
    q = q * r + e1
    q = q * r + e0
    half = (r * r) * q + (0.5 * r + 0.5)
    y = i64_as_f64(f64_as_i64(half) + (f64_as_i64(t) << 52)) * 2.0
    return 0.0 if x < _EXP_F32_LO else y


@inlined_jit(**SCALAR_OPTIONS)
def fexpm1(x):
    """e^x - 1, accurate near 0."""
    xc = min(max(x, -60.0), _EXP_HI)
    t, k, r = _exp_reduce(xc)
    s1, s2 = _pow2_halves(t)
    p = _expm1_poly(r)
    scale = s1 * s2
    y = (p * s1) * s2 + (scale - 1.0)
    y = ((1.0 + p) * s1) * s2 if k > 56.0 else y
    y = p if k == 0.0 else y
    return x if x != x else y


@inlined_jit(**SCALAR_OPTIONS)
def _log_kernel(k, f):
    """k log 2 + log(1 + f) for f in [sqrt(2)/2 - 1, sqrt(2) - 1] (fdlibm e_log.c)."""
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + t1 + t2) + k * _LN2_LO)) - f)


@inlined_jit(**SCALAR_OPTIONS)
def _flog_reduce(x):
    """(k, f) with x = 2^k (1 + f), f in [sqrt(2)/2 - 1, sqrt(2) - 1), k an exact float64,
    for x > 0 finite (subnormals included).  The bits of sqrt(2)/2 are subtracted
    first, so the exponent field counts from sqrt(2)/2 and no compare-and-halve
    step is needed (``fmath32.log_reduce`` does the same in float32)."""
    tiny = x < _DBL_MIN
    k, f = _flog_reduce_normal(x * _TWO54 if tiny else x)
    return k - (54.0 if tiny else 0.0), f


@inlined_jit(**SCALAR_OPTIONS)
def _flog_reduce_normal(x):
    """``_flog_reduce`` for x > 0 normal: no rescaling.  The exponent becomes a float by
    one conversion where the CPU has one for 64-bit integers (AVX-512), else through
    the 1.5 * 2^52 shifter's bits (two operations)."""
    ix = f64_as_i64(x) - _SQRT_HALF_BITS
    if _CONVERTS_INT64:
        k = np.float64(ix >> 52)
    else:
        k = i64_as_f64((ix >> 52) + _SHIFTER_BITS) - _SHIFTER
    return k, i64_as_f64((ix & 0x000FFFFFFFFFFFFF) + _SQRT_HALF_BITS) - 1.0


# 1/d ~ Q0 + Q1 d + Q2 d^2 on [sqrt(2)/2 + 1, sqrt(2) + 1], to 1.3e-3 relative (see quotient_by_fma)
_RECIPROCAL_Q0, _RECIPROCAL_Q1, _RECIPROCAL_Q2 = (
    1.4777558950726437, -0.7224440526093392, 0.11686286649783899)
# On CPUs with AVX-512, flog_of_float32 divides by fused multiply-adds (quotient_by_fma):
# a float64 vector division holds its unit for about 16 cycles per eight lanes on Intel's
# (kl_div's float32 value 7-10% faster at n = 1e7 on 2 threads of an Intel AVX-512
# host).  Elsewhere it divides: AMD Zen 3's divider runs beside the two FMA pipes that
# the loss's polynomials keep busy (unmeasured there).
_QUOTIENT_BY_FMA = has_avx512()


@inlined_jit(**SCALAR_OPTIONS)
def quotient_by_fma(f, d):
    """f / d for d in [sqrt(2)/2 + 1, sqrt(2) + 1], within an ulp of the division,
    without one: 1/d from a quadratic fit (1.3e-3 relative) and one cubic step of
    Newton's iteration (2e-9), then f/d corrected by its residual, which a fused
    multiply-add computes exactly: the corrected quotient's error is the product of
    the reciprocal's and the first quotient's, 4e-18 relative."""
    q = (_RECIPROCAL_Q2 * d + _RECIPROCAL_Q1) * d + _RECIPROCAL_Q0
    e = 1.0 - d * q
    q = q + q * (e + e * e)
    s = f * q
    return s + q * (f - d * s)


@inlined_jit(**SCALAR_OPTIONS)
def flog_of_float32(x):
    """log x of a positive float32 x, in float64 to 1.5 float64 ulp (and finite at 0 and
    +inf).  float64(x) is never subnormal, so its exponent split needs no rescaling
    (``_flog_reduce``'s compare and two selects); f = m - 1 has at most 24
    significant bits, so 2 + f is exact and log(1 + f) = 2 atanh(s), s = f / (2 + f),
    needs none of ``_log_kernel``'s correction terms.  Fewer vector operations, by
    which kl_div's loop on float32 data is bound.

    k ln 2 is one fused multiply-add with ln 2 as one float64, 2.3e-17 below ln 2
    (at most 0.3 ulp of k ln 2 for any k), where the usual two-part split of ln 2
    takes one operation more: for k != 0 the result is at least half of |k ln 2|,
    so that error stays within 0.6 ulp of the result."""
    k, f = _flog_reduce_normal(np.float64(x))
    s = quotient_by_fma(f, 2.0 + f) if _QUOTIENT_BY_FMA else f / (2.0 + f)
    z = s * s
    # 2 atanh(s) = s (2 + z R(z)), R of fdlibm's log (2^-58 relative)
    r = (((((_LG7 * z + _LG6) * z + _LG5) * z + _LG4) * z + _LG3) * z + _LG2) * z + _LG1
    return k * _LN2 + ((s * z) * r + (s + s))


@inlined_jit(**SCALAR_OPTIONS)
def _flog_reduce_small(x):
    """``_flog_reduce`` for x in [0, 1/2] without its compare (``fmath32.log_reduce_small``):
    x 2^54 is exact and normal, and the 54 comes off k through the bias."""
    ix = f64_as_i64(x * _TWO54) - (_SQRT_HALF_BITS + (54 << 52))
    k = i64_as_f64((ix >> 52) + _SHIFTER_BITS) - _SHIFTER
    return k, i64_as_f64((ix & 0x000FFFFFFFFFFFFF) + _SQRT_HALF_BITS) - 1.0


@inlined_jit(**SCALAR_OPTIONS)
def flog(x):
    """Natural logarithm: -inf at 0, nan below 0."""
    k, f = _flog_reduce(x)
    y = _log_kernel(k, f)
    y = x if (x == _INF or x != x) else y
    y = _NAN if x < 0.0 else y
    return -_INF if x == 0.0 else y


@inlined_jit(**SCALAR_OPTIONS)
def flog1p(x):
    """log(1 + x), accurate near 0."""
    u = 1.0 + x
    y = flog(u) - ((u - 1.0) - x) / u
    y = x if (x == _INF or x != x) else y
    return -_INF if x == -1.0 else y


_SQRT2_M1 = 0.41421356237309503
# 2 atanh(s/2) = s + s^3 (Q1 + Q2 s^2 + ... + Q7 s^12): Q_n = 1/((2n+1) 4^n)
_Q1, _Q2, _Q3, _Q4, _Q5, _Q6, _Q7 = (1 / 12, 1 / 80, 1 / 448, 1 / 2304, 1 / 11264,
                                     1 / 53248, 1 / 245760)


@inlined_jit(**SCALAR_OPTIONS)
def flog1p_unit(f):
    """log(1 + f) for f in [0, 1] (NaN stays NaN): the fdlibm kernel of ``flog`` alone.

    1 + f needs no exponent extraction: for f > sqrt(2) - 1 it is 2 (1 + g) with
    g = (f - 1) / 2 in (-0.293, 0], so one division and no correction term
    (``flog1p`` has two divisions).  For log(1 + e^-|x|), the tail of the
    softplus, where f = e^-|x| always lies in [0, 1].
    """
    big = f > _SQRT2_M1
    return _log_kernel(1.0 if big else 0.0, (f - 1.0) * 0.5 if big else f)


@inlined_jit(**SCALAR_OPTIONS)
def flog1p_quotient(a, b):
    """log(1 + a/b) for a/b in [0, 0.26] (b > 0), NaN staying NaN: one division.

    With s = 2a/(a + 2b), log(1 + a/b) = 2 atanh(s/2), s <= 0.23: seven terms of
    its series after s leave 4e-17 relative.
    """
    s = a / (0.5 * a + b)
    w = s * s
    q = ((((((_Q7 * w + _Q6) * w + _Q5) * w + _Q4) * w + _Q3) * w + _Q2) * w + _Q1)
    return (s * w) * q + s


def exp_in_precision_of(x, like):
    """e^x (x float64) computed in the precision of ``like``'s type; returns float64.

    For float32 data the float32 exp runs twice as many lanes per instruction;
    its relative error (about 1e-7) is within what float32 results carry.
    """
    raise NotImplementedError("for use inside Numba-compiled code")


def as_type_of(v, like):
    """v converted to ``like``'s float type (float32 or float64).

    Compiled code uses the overload below; this body serves Numba's CUDA
    simulator, which runs kernels as Python.
    """
    return np.float32(v) if isinstance(like, np.float32) else np.float64(v)


@overload(as_type_of, jit_options=SCALAR_OPTIONS)
def _as_type_of(v, like):
    if like == types.float32:
        return lambda v, like: np.float32(v)
    return lambda v, like: np.float64(v)


@overload(exp_in_precision_of, jit_options=SCALAR_OPTIONS)
def _exp_in_precision_of(x, like):
    if like == types.float32:
        from . import fmath32
        return lambda x, like: np.float64(fmath32.exp(np.float32(x)))
    return lambda x, like: fexp(x)


def order_key(v):
    """An integer that orders like the float v: its bits, the magnitude bits flipped
    for negative v.  A maximum over keys is an integer reduction, which LLVM
    vectorizes in any loop (a float maxnum reduction only with no-NaN flags, and
    not beside another reduction).  NaN orders above +inf, or below -inf with
    its sign bit set."""
    raise NotImplementedError("for use inside Numba-compiled code")


def from_order_key(k):
    """The float whose ``order_key`` is k (the key's own float type)."""
    raise NotImplementedError("for use inside Numba-compiled code")


@overload(order_key, jit_options=SCALAR_OPTIONS, inline="always")
def _order_key(v):
    if v == types.float32:
        def key32(v):
            b = f32_as_i32(v)
            return np.int32(b ^ np.int32((b >> np.int32(31)) & np.int32(0x7FFFFFFF)))
        return key32
    if v == types.float64:
        def key64(v):
            b = f64_as_i64(v)
            return b ^ ((b >> 63) & 0x7FFFFFFFFFFFFFFF)
        return key64


@overload(from_order_key, jit_options=SCALAR_OPTIONS, inline="always")
def _from_order_key(k):
    if k == types.int32:
        return lambda k: i32_as_f32(np.int32(k ^ np.int32((k >> np.int32(31)) & np.int32(0x7FFFFFFF))))
    if k == types.int64:
        return lambda k: i64_as_f64(k ^ ((k >> 63) & 0x7FFFFFFFFFFFFFFF))


def _in_own_precision(f64_version, name):
    """``name`` computed in its argument's float type: ``fmath32.name`` for float32, else
    ``f64_version``.  For code written once for both precisions (the float32 value
    kernels and the float64 ones run the same loss function)."""
    def in_own_precision(x):
        from . import fmath32
        return getattr(fmath32, name)(x) if isinstance(x, np.float32) else f64_version(x)

    @overload(in_own_precision, jit_options=SCALAR_OPTIONS, inline="always")
    def _typed(x):
        if x == types.float32:
            from . import fmath32
            f32_version = getattr(fmath32, name)
            return lambda x: f32_version(x)
        return lambda x: f64_version(x)

    in_own_precision.__name__ = in_own_precision.__qualname__ = name
    in_own_precision.__doc__ = f"{f64_version.__doc__}  In x's own float type."
    return in_own_precision


exp = _in_own_precision(fexp, "exp")
exp_nonpositive = _in_own_precision(fexp, "exp_nonpositive")
exp_sum_term = _in_own_precision(fexp, "exp_sum_term")
expm1 = _in_own_precision(fexpm1, "expm1")
log = _in_own_precision(flog, "log")
log1p = _in_own_precision(flog1p, "log1p")
log1p_unit = _in_own_precision(flog1p_unit, "log1p_unit")
log_reduce = _in_own_precision(_flog_reduce, "log_reduce")
log_reduce_small = _in_own_precision(_flog_reduce_small, "log_reduce_small")
_ONE_MINUS_SQRT_HALF = 0.2928932188134524     # 1 - sqrt(2)/2


def _pair_in_own_precision(f64_version, name, doc):
    """``name``(a, b) computed in b's float type: ``fmath32.name`` for float32, else
    ``f64_version`` (``_in_own_precision`` for functions of two arguments)."""
    def in_own_precision(a, b):
        from . import fmath32
        return getattr(fmath32, name)(a, b) if isinstance(b, np.float32) else f64_version(a, b)

    @overload(in_own_precision, jit_options=SCALAR_OPTIONS, inline="always")
    def _typed(a, b):
        if b == types.float32:
            from . import fmath32
            f32_version = getattr(fmath32, name)
            return lambda a, b: f32_version(a, b)
        return lambda a, b: f64_version(a, b)

    in_own_precision.__name__ = in_own_precision.__qualname__ = name.lstrip("_")
    in_own_precision.__doc__ = doc
    return in_own_precision


log1p_quotient = _pair_in_own_precision(
    flog1p_quotient, "log1p_quotient",
    "log(1 + a/b) for a/b in [0, 0.26] (b > 0), in the arguments' own float type.")
log_kernel = _pair_in_own_precision(
    _log_kernel, "_log_kernel",
    "k log 2 + log(1 + f) for f in [sqrt(2)/2 - 1, sqrt(2) - 1], in f's own float type.")


@inlined_jit(**SCALAR_OPTIONS)
def _log1m_args(s):
    """(k, f) with log(1 - s) = log_kernel(k, f) for s in [0, 1/2], both exact: the
    kernel on -s, or on 1 - 2s at exponent -1 above 1 - sqrt(2)/2."""
    one = as_type_of(1.0, s)
    mid = s > as_type_of(_ONE_MINUS_SQRT_HALF, s)
    return (-one if mid else as_type_of(0.0, s)), (one - (s + s) if mid else -s)


@inlined_jit(**SCALAR_OPTIONS)
def log_of_positive(x):
    """log x for x > 0, in x's float type, without the special-value selects of
    ``log``: for callers that handle x <= 0 and NaN themselves.  +inf gives a
    finite value, 1024 log 2 in float64 (128 log 2 in float32)."""
    k, f = log_reduce(x)
    return log_kernel(k, f)


def _in_float64(of_float32, of_float64, name, doc):
    """``name``: ``of_float32`` for a float32 argument, else ``of_float64`` of it converted
    to float64; computed in float64 either way (doc: ``doc``).

    Compiled code uses the overload; the plain body serves Numba's CUDA simulator.
    """
    def in_float64(x):
        return of_float32(x) if isinstance(x, np.float32) else of_float64(np.float64(x))

    @overload(in_float64, jit_options=SCALAR_OPTIONS, inline="always")
    def _typed(x):
        if x == types.float32:
            return lambda x: of_float32(x)
        return lambda x: of_float64(np.float64(x))

    in_float64.__name__ = in_float64.__qualname__ = name
    in_float64.__doc__ = doc
    return in_float64


log_of_positive_in_float64 = _in_float64(
    flog_of_float32, log_of_positive, "log_of_positive_in_float64",
    "``log_of_positive`` of a float32 or float64 x, computed in float64 either way (x's "
    "precision does not limit the result's): ``flog_of_float32`` for float32 x.  0 gives "
    "a finite value (so x log x is 0 there); +inf a finite positive one.")
exp_in_float64 = _in_float64(
    fexp_of_float32, fexp, "exp_in_float64",
    "e^x of a float32 or float64 x, computed in float64 either way: "
    "``fexp_of_float32`` for float32 x, ``fexp`` for float64.")


@inlined_jit(**SCALAR_OPTIONS)
def _floored(r, floor):
    """max(r, floor) that keeps a NaN r: one vmaxps."""
    return floor if floor > r else r


@inlined_jit(**SCALAR_OPTIONS)
def _log_of_small(s):
    """log_kernel's arguments for log s, s in [0, 1/2] or NaN: ``log_reduce_small``'s, NaN
    passed on through f.  At s = 0 they give the logarithm of 2^-152 (float32) or
    2^-1077 (float64), below any floor of at least -100; no special-value selects."""
    k, f = log_reduce_small(s)
    return k, f + as_type_of(0.0, s) * s


@inlined_jit(**SCALAR_OPTIONS)
def log_and_log1m_floored(p, floor):
    """(max(log p, floor), max(log(1 - p), floor)) for p in [0, 1] and a floor of at
    least -100, in p's float type, with one exponent extraction and two log
    kernels (log and log1p would take two and a division more).

    s = min(p, 1 - p) is exact (1 - p is, for p >= 1/2); log(1 - s) for s in
    [0, 1/2] is the kernel on exact arguments (``_log1m_args``); only log s needs
    the exponent extracted (``_log_of_small``).  NaN gives NaN.
    """
    upper = p > as_type_of(0.5, p)
    s = as_type_of(1.0, p) - p if upper else p
    k, f = _log_of_small(s)
    log_s = _floored(log_kernel(k, f), floor)
    k, f = _log1m_args(s)
    log_rest = _floored(log_kernel(k, f), floor)
    return (log_rest, log_s) if upper else (log_s, log_rest)


@inlined_jit(**SCALAR_OPTIONS)
def log_or_log1m_floored(p, complement, floor):
    """max(log(1 - p) if complement else log p, floor), as ``log_and_log1m_floored``,
    with one log kernel instead of two.

    With s = min(p, 1 - p), the wanted logarithm is log s or log(1 - s): the
    arguments of either are chosen per element and one kernel runs.
    """
    upper = p > as_type_of(0.5, p)
    s = as_type_of(1.0, p) - p if upper else p
    k_s, f_s = _log_of_small(s)
    k_r, f_r = _log1m_args(s)
    wants_log_s = complement == upper
    return _floored(log_kernel(k_s if wants_log_s else k_r, f_s if wants_log_s else f_r), floor)


@inlined_jit(**SCALAR_OPTIONS)
def softplus(x):
    """log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|)."""
    return max(x, 0.0) + flog1p_unit(fexp(-abs(x)))


@inlined_jit(**SCALAR_OPTIONS)
def sigmoid_pair(x):
    """(sigmoid(x), sigmoid(-x)), each accurate where it is small, in x's float type."""
    one = as_type_of(1.0, x)
    e = exp_nonpositive(-abs(x))
    big = one / (one + e)
    small = e * big
    pos = x >= 0.0
    return (big if pos else small), (small if pos else big)
