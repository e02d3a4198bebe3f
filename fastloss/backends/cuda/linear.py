"""The fused linear cross-entropy on the GPU: cuBLAS products by row chunks, the CUDA row kernel between.

The matrix products come from the array library the inputs belong to:
PyTorch for CUDA tensors, CuPy otherwise (Numba device arrays and host
arrays are viewed or copied as CuPy arrays); under Numba's CUDA simulator,
whose device arrays live in host memory, from NumPy.  Per chunk of rows:
z = h W^T + b, the cross-entropy kernel writes d loss / d z over z, then
grad_h = z W, grad_W += z^T h and grad_b += sum of z's rows.  Only one
(chunk, C) block of logits exists at a time.
"""
import numpy as np
from numba import cuda

from .. import on_device
from . import CudaUnavailable
from .arrays import as_device
from .launch import SIMULATED
from .multiclass import RowInputs, check_labels, sum_rows, targets_and_weights


def _library(arrays):
    """("torch" | "cupy" | "numpy", module) for the matrix products of these inputs."""
    kinds = {type(a).__module__.split(".")[0] for a in arrays if a is not None}
    if "torch" in kinds:
        import torch
        return "torch", torch
    if SIMULATED and "cupy" not in kinds:
        return "numpy", np
    try:
        import cupy
    except ImportError:
        raise CudaUnavailable("linear_cross_entropy on the cuda backend takes its matrix products "
                              "from CuPy or PyTorch: pass torch CUDA tensors, or install cupy") from None
    return "cupy", cupy


def _convert(kind, xp, a, dtype=None):
    """``a`` as the library's device array (a view when it is on the GPU already)."""
    if a is None:
        return None
    if kind == "numpy":
        a = a.copy_to_host() if on_device(a) else np.asarray(a)
    elif kind == "torch":
        a = xp.as_tensor(a, device="cuda").detach()
    else:
        a = xp.asarray(a)
    if dtype is not None and a.dtype != dtype:
        a = a.to(dtype) if kind == "torch" else a.astype(dtype)
    return a.contiguous() if kind == "torch" else xp.ascontiguousarray(a)


def _float_dtype(kind, xp, h, w):
    wide = any(str(a.dtype).endswith("float64") for a in (h, w))
    return getattr(xp, "float64" if wide else "float32")


def _device_view(kind, a):
    """A Numba device array over the library's array (the simulator: the host array itself)."""
    return a if kind == "numpy" else as_device(a)


def _to_user(kind, a, host):
    if a is None or not host:
        return a
    if kind == "torch":
        return a.cpu().numpy()
    if kind == "cupy":
        return a.get()
    return a


def linear_cross_entropy(loss, y_true, hidden, weight, bias, sample_weight, reduction, want_grad):
    """(row losses or their sum, (grad_hidden, grad_weight, grad_bias), mean's denominator)."""
    host = not any(on_device(a) for a in (y_true, hidden, weight, bias, sample_weight))
    kind, xp = _library((hidden, weight, bias))
    h, w = _convert(kind, xp, hidden), _convert(kind, xp, weight)
    if h.ndim != 2 or w.ndim != 2 or h.shape[1] != w.shape[1]:
        raise ValueError(f"hidden must be (N, H) and weight (C, H); got {tuple(h.shape)} and "
                         f"{tuple(w.shape)}")
    dtype = _float_dtype(kind, xp, h, w)
    h, w = _convert(kind, xp, h, dtype), _convert(kind, xp, w, dtype)
    b = _convert(kind, xp, bias, dtype)
    if b is not None and tuple(b.shape) != (w.shape[0],):
        raise ValueError(f"bias must have shape ({w.shape[0]},), got {tuple(b.shape)}")
    N, C = h.shape[0], w.shape[0]
    ce = loss.ce
    labels, targets, sw, weight_sum = targets_and_weights(ce, y_true, N, C, sample_weight)
    cw = None if ce.class_weight is None else cuda.to_device(ce.class_weight)
    ignore = ce.params["ignore_index"]
    denom = (check_labels(labels, C, ignore, cw, sw, loss.name) if labels is not None
             else weight_sum)
    scale = (1.0 / denom if denom else float("nan")) if reduction == "mean" else 1.0
    rows = cuda.device_array(N, np.float64)
    gh = xp.empty_like(h) if want_grad else None
    gw = xp.zeros_like(w) if want_grad else None
    gb = xp.zeros_like(b) if want_grad and b is not None else None
    chunks = loss._chunks(N, C)
    shape = (chunks[0][1] - chunks[0][0] if chunks else 0, C)
    block = (xp.empty(shape, dtype=dtype, device=h.device) if kind == "torch"
             else xp.empty(shape, dtype=dtype))
    launch = ce._cuda_launch()
    for lo, hi in chunks:
        z = block[:hi - lo]
        xp.matmul(h[lo:hi], w.T, out=z)
        if b is not None:
            z += b
        dz = _device_view(kind, z)
        part = RowInputs(dz, None if labels is None else labels[lo:hi],
                         None if targets is None else targets[lo:hi],
                         None if sw is None else sw[lo:hi], cw, None, False, None)
        launch(part, scale, dz if want_grad else None, None, rows[lo:hi])
        if want_grad:                                      # z now holds d loss / d z
            xp.matmul(z, w, out=gh[lo:hi])
            gw += z.T @ h[lo:hi]
            if gb is not None:
                gb += z.sum(0)
    if reduction == "none":
        value = rows.copy_to_host()
        value = value.astype(np.float32) if dtype is getattr(xp, "float32") else value
        if not host and kind != "numpy":
            value = _convert(kind, xp, value)
    else:
        value = sum_rows(rows)
    grads = tuple(_to_user(kind, g, host) for g in (gh, gw, gb))
    return value, grads, denom
