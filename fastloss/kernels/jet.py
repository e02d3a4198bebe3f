"""Second-order jets: exact first and second derivatives of user code, in Python and in Numba.

A ``Jet(v, g, h)`` carries a value with its first and second derivative along
one input.  Running a user's loss on ``Jet(p, 1, 0)`` instead of ``p`` gives
(l, dl/dp, d2l/dp2) by the chain rule, exactly, in one evaluation (Taylor-mode
forward differentiation; Griewank & Walther, *Evaluating Derivatives*, ch. 13).

The arithmetic is written once, as plain functions (``register_jitable``)
that serve both worlds: the Python ``Jet`` class (used by the NumPy reference
backend and to probe a new loss) and the Numba type ``JetType``, a struct of
three float64 that lives in registers, so a compiled loss costs what its
arithmetic costs.  Elementary functions are a table of rules
v -> (f(v), f'(v), f''(v)); ``MathShim`` stands in for ``math`` and ``numpy``
in a user's function so that ``np.exp(jet)`` and ``math.log1p(jet)`` take the
rules.
"""
import math
import operator
import types as pytypes

import numpy as np
from numba import types

from . import fmath
from .fmath import SCALAR_OPTIONS
from numba.core import cgutils
from numba.extending import (lower_builtin, lower_cast, make_attribute_wrapper, models, overload,
                             register_jitable, register_model, type_callable, typeof_impl)

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


class Jet:
    """v + g e + h e^2 / 2: a value with its first and second derivative."""

    __slots__ = ("v", "g", "h")

    def __init__(self, v, g, h):
        # numpy scalars: Python evaluation then follows the kernels' error model
        # (1/0 is inf and log(-1) nan, not exceptions)
        self.v, self.g, self.h = np.float64(v), np.float64(g), np.float64(h)

    def __repr__(self):
        return f"Jet({self.v!r}, {self.g!r}, {self.h!r})"

    def __add__(self, o):
        return add(self, lift(o))

    __radd__ = __add__

    def __sub__(self, o):
        return sub(self, lift(o))

    def __rsub__(self, o):
        return sub(lift(o), self)

    def __mul__(self, o):
        return mul(self, lift(o))

    __rmul__ = __mul__

    def __truediv__(self, o):
        return div(self, lift(o))

    def __rtruediv__(self, o):
        return div(lift(o), self)

    def __pow__(self, o):
        return power(self, o)

    def __rpow__(self, o):
        return power(o, self)

    def __neg__(self):
        return Jet(-self.v, -self.g, -self.h)

    def __pos__(self):
        return self

    def __abs__(self):
        return chain(RULES["abs"], self)

    def __lt__(self, o):
        return self.v < value_of(o)

    def __le__(self, o):
        return self.v <= value_of(o)

    def __gt__(self, o):
        return self.v > value_of(o)

    def __ge__(self, o):
        return self.v >= value_of(o)

    def __eq__(self, o):
        return self.v == value_of(o)

    def __ne__(self, o):
        return self.v != value_of(o)

    __hash__ = None

    def __bool__(self):
        return self.v != 0.0


def lift(x):
    return x if isinstance(x, Jet) else Jet(x, 0.0, 0.0)


def value_of(x):
    return x.v if isinstance(x, Jet) else x


# -- the arithmetic, once --------------------------------------------------------

@register_jitable
def add(a, b):
    return Jet(a.v + b.v, a.g + b.g, a.h + b.h)


@register_jitable
def sub(a, b):
    return Jet(a.v - b.v, a.g - b.g, a.h - b.h)


@register_jitable
def mul(a, b):
    return Jet(a.v * b.v, a.g * b.v + a.v * b.g, a.h * b.v + 2.0 * a.g * b.g + a.v * b.h)


@register_jitable
def div(a, b):
    q = a.v / b.v
    dq = (a.g - q * b.g) / b.v
    return Jet(q, dq, (a.h - 2.0 * dq * b.g - q * b.h) / b.v)


@register_jitable
def scale(a, c):
    return Jet(a.v * c, a.g * c, a.h * c)


@register_jitable
def shift(a, c):
    return Jet(a.v + c, a.g, a.h)


@register_jitable
def chain_parts(a, f, d1, d2):
    """f(a) from f, f' and f'' at a.v."""
    return Jet(f, d1 * a.g, d1 * a.h + d2 * a.g * a.g)


@register_jitable
def pow_const(a, n):
    if n == 2.0:
        return Jet(a.v * a.v, 2.0 * a.v * a.g, 2.0 * (a.v * a.h + a.g * a.g))
    if n == 0.0:
        return Jet(1.0, 0.0, 0.0)
    if n == 1.0:
        return a
    return chain_parts(a, a.v ** n, n * a.v ** (n - 1.0), n * (n - 1.0) * a.v ** (n - 2.0))


def _real(numpy_fn, kernel_fn_name):
    """A real function: NumPy's in Python, fastloss's vectorizable one in Numba."""
    def fn(x):
        return numpy_fn(x)

    @overload(fn, jit_options=SCALAR_OPTIONS)
    def _ov(x):
        if _is_num(x):
            kernel_fn = getattr(fmath, kernel_fn_name)
            return lambda x: kernel_fn(np.float64(x))
    return fn


def _is_num(t):
    return isinstance(t, (types.Float, types.Integer, types.Boolean))


real_exp = _real(np.exp, "fexp")
real_expm1 = _real(np.expm1, "fexpm1")
real_log = _real(np.log, "flog")
real_log1p = _real(np.log1p, "flog1p")


# rules v -> (f(v), f'(v), f''(v))
@register_jitable
def _exp(v):
    e = real_exp(v)
    return e, e, e


@register_jitable
def _expm1(v):
    return real_expm1(v), real_exp(v), real_exp(v)


@register_jitable
def _log(v):
    return real_log(v), 1.0 / v, -1.0 / (v * v)


@register_jitable
def _log1p(v):
    u = 1.0 / (1.0 + v)
    return real_log1p(v), u, -u * u


@register_jitable
def _log2(v):
    c = 1.0 / (v * 0.6931471805599453)
    return np.log2(v), c, -c / v


@register_jitable
def _log10(v):
    c = 1.0 / (v * 2.302585092994046)
    return np.log10(v), c, -c / v


@register_jitable
def _sqrt(v):
    s = np.sqrt(v)
    return s, 0.5 / s, -0.25 / (s * v)


@register_jitable
def _tanh(v):
    t = np.tanh(v)
    d = 1.0 - t * t
    return t, d, -2.0 * t * d


@register_jitable
def _sinh(v):
    return np.sinh(v), np.cosh(v), np.sinh(v)


@register_jitable
def _cosh(v):
    return np.cosh(v), np.sinh(v), np.cosh(v)


@register_jitable
def _sin(v):
    return np.sin(v), np.cos(v), -np.sin(v)


@register_jitable
def _cos(v):
    return np.cos(v), -np.sin(v), -np.cos(v)


@register_jitable
def _tan(v):
    t = np.tan(v)
    d = 1.0 + t * t
    return t, d, 2.0 * t * d


@register_jitable
def _atan(v):
    u = 1.0 / (1.0 + v * v)
    return np.arctan(v), u, -2.0 * v * u * u


@register_jitable
def _erf(v):
    d = _TWO_OVER_SQRT_PI * real_exp(-v * v)
    return math.erf(v), d, -2.0 * v * d


@register_jitable
def _signum(v):
    """-1, 0 or 1 (nan for nan); the derivative of |v|, 0 at 0 as PyTorch."""
    return 1.0 if v > 0.0 else -1.0 if v < 0.0 else 0.0 * v


@register_jitable
def _abs(v):
    return abs(v), _signum(v), 0.0 * v


@register_jitable
def _sign(v):
    return _signum(v), 0.0 * v, 0.0 * v


@register_jitable
def _square(v):
    return v * v, 2.0 * v, 2.0 + 0.0 * v


RULES = {"exp": _exp, "expm1": _expm1, "log": _log, "log1p": _log1p, "log2": _log2,
         "log10": _log10, "sqrt": _sqrt, "tanh": _tanh, "sinh": _sinh, "cosh": _cosh,
         "sin": _sin, "cos": _cos, "tan": _tan, "atan": _atan, "erf": _erf, "abs": _abs,
         "sign": _sign, "square": _square}


def chain(rule, a):
    return chain_parts(a, *rule(a.v))


def power(a, b):
    if isinstance(b, Jet):                                     # a^b = exp(b log a)
        return _jet_exp(mul(b, _jet_log(lift(a))))
    if isinstance(a, Jet):
        return pow_const(a, float(b))
    return a ** b


# -- the Numba type ---------------------------------------------------------------

class JetType(types.Type):
    def __init__(self):
        super().__init__(name="Jet")

    def unify(self, typingctx, other):
        # a branch that returns a plain number joins one that returns a Jet
        if isinstance(other, (types.Float, types.Integer, types.Boolean)):
            return self
        return None

    def can_convert_from(self, typingctx, other):
        if isinstance(other, (types.Float, types.Integer, types.Boolean)):
            return types.Conversion.safe
        return None


jet_type = JetType()


@typeof_impl.register(Jet)
def _typeof_jet(val, c):
    return jet_type


@type_callable(Jet)
def _type_jet(context):
    def typer(v, g, h):
        if all(isinstance(a, (types.Float, types.Integer)) for a in (v, g, h)):
            return jet_type
    return typer


@register_model(JetType)
class JetModel(models.StructModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, [("v", types.float64), ("g", types.float64),
                                        ("h", types.float64)])


for _field in ("v", "g", "h"):
    make_attribute_wrapper(JetType, _field, _field)


@lower_builtin(Jet, types.Number, types.Number, types.Number)
def _make_jet(context, builder, sig, args):
    jet = cgutils.create_struct_proxy(sig.return_type)(context, builder)
    for name, val, ty in zip(("v", "g", "h"), args, sig.args):
        setattr(jet, name, context.cast(builder, val, ty, types.float64))
    return jet._getvalue()


@lower_cast(types.Float, JetType)
@lower_cast(types.Integer, JetType)
@lower_cast(types.Boolean, JetType)
def _numberlift(context, builder, fromty, toty, val):
    jet = cgutils.create_struct_proxy(toty)(context, builder)
    jet.v = context.cast(builder, val, fromty, types.float64)
    jet.g = context.get_constant(types.float64, 0.0)
    jet.h = context.get_constant(types.float64, 0.0)
    return jet._getvalue()


def _is_jet(t):
    return isinstance(t, JetType)


def _arithmetic(op, jet_jet, jet_num, num_jet):
    @overload(op)
    def _ov(a, b):
        if _is_jet(a) and _is_jet(b):
            return jet_jet
        if _is_jet(a) and _is_num(b):
            return jet_num
        if _is_num(a) and _is_jet(b):
            return num_jet


# (Jet op Jet, Jet op number, number op Jet)
_ARITHMETIC = {
    operator.add: (lambda a, b: add(a, b), lambda a, b: shift(a, b), lambda a, b: shift(b, a)),
    operator.sub: (lambda a, b: sub(a, b), lambda a, b: shift(a, -b),
                   lambda a, b: shift(scale(b, -1.0), a)),
    operator.mul: (lambda a, b: mul(a, b), lambda a, b: scale(a, b), lambda a, b: scale(b, a)),
    operator.truediv: (lambda a, b: div(a, b), lambda a, b: scale(a, 1.0 / b),
                       lambda a, b: div(Jet(a, 0.0, 0.0), b)),
    operator.pow: (lambda a, b: _jet_exp(b * _jet_log(a)),
                   lambda a, b: pow_const(a, float(b)),
                   lambda a, b: _jet_exp(b * _jet_log(lift(a)))),
}
for _op, _impls in _ARITHMETIC.items():
    _arithmetic(_op, *_impls)


@register_jitable
def _jet_exp(a):
    return chain_parts(a, *_exp(a.v))


@register_jitable
def _jet_log(a):
    return chain_parts(a, *_log(a.v))


@overload(operator.neg)
def _ov_neg(a):
    if _is_jet(a):
        return lambda a: scale(a, -1.0)


@overload(operator.pos)
def _ov_pos(a):
    if _is_jet(a):
        return lambda a: a


def _comparison(op):
    @overload(op)
    def _ov(a, b):
        if _is_jet(a) and _is_jet(b):
            return lambda a, b: op(a.v, b.v)
        if _is_jet(a) and _is_num(b):
            return lambda a, b: op(a.v, b)
        if _is_num(a) and _is_jet(b):
            return lambda a, b: op(a, b.v)


for _op in (operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne):
    _comparison(_op)


@overload(abs)
def _ov_abs(a):
    if _is_jet(a):
        return lambda a: chain_parts(a, *_abs(a.v))


@register_jitable
def _first_is_max(x, y):
    return not y > x


@register_jitable
def _first_is_min(x, y):
    return not y < x


@overload(lift)
def _ov_lift(x):
    if _is_jet(x):
        return lambda x: x
    if _is_num(x):
        return lambda x: Jet(x, 0.0, 0.0)


# -- derivatives out of a result ----------------------------------------------------

def first(x):
    """dl/dp of a result: its g, or 0 for a result that does not depend on p."""
    return x.g if isinstance(x, Jet) else 0.0 * x


def second(x):
    return x.h if isinstance(x, Jet) else 0.0 * x


@overload(first)
def _ov_first(x):
    if _is_jet(x):
        return lambda x: x.g
    return lambda x: 0.0 * x


@overload(second)
def _ov_second(x):
    if _is_jet(x):
        return lambda x: x.h
    return lambda x: 0.0 * x


# -- math and numpy, for user code ----------------------------------------------------

def _unary(rule, real):
    def fn(x):
        return chain(rule, x) if isinstance(x, Jet) else real(x)

    @overload(fn)
    def _ov(x):
        if _is_jet(x):
            return lambda x: chain_parts(x, *rule(x.v))
        if _is_num(x):
            return lambda x: rule(x)[0]
    return fn


def _binary_extremum(pick_first):
    def fn(a, b):
        ja, jb = lift(a), lift(b)
        if not isinstance(a, Jet) and not isinstance(b, Jet):
            return a if pick_first(a, b) else b
        return ja if pick_first(ja.v, jb.v) else jb

    @overload(fn)
    def _ov(a, b):
        if _is_num(a) and _is_num(b):
            return lambda a, b: a if pick_first(a, b) else b
        return lambda a, b: lift(a) if pick_first(lift(a).v, lift(b).v) else lift(b)
    return fn


def _where(c, a, b):
    return a if c else b


@overload(_where)
def _ov_where(c, a, b):
    if _is_jet(a) or _is_jet(b):
        return lambda c, a, b: lift(a) if c else lift(b)
    return lambda c, a, b: a if c else b


def _clip(x, lo, hi):
    return _binary_extremum_min(_binary_extremum_max(x, lo), hi)


@overload(_clip)
def _ov_clip(x, lo, hi):
    return lambda x, lo, hi: _binary_extremum_min(_binary_extremum_max(x, lo), hi)


def _pow(a, b):
    return power(a, b) if isinstance(a, Jet) or isinstance(b, Jet) else a ** b


@overload(_pow)
def _ov_pow_fn(a, b):
    return lambda a, b: a ** b


_binary_extremum_max = _binary_extremum(_first_is_max)
_binary_extremum_min = _binary_extremum(_first_is_min)


def _builtin_extremum(builtin, shim):
    """max() and min() on jets: the same choice as the NumPy shims make."""
    @overload(builtin)
    def _ov(a, b):
        if (_is_jet(a) or _is_jet(b)) and (_is_jet(a) or _is_num(a)) and \
                (_is_jet(b) or _is_num(b)):
            return lambda a, b: shim(a, b)


_builtin_extremum(max, _binary_extremum_max)
_builtin_extremum(min, _binary_extremum_min)

_REALS = {name: (lambda rule: lambda v: rule(np.float64(v))[0])(rule)
          for name, rule in RULES.items()}
FUNCTIONS = {name: _unary(RULES[name], _REALS[name]) for name in RULES}
FUNCTIONS.update({"arctan": FUNCTIONS["atan"], "fabs": FUNCTIONS["abs"],
                  "absolute": FUNCTIONS["abs"], "maximum": _binary_extremum_max,
                  "minimum": _binary_extremum_min, "fmax": _binary_extremum_max,
                  "fmin": _binary_extremum_min, "where": _where, "clip": _clip,
                  "power": _pow, "pow": _pow})


class MathShim(pytypes.ModuleType):
    """Stands in for ``math`` or ``numpy`` in a user's loss: differentiable functions
    where the table has them, the real module's attribute (constants, and
    functions that then cannot take a Jet) otherwise."""

    def __init__(self, real):
        super().__init__(real.__name__)
        self._real = real
        for name, fn in FUNCTIONS.items():
            if hasattr(real, name):
                setattr(self, name, fn)

    def __getattr__(self, name):
        return getattr(self._real, name)


SHIMS = {id(math): MathShim(math), id(np): MathShim(np)}
# functions imported by name (``from math import exp``)
SHIMMED_FUNCTIONS = {id(getattr(mod, name)): fn for mod in (math, np)
                     for name, fn in FUNCTIONS.items() if hasattr(mod, name)}
