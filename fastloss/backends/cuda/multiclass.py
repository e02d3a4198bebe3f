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
from .. import on_device
from . import rows as kernels
from .arrays import _device, _readonly, _same_memory, _wrap_like, as_device, flat
from .elementwise import copy_1d, weight_stats
from .launch import THREADS, blocks_for, grid


def _launch_reduce(kernel, n, *args):
    blocks, partials = grid(n)
    kernel[blocks, THREADS](*args, partials.sums, partials.counts)
    return partials.total()


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
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, C), got {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one class (C >= 1)")
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
    labels = targets = None
    if np.dtype(y.dtype).kind in "iub" and tuple(y.shape) == (N,):
        labels = flat(y)
    elif np.dtype(y.dtype).kind == "f" and tuple(y.shape) == (N, C):
        targets = _contiguous(y)
    else:
        raise ValueError(f"y_true must be integer class labels of shape ({N},) or class "
                         f"probabilities of shape ({N}, {C}); got {y.dtype} {tuple(y.shape)}")
    if ce.class_weight is not None and ce.class_weight.shape != (C,):
        raise ValueError(f"class_weight must have shape ({C},), got {ce.class_weight.shape}")
    if sample_weight is None:
        return labels, targets, None, float(N)
    w = _device(sample_weight, "sample_weight")
    if tuple(w.shape) != (N,):
        raise ValueError(f"sample_weight must have shape ({N},), got {tuple(w.shape)}")
    w = flat(w)
    weight_sum, negative = _launch_reduce(weight_stats, N, w)
    if negative:
        raise ValueError("sample_weight must be >= 0")
    return labels, targets, w, weight_sum


def check_labels(labels, C, ignore, class_weight, weights, loss_name):
    """The mean's denominator, sum of r_i w[t_i] over the rows kept (``class_weight`` may be
    None); a ValueError naming the first label out of range."""
    N = labels.shape[0]
    first = cuda.to_device(np.array([N], np.int64))
    denom, bad = _launch_reduce(kernels.label_check, N, labels, C, ignore, class_weight,
                                weights, first)
    if bad:
        i = int(first.copy_to_host()[0])
        label = int(labels[i:i + 1].copy_to_host()[0])
        from ...multiclass import label_error
        raise label_error(loss_name, C, ignore, i, label)
    return denom


def sum_rows(rows):
    return _launch_reduce(kernels.row_sum, rows.shape[0], rows)[0]


def gradient_buffer(inputs, out, name="out"):
    """(out checked, the (N, C) buffer the kernel writes): ``out`` itself when it can be."""
    shape = tuple(inputs.x.shape)
    kernel_dtype = np.dtype(inputs.x.dtype)
    if inputs.host:
        out = v.check_out(out, shape, inputs.dtype, name)
        return out, cuda.device_array(shape, kernel_dtype)
    if out is None:
        return None, cuda.device_array(shape, kernel_dtype)
    if not on_device(out):
        raise TypeError(f"{name} must be a CUDA array like the logits, got {type(out).__name__}")
    d = as_device(out)
    if tuple(d.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(d.shape)}")
    if np.dtype(d.dtype) != inputs.dtype:
        raise ValueError(f"{name} must have dtype {inputs.dtype}, got {d.dtype}")
    if _readonly(out):
        raise ValueError(f"{name} must be writeable")
    if d.is_c_contiguous() and np.dtype(d.dtype) == kernel_dtype:
        return out, d
    return out, cuda.device_array(shape, kernel_dtype)


def array_result(inputs, buf, out):
    """A kernel buffer as the user's result: into ``out``, back on the host, or wrapped."""
    if inputs.host:
        host = buf.copy_to_host()
        if out is None:
            return host if host.dtype == inputs.dtype else host.astype(inputs.dtype)
        out[...] = host
        return out
    if out is not None:
        d = as_device(out)
        if not _same_memory(flat(d), flat(buf)):
            copy_1d[blocks_for(buf.size), THREADS](flat(buf), flat(d))
        return out
    if np.dtype(buf.dtype) != inputs.dtype:
        cast = cuda.device_array(buf.shape, inputs.dtype)
        copy_1d[blocks_for(buf.size), THREADS](flat(buf), flat(cast))
        buf = cast
    return _wrap_like(buf, inputs.like)


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
    out, buf = gradient_buffer(inputs, out) if grad else (None, None)
    hess_out, hbuf = gradient_buffer(inputs, hess_out, "out[1]") if hess else (None, None)
    rows = cuda.device_array(N, np.float64)
    launch(inputs, scale, buf, hbuf, rows)
    value = array_result(inputs, rows, None) if reduction == "none" else sum_rows(rows)
    return (value, None if buf is None else array_result(inputs, buf, out),
            None if hbuf is None else array_result(inputs, hbuf, hess_out), denom)
