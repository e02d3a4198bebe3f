"""Inputs and outputs of the CUDA backend: device arrays in, device arrays out, no copies.

Anything with ``__cuda_array_interface__`` (Numba device arrays, CuPy arrays,
PyTorch CUDA tensors) is read where it lies; results come back as arrays of
y_pred's kind (CuPy for CuPy, a tensor on y_pred's device for PyTorch, a Numba
device array otherwise).  With host inputs and ``backend="cuda"`` the inputs
are prepared as for the CPU, copied over, and the results copied back.
Kernels read any real dtype and compute in float64, so only layout ever
needs a copy: a C-contiguous array is used as is, a strided 1-D or 2-D one is
gathered on the device.
"""
import numpy as np
from numba import cuda

from ... import _validation as v
from .. import on_device as is_device
from .elementwise import copy_1d, copy_2d
from .launch import SIMULATED, THREADS, blocks_for

DeviceNDArray = () if SIMULATED else cuda.cudadrv.devicearray.DeviceNDArray


class DeviceWeights:
    """Sample weights on the device; each applies to ``inner`` consecutive elements."""

    __slots__ = ("array", "inner")

    def __init__(self, array, inner):
        self.array = array
        self.inner = inner


class DevicePrepared:
    """Flat device arrays for the kernels, and how to give the results back."""

    __slots__ = ("y", "p", "w", "shape", "size", "out_dtype", "kernel_dtype", "host", "like")


def as_device(a):
    """A Numba device array viewing the GPU array ``a`` (no copy)."""
    if SIMULATED and not hasattr(a, "__cuda_array_interface__"):
        return a                              # the simulator's device array
    if isinstance(a, DeviceNDArray):
        return a
    if getattr(a, "requires_grad", False):
        a = a.detach()                        # a PyTorch tensor in an autograd graph
    # waits for the stream the exporter names (CuPy's, PyTorch's current stream)
    return cuda.as_cuda_array(a)


def _same_memory(a, b):
    if SIMULATED:
        return np.shares_memory(a._ary, b._ary)
    return a.__cuda_array_interface__["data"][0] == b.__cuda_array_interface__["data"][0]


def _readonly(a):
    return hasattr(a, "__cuda_array_interface__") and a.__cuda_array_interface__["data"][1]


def _device(a, name):
    """``a`` as a Numba device array: a view of device memory, or a copy of host data."""
    if is_device(a):
        d = as_device(a)
        if np.dtype(d.dtype).kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers (bool, int or float), got dtype {d.dtype}")
        return d
    h = v._as_array(a, name)
    if not h.dtype.isnative:
        h = h.astype(h.dtype.newbyteorder("="))
    return cuda.to_device(np.ascontiguousarray(h))


def flat(d):
    """A 1-D C-ordered device array of ``d``'s elements: ``d`` itself when it is contiguous."""
    if d.ndim == 0:
        return d.reshape(1)
    if d.ndim == 1 and d.is_c_contiguous():
        return d
    if d.is_c_contiguous():
        return d.reshape(d.size)
    out = cuda.device_array(d.size, d.dtype)
    if d.ndim == 1:
        copy_1d[blocks_for(d.size), THREADS](d, out)
    elif d.ndim == 2:
        copy_2d[blocks_for(d.size), THREADS](d, out)
    else:
        out = cuda.to_device(np.ascontiguousarray(d.copy_to_host()).reshape(-1))
    return out


def prepare(y_true, y_pred, sample_weight):
    x = DevicePrepared()
    if not any(is_device(a) for a in (y_true, y_pred, sample_weight)):
        hx = v.prepare(y_true, y_pred, sample_weight)
        x.host, x.like = True, None
        x.shape, x.size, x.out_dtype, x.kernel_dtype = hx.shape, hx.size, hx.out_dtype, hx.kernel_dtype
        x.y, x.p = cuda.to_device(hx.y), cuda.to_device(hx.p)
        x.w = None if hx.w is None else DeviceWeights(cuda.to_device(hx.w), 1)
        return x
    p = _device(y_pred, "y_pred")
    y = _device(y_true, "y_true")
    if y.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y.shape} and {p.shape}")
    x.host, x.like = False, y_pred
    x.shape, x.size = tuple(p.shape), p.size
    x.out_dtype = v.result_dtype(np.dtype(p.dtype))
    x.kernel_dtype = v._float_kind(np.dtype(p.dtype))
    x.p, x.y = flat(p), flat(y)
    x.w = None if sample_weight is None else _weights(sample_weight, x.shape)
    return x


def _weights(sample_weight, shape):
    w = _device(sample_weight, "sample_weight")
    if len(shape) == 0:
        if w.size != 1 or w.ndim > 1:
            raise ValueError(f"sample_weight must hold one value for scalar inputs, got shape {w.shape}")
        return DeviceWeights(flat(w), 1)
    if tuple(w.shape) != shape[:1]:
        raise ValueError(f"sample_weight must have shape ({shape[0]},) to match y_pred's first "
                         f"axis, got {tuple(w.shape)}")
    inner = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return DeviceWeights(flat(w), max(inner, 1))


def buffer(out, shape, dtype, kernel_dtype, host, name="out", like="y_pred"):
    """(the caller's ``out`` checked, a buffer of ``shape`` in the kernel dtype for the kernel
    to write: ``out`` itself when its dtype is the kernel's)."""
    if host:
        return v.check_out(out, shape, dtype, name), cuda.device_array(shape, kernel_dtype)
    if out is None:
        return None, cuda.device_array(shape, kernel_dtype)
    if not is_device(out):
        raise TypeError(f"{name} must be a CUDA array like {like}, got {type(out).__name__}")
    d = as_device(out)
    if tuple(d.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(d.shape)}")
    if np.dtype(d.dtype) != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {d.dtype}")
    if _readonly(out):
        raise ValueError(f"{name} must be writeable")
    if not d.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous")
    if np.dtype(d.dtype) == kernel_dtype:
        return out, d
    return out, cuda.device_array(shape, kernel_dtype)


def finish(buf, out, shape, dtype, host, like):
    """A kernel buffer as the user's array: written into ``out``, copied back to the host,
    or as a ``dtype`` array of ``like``'s kind."""
    if host:
        return v.finish_out(buf.copy_to_host(), out, shape, dtype)
    if out is not None:
        d, b = flat(as_device(out)), flat(buf)
        if not _same_memory(d, b):
            copy_1d[blocks_for(b.size), THREADS](b, d)
        return out
    if np.dtype(buf.dtype) != dtype:
        cast = cuda.device_array(buf.shape, dtype)
        copy_1d[blocks_for(buf.size), THREADS](flat(buf), flat(cast))
        buf = cast
    return _wrap_like(buf if tuple(buf.shape) == shape else buf.reshape(shape), like)


def _start(a):
    face = a._ary.__array_interface__ if SIMULATED else a.__cuda_array_interface__
    return face["data"][0]


def _spans_overlap(a, b):
    """Whether contiguous device arrays a and b may share memory."""
    a0, b0 = _start(a), _start(b)
    return a0 < b0 + b.nbytes and b0 < a0 + a.nbytes


def _overlap_unlike(a, b):
    """Whether flat contiguous device arrays a and b share memory other than as the very
    same elements."""
    if _start(a) == _start(b) and a.size == b.size and a.dtype == b.dtype:
        return False
    return _spans_overlap(a, b)


def buffers_overlap(a, b):
    """Whether two output buffers (device arrays, or host arrays for host inputs) may
    share memory."""
    if not (is_device(a) and is_device(b)):
        return v.buffers_overlap(a, b)
    return _spans_overlap(as_device(a), as_device(b))


def output(out, x, name="out"):
    """(the caller's ``out`` checked, a flat buffer of the kernel dtype for the kernel to write).

    As on the host (``_validation.kernel_out``), ``out`` may be y_true or y_pred itself but
    may overlap no input otherwise: other threads would read what one had written."""
    out, buf = buffer(out, x.shape, x.out_dtype, x.kernel_dtype, x.host, name)
    buf = flat(buf)
    if out is not None and not x.host:
        reads = (x.y, x.p) + (() if x.w is None else (x.w.array,))
        if any(_overlap_unlike(buf, a) for a in reads):
            buf = cuda.device_array(x.size, x.kernel_dtype)
    return out, buf


def empty(x):
    """A flat kernel buffer for a result of x's size."""
    return cuda.device_array(x.size, x.kernel_dtype)


def _wrap_like(d, like):
    """``d`` as an array of ``like``'s kind (CuPy, PyTorch), or as it is."""
    module = type(like).__module__.split(".")[0]
    if module == "cupy":
        import cupy
        return cupy.asarray(d)
    if module == "torch":
        import torch
        return torch.as_tensor(d, device=like.device)
    return d


def result(buf, out, x):
    """The array result: in ``out`` when given, else a new array of y_pred's kind and dtype."""
    return finish(buf, out, x.shape, x.out_dtype, x.host, x.like)


def host(a):
    """A NumPy copy of a device array (for error messages)."""
    return a.copy_to_host()


def zeros_like(g, out=None, name="out"):
    """Zeros of device array ``g``'s shape, dtype and kind; written into ``out`` when given."""
    zeros = np.zeros(tuple(g.shape), np.dtype(g.dtype))
    if out is None:
        return _wrap_like(cuda.to_device(zeros), g)
    if not is_device(out):
        raise TypeError(f"{name} must be a CUDA array like the gradient, got {type(out).__name__}")
    d = as_device(out)
    if tuple(d.shape) != zeros.shape or np.dtype(d.dtype) != zeros.dtype:
        raise ValueError(f"{name} must have shape {zeros.shape} and dtype {zeros.dtype}")
    d.copy_to_device(zeros)
    return out
