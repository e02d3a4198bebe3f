"""Custom elementwise losses from a plain Python function: ``@fastloss.custom_loss``.

The function computes the loss of one element, ``f(y, p, *, param=default, ...)``,
with arithmetic, comparisons, branches and the ``math``/NumPy functions of
``fastloss.kernels.jet.FUNCTIONS``.  Its derivatives in p are exact: the
user's ``grad=``/``hess=`` where given, else forward-mode jets
(``fastloss.kernels.jet``).  The loss is registered like a built-in one: a
``LossSpec`` in the registry, scalar functions for the kernel templates (so
it runs in the same fused parallel kernels), and a NumPy reference that runs
the function in Python with Python jets, independent of the compiled path.
"""
import functools
import hashlib
import inspect
import marshal
import math
import sys
import types
import warnings

import numpy as np

from .specs import DOMAINS, REGISTRY, LossSpec, Param

_CUSTOM = {}          # name -> CustomLoss


class CustomLoss:
    """What ``custom_loss`` knows of one user loss: its functions, parameters and digest."""

    def __init__(self, fn, grad, hess, name, y_domain, p_domain):
        self.name = name
        self.value_fn, self.grad_fn, self.hess_fn = fn, grad, hess
        self.param_names, self.defaults = _keyword_parameters(fn)
        for other in (grad, hess):
            if other is not None and _keyword_parameters(other)[0] != self.param_names:
                raise TypeError(f"custom_loss {name!r}: grad= and hess= must take the same "
                                f"keyword parameters as the loss ({', '.join(self.param_names)})")
        self.y_domain, self.p_domain = y_domain, p_domain
        self.function = None          # the public loss function, once made
        self.digest = self.current_digest()
        # positional, math-shimmed versions: what Python (reference) and Numba run
        self.py = [None if f is None else _positional(f) for f in (fn, grad, hess)]

    def current_digest(self):
        """The digest with the values the globals hold now: what kernels compiled now
        freeze in, and so the name of their cache entry."""
        return _digest(self.value_fn, self.grad_fn, self.hess_fn, self.y_domain, self.p_domain)

    def spec(self):
        params = tuple(Param(n, d, math.isfinite, "a finite real number")
                       for n, d in zip(self.param_names, self.defaults))
        try:
            source = inspect.getsource(self.value_fn).strip()
        except (OSError, TypeError):
            source = f"{self.name}(y, p) per element"
        summary = (inspect.getdoc(self.value_fn) or f"Custom loss {self.name!r}.").split("\n")[0]
        how = ("derivatives from the given grad= and hess=" if self.hess_fn is not None else
               "derivatives by forward-mode jets (exact)")
        return LossSpec(name=self.name, summary=summary, formula=source, params=params,
                        y_domain=self.y_domain, p_domain=self.p_domain,
                        reference=f"user-defined with fastloss.custom_loss; {how}", custom=True)


_CALL_ARGUMENTS = ("y_true", "y_pred", "sample_weight", "reduction", "backend")


def _keyword_parameters(fn):
    sig = inspect.signature(fn)
    ps = list(sig.parameters.values())
    positional = [p for p in ps if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) != 2 or any(p.default is not p.empty for p in positional):
        raise TypeError(f"a custom loss takes (y, p, *, param=default, ...): two positional "
                        f"arguments, then keyword-only parameters with defaults; "
                        f"{fn.__name__} has signature {sig}")
    names, defaults = [], []
    for p in ps[2:]:
        if p.kind != p.KEYWORD_ONLY or p.default is p.empty:
            raise TypeError(f"{fn.__name__}: parameter {p.name!r} must be keyword-only with a "
                            f"default (def {fn.__name__}(y, p, *, {p.name}=...))")
        if isinstance(p.default, bool) or not isinstance(p.default, (int, float)):
            raise TypeError(f"{fn.__name__}: parameter {p.name!r} must default to a number, "
                            f"got {p.default!r}")
        if p.name in _CALL_ARGUMENTS:
            raise TypeError(f"{fn.__name__}: parameter {p.name!r} is an argument of every loss "
                            f"function ({', '.join(_CALL_ARGUMENTS)}); choose another name")
        names.append(p.name)
        defaults.append(float(p.default))
    from .kernels.user import MAX_PARAMS
    if len(names) > MAX_PARAMS:
        raise TypeError(f"{fn.__name__}: a custom loss takes at most {MAX_PARAMS} parameters")
    return tuple(names), tuple(defaults)


def _code_digest(code, h):
    h.update(marshal.dumps(code.co_code))
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_digest(const, h)
        else:
            h.update(repr(const).encode())


def _names(code):
    """The global and attribute names a code object and the code nested in it use."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _value_digest(value, h, seen):
    """What Numba compiles in of a global or closure value: constants by value, functions
    by their code (and theirs), modules by name; of anything else only its type."""
    if isinstance(value, (bool, int, float, complex, str, bytes, np.generic)) or value is None:
        h.update(repr(value).encode())
    elif isinstance(value, np.ndarray):
        h.update(repr((value.dtype.str, value.shape)).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, tuple):
        for item in value:
            _value_digest(item, h, seen)
    elif isinstance(value, types.ModuleType):
        h.update(value.__name__.encode())
    elif isinstance(getattr(value, "py_func", value), types.FunctionType):
        _function_digest(getattr(value, "py_func", value), h, seen)
    else:
        h.update(type(value).__qualname__.encode())


def _function_digest(f, h, seen):
    """f's code, defaults, and the values of the globals and closure cells it reads, which
    Numba freezes into the compiled code (so a changed global is a different kernel)."""
    if id(f) in seen:
        return
    seen.add(id(f))
    _code_digest(f.__code__, h)
    h.update(repr((f.__defaults__, f.__kwdefaults__)).encode())
    names = sorted(_names(f.__code__))
    for name in names:
        if name in f.__globals__:
            value = f.__globals__[name]
            h.update(b"global " + name.encode())
            _value_digest(value, h, seen)
            if isinstance(value, types.ModuleType):       # constants read as module.NAME
                for attr in names:
                    constant = getattr(value, attr, None)
                    if isinstance(constant, (int, float, np.generic, np.ndarray, tuple)):
                        h.update(attr.encode())
                        _value_digest(constant, h, seen)
    for cell in f.__closure__ or ():
        try:
            _value_digest(cell.cell_contents, h, seen)
        except ValueError:                                 # an empty cell
            h.update(b"empty cell")


def _digest(fn, grad, hess, *extra):
    """A hash of what the kernels are compiled from: the functions' code, defaults and the
    values of the globals they read."""
    h = hashlib.sha256()
    seen = set()
    for f in (fn, grad, hess):
        if f is None:
            h.update(b"-")
            continue
        _function_digest(f, h, seen)
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]


def _positional(fn):
    """fn with its keyword-only parameters made positional, and math/numpy shimmed.

    Numba does not apply keyword-only defaults; the kernels pass the
    parameters positionally, in declaration order.
    """
    from .kernels.jet import SHIMMED_FUNCTIONS, SHIMS
    code = fn.__code__
    code = code.replace(co_argcount=code.co_argcount + code.co_kwonlyargcount,
                        co_kwonlyargcount=0)
    globs = dict(fn.__globals__)
    for name in code.co_names:
        obj = globs.get(name)
        if obj is None:
            continue
        if id(obj) in SHIMS:
            globs[name] = SHIMS[id(obj)]
        elif id(obj) in SHIMMED_FUNCTIONS:
            globs[name] = SHIMMED_FUNCTIONS[id(obj)]
    new = types.FunctionType(code, globs, fn.__name__, None, fn.__closure__)
    new.__qualname__ = fn.__qualname__
    return new


def _probe(custom):
    """Run the Python version once on a jet, so that a construct jets cannot take fails now."""
    from .kernels.jet import Jet
    if custom.grad_fn is not None and custom.hess_fn is not None:
        return
    label, f = ("grad", custom.py[1]) if custom.grad_fn is not None else ("loss", custom.py[0])
    try:
        # one arbitrary point, perhaps outside the loss's domain: its values do not matter
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            f(0.5, Jet(0.25, 1.0, 0.0), *custom.defaults)
    except TypeError as e:
        raise TypeError(
            f"custom_loss {custom.name!r}: cannot differentiate the {label} function "
            f"automatically: {_where_in(f, e)}{e}. Jets take arithmetic, comparisons, branches and "
            f"{', '.join(sorted(_jet_functions()))} from math/numpy; pass "
            f"grad= (and hess=) to fastloss.custom_loss instead") from None


def _where_in(f, error):
    """'line N: <source>: ' for the user's line that raised, if known."""
    import traceback
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename == f.__code__.co_filename and frame.line:
            return f"line {frame.lineno}: `{frame.line.strip()}`: "
    return ""


def compile_error(name, error):
    """A TypeError for a custom loss that Numba could not compile."""
    import re
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = next((ln for ln in lines if ln.startswith(("No implementation", "Unknown attribute",
                                                        "Cannot unify", "Untyped global",
                                                        "Use of unsupported"))),
                  lines[1] if len(lines) > 1 else lines[0] if lines else "")
    source = next((ln for ln in lines if ln.startswith(("return", "r =")) or "=" in ln), "")
    return TypeError(f"custom loss {name!r} could not be compiled by Numba: {detail}"
                     + (f" (near `{source}`)" if source else "")
                     + "; use the math/numpy functions Numba supports, or pass grad= and hess=")


def _jet_functions():
    from .kernels.jet import FUNCTIONS
    return FUNCTIONS


def custom_loss(fn=None, *, grad=None, hess=None, name=None, y_domain="real", p_domain="real"):
    """Make an elementwise loss, with fused kernels for all methods, from a Python function.

    ``@fastloss.custom_loss`` or ``@fastloss.custom_loss(grad=g, hess=h, name=...,
    y_domain="real", p_domain="real")`` over ``def f(y, p, *, param=default)``.
    Returns the loss function ``f(y_true, y_pred, *, sample_weight=None,
    reduction="mean", backend=None, **params)``; the loss is registered, so
    ``fastloss.get(name, **params)`` gives its ``Loss`` object.  Defining the
    same function again reuses its kernels (in this process and, through the
    disk cache, in later ones); redefining a name with different code replaces it.
    """
    if fn is None:
        return functools.partial(custom_loss, grad=grad, hess=hess, name=name,
                                 y_domain=y_domain, p_domain=p_domain)
    for label, f in (("loss", fn), ("grad", grad), ("hess", hess)):
        if f is not None and not isinstance(f, types.FunctionType):
            raise TypeError(f"custom_loss: {label} must be a Python function (def or lambda), "
                            f"got {f!r}")
    for label, domain in (("y_domain", y_domain), ("p_domain", p_domain)):
        if domain not in DOMAINS:
            raise ValueError(f"custom_loss: {label} must be one of {', '.join(DOMAINS)}, "
                             f"got {domain!r}")
    name = name or fn.__name__
    if not name.isidentifier():
        raise ValueError(f"custom_loss: name must be an identifier, got {name!r}")
    existing = _CUSTOM.get(name)
    from .multiclass import LOSSES as ROW_LOSSES
    if (name in REGISTRY or name in ROW_LOSSES) and existing is None:
        raise ValueError(f"custom_loss: {name!r} is a built-in loss; choose another name")
    custom = CustomLoss(fn, grad, hess, name, y_domain, p_domain)
    if existing is None or existing.digest != custom.digest:
        _probe(custom)
        _install(custom)
    else:
        custom = existing
    from . import _loss_function
    loss_function = _loss_function(REGISTRY[name])
    # found where the decorator put it, so that pickle can refer to it by name
    loss_function.__module__, loss_function.__qualname__ = fn.__module__, fn.__qualname__
    loss_function._definition = (fn, grad, hess, y_domain, p_domain)
    custom.function = loss_function
    return loss_function


def _importable(f):
    """Whether pickle can refer to function f by module and name (it is found there)."""
    obj = sys.modules.get(getattr(f, "__module__", None) or "")
    for part in f.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is f


def pickled_definition(name):
    """What a pickled ``Loss`` of custom loss ``name`` carries to define it again.

    The function ``custom_loss`` returned, where pickle can refer to it by name
    (importing its module runs the decorator again); otherwise the user's
    functions and domains, which pickle refers to by name when it can and
    cloudpickle (Dask, joblib, Ray) copies by value when it cannot.
    """
    function = _CUSTOM[name].function
    return function if _importable(function) else function._definition


def define_from(definition, name):
    """Define custom loss ``name`` from ``pickled_definition``'s result, if not already."""
    if not isinstance(definition, tuple):
        if name in _CUSTOM:
            return                  # defined by its module, imported to unpickle the function
        definition = definition._definition        # the function copied by value
    fn, grad, hess, y_domain, p_domain = definition
    custom_loss(fn, grad=grad, hess=hess, name=name, y_domain=y_domain, p_domain=p_domain)


def _install(custom):
    """Register (or replace) the loss everywhere a loss is looked up."""
    _forget(custom.name)
    _CUSTOM[custom.name] = custom
    REGISTRY[custom.name] = custom.spec()


def unregister(name):
    """Remove the custom loss ``name`` from the registry (built-in losses stay)."""
    if name not in _CUSTOM:
        raise ValueError(f"{name!r} is not a custom loss")
    _forget(name)
    del _CUSTOM[name]
    del REGISTRY[name]


def _forget(name):
    """Drop what was built for ``name``: cached Loss objects, kernels, reference formulas."""
    import sys
    from .loss import _cached_loss
    _cached_loss.cache_clear()
    for module in ("fastloss.backends.cpu", "fastloss.backends.reference",
                   "fastloss.backends.cuda.ops"):
        mod = sys.modules.get(module)
        if mod is not None:
            mod.forget(name)


def get_custom(name):
    return _CUSTOM.get(name)
