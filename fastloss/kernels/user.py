"""Scalar functions (value, dl/dp, d2l/dp2) of a custom loss, for the kernel templates.

The user's function is compiled by Numba and inlined into the same templates
as the built-in losses; derivatives the user did not give come from running
it on a ``Jet`` (``fastloss.kernels.jet``).
"""

from .fmath import SCALAR_OPTIONS
from .llvm_attributes import inlined_jit
from .jet import Jet, first, second

jit = inlined_jit(**SCALAR_OPTIONS)
MAX_PARAMS = 6


def _with_theta(f, k):
    """f(y, p, th[0], ..., th[k-1]) as a function of (y, p, th): Numba cannot inline f(*th)."""
    f = jit(f)
    callers = (
        lambda y, p, th: f(y, p),
        lambda y, p, th: f(y, p, th[0]),
        lambda y, p, th: f(y, p, th[0], th[1]),
        lambda y, p, th: f(y, p, th[0], th[1], th[2]),
        lambda y, p, th: f(y, p, th[0], th[1], th[2], th[3]),
        lambda y, p, th: f(y, p, th[0], th[1], th[2], th[3], th[4]),
        lambda y, p, th: f(y, p, th[0], th[1], th[2], th[3], th[4], th[5]),
    )
    return jit(callers[k])


def scalar_functions(custom):
    k = len(custom.param_names)
    value_py, grad_py, hess_py = custom.py
    f = _with_theta(value_py, k)

    @jit
    def value(y, p, th):
        return f(y, p, th) + 0.0

    if grad_py is not None:
        g = _with_theta(grad_py, k)

        @jit
        def grad(y, p, th):
            return g(y, p, th) + 0.0
    else:
        @jit
        def grad(y, p, th):
            return first(f(y, Jet(p, 1.0, 0.0), th))

    if hess_py is not None:
        h = _with_theta(hess_py, k)

        @jit
        def hess(y, p, th):
            return h(y, p, th) + 0.0
    elif grad_py is not None:
        @jit
        def hess(y, p, th):
            return first(g(y, Jet(p, 1.0, 0.0), th))
    else:
        @jit
        def hess(y, p, th):
            return second(f(y, Jet(p, 1.0, 0.0), th))

    return value, grad, hess
