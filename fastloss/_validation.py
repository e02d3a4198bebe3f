"""Turning user input into the arrays kernels take, or a clear error naming the argument."""
import numpy as np

REDUCTIONS = ("mean", "sum", "none")


class Prepared:
    """Inputs as flat, C-contiguous, native-order arrays: float32 or float64, and y_true
    also bool or a small integer type."""

    __slots__ = ("y", "p", "w", "shape", "size", "out_dtype", "kernel_dtype")


def check_reduction(reduction, extra=()):
    allowed = REDUCTIONS + tuple(extra)
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, allowed))}, "
                         f"got {reduction!r}")


def _as_array(x, name):
    if type(x) is np.ndarray:
        a = x
    elif isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, whose mask fastloss would not apply: pass "
                        f"its unmasked elements (.compressed(), or y[~mask]) or .filled(value)")
    else:
        if hasattr(x, "__cuda_array_interface__"):
            raise TypeError(f"{name} is a CUDA array; use backend=\"cuda\" (or \"auto\") to compute "
                            f"on the GPU, or copy it to the host first")
        if getattr(x, "requires_grad", False) is True:
            raise TypeError(f"{name} is a tensor that requires grad, and fastloss's functions "
                            "record no autograd graph: use fastloss.integrations.torch's losses "
                            f"for gradients through it, or pass {name}.detach()")
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{name} could not be read as an array: {e}") from None
    kind = a.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int or float), got dtype {a.dtype}")
    return a


def _kernel_view(a, dtype):
    """A flat, C-contiguous, native-order array of ``dtype`` (copying only if needed)."""
    if a.dtype != dtype:
        a = a.astype(dtype)
    elif not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return _flat(a)


def _float_kind(dtype):
    """The dtype kernels read for an array of ``dtype``: float32 or float64, native order."""
    if dtype.kind == "f" and dtype.itemsize == 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _target_kind(dtype, kernel_dtype):
    """The dtype kernels read y_true in: bools and integers of up to 16 bits as they are
    (labels; converting them would cost a pass over memory), other integers as the
    predictions' kernel dtype, floats as float32 or float64."""
    if dtype.kind in "biu" and dtype.itemsize <= 2:
        return dtype.newbyteorder("=")
    return _float_kind(dtype) if dtype.kind == "f" else kernel_dtype


def result_dtype(p_dtype):
    """Array outputs take y_pred's floating dtype; anything else becomes float64."""
    if p_dtype.kind == "f" and p_dtype.itemsize in (2, 4, 8):
        return np.dtype(p_dtype.type)          # native byte order
    return np.dtype(np.float64)


_NATIVE_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def _flat(a):
    """A 1-D view of a C-contiguous array."""
    return a if a.ndim == 1 else a.reshape(-1)


def prepare(y_true, y_pred, sample_weight):
    out = Prepared()
    if (type(y_pred) is np.ndarray and type(y_true) is np.ndarray
            and y_pred.dtype in _NATIVE_FLOATS and y_true.dtype in _NATIVE_FLOATS
            and y_pred.flags.c_contiguous and y_true.flags.c_contiguous
            and y_pred.shape == y_true.shape):
        # the common case, kept cheap for small inputs: nothing to convert
        out.shape = y_pred.shape
        out.size = y_pred.size
        out.out_dtype = out.kernel_dtype = y_pred.dtype
        out.p = _flat(y_pred)
        out.y = _flat(y_true)
    else:
        p = _as_array(y_pred, "y_pred")
        y = _as_array(y_true, "y_true")
        if y.shape != p.shape:
            raise ValueError(f"y_true and y_pred must have the same shape, got {y.shape} and {p.shape}")
        out.shape = p.shape
        out.size = p.size
        out.out_dtype = result_dtype(p.dtype)
        out.kernel_dtype = _float_kind(p.dtype)
        out.p = _kernel_view(p, out.kernel_dtype)
        out.y = _kernel_view(y, _target_kind(y.dtype, out.kernel_dtype))
    out.w = (None if sample_weight is None
             else _prepare_weight(sample_weight, out.shape, out.kernel_dtype))
    return out


def _prepare_weight(sample_weight, shape, kernel_dtype):
    w = _as_array(sample_weight, "sample_weight")
    if len(shape) == 0:
        if w.size != 1 or w.ndim > 1:
            raise ValueError(f"sample_weight must hold one value for scalar inputs, got shape {w.shape}")
        w = w.reshape(())
    elif w.shape != shape[:1]:
        raise ValueError(f"sample_weight must have shape ({shape[0]},) to match y_pred's first "
                         f"axis, got {w.shape}")
    dtype = _float_kind(w.dtype) if w.dtype.kind == "f" else kernel_dtype
    if len(shape) > 1:
        # (n,) weights over (n, k, ...) inputs: one weight per element.
        w = np.repeat(np.asarray(w, dtype=dtype), int(np.prod(shape[1:])))
    return _kernel_view(w, dtype)


def check_out(out, shape, dtype, name="out"):
    """The caller's buffer, validated; None if the caller gave none."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return out


def kernel_out(out, size, kernel_dtype, reads=(), weights=None):
    """A flat buffer the kernel can write: the caller's own when its layout allows and the
    kernel may write it while reading its inputs.  It may be y_true or y_pred itself (each
    element is read before it is written: a gradient in place), but must overlap them in
    no other way, and must not overlap the weights at all (the float32 kernels of the
    transcendental losses multiply their output by the weights after writing it).
    Otherwise the kernel writes a new buffer, copied into ``out`` after."""
    if out is not None and out.dtype == kernel_dtype and out.flags.c_contiguous:
        flat = out.reshape(-1)
        # may_share_memory first: it compares bounds (0.4 us), _same_elements reads
        # __array_interface__ (a new dict each time: 3 us for a pair)
        if (all(a is None or not np.may_share_memory(flat, a) or _same_elements(flat, a)
                for a in reads)
                and (weights is None or not np.may_share_memory(flat, weights))):
            return flat
    return np.empty(size, dtype=kernel_dtype)


def buffers_overlap(a, b):
    """Whether two host output buffers may share memory."""
    return np.may_share_memory(a, b)


def _same_elements(a, b):
    """Whether 1-D arrays a and b are the very same elements."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.itemsize == b.itemsize)


def finish_out(buf, out, shape, dtype):
    """The result array: ``out`` when given (copied into if the kernel wrote elsewhere)."""
    if out is None:
        res = buf.reshape(shape)
        return res if res.dtype == dtype else res.astype(dtype)
    flat = out.reshape(-1) if out.flags.c_contiguous else None
    if flat is None or not np.shares_memory(flat, buf):
        out[...] = buf.reshape(shape)
    return out


# The array operations of the host backends ("numpy", "cpu"); the CUDA backend
# has the same four for device arrays (fastloss.backends.cuda.arrays).

def output(out, x, name="out"):
    """(the caller's ``out`` checked, a flat buffer of the kernel dtype for the kernel to write)."""
    out = check_out(out, x.shape, x.out_dtype, name)
    return out, kernel_out(out, x.size, x.kernel_dtype, (x.y, x.p), x.w)


def empty(x):
    """A flat kernel buffer for a result of x's size."""
    return np.empty(x.size, x.kernel_dtype)


def result(buf, out, x):
    """The array result: in ``out`` when given, else of y_pred's shape and result dtype."""
    return finish_out(buf, out, x.shape, x.out_dtype)


def host(a):
    return a


def warn_at_caller(message, category=RuntimeWarning):
    """``warnings.warn`` attributed to the first frame outside the fastloss package: the
    user's line, however deep in the package the warning is raised (a fixed stacklevel
    pointed inside it, or past the user, on some call paths)."""
    import os
    import sys
    import warnings
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)

