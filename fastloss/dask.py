"""fastloss over Dask arrays (the ``fastloss[dask]`` extra).

``loss(name, y_true, y_pred, ...)`` is lazy: one fused kernel call per chunk
gives an ``Accumulator`` state, and the states merge in a tree (``split_every``
at a time) into the float that ``.compute()`` returns, equal to the in-memory
call.  ``grad`` gives a Dask array with y_pred's chunks.  Both run on any
scheduler: threads (the kernels release the GIL), processes, or
``dask.distributed``.

The softmax losses need whole rows: their (N, C) input is rechunked to one
chunk along C.
"""
try:
    import dask
    import dask.array as da
except ImportError:  # pragma: no cover
    raise ImportError("fastloss.dask needs Dask: pip install 'fastloss[dask]'") from None
import numpy as np

from .accumulate import Accumulator
from .loss import get

__all__ = ["loss", "grad", "value"]


def _is_row_loss(loss_object):
    return not hasattr(loss_object, "spec")


def _aligned(loss_object, y_true, y_pred, sample_weight):
    """(y_true, y_pred, sample_weight) as Dask arrays whose chunks line up."""
    p = da.asarray(y_pred)
    if _is_row_loss(loss_object) and p.ndim == 2:
        p = p.rechunk({1: -1})
    y = da.asarray(y_true)
    w = None if sample_weight is None else da.asarray(sample_weight)
    if any(np.isnan(n) for a in (y, p, w) if a is not None for n in a.shape):
        return _aligned_by_blocks(loss_object, y, p, w)
    if y.shape != p.shape and not (_is_row_loss(loss_object) and y.ndim == 1):
        raise ValueError(f"y_true and y_pred must have the same shape, got {y.shape} and {p.shape}")
    y = y.rechunk(p.chunks if y.ndim == p.ndim else p.chunks[:1])
    if w is not None:
        if p.ndim == 0 or w.shape != p.shape[:1]:
            raise ValueError(f"sample_weight must have shape ({p.shape[0] if p.ndim else 1},) to "
                             f"match y_pred's first axis, got {w.shape}")
        w = w.rechunk(p.chunks[:1])
    return y, p, w


def _aligned_by_blocks(loss_object, y, p, w):
    """Arrays of unknown chunk sizes (NaN, as boolean indexing leaves them) cannot be
    rechunked: they are taken block by block where their blocks correspond, and each block's
    shapes are checked when it is computed."""
    row_labels = _is_row_loss(loss_object) and y.ndim == 1
    if _is_row_loss(loss_object) and y.ndim == 2:
        y = y.rechunk({1: -1})                       # probabilities: whole rows, as y_pred
    blocks = [(y, p.numblocks[:1] if row_labels else p.numblocks)]
    if w is not None:
        blocks.append((w, p.numblocks[:1]))
    if (y.ndim != p.ndim and not row_labels) or any(a.numblocks != n for a, n in blocks):
        raise ValueError(f"y_true, y_pred and sample_weight have unknown chunk sizes (NaN, as "
                         f"after boolean indexing) and blocks that do not correspond "
                         f"({y.numblocks}, {p.numblocks}"
                         f"{'' if w is None else f', {w.numblocks}'}); call "
                         f".compute_chunk_sizes() on them first")
    return y, p, w


def _blocks(y, p, w):
    """Per chunk of y_pred: (y block, y_pred block, weight block or None), as Delayed."""
    yd, pd = y.to_delayed(), p.to_delayed()
    wd = None if w is None else w.to_delayed()
    for index in np.ndindex(*pd.shape):
        yb = yd[index] if y.ndim == p.ndim else yd[index[:1]]
        yield yb, pd[index], None if wd is None else wd[index[:1]]


def _chunk_state(loss_object, reduction, y, p, w):
    return Accumulator(loss_object, reduction=reduction).update(y, p, w)


def _merge_states(*states):
    merged = Accumulator.from_dict(states[0].to_dict())
    for s in states[1:]:
        merged.merge(s)
    return merged


def _result(state):
    return state.result()


def _tree(states, split_every):
    while len(states) > 1:
        states = [dask.delayed(_merge_states, pure=True)(*states[i:i + split_every])
                  for i in range(0, len(states), split_every)]
    return states[0]


def _state(loss_object, y, p, w, reduction, split_every):
    """The merged Accumulator state over aligned arrays, as a Delayed."""
    chunk = dask.delayed(_chunk_state, pure=True)
    states = [chunk(loss_object, reduction, yb, pb, wb) for yb, pb, wb in _blocks(y, p, w)]
    if not states:                                    # a 0-d input has one block
        states = [dask.delayed(Accumulator(loss_object, reduction=reduction))]
    return _tree(states, split_every)


def loss(name, y_true, y_pred, *, sample_weight=None, reduction="mean", split_every=8,
         **params):
    """The loss over Dask (or NumPy) arrays: a lazy value whose ``.compute()`` is a float.

    For reduction="none" the per-element (or per-row) losses, as a Dask array.
    """
    if reduction == "none":
        return _none(name, y_true, y_pred, sample_weight, params)
    loss_object = get(name, **params)
    Accumulator(loss_object, reduction=reduction)                # the reduction checked now
    y, p, w = _aligned(loss_object, y_true, y_pred, sample_weight)
    state = _state(loss_object, y, p, w, reduction, split_every)
    return dask.delayed(_result, pure=True)(state)


value = loss


def _indices(loss_object, y, p):
    """Blockwise indices of (y_true, y_pred, sample_weight): rows are "i"."""
    full = "ijklmnopq"[:p.ndim]
    if _is_row_loss(loss_object):
        return "i" if y.ndim == 1 else "ij", "ij", "i"      # labels, or probabilities
    return full, full, full[:1]


def _blockwise(fn, out_index, loss_object, y, p, w, dtype, *extra, **kwargs):
    yi, pi, wi = _indices(loss_object, y, p)
    args = [y, yi, p, pi, *extra]
    if w is not None:
        args += [w, wi]
    return da.blockwise(fn, out_index, *args, dtype=dtype, concatenate=True, **kwargs)


def _none_block(y, p, *w, loss):
    return loss(y, p, sample_weight=w[0] if w else None, reduction="none")


def _none(name, y_true, y_pred, sample_weight, params):
    loss_object = get(name, **params)
    y, p, w = _aligned(loss_object, y_true, y_pred, sample_weight)
    dtype = p.dtype if p.dtype.kind == "f" else np.dtype(np.float64)
    out_index = "i" if _is_row_loss(loss_object) else _indices(loss_object, y, p)[1]
    return _blockwise(_none_block, out_index, loss_object, y, p, w, dtype,
                      loss=loss_object)


def _denominator(loss_object, y, p, w, reduction, split_every):
    """The mean's denominator, lazily where it depends on the data."""
    if reduction == "sum":
        return 1.0
    simple = not _is_row_loss(loss_object) or (
        loss_object.name in ("multi_margin", "softmax_focal"))
    if simple and reduction == "mean" and not any(np.isnan(c).any() for c in p.chunks):
        per_row = int(np.prod(p.shape[1:])) if not _is_row_loss(loss_object) else 1
        if w is None:
            return float(p.shape[0] * per_row if p.ndim else 1)
        return w.sum(dtype=np.float64) * per_row
    # class weights, ignored labels or batchmean: the accumulator's denominator
    state = _state(loss_object, y, p, w, reduction, split_every)
    return dask.delayed(_denominator_of, pure=True)(state)


def _denominator_of(state):
    return next(iter(state._denoms.values())).value


def _grad_block(y, p, scale, *w, loss):
    w = w[0] if w else None
    if hasattr(loss, "scaled_grad"):                          # elementwise: fused
        return loss.scaled_grad(y, p, scale, sample_weight=w)
    g = loss.grad(y, p, sample_weight=w, reduction="sum")
    if scale != 1.0:
        g *= scale
    return g


def grad(name, y_true, y_pred, *, sample_weight=None, reduction="mean", split_every=8,
         **params):
    """d(reduced loss)/d(y_pred) as a Dask array with y_pred's chunks (lazy)."""
    loss_object = get(name, **params)
    if reduction not in ("mean", "sum", "batchmean"):
        raise ValueError(f'reduction must be "mean" or "sum" (or "batchmean" for kl_div), '
                         f"got {reduction!r}")
    Accumulator(loss_object, reduction=reduction)
    y, p, w = _aligned(loss_object, y_true, y_pred, sample_weight)
    denom = _denominator(loss_object, y, p, w, reduction, split_every)
    scale = dask.delayed(_inverse, pure=True)(denom) if not isinstance(denom, float) \
        else _inverse(denom)
    dtype = p.dtype if p.dtype.kind == "f" else np.dtype(np.float64)
    return _blockwise(_grad_block, _indices(loss_object, y, p)[1], loss_object, y, p, w, dtype,
                      scale, None, loss=loss_object)


def _inverse(denom):
    denom = float(denom)
    return 1.0 / denom if denom else float("nan")
