"""Scoring files larger than memory: columns streamed in chunks into an Accumulator."""
import sys
import time

import numpy as np

from .accumulate import Accumulator
from .sources import SourceError, open_column

# Default chunk: about this many bytes over all columns (large enough for the
# parallel kernels and to make per-chunk overheads negligible).
CHUNK_BYTES = 32 << 20


def _row_bytes(column):
    return column.dtype.itemsize * int(np.prod(column.row_shape))


def _labels_as_integers(chunk, label):
    """CSV and Parquet may give class labels as floats; the softmax losses want integers."""
    if chunk.dtype.kind != "f":
        return chunk
    as_int = chunk.astype(np.int64)
    if not np.array_equal(as_int, chunk):
        bad = int(np.flatnonzero(as_int != chunk)[0])
        raise SourceError(f"{label}: class labels must be integers; found {chunk[bad]!r}")
    return as_int


def _losses(loss, params):
    """(what Accumulator takes as its losses, the parameters left for it): ``params`` may
    name their loss, "huber.delta", which several losses need; a name without one goes to
    the loss when there is only one."""
    names = loss.split(",") if isinstance(loss, str) and "," in loss else loss
    if not params or not isinstance(names, list):
        single = names if isinstance(names, str) else None
        mine = {}
        for key, value in (params or {}).items():
            owner, dot, name = key.rpartition(".")
            if dot and owner != single:
                raise ValueError(f"parameter {key!r}: {owner!r} is not the loss scored ({loss})")
            mine[name] = value
        return names, mine
    from .loss import get
    by_loss = {name: {} for name in names}
    for key, value in params.items():
        owner, dot, name = key.rpartition(".")
        if not dot:
            takers = [n for n in names if key in get(n).params] or ["LOSS"]
            raise ValueError(f"parameter {key!r}: with several losses, name its loss, as in "
                             f"{takers[0]}.{key}")
        if owner not in by_loss:
            raise ValueError(f"parameter {key!r}: {owner!r} is not among the losses scored "
                             f"({', '.join(names)})")
        by_loss[owner][name] = value
    return {name: get(name, **p) for name, p in by_loss.items()}, {}


def _progress_bar(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr, leave=False,
                desc="scoring")


def score(loss, y_true, y_pred, sample_weight=None, *, params=None, reduction="mean",
          chunk_rows=None, progress=False):
    """Score the columns named by ``y_true``, ``y_pred`` (and ``sample_weight``).

    Each is ``FILE`` or ``FILE:column`` (see ``fastloss.sources``).  ``loss``
    may name several losses, "mse,mae", all computed from one read of the
    files (``value`` is then a dict by name).  Returns a dict with the loss
    ``value``, ``count`` (loss terms), ``weight_sum``,
    ``rows``, ``bytes`` read, ``seconds`` and ``throughput`` (values per second).
    ``params`` are the loss's, or with several losses each named with its loss:
    {"huber.delta": 2.0}.
    """
    losses, loss_params = _losses(loss, params)
    acc = Accumulator(losses, reduction=reduction, **loss_params)
    elementwise = hasattr(next(iter(acc.losses.values())), "spec")
    start = time.perf_counter()
    columns = {"y_true": open_column(y_true, "y_true"), "y_pred": open_column(y_pred, "y_pred")}
    if sample_weight is not None:
        columns["sample_weight"] = open_column(sample_weight, "sample_weight")
    known = {label: c.rows for label, c in columns.items() if c.rows is not None}
    if len(set(known.values())) > 1:
        raise SourceError("the columns have different lengths: "
                          + ", ".join(f"{label} {rows:,} rows" for label, rows in known.items()))
    row_bytes = sum(_row_bytes(c) for c in columns.values())
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_BYTES // max(row_bytes, 1))
    if chunk_rows < 1:
        raise SourceError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    total_rows = next(iter(known.values()), None)
    bar = _progress_bar(total_rows, progress)
    iterators = {label: iter(c.chunks(chunk_rows)) for label, c in columns.items()}
    rows = 0
    try:
        while True:
            chunk = {label: next(it, None) for label, it in iterators.items()}
            ended = [label for label, c in chunk.items() if c is None]
            if ended:
                if len(ended) != len(chunk):
                    raise SourceError(f"the columns have different lengths: {', '.join(ended)} "
                                      f"ended after {rows:,} rows, the others go on")
                break
            lengths = {len(c) for c in chunk.values()}
            if len(lengths) > 1:
                raise SourceError(f"the columns have different lengths (after {rows:,} rows)")
            yt = chunk["y_true"] if elementwise else _labels_as_integers(chunk["y_true"], "y_true")
            acc.update(yt, chunk["y_pred"], chunk.get("sample_weight"))
            n = lengths.pop()
            rows += n
            if bar is not None:
                bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    return {"loss": loss, "params": params or {}, "reduction": reduction,
            "value": acc.result(), "count": acc.count, "weight_sum": acc.weight_sum,
            "rows": rows, "bytes": rows * row_bytes, "seconds": seconds,
            "throughput": acc.count / seconds if seconds else float("inf")}
