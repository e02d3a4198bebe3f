"""The losses over rows of class scores on the CUDA backend: inputs, checks and reductions.

``run(loss, kind, ...)`` serves ``fastloss.multiclass``: it takes the logits
(N, C), the labels or target probabilities and the weights where they lie
(device arrays are used in place; host arrays are copied over, and the
results copied back), checks the labels on the device before any kernel
indexes with them, and runs one kernel of ``rows``.
"""
import numpy as np
from numba import cuda

from ... import _validation as v
from ...multiclass import check_scores_shape, has_labels, label_error
from .. import on_device
from . import rows as kernels
from .arrays import _device, _overlap_unlike, _spans_overlap, buffer, finish, flat
from .elementwise import sum_and_negatives
from .launch import THREADS, reduce


def _contiguous(d):
    """A C-contiguous (N, C) device array of ``d``: itself, or a gathered copy."""
    return d if d.is_c_contiguous() else flat(d).reshape(d.shape)


class RowInputs:
    """Device arrays for a row kernel, and where results go."""

    def __init__(self, x, labels, targets, weights, class_weight, dtype, host, like):
        self.x, self.labels, self.targets, self.weights = x, labels, targets, weights
        self.class_weight, self.dtype, self.host, self.like = class_weight, dtype, host, like


def prepare(ce, y_true, logits, sample_weight, name="logits"):
    """Device inputs for CrossEntropy ``ce``'s options, checked as the CPU path checks them."""
    host = not any(on_device(a) for a in (y_true, logits, sample_weight))
    x = _device(logits, name)
    check_scores_shape(x.shape, name)
    labels, targets, w, weight_sum = targets_and_weights(ce, y_true, *x.shape, sample_weight)
    cw = ce.class_weight
    inputs = RowInputs(_contiguous(x), labels, targets, w,
                       None if cw is None else cuda.to_device(cw),
                       v.result_dtype(np.dtype(x.dtype)), host, logits)
    inputs.weight_sum = weight_sum
    return inputs


def targets_and_weights(ce, y_true, N, C, sample_weight):
    """(labels, targets, sample weights, their sum) on the device, for N rows of C classes."""
    y = _device(y_true, "y_true")
    w = None if sample_weight is None else _device(sample_weight, "sample_weight")
    labels = targets = None
    if has_labels(y, N, C, ce.class_weight, w):
        labels = flat(y)
    else:
        targets = _contiguous(y)
    if w is None:
        return labels, targets, None, float(N)
    w = flat(w)
    weight_sum, negative = reduce(sum_and_negatives, N, w)
    if negative:
        raise ValueError("sample_weight must be >= 0")
    return labels, targets, w, weight_sum


def check_labels(labels, C, ignore, class_weight, weights, loss_name):
    """The mean's denominator, sum of r_i w[t_i] over the rows kept (``class_weight`` may be
    None); a ValueError naming the first label out of range."""
    N = labels.shape[0]
    first = cuda.to_device(np.array([N], np.int64))
    denom, bad = reduce(kernels.label_check, N, labels, C, ignore, class_weight,
                                weights, first)
    if bad:
        i = int(first.copy_to_host()[0])
        label = int(labels[i:i + 1].copy_to_host()[0])
        raise label_error(loss_name, C, ignore, i, label)
    return denom


def _overlaps_reads(buf, inputs):
    """Whether a kernel could read what it has written to ``buf``: it shares memory with the
    labels, targets or weights, or with the logits other than as the very same elements
    (a block reads its row before it overwrites it; other rows are other blocks')."""
    b = flat(buf)
    return _overlap_unlike(b, flat(inputs.x)) or any(
        a is not None and _spans_overlap(b, flat(a))
        for a in (inputs.labels, inputs.targets, inputs.weights))


def sum_rows(rows):
    return reduce(sum_and_negatives, rows.shape[0], rows)[0]


def launch_rows(kernel, n_rows, *args):
    kernel[kernels.row_blocks(n_rows), THREADS](*args)


def run(ce, y_true, x, sample_weight, reduction, launch, *, name="logits", loss_name="cross_entropy",
        labels_only=False, ignore, class_weighted=True, grad=False, out=None, hess=False,
        hess_out=None):
    """(row losses or their sum, gradient, Hessian, the mean's denominator) of one row kernel.

    ``launch(inputs, scale, grad_buffer, hess_buffer, rows)`` runs the loss's
    kernel; the labels are checked first (``ignore`` is the index that marks
    rows left out; ``class_weighted`` puts class weights into the mean's
    denominator).  Gradient and Hessian are the summed loss's, times the
    mean's 1 / denominator for reduction "mean".
    """
    inputs = prepare(ce, y_true, x, sample_weight, name)
    N = inputs.x.shape[0]
    if inputs.labels is not None:
        denom = check_labels(inputs.labels, inputs.x.shape[1], ignore,
                             inputs.class_weight if class_weighted else None, inputs.weights,
                             loss_name)
    elif labels_only:
        raise ValueError(f"{loss_name}: y_true must be integer class labels of shape ({N},)")
    else:
        denom = inputs.weight_sum
    scale = (1.0 / denom if denom else float("nan")) if reduction == "mean" else 1.0
    shape, kernel_dtype = tuple(inputs.x.shape), np.dtype(inputs.x.dtype)

    def gradient_buffer(out, name):
        out, buf = buffer(out, shape, inputs.dtype, kernel_dtype, inputs.host, name, "the logits")
        if out is not None and not inputs.host and _overlaps_reads(buf, inputs):
            buf = cuda.device_array(shape, kernel_dtype)       # copied into out after
        return out, buf

    def result(buf, out):
        return finish(buf, out, tuple(buf.shape), inputs.dtype, inputs.host, inputs.like)

    out, buf = gradient_buffer(out, "out") if grad else (None, None)
    hess_out, hbuf = gradient_buffer(hess_out, "out[1]") if hess else (None, None)
    rows = cuda.device_array(N, np.float64)
    launch(inputs, scale, buf, hbuf, rows)
    value = result(rows, None) if reduction == "none" else sum_rows(rows)
    return (value, None if buf is None else result(buf, out),
            None if hbuf is None else result(hbuf, hess_out), denom)
