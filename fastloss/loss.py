"""The Loss object: validation, backend choice and reductions around the kernels."""
import functools

import numpy as np

from . import _config, backends
from . import _validation as v
from .specs import DOMAINS, REGISTRY


def _resolve_backend(backend, *arrays):
    name = _config.get_backend() if backend is None else _config.check_backend(backend)
    if name == "auto":
        name = "cpu"
        for a in arrays:        # a loop, not any(...): this runs on every call
            if type(a) is not np.ndarray and a is not None and backends.on_device(a):
                name = "cuda"
                break
    return backends.load(name)


def _empty_mean(name):
    v.warn_at_caller(f"{name}: the mean of an empty input is nan (as NumPy's "
                     "'Mean of empty slice')")
    return float("nan")


def _no_weight(name):
    v.warn_at_caller(f"{name}: sample_weight sums to 0; the weighted mean is "
                     "undefined (nan)")
    return float("nan")


class Loss:
    """A loss with fixed parameters; see ``fastloss.get``.

    Calling it gives the loss value; ``grad``, ``value_and_grad`` and
    ``grad_hess`` give derivatives with respect to ``y_pred`` from fused kernels.
    """

    def __init__(self, spec, params):
        self.spec = spec
        self.name = spec.name
        self.params = params
        self._theta = spec.theta(params)
        self.__doc__ = spec.doc

    def __repr__(self):
        args = "".join(f", {k}={val!r}" for k, val in self.params.items())
        return f"fastloss.get({self.name!r}{args})"

    def __reduce__(self):
        # As its name and parameters, for ``get`` to make again where it is unpickled (the
        # spec's validators are closures, which pickle cannot take); a custom loss also
        # carries its definition, since the receiving process may not have registered it.
        if self.spec.custom:
            from .custom import pickled_definition
            return _custom_loss_from, (pickled_definition(self.name), self.name, self.params)
        return _loss_from, (self.name, self.params)

    # -- helpers ------------------------------------------------------------

    def _prepare(self, y_true, y_pred, sample_weight, backend):
        be = _resolve_backend(backend, y_true, y_pred, sample_weight)
        return be, be.arrays.prepare(y_true, y_pred, sample_weight)

    def _check_reduction(self, reduction):
        if reduction not in self.spec.extra_reductions:
            v.check_reduction(reduction, self.spec.extra_reductions)

    def _denominator(self, be, x, reduction, weight_stats=None):
        """What the reduced loss is divided by: 1 for a sum, count or sum(w) for a mean.

        "batchmean" divides by the first dimension (or the sum of the row weights).
        ``weight_stats``: (sum, count of negative values) of the weights where the
        caller has them, else computed here.
        """
        if x.w is not None:
            total = self._checked_weights(be, x, weight_stats)
        if reduction == "batchmean":
            rows = x.shape[0] if x.shape else 1
            return float(rows) if x.w is None else total * rows / x.size if x.size else 0.0
        if reduction != "mean":
            return 1.0
        return float(x.size) if x.w is None else total

    def _checked_weights(self, be, x, weight_stats=None):
        """The sum of the weights (``weight_stats`` where the caller has their (sum,
        count of negative values)); a ValueError if one is negative."""
        total, negative = weight_stats or be.weight_stats(x.w)
        if negative:
            raise ValueError(f"sample_weight must be >= 0; it has {negative} negative value(s)")
        return total

    def _check_domain(self, bad, x, be, written=()):
        """Raise the ValueError that names the first invalid input, where the kernel counted
        some (``bad``: a count of elements or of blocks, 0 where all are valid).
        ``written``: the buffers the kernel wrote; an input they overlap (out= y_pred,
        computing in place) no longer holds its values, so its invalid ones go unnamed."""
        if not bad:
            return
        from .backends.reference import DOMAIN_MASKS
        overwritten = []
        for arg, arr, domain in (("y_true", x.y, self.spec.y_domain), ("y_pred", x.p, self.spec.p_domain)):
            if any(b is not None and be.arrays.buffers_overlap(arr, b) for b in written):
                overwritten.append((arg, domain))
                continue
            arr = be.arrays.host(arr)
            wrong = np.flatnonzero(~DOMAIN_MASKS[domain](arr))
            if wrong.size:
                i = int(wrong[0])
                index = tuple(int(k) for k in np.unravel_index(i, x.shape)) if len(x.shape) > 1 else i
                raise ValueError(f"{self.name}: {arg} must be {DOMAINS[domain]}; found {wrong.size} "
                                 f"invalid value(s), the first {float(arr[i])!r} at index {index}")
        if x.w is not None:             # kernels that check the weights (cpu's grad_hess)
            self._checked_weights(be, x)
        if overwritten:
            args = " or ".join(arg for arg, _ in overwritten)
            musts = "; ".join(f"{arg} must be {DOMAINS[domain]}" for arg, domain in overwritten)
            raise ValueError(f"{self.name}: {musts}; found invalid value(s) in {args}, now "
                             f"overwritten by out= (pass a separate out to see the first named)")
        raise ValueError(f"{self.name}: invalid inputs")  # pragma: no cover

    # -- public methods ------------------------------------------------------

    def __call__(self, y_true, y_pred, *, sample_weight=None, reduction="mean", backend=None):
        """The loss: a float for "mean" and "sum", an array of y_pred's shape for "none"."""
        if reduction not in v.REDUCTIONS:
            self._check_reduction(reduction)
        be = _resolve_backend(backend, y_true, y_pred, sample_weight)
        x = be.arrays.prepare(y_true, y_pred, sample_weight)
        if x.w is not None and reduction != "none":
            total, bad, denom = self._weighted_total(be, x, reduction)
        else:
            denom = (float(x.size) if x.w is None and reduction == "mean"
                     else self._denominator(be, x, reduction))
            if reduction == "none":
                buf = be.arrays.empty(x)
                self._check_domain(be.value_none(self.name, x.y, x.p, x.w, self._theta, buf),
                                   x, be)
                return be.arrays.result(buf, None, x)
            total, bad = be.reduce_value(self.name, x.y, x.p, x.w, self._theta)
        if bad:
            self._check_domain(bad, x, be)
        if reduction == "mean" and denom:
            return float(total) / denom
        return self._reduce(total, denom, x, reduction)

    value = __call__

    def partial(self, y_true, y_pred, *, sample_weight=None, reduction="mean", backend=None):
        """(sum of the weighted losses, the denominator of ``reduction``) over these inputs.

        The state that ``fastloss.Accumulator`` adds up over chunks: the mean
        over all chunks is the sum of the totals over the sum of the denominators.
        For "sum" the denominator is the mean's.
        """
        self._check_reduction(reduction)
        if reduction == "none":
            raise ValueError('partial sums need reduction "mean" or "sum", not "none"')
        be, x = self._prepare(y_true, y_pred, sample_weight, backend)
        reduction = "mean" if reduction == "sum" else reduction
        if x.w is not None:
            total, bad, denom = self._weighted_total(be, x, reduction)
        else:
            denom = self._denominator(be, x, reduction)
            total, bad = be.reduce_value(self.name, x.y, x.p, x.w, self._theta)
        self._check_domain(bad, x, be)
        return float(total), float(denom)

    def _weighted_total(self, be, x, reduction):
        """(sum of w*l, invalid count, denominator) for weighted inputs: in one pass with
        the weights' sum and check where the backend has it (``reduce_weighted_value``)."""
        if not hasattr(be, "reduce_weighted_value"):
            denom = self._denominator(be, x, reduction)
            return (*be.reduce_value(self.name, x.y, x.p, x.w, self._theta), denom)
        total, bad, weights, negative = be.reduce_weighted_value(self.name, x.y, x.p, x.w,
                                                                 self._theta)
        return total, bad, self._denominator(be, x, reduction, (weights, negative))

    def _reduce(self, total, denom, x, reduction):
        if reduction == "sum":
            return float(total)
        if x.size == 0:
            return _empty_mean(self.name)
        if denom == 0:
            return _no_weight(self.name)
        return float(total) / denom

    def _grad_scale(self, denom, warn=True):
        """1 / denom: NaN where it is 0, with a warning unless ``warn`` is False (the
        value's reduction warns instead)."""
        if denom == 0:
            return _no_weight(self.name) if warn else float("nan")
        return 1.0 / denom

    def grad(self, y_true, y_pred, *, sample_weight=None, reduction="mean", out=None, backend=None):
        """d(reduced loss)/d(y_pred); for reduction="none", the elementwise (weighted) derivative."""
        self._check_reduction(reduction)
        be, x = self._prepare(y_true, y_pred, sample_weight, backend)
        denom = self._denominator(be, x, reduction)
        return self._scaled_grad(be, x, self._grad_scale(denom) if x.size else 1.0, out)

    def scaled_grad(self, y_true, y_pred, scale, *, sample_weight=None, out=None, backend=None):
        """scale * d(sum of the weighted losses)/d(y_pred), in one pass.

        The gradient of a mean whose denominator comes from elsewhere: the
        whole data set when these inputs are one chunk of it.
        """
        be, x = self._prepare(y_true, y_pred, sample_weight, backend)
        if x.w is not None:
            self._checked_weights(be, x)
        return self._scaled_grad(be, x, float(scale), out)

    def _scaled_grad(self, be, x, scale, out):
        out, buf = be.arrays.output(out, x)
        self._check_domain(be.grad(self.name, x.y, x.p, x.w, self._theta, scale, buf), x, be,
                           (buf,))
        return be.arrays.result(buf, out, x)

    def value_and_grad(self, y_true, y_pred, *, sample_weight=None, reduction="mean", out=None,
                       backend=None):
        """(value, grad) from one fused pass over the data."""
        self._check_reduction(reduction)
        be, x = self._prepare(y_true, y_pred, sample_weight, backend)
        out, buf = be.arrays.output(out, x)
        denom = self._denominator(be, x, reduction)
        if reduction == "none":
            values = be.arrays.empty(x)
            self._check_domain(be.value_none(self.name, x.y, x.p, x.w, self._theta, values), x, be)
            be.grad(self.name, x.y, x.p, x.w, self._theta, 1.0, buf)
            return be.arrays.result(values, None, x), be.arrays.result(buf, out, x)
        scale = self._grad_scale(denom, warn=False) if x.size else 1.0
        total, bad = be.value_and_grad(self.name, x.y, x.p, x.w, self._theta, scale, buf)
        self._check_domain(bad, x, be, (buf,))
        return self._reduce(total, denom, x, reduction), be.arrays.result(buf, out, x)

    def grad_hess(self, y_true, y_pred, *, sample_weight=None, out=None, backend=None):
        """Per-element first and second derivatives (the boosting convention: reduction "sum").

        ``out`` may be a pair of arrays (grad, hess) of y_pred's shape and result dtype.
        """
        be, x = self._prepare(y_true, y_pred, sample_weight, backend)
        if out is None:
            out = (None, None)
        elif not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("out must be a pair of arrays (grad, hess)")
        elif (out[0] is not None and out[1] is not None
              and be.arrays.buffers_overlap(out[0], out[1])):
            raise ValueError("out: the grad and hess buffers overlap; give two separate arrays")
        gout, gbuf = be.arrays.output(out[0], x, "out[0]")
        hout, hbuf = be.arrays.output(out[1], x, "out[1]")
        if x.w is not None and not getattr(be, "GRAD_HESS_CHECKS_WEIGHTS", False):
            self._checked_weights(be, x)
        self._check_domain(be.grad_hess(self.name, x.y, x.p, x.w, self._theta, gbuf, hbuf), x, be,
                           (gbuf, hbuf))
        return be.arrays.result(gbuf, gout, x), be.arrays.result(hbuf, hout, x)


def _loss_from(name, params):
    return get(name, **params)


def _custom_loss_from(definition, name, params):
    from .custom import define_from
    define_from(definition, name)
    return get(name, **params)


@functools.lru_cache(maxsize=256)
def _cached_loss(name, frozen_params):
    spec = REGISTRY[name]
    return Loss(spec, spec.resolve_params(dict(frozen_params)))


def get(name, **params):
    """The loss ``name`` with the given parameters, as a ``Loss`` object."""
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a string, got {name!r}")
    spec = REGISTRY.get(name)
    if spec is None:                       # the row losses are registered apart
        from .multiclass import LOSSES as ROW_LOSSES
        if name in ROW_LOSSES:
            return ROW_LOSSES[name](**params)
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(available())}")
    try:
        key = tuple(sorted(params.items()))
        hash(key)
    except TypeError:
        return Loss(spec, spec.resolve_params(params))
    return _cached_loss(name, key)


def available():
    """The names of all registered losses."""
    from .multiclass import LOSSES as ROW_LOSSES
    return sorted([*REGISTRY, *ROW_LOSSES])
