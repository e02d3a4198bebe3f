"""Backends: each implements the same few operations over flat arrays.

* ``reduce_value(name, y, p, w, theta) -> (sum of w*l, invalid count)``
* ``value_none(name, y, p, w, theta, out) -> invalid count``
* ``grad(name, y, p, w, theta, scale, out) -> invalid count``
* ``value_and_grad(name, y, p, w, theta, scale, out) -> (sum, invalid count)``
* ``grad_hess(name, y, p, w, theta, gout, hout) -> invalid count``
* ``weight_stats(w) -> (sum, count of negative weights)``

``w`` is None or one weight per element; ``scale`` multiplies the gradient
(1/n or 1/sum(w) for a mean); "invalid" counts elements outside the loss's
input domains, which the caller turns into a ValueError.  The modules are
imported on first use, so ``import fastloss`` never imports Numba.
"""
import importlib

_MODULES = {"numpy": "reference", "cpu": "cpu", "cuda": "cuda"}
_loaded = {}


def load(name):
    """The backend module for ``name`` ("numpy", "cpu" or "cuda")."""
    mod = _loaded.get(name)
    if mod is None:
        mod = importlib.import_module(f"{__name__}.{_MODULES[name]}")
        _loaded[name] = mod
    return mod


def available():
    """The backends that can run on this machine, by name."""
    names = ["numpy"]
    try:
        import numba  # noqa: F401
        names.append("cpu")
    except ImportError:  # pragma: no cover
        pass
    return names
