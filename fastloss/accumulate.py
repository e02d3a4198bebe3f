"""Streaming, mergeable loss accumulators: losses over data that arrives in chunks.

An accumulator keeps, per loss, two compensated sums (Neumaier): the total of
the weighted losses and the denominator of the mean.  Each ``update`` adds one
fused kernel call's float64 partial sums, so the result equals one call over
the concatenated data to within a few float64 roundings, however many chunks
there are.  States merge (for data split over processes) and serialize to a
small dict of plain numbers (for Spark, Ray or a file).
"""
import math

import numpy as np

from . import backends
from ._validation import warn_at_caller

# With several losses, long updates are cut into pieces of about this many
# elements, so the losses after the first read each piece from cache.
SHARED_PIECE = 1 << 19


class CompensatedSum:
    """A float64 sum with Neumaier's running compensation: error O(eps), not O(n eps)."""

    __slots__ = ("hi", "lo")

    def __init__(self, hi=0.0, lo=0.0):
        self.hi = float(hi)
        self.lo = float(lo)

    def add(self, x):
        x = float(x)
        t = self.hi + x
        if not math.isfinite(t):
            pass        # an inf or NaN total: the compensation (inf - inf) would make it NaN
        elif abs(self.hi) >= abs(x):
            self.lo += (self.hi - t) + x
        else:
            self.lo += (x - t) + self.hi
        self.hi = t

    def merge(self, other):
        self.add(other.hi)
        self.add(other.lo)

    @property
    def value(self):
        return self.hi + self.lo

    def to_list(self):
        return [self.hi, self.lo]


def _loss_object(entry, params):
    from .loss import get
    if isinstance(entry, str):
        return get(entry, **params)
    if params:
        raise TypeError("parameters go with a loss name; pass fastloss.get(name, **params) "
                        "objects to give losses their own parameters")
    if hasattr(entry, "partial") and hasattr(entry, "name") and hasattr(entry, "params"):
        return entry
    raise TypeError(f"losses must be names or fastloss loss objects, got {entry!r}")


def _named_losses(losses, params):
    """{label: loss object} from a name, a loss object, a list of them or a dict."""
    if isinstance(losses, dict):
        if params:
            raise TypeError("parameters go with a single loss name, not with a dict of losses")
        items = list(losses.items())
    elif isinstance(losses, (list, tuple)):
        if params:
            raise TypeError("parameters go with a single loss name; for several losses pass "
                            "fastloss.get(name, **params) objects or a dict of them")
        items = [(getattr(e, "name", e), e) for e in losses]
    else:
        items = [(getattr(losses, "name", losses), losses)]
    if not items:
        raise ValueError("an Accumulator needs at least one loss")
    named = {}
    for label, entry in items:
        if not isinstance(label, str):
            raise TypeError(f"loss labels must be strings, got {label!r}")
        if label in named:
            raise ValueError(f"loss {label!r} appears twice; give the losses distinct labels "
                             "with a dict, e.g. {'huber1': fl.get('huber', delta=1.0), ...}")
        named[label] = _loss_object(entry, params)
    if any(getattr(loss, "name", "") == "linear_cross_entropy" for loss in named.values()):
        raise ValueError("linear_cross_entropy takes (hidden, weight) rather than predictions; "
                         "accumulate cross_entropy over the logits instead")
    return named


def _plain(value):
    """A parameter as JSON-friendly data (class weights as lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class Accumulator:
    """Losses accumulated over chunks of data, with results as from one call.

    ``Accumulator("mse")``, ``Accumulator("huber", delta=2.0)``,
    ``Accumulator(["mse", "mae", "huber"])`` or
    ``Accumulator({"h1": fl.get("huber", delta=1.0), "h2": fl.get("huber", delta=2.0)})``.
    ``update(y_true, y_pred, sample_weight=None)`` adds a chunk; ``result()``
    gives the loss (a dict by label for several losses); ``merge(other)``
    adds another accumulator's state; ``to_dict()`` / ``from_dict()`` and
    pickle carry the state between processes.

    ``count`` is the number of loss terms seen (elements, or rows for the
    softmax losses) and ``weight_sum`` the sum of their sample weights
    (``count`` when unweighted).
    """

    def __init__(self, losses, *, reduction="mean", backend=None, **params):
        if reduction not in ("mean", "sum", "batchmean"):
            raise ValueError(f'reduction must be "mean" or "sum" (or "batchmean" for kl_div), '
                             f"got {reduction!r}")
        self.losses = _named_losses(losses, params)
        if reduction == "batchmean":
            lacking = [label for label, loss in self.losses.items()
                       if "batchmean" not in getattr(getattr(loss, "spec", None),
                                                     "extra_reductions", ())]
            if lacking:
                raise ValueError(f"reduction 'batchmean' is kl_div's; {', '.join(lacking)} "
                                 "has none")
        self.reduction = reduction
        self.backend = backend
        self.reset()

    def reset(self):
        """Forget all data seen."""
        self._totals = {label: CompensatedSum() for label in self.losses}
        self._denoms = {label: CompensatedSum() for label in self.losses}
        self._weights = CompensatedSum()
        self.count = 0

    def __repr__(self):
        names = ", ".join(f"{label}={loss!r}" for label, loss in self.losses.items())
        return f"<fastloss.Accumulator {names}, reduction={self.reduction!r}, count={self.count}>"

    # -- data -----------------------------------------------------------------

    def _terms_per_row(self, y_pred):
        first = next(iter(self.losses.values()))
        shape = np.shape(y_pred)
        if hasattr(first, "spec"):                         # elementwise: one term per element
            return math.prod(shape[1:]) if shape else 1
        return 1

    def update(self, y_true, y_pred, sample_weight=None):
        """Add one chunk of data; returns the accumulator."""
        if not backends.on_device(y_pred):
            y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
            if sample_weight is not None:
                sample_weight = np.asarray(sample_weight)
        rows = y_pred.shape[0] if y_pred.ndim else 1
        per_row = self._terms_per_row(y_pred)
        step = max(rows, 1)
        if len(self.losses) > 1 and rows * per_row > SHARED_PIECE and y_pred.ndim:
            step = max(1, SHARED_PIECE // max(per_row, 1))
        partials = {label: [0.0, 0.0] for label in self.losses}
        for start in range(0, max(rows, 1), step):
            piece = slice(start, start + step)
            whole = step >= rows
            yt, yp = (y_true, y_pred) if whole else (y_true[piece], y_pred[piece])
            w = sample_weight if sample_weight is None or whole else sample_weight[piece]
            for label, loss in self.losses.items():
                total, denom = loss.partial(yt, yp, sample_weight=w, reduction=self.reduction,
                                            backend=self.backend)
                partials[label][0] += total
                partials[label][1] += denom
        # all partial sums are computed (and validated) before any state changes
        for label, (total, denom) in partials.items():
            self._totals[label].add(total)
            self._denoms[label].add(denom)
        self.count += rows * per_row
        if sample_weight is None:
            self._weights.add(rows * per_row)
        else:
            self._weights.add(float(np.sum(sample_weight, dtype=np.float64)) * per_row)
        return self

    # -- state ----------------------------------------------------------------

    @property
    def weight_sum(self):
        return self._weights.value

    def _key(self):
        return self.to_dict()["losses"], self.reduction

    def merge(self, other):
        """Add the state of ``other`` (the same losses and reduction); returns self."""
        if not isinstance(other, Accumulator):
            raise TypeError(f"can only merge another Accumulator, got {type(other).__name__}")
        if self._key() != other._key():
            raise ValueError(f"cannot merge accumulators of different losses or reductions: "
                             f"{self!r} and {other!r}")
        for label in self.losses:
            self._totals[label].merge(other._totals[label])
            self._denoms[label].merge(other._denoms[label])
        self._weights.merge(other._weights)
        self.count += other.count
        return self

    def result(self):
        """The loss over all data seen: a float, or {label: float} for several losses."""
        values = {label: self._value(label) for label in self.losses}
        return values if len(values) > 1 else next(iter(values.values()))

    def _value(self, label):
        total = self._totals[label].value
        if self.reduction == "sum":
            return total
        denom = self._denoms[label].value
        if denom == 0:
            warn_at_caller(f"{label}: the mean is over no data (or zero total weight)")
            return float("nan")
        return total / denom

    def to_dict(self):
        """The state as plain numbers and strings (JSON-serializable)."""
        return {
            "losses": {label: {"name": loss.name,
                               "params": {k: _plain(val) for k, val in loss.params.items()}}
                       for label, loss in self.losses.items()},
            "reduction": self.reduction,
            "count": self.count,
            "weight_sum": self._weights.to_list(),
            "totals": {label: s.to_list() for label, s in self._totals.items()},
            "denominators": {label: s.to_list() for label, s in self._denoms.items()},
        }

    @classmethod
    def from_dict(cls, state, losses=None):
        """An accumulator with the state given by ``to_dict`` (its losses made by name,
        unless given: the loss objects, as a pickle carries them)."""
        from .loss import get
        try:
            if losses is None:
                losses = {label: get(entry["name"], **entry["params"])
                          for label, entry in state["losses"].items()}
            acc = cls(losses, reduction=state["reduction"])
            acc.count = int(state["count"])
            acc._weights = CompensatedSum(*state["weight_sum"])
            for label in losses:
                acc._totals[label] = CompensatedSum(*state["totals"][label])
                acc._denoms[label] = CompensatedSum(*state["denominators"][label])
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an Accumulator state: {e!r}") from None
        return acc

    def __reduce__(self):
        # with the loss objects, whose pickles define custom losses where they arrive
        return _from_state, (self.to_dict(), self.backend, self.losses)


def _from_state(state, backend, losses=None):
    acc = Accumulator.from_dict(state, losses)
    acc.backend = backend
    return acc
