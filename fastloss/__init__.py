"""fastloss: loss functions and their derivatives as fused, parallel Numba kernels.

Every loss is a function ``fastloss.<name>(y_true, y_pred, *, sample_weight=None,
reduction="mean", backend=None, **params)`` and a ``Loss`` object from
``fastloss.get(name, **params)`` with ``grad``, ``value_and_grad`` and
``grad_hess``.  Backends: "cpu" (Numba kernels), "numpy" (the reference) and
"auto" (the default).  Importing fastloss does not import Numba; kernels are
compiled on first use and cached on disk.
"""
import inspect

from ._config import get_backend, get_num_threads, set_backend, set_num_threads, use_backend
from .accumulate import Accumulator
from .backends import available as available_backends
from .backends import describe as backend_info
from .loss import Loss, available, get
from .multiclass import cross_entropy, linear_cross_entropy, multi_margin, nll, softmax_focal
from .specs import REGISTRY

__version__ = "0.1.0"

__all__ = ["Accumulator", "Loss", "custom_loss", "available", "available_backends", "backend_info", "get", "get_backend", "get_num_threads",
           "set_backend", "set_num_threads", "use_backend", "cross_entropy", "linear_cross_entropy", "multi_margin", "nll",
           "softmax_focal",
           *REGISTRY]


def _loss_function(spec):
    name = spec.name
    # Not kept for a custom loss: its function then refers to no Loss (whose pickle
    # refers back to the function), so that cloudpickle can copy it by value.
    default = None if spec.custom else get(name)

    def loss_function(y_true, y_pred, *, sample_weight=None, reduction="mean", backend=None,
                      **params):
        loss = default if default is not None and not params else get(name, **params)
        return loss(y_true, y_pred, sample_weight=sample_weight, reduction=reduction,
                    backend=backend)

    keyword = inspect.Parameter.KEYWORD_ONLY
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    loss_function.__signature__ = inspect.Signature(
        [inspect.Parameter("y_true", positional), inspect.Parameter("y_pred", positional)]
        + [inspect.Parameter(n, keyword, default=d) for n, d in
           (("sample_weight", None), ("reduction", "mean"), ("backend", None))]
        + [inspect.Parameter(p.name, keyword, default=p.default) for p in spec.params])
    loss_function.__name__ = loss_function.__qualname__ = spec.name
    loss_function.__doc__ = spec.doc
    loss_function.__module__ = __name__
    return loss_function


for _spec in REGISTRY.values():
    globals()[_spec.name] = _loss_function(_spec)
del _spec

from .custom import custom_loss  # noqa: E402  (uses _loss_function)
