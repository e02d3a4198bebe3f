"""Losses over rows of class scores: softmax cross-entropy.

``cross_entropy(y_true, logits)`` follows ``torch.nn.functional.cross_entropy``:
y_true is either integer labels (N,) or class probabilities (N, C); class
weights, ``ignore_index``, label smoothing and the mean's denominator (the
sum of the target classes' weights for labels, N for probabilities) are as
PyTorch defines them.  ``z_loss`` adds z_loss * logsumexp(row)^2 per row (the
PaLM auxiliary loss) and ``softcap`` replaces logits by
softcap * tanh(logits / softcap) first (as Gemma 2).  Gradients are with
respect to the logits.  The CPU kernels are ``fastloss.kernels.softmax`` (a row at
a time) and, for rows of at most 16 classes, ``softmax_few`` (blocks of rows across
vector lanes); the reference is ``fastloss.backends.reference``.
"""

import importlib

import numpy as np

from . import _config, backends
from . import _validation as v

CE_DOC = __doc__

_numba_modules = {}


def _numba_module(name):
    """The fastloss module ``name`` (relative: ".kernels.nll"), which imports Numba, imported
    on its first use, so that ``import fastloss`` does not, and then kept: an import
    statement in a method cost a small batch's call 0.5 us each."""
    module = _numba_modules.get(name)
    if module is None:
        module = _numba_modules[name] = importlib.import_module(name, __package__)
    return module


def _check_params(class_weight, ignore_index, label_smoothing, z_loss, softcap):
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"cross_entropy: ignore_index must be an int, got {ignore_index!r}")
    for name, value, ok, requirement in (
            ("label_smoothing", label_smoothing, lambda x: 0.0 <= x <= 1.0, "in [0, 1]"),
            ("z_loss", z_loss, lambda x: x >= 0.0, ">= 0"),
            ("softcap", softcap, lambda x: x > 0.0, "None or > 0")):
        if value is None and name == "softcap":
            continue
        if isinstance(value, (bool, str, complex)) or not np.isscalar(value):
            raise TypeError(f"cross_entropy: {name} must be a real number, got {value!r}")
        if not (np.isfinite(value) and ok(float(value))):
            raise ValueError(f"cross_entropy: {name} must be {requirement}, got {value!r}")
    if class_weight is not None:
        w = np.asarray(class_weight)
        if w.dtype.kind not in "biuf" or w.ndim != 1:
            raise TypeError("cross_entropy: class_weight must be a 1-D array of real numbers")
        if np.any(w < 0):
            raise ValueError("cross_entropy: class_weight must be >= 0")
        return np.ascontiguousarray(w, dtype=np.float64)
    return None


NO_IGNORE = -(1 << 62)            # the ignore_index of losses that ignore no label


def label_error(loss_name, C, ignore, row, label):
    allowed = f"[0, {C})" + ("" if ignore == NO_IGNORE else f" or ignore_index={ignore}")
    return ValueError(f"{loss_name}: y_true holds class labels, which must be in {allowed}; "
                      f"row {row} has {label}")


def check_label_rows(loss, y_true, C, bad_row):
    """Raise ``label_error`` for row ``bad_row`` of ``y_true`` unless it is -1 (a kernel found
    every label in [0, C) or the ignored one)."""
    if bad_row >= 0:
        y = v._as_array(y_true, "y_true")
        raise label_error(loss.owner, C, loss.params["ignore_index"], bad_row, y[bad_row])


def check_scores_shape(shape, name="logits"):
    if len(shape) != 2:
        raise ValueError(f"{name} must have shape (N, C), got {tuple(shape)}")
    if shape[1] < 1:
        raise ValueError(f"{name} must have at least one class (C >= 1)")


def has_labels(y, N, C, class_weight, sample_weight):
    """True for integer labels y (N,), False for class probabilities (N, C); the shapes of
    y_true, class_weight and sample_weight checked against N rows of C classes (host or
    device arrays alike)."""
    kind = np.dtype(y.dtype).kind
    if kind in "iub" and tuple(y.shape) == (N,):
        labels = True
    elif kind == "f" and tuple(y.shape) == (N, C):
        labels = False
    else:
        raise ValueError(f"y_true must be integer class labels of shape ({N},) or class "
                         f"probabilities of shape ({N}, {C}); got {y.dtype} {tuple(y.shape)}")
    if class_weight is not None and class_weight.shape != (C,):
        raise ValueError(f"class_weight must have shape ({C},), got {class_weight.shape}")
    if sample_weight is not None and tuple(sample_weight.shape) != (N,):
        raise ValueError(f"sample_weight must have shape ({N},), got {tuple(sample_weight.shape)}")
    return labels


def _check_partial_reduction(reduction):
    if reduction not in ("mean", "sum"):
        raise ValueError(f'partial sums need reduction "mean" or "sum", got {reduction!r}')


def _gradient_buffer(out, x, reads):
    """Where a row kernel writes the gradient: ``out`` itself where its dtype and layout allow
    and the kernel may write it while reading the logits ``x`` (``out`` is x, each row read
    before it is overwritten, or shares no memory with it) and the arrays ``reads`` (no
    memory shared); else a new array, copied into ``out`` after (``_validation.finish_out``)."""
    flat = v.kernel_out(out, x.size, x.dtype, reads=(x.reshape(-1),))
    if any(a is not None and np.may_share_memory(flat, a) for a in reads):
        flat = np.empty(x.size, x.dtype)
    return flat.reshape(x.shape)


def _grad_hess_outs(out, y_pred):
    """(gradient out, Hessian out) from grad_hess's ``out``; a ValueError where they overlap."""
    if out is None:
        return None, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("out must be a pair of arrays (grad, hess)")
    gout, hout = out
    if gout is not None and hout is not None:
        overlap = v.buffers_overlap
        if backends.on_device(gout) or backends.on_device(hout) or backends.on_device(y_pred):
            from .backends.cuda.arrays import buffers_overlap as overlap
        if overlap(gout, hout):
            raise ValueError("out: the grad and hess buffers overlap; give two separate arrays")
    return gout, hout


def _grad_and_zero_hess(loss, y_true, x, sample_weight, out, backend):
    """grad_hess of a loss that is piecewise linear in x: the "sum" gradient and zeros."""
    gout, hout = _grad_hess_outs(out, x)
    g = loss.grad(y_true, x, sample_weight=sample_weight, reduction="sum", out=gout,
                  backend=backend)
    if backends.on_device(g):
        from .backends.cuda.arrays import zeros_like
        return g, zeros_like(g, hout, "out[1]")
    if hout is None:
        return g, np.zeros_like(g)
    v.check_out(hout, g.shape, g.dtype, "out[1]")[...] = 0
    return g, hout


def _backend_name(backend, *arrays):
    """The backend's name; "auto" is cuda when any of ``arrays`` is on a GPU, else cpu."""
    name = _config.get_backend() if backend is None else _config.check_backend(backend)
    if name == "auto":
        name = "cuda" if any(backends.on_device(a) for a in arrays) else "cpu"
    if name == "cuda":
        backends.load("cuda")                    # a clear error where it cannot run
    return name


def _total(total, denom, reduction, loss_name):
    """The sum of the row losses as the reduced value: itself ("sum") or over the denominator
    (NaN, with a warning naming ``loss_name``, where that is 0)."""
    if reduction == "sum":
        return total
    if denom == 0:
        v.warn_at_caller(f"{loss_name}: the mean is over no weight (empty input, all targets "
                         "ignored, or zero weights)")
        return float("nan")
    return total / denom


def _cuda_call(loss, y_true, x, sample_weight, reduction, grad=False, out=None):
    """(value, gradient or None) of a row loss on the CUDA backend (``loss._cuda``)."""
    value, g, _, denom = loss._cuda(y_true, x, sample_weight, reduction, grad=grad, out=out)
    return (value if reduction == "none" else _total(value, denom, reduction, loss.name)), g


def _cuda_partial(loss, y_true, x, sample_weight):
    total, _, _, denom = loss._cuda(y_true, x, sample_weight, "sum")
    return total, denom


def _cuda_rows(kernel_name, arguments, takes_hess=False):
    """A launcher for ``cuda.multiclass.run``: row kernel ``kernel_name`` with the loss's own
    ``arguments(inputs)``, then (scale, grad, rows), or (scale, grad, hess, rows) for a
    kernel that ``takes_hess``."""
    def launch(inputs, scale, grad, hess, rows):
        from .backends.cuda import multiclass as cm
        from .backends.cuda import rows as kernels
        tail = (scale, grad, hess, rows) if takes_hess else (scale, grad, rows)
        cm.launch_rows(getattr(kernels, kernel_name), rows.shape[0], *arguments(inputs), *tail)
    return launch


def _get_repr(name, params):
    """The ``fastloss.get`` call that makes a row loss with these parameters."""
    shown = "".join(f", {k}={val!r}" for k, val in params.items()
                    if k != "class_weight" or val is not None)
    return f"fastloss.get({name!r}{shown})"


class CrossEntropy:
    """Softmax cross-entropy with fixed options; see ``fastloss.cross_entropy``."""

    name = "cross_entropy"
    owner = name                  # the loss named in label errors (others reuse these checks)

    def __init__(self, class_weight=None, ignore_index=-100, label_smoothing=0.0, z_loss=0.0,
                 softcap=None):
        self.class_weight = _check_params(class_weight, ignore_index, label_smoothing, z_loss,
                                          softcap)
        self.params = {"class_weight": class_weight, "ignore_index": int(ignore_index),
                       "label_smoothing": float(label_smoothing), "z_loss": float(z_loss),
                       "softcap": None if softcap is None else float(softcap)}
        self.__doc__ = CE_DOC

    def __repr__(self):
        return _get_repr(self.name, self.params)

    # -- input handling -------------------------------------------------------

    def _prepare(self, y_true, logits, sample_weight, backend, check_labels=True):
        name = _backend_name(backend)
        x = v._as_array(logits, "logits")
        check_scores_shape(x.shape)
        dtype = v.result_dtype(x.dtype)
        x = np.ascontiguousarray(x, dtype=v._float_kind(x.dtype))
        labels, targets, w = self._targets(y_true, *x.shape, sample_weight, check_labels)
        return name, x, labels, targets, w, dtype

    def _targets(self, y_true, N, C, sample_weight, check_labels=True):
        """(labels, targets, sample weights) checked against N rows of C classes (the labels
        left unchecked with ``check_labels=False``, for a kernel that checks each before
        indexing with it: see ``check_label_rows``)."""
        y = v._as_array(y_true, "y_true")
        w = None if sample_weight is None else v._as_array(sample_weight, "sample_weight")
        labels = targets = None
        if has_labels(y, N, C, self.class_weight, w):
            labels = np.ascontiguousarray(y, dtype=np.int64)
            ignore = self.params["ignore_index"]
            # one reduction settles the usual case (0.7 us at small N, where the full check
            # costs five array operations): read as unsigned, a negative label is above any C
            if check_labels and labels.size and not labels.view(np.uint64).max() < C:
                bad = np.flatnonzero(((labels < 0) | (labels >= C)) & (labels != ignore))
                if bad.size:
                    i = int(bad[0])
                    raise label_error(self.owner, C, ignore, i, y[i])     # as given
        else:
            targets = np.ascontiguousarray(y, dtype=v._float_kind(y.dtype))
        if w is not None:
            if np.any(w < 0):
                raise ValueError("sample_weight must be >= 0")
            w = np.ascontiguousarray(w, dtype=np.float64)
        return labels, targets, w

    def _denominator(self, labels, targets, w, N):
        """Mean's denominator: sum of target-class weights (labels) or of sample weights."""
        if w is None and (labels is None or self.class_weight is None):
            # a count: the rows, or the rows whose label is not ignored
            return float(N if labels is None
                         else N - np.count_nonzero(labels == self.params["ignore_index"]))
        r = np.ones(N) if w is None else w
        if labels is None:
            return float(np.sum(r))
        keep = labels != self.params["ignore_index"]
        wt = 1.0 if self.class_weight is None else self.class_weight[labels[keep]]
        return float(np.sum(r[keep] * wt))

    def _run(self, backend, x, labels, targets, w, scale, out, hess=None):
        """Per-row losses (N,); the gradient times ``scale`` into ``out`` and the diagonal
        Hessian times ``scale`` into ``hess`` (with ``out``) where they are given."""
        N, C = x.shape
        p = self.params
        if backend == "numpy":
            from .backends.reference import cross_entropy_diag_hess, cross_entropy_rows
            rows, grad = cross_entropy_rows(x, labels, targets, self.class_weight, w,
                                            p["ignore_index"], p["label_smoothing"], p["z_loss"],
                                            p["softcap"])
            if hess is not None:      # before either is written: out or hess may be the logits
                h = cross_entropy_diag_hess(x, labels, targets, self.class_weight, w,
                                            p["ignore_index"], p["label_smoothing"])
                hess[...] = h * scale
            if out is not None:
                grad = grad * scale
                if labels is not None:
                    # an ignored row's gradient is 0 even where the mean's scale is NaN (no
                    # weight at all), as PyTorch's and the kernels'
                    grad[labels == p["ignore_index"]] = 0.0
                out[...] = grad
            return rows
        call_parallel = _numba_module(".backends.cpu").call_parallel
        softmax = _numba_module(".kernels.softmax")
        softmax_few = _numba_module(".kernels.softmax_few")
        rows = np.empty(N)
        if C <= softmax_few.FEW and p["softcap"] is None:
            none = np.empty((0,) * (1 if labels is None else 2), x.dtype)
            call_parallel(softmax_few.cross_entropy_few, x,
                          none.astype(np.int64) if labels is None else labels,
                          none if targets is None else targets, self.class_weight, w,
                          p["ignore_index"], p["label_smoothing"], p["z_loss"], float(scale),
                          out, hess, rows)
        elif labels is not None:
            call_parallel(softmax.cross_entropy_labels, x, labels, self.class_weight, w,
                          p["ignore_index"], p["label_smoothing"], p["z_loss"], p["softcap"],
                          float(scale), out, hess, rows)
        else:
            call_parallel(softmax.cross_entropy_targets, x, targets, self.class_weight, w,
                          p["label_smoothing"], p["z_loss"], p["softcap"], float(scale), out,
                          hess, rows)
        return rows

    def _reduce(self, rows, denom, reduction):
        if reduction == "none":
            return rows
        return _total(float(rows.sum()), denom, reduction, self.owner)

    def _cuda_launch(self):
        p = self.params
        labels = _cuda_rows("cross_entropy_labels", lambda x: (
            x.x, x.labels, x.class_weight, x.weights, p["ignore_index"], p["label_smoothing"],
            p["z_loss"], p["softcap"]), takes_hess=True)
        targets = _cuda_rows("cross_entropy_targets", lambda x: (
            x.x, x.targets, x.class_weight, x.weights, p["label_smoothing"], p["z_loss"],
            p["softcap"]), takes_hess=True)

        def launch(inputs, *args):
            (labels if inputs.labels is not None else targets)(inputs, *args)
        return launch

    def _cuda(self, y_true, logits, sample_weight, reduction, **options):
        """(row losses or their sum, grad, hess, denominator) from the CUDA row kernels."""
        from .backends.cuda import multiclass as cm
        return cm.run(self, y_true, logits, sample_weight, reduction, self._cuda_launch(),
                      ignore=self.params["ignore_index"], **options)

    # -- public methods ------------------------------------------------------

    def __call__(self, y_true, logits, *, sample_weight=None, reduction="mean", backend=None):
        """The loss: a float for "mean" and "sum", per-row losses (N,) for "none"."""
        v.check_reduction(reduction)
        if _backend_name(backend, y_true, logits, sample_weight) == "cuda":
            return _cuda_call(self, y_true, logits, sample_weight, reduction)[0]
        backend, x, labels, targets, w, dtype = self._prepare(y_true, logits, sample_weight,
                                                              backend)
        denom = self._denominator(labels, targets, w, x.shape[0])
        rows = self._run(backend, x, labels, targets, w, 1.0, None)
        result = self._reduce(rows, denom, reduction)
        return result.astype(dtype) if reduction == "none" else result

    value = __call__

    def partial(self, y_true, logits, *, sample_weight=None, reduction="mean", backend=None):
        """(sum of the row losses, the mean's denominator): see ``fastloss.Loss.partial``."""
        _check_partial_reduction(reduction)
        if _backend_name(backend, y_true, logits, sample_weight) == "cuda":
            return _cuda_partial(self, y_true, logits, sample_weight)
        backend, x, labels, targets, w, _ = self._prepare(y_true, logits, sample_weight, backend)
        denom = self._denominator(labels, targets, w, x.shape[0])
        return float(np.sum(self._run(backend, x, labels, targets, w, 1.0, None))), denom

    def value_and_grad(self, y_true, logits, *, sample_weight=None, reduction="mean", out=None,
                       backend=None):
        """(value, d value / d logits) in one pass; ``out`` may be the logits array itself."""
        v.check_reduction(reduction)
        if _backend_name(backend, y_true, logits, sample_weight) == "cuda":
            return _cuda_call(self, y_true, logits, sample_weight, reduction, True, out)
        backend, x, labels, targets, w, dtype = self._prepare(y_true, logits, sample_weight,
                                                              backend)
        out = v.check_out(out, x.shape, dtype)
        denom = self._denominator(labels, targets, w, x.shape[0])
        scale = 1.0
        if reduction == "mean":
            scale = 1.0 / denom if denom else float("nan")
        buf = _gradient_buffer(out, x, (labels, targets, w))
        rows = self._run(backend, x, labels, targets, w, scale, buf)
        value = self._reduce(rows, denom, reduction)
        if reduction == "none":
            value = value.astype(dtype)
        return value, v.finish_out(buf, out, x.shape, dtype)

    def grad(self, y_true, logits, *, sample_weight=None, reduction="mean", out=None,
             backend=None):
        """d(reduced loss)/d logits; for "none", the gradient of each row's own loss."""
        return self.value_and_grad(y_true, logits, sample_weight=sample_weight,
                                   reduction=reduction, out=out, backend=backend)[1]

    def grad_hess(self, y_true, logits, *, sample_weight=None, out=None, backend=None):
        """Gradient ("sum" convention) and the diagonal Hessian a_i p(1 - p) per class.

        The convention of multiclass gradient boosting (scikit-learn's); the
        z_loss and softcap terms have no diagonal form here and are rejected.
        """
        if self.params["z_loss"] or self.params["softcap"] is not None:
            raise ValueError("cross_entropy.grad_hess does not support z_loss or softcap")
        gout, hout = _grad_hess_outs(out, logits)
        if _backend_name(backend, y_true, logits, sample_weight) == "cuda":
            _, g, h, _ = self._cuda(y_true, logits, sample_weight, "sum", grad=True, out=gout,
                                    hess=True, hess_out=hout)
            return g, h
        backend, x, labels, targets, w, dtype = self._prepare(y_true, logits, sample_weight,
                                                              backend)
        gout = v.check_out(gout, x.shape, dtype, "out[0]")
        hout = v.check_out(hout, x.shape, dtype, "out[1]")
        gbuf = _gradient_buffer(gout, x, (labels, targets, w))
        hbuf = _gradient_buffer(hout, x, (labels, targets, w, gbuf))
        self._run(backend, x, labels, targets, w, 1.0, gbuf, hbuf)
        return (v.finish_out(gbuf, gout, x.shape, dtype),
                v.finish_out(hbuf, hout, x.shape, dtype))


def cross_entropy(y_true, logits, *, class_weight=None, ignore_index=-100, label_smoothing=0.0,
                  z_loss=0.0, softcap=None, sample_weight=None, reduction="mean", backend=None):
    return CrossEntropy(class_weight, ignore_index, label_smoothing, z_loss, softcap)(
        y_true, logits, sample_weight=sample_weight, reduction=reduction, backend=backend)


cross_entropy.__doc__ = CE_DOC
LOSSES = {"cross_entropy": CrossEntropy}


class LinearCrossEntropy:
    """cross_entropy(y_true, hidden @ weight.T + bias) without ever holding the (N, C) logits.

    Rows are processed in chunks of ``chunk_size``: NumPy's matmul (BLAS) gives
    a chunk's logits, the fused cross-entropy kernel turns them into the loss
    and, in place, the gradient with respect to them, and two more products
    accumulate the gradients of ``hidden``, ``weight`` and ``bias``.  Extra
    memory is one (chunk_size, C) block and a (4096, H) slab of the weight gradient.
    """

    name = "linear_cross_entropy"

    def __init__(self, chunk_size=None, **options):
        if chunk_size is not None and (isinstance(chunk_size, bool)
                                       or not isinstance(chunk_size, (int, np.integer))
                                       or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        self.chunk_size = chunk_size
        self.ce = CrossEntropy(**options)
        self.ce.owner = self.name               # named in label errors and warnings

    def __repr__(self):
        return _get_repr(self.name, {"chunk_size": self.chunk_size, **self.ce.params})

    def _chunks(self, N, C):
        size = self.chunk_size or max(1, (1 << 24) // max(C, 1))   # about 64 MB of float32
        return [(lo, min(N, lo + size)) for lo in range(0, N, size)]

    def _check(self, hidden, weight, bias):
        h = v._as_array(hidden, "hidden")
        w = v._as_array(weight, "weight")
        if h.ndim != 2 or w.ndim != 2 or h.shape[1] != w.shape[1]:
            raise ValueError(f"hidden must be (N, H) and weight (C, H); got {h.shape} and {w.shape}")
        dtype = np.result_type(v._float_kind(h.dtype), v._float_kind(w.dtype))
        h = np.ascontiguousarray(h, dtype=dtype)
        w = np.ascontiguousarray(w, dtype=dtype)
        b = None
        if bias is not None:
            b = np.ascontiguousarray(v._as_array(bias, "bias"), dtype=dtype)
            if b.shape != (w.shape[0],):
                raise ValueError(f"bias must have shape ({w.shape[0]},), got {b.shape}")
        return h, w, b

    def __call__(self, y_true, hidden, weight, bias=None, *, sample_weight=None, reduction="mean",
                 backend=None):
        return self._run(y_true, hidden, weight, bias, sample_weight, reduction, backend, False)[0]

    value = __call__

    def value_and_grad(self, y_true, hidden, weight, bias=None, *, sample_weight=None,
                       reduction="mean", backend=None):
        """(value, (grad_hidden, grad_weight, grad_bias)); grad_bias is None without a bias."""
        return self._run(y_true, hidden, weight, bias, sample_weight, reduction, backend, True)

    def grad(self, y_true, hidden, weight, bias=None, *, sample_weight=None, reduction="mean",
             backend=None):
        """(grad_hidden, grad_weight, grad_bias) of the reduced loss, as ``value_and_grad``."""
        return self.value_and_grad(y_true, hidden, weight, bias, sample_weight=sample_weight,
                                   reduction=reduction, backend=backend)[1]

    def _run(self, y_true, hidden, weight, bias, sample_weight, reduction, backend, want_grad):
        v.check_reduction(reduction)
        name = _backend_name(backend, y_true, hidden, weight, bias, sample_weight)
        if name == "cuda":
            from .backends.cuda.linear import linear_cross_entropy
            value, grads, denom = linear_cross_entropy(self, y_true, hidden, weight, bias,
                                                       sample_weight, reduction, want_grad)
            return (value if reduction == "none"
                    else _total(value, denom, reduction, self.name)), grads
        h, w, b = self._check(hidden, weight, bias)
        N, C = h.shape[0], w.shape[0]
        labels, targets, sw = self.ce._targets(y_true, N, C, sample_weight)
        denom = self.ce._denominator(labels, targets, sw, N)
        scale = 1.0
        if reduction == "mean":
            scale = 1.0 / denom if denom else float("nan")
        rows = np.empty(N)
        gh = np.empty_like(h) if want_grad else None
        gw = np.zeros_like(w) if want_grad else None
        gb = (np.zeros_like(b) if b is not None else None) if want_grad else None
        chunks = self._chunks(N, C)
        # one logits block and one slab of the weight gradient, reused by every chunk
        block = np.empty((chunks[0][1] - chunks[0][0] if chunks else 0, C), h.dtype)
        slab = min(C, 4096)
        product = np.empty((slab, h.shape[1]), h.dtype) if want_grad else None
        for lo, hi in chunks:
            z = np.matmul(h[lo:hi], w.T, out=block[:hi - lo])
            if b is not None:
                z += b
            part_labels = None if labels is None else labels[lo:hi]
            part_targets = None if targets is None else targets[lo:hi]
            part_w = None if sw is None else sw[lo:hi]
            rows[lo:hi] = self.ce._run(name, z, part_labels, part_targets, part_w, scale,
                                       z if want_grad else None)
            if want_grad:                      # z now holds d loss / d logits
                np.matmul(z, w, out=gh[lo:hi])
                for c0 in range(0, C, slab):
                    c1 = min(C, c0 + slab)
                    gw[c0:c1] += np.matmul(z[:, c0:c1].T, h[lo:hi], out=product[:c1 - c0])
                if gb is not None:
                    gb += z.sum(axis=0)
        value = self.ce._reduce(rows, denom, reduction)
        return value, (gh, gw, gb)


def linear_cross_entropy(y_true, hidden, weight, bias=None, *, chunk_size=None, class_weight=None,
                         ignore_index=-100, label_smoothing=0.0, z_loss=0.0, softcap=None,
                         sample_weight=None, reduction="mean", backend=None):
    """cross_entropy(y_true, hidden @ weight.T + bias), computed by row chunks."""
    loss = LinearCrossEntropy(chunk_size, class_weight=class_weight, ignore_index=ignore_index,
                              label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap)
    return loss(y_true, hidden, weight, bias, sample_weight=sample_weight, reduction=reduction,
                backend=backend)


LOSSES["linear_cross_entropy"] = LinearCrossEntropy


class NLL:
    """Negative log-likelihood of class labels given log-probabilities, as ``F.nll_loss``.

    l_i = -w[t_i] * log_probs[i, t_i] (0 for ignore_index); the mean divides by
    the sum of the target classes' weights.  The value is one gather per row and
    the gradient one scatter: NumPy's fancy indexing for the "numpy" backend, a
    parallel kernel (``fastloss.kernels.nll``) for "cpu"; PyTorch is the oracle
    in the tests.
    """

    name = "nll"

    def __init__(self, class_weight=None, ignore_index=-100):
        self._ce = CrossEntropy(class_weight=class_weight, ignore_index=ignore_index)
        self._ce.owner = self.name
        self.params = {"class_weight": class_weight, "ignore_index": self._ce.params["ignore_index"]}

    def __repr__(self):
        return _get_repr(self.name, self.params)

    def _cuda(self, y_true, log_probs, sample_weight, reduction, **options):
        from .backends.cuda import multiclass as cm
        ignore = self.params["ignore_index"]
        launch = _cuda_rows("nll", lambda x: (x.x, x.labels, x.class_weight, x.weights, ignore))
        return cm.run(self._ce, y_true, log_probs, sample_weight, reduction, launch,
                      name="log_probs", loss_name="nll", labels_only=True, ignore=ignore,
                      **options)

    def _host(self, y_true, log_probs, sample_weight, backend, reduction, want_grad=False,
              out=None):
        """(row losses for "none", else (sum of the row losses, the mean's denominator); the
        gradient or None; the result dtype) on the "numpy" or "cpu" backend."""
        name = _backend_name(backend)
        # the cpu kernel for sums checks each label before indexing with it
        sums = name == "cpu" and reduction != "none"
        _, x, labels, _, w, dtype = self._ce._prepare(y_true, log_probs, sample_weight, backend,
                                                      check_labels=not sums)
        if labels is None:
            raise ValueError("nll: y_true must be integer class labels of shape (N,)")
        if want_grad:
            out = v.check_out(out, x.shape, dtype)
        ignore, cw = self.params["ignore_index"], self._ce.class_weight
        call_parallel = _numba_module(".backends.cpu").call_parallel
        kernels = _numba_module(".kernels.nll")
        grad = None
        if name == "numpy":
            keep = np.flatnonzero(labels != ignore)
            coef = np.zeros(x.shape[0])                    # d l_i / d x[i, t_i] = -coef_i
            coef[keep] = 1.0 if cw is None else cw[labels[keep]]
            if w is not None:
                coef *= w
            picked = np.zeros(x.shape[0])
            picked[keep] = x[keep, labels[keep]]
            rows = -coef * picked
            result = rows if reduction == "none" else (float(np.sum(rows)), float(np.sum(coef)))
        elif sums:
            partial = np.empty(((x.shape[0] + kernels.SUM_BLOCK - 1) // kernels.SUM_BLOCK, 3))
            call_parallel(kernels.nll_sums, x, labels, cw, w, ignore, partial)
            bad = partial[:, 2]
            check_label_rows(self._ce, y_true, x.shape[1],
                             int(bad[bad >= 0][0]) if bad.size and bad.max() >= 0 else -1)
            # np.add.reduce is np.sum (the same pairwise order) without its 1 us of wrapping,
            # which was a tenth of a small batch's call
            result = float(np.add.reduce(partial[:, 0])), float(np.add.reduce(partial[:, 1]))
        else:                   # "none": the row losses, and the gradient of their sum
            result = np.empty(x.shape[0])
            if want_grad:
                grad = _gradient_buffer(out, x, (labels, w))
            call_parallel(kernels.nll_rows, x, labels, cw, w, ignore, 1.0, grad, result)
        if want_grad and grad is None:
            scale = 1.0
            if reduction == "mean":
                scale = 1.0 / result[1] if result[1] else float("nan")
            if name == "numpy":
                grad = out
                if out is None or np.may_share_memory(out, labels):   # labels read after zeroing
                    grad = np.zeros(x.shape, dtype)
                else:
                    grad[...] = 0
                grad[keep, labels[keep]] = -coef[keep] * scale
            else:
                grad = _gradient_buffer(out, x, (labels, w))
                call_parallel(kernels.nll_rows, x, labels, cw, w, ignore, scale, grad, None)
        if grad is not None:
            grad = v.finish_out(grad, out, x.shape, dtype)
        return result, grad, dtype

    def __call__(self, y_true, log_probs, *, sample_weight=None, reduction="mean", backend=None):
        v.check_reduction(reduction)
        if _backend_name(backend, y_true, log_probs, sample_weight) == "cuda":
            return _cuda_call(self, y_true, log_probs, sample_weight, reduction)[0]
        result, _, dtype = self._host(y_true, log_probs, sample_weight, backend, reduction)
        return (result.astype(dtype) if reduction == "none"
                else _total(*result, reduction, self.name))

    value = __call__

    def partial(self, y_true, log_probs, *, sample_weight=None, reduction="mean", backend=None):
        """(sum of the row losses, the mean's denominator): see ``fastloss.Loss.partial``."""
        _check_partial_reduction(reduction)
        if _backend_name(backend, y_true, log_probs, sample_weight) == "cuda":
            return _cuda_partial(self, y_true, log_probs, sample_weight)
        return self._host(y_true, log_probs, sample_weight, backend, reduction)[0]

    def value_and_grad(self, y_true, log_probs, *, sample_weight=None, reduction="mean", out=None,
                       backend=None):
        v.check_reduction(reduction)
        if _backend_name(backend, y_true, log_probs, sample_weight) == "cuda":
            return _cuda_call(self, y_true, log_probs, sample_weight, reduction, True, out)
        result, grad, dtype = self._host(y_true, log_probs, sample_weight, backend, reduction,
                                         True, out)
        return (result.astype(dtype) if reduction == "none"
                else _total(*result, reduction, self.name)), grad

    def grad(self, y_true, log_probs, *, sample_weight=None, reduction="mean", out=None,
             backend=None):
        return self.value_and_grad(y_true, log_probs, sample_weight=sample_weight,
                                   reduction=reduction, out=out, backend=backend)[1]

    def grad_hess(self, y_true, log_probs, *, sample_weight=None, out=None, backend=None):
        """Gradient ("sum" convention) and the Hessian, which is 0 (the loss is linear)."""
        return _grad_and_zero_hess(self, y_true, log_probs, sample_weight, out, backend)


def nll(y_true, log_probs, *, class_weight=None, ignore_index=-100, sample_weight=None,
        reduction="mean", backend=None):
    return NLL(class_weight, ignore_index)(y_true, log_probs, sample_weight=sample_weight,
                                           reduction=reduction, backend=backend)


nll.__doc__ = NLL.__doc__
LOSSES["nll"] = NLL


class _LabelRowLoss:
    """A loss per row of scores with integer labels in [0, C) (none ignored).

    Subclasses give ``name``, ``params`` and three row functions: ``_reference``
    (NumPy: per-row losses and the gradient of their sum), ``_reference_hess``
    (NumPy: the diagonal of that sum's Hessian) and ``_kernel`` (Numba: fills the
    per-row losses and, if given, the gradient and the Hessian times scale).
    The mean divides by N, or by the sum of the sample weights.
    """

    def __init__(self, class_weight=None):
        # labels validated as cross_entropy does, with an ignore_index no label can take
        self._ce = CrossEntropy(class_weight=class_weight, ignore_index=NO_IGNORE)
        self._ce.owner = self.name

    def __repr__(self):
        return _get_repr(self.name, self.params)

    def _rows(self, y_true, scores, sample_weight, reduction, backend, want_grad,
              want_hess=False):
        """(per-row losses, gradient times the reduction's scale or None, the Hessian's
        diagonal likewise (with the gradient only), mean's denominator, result dtype)."""
        name, x, labels, _, w, dtype = self._ce._prepare(y_true, scores, sample_weight, backend)
        if labels is None:
            raise ValueError(f"{self.name}: y_true must be integer class labels of shape (N,)")
        N = x.shape[0]
        denom = float(N) if w is None else float(np.sum(w))
        scale = (1.0 / denom if denom else float("nan")) if reduction == "mean" else 1.0
        grad = hess = None
        if name == "numpy":
            rows, g = self._reference(x, labels, w)
            if want_grad:
                grad = (g * scale).astype(dtype)
            if want_hess:
                hess = (self._reference_hess(x, labels, w) * scale).astype(dtype)
        else:
            rows = np.empty(N)
            if want_grad:
                grad = np.empty(x.shape, x.dtype)
            if want_hess:
                hess = np.empty(x.shape, x.dtype)
            self._kernel(x, labels, w, float(scale), grad, rows, hess)
            # the kernels compute float16 scores in float64; the results take the scores' type
            grad, hess = (None if a is None else a.astype(dtype, copy=False) for a in (grad, hess))
        return rows, grad, hess, denom, dtype

    def _cuda(self, y_true, scores, sample_weight, reduction, **options):
        from .backends.cuda import multiclass as cm
        return cm.run(self._ce, y_true, scores, sample_weight, reduction, self._cuda_launch(),
                      loss_name=self.name, labels_only=True,
                      ignore=self._ce.params["ignore_index"], class_weighted=False, **options)

    def _run(self, y_true, scores, sample_weight, reduction, backend, want_grad, out=None):
        v.check_reduction(reduction)
        if _backend_name(backend, y_true, scores, sample_weight) == "cuda":
            return _cuda_call(self, y_true, scores, sample_weight, reduction, want_grad, out)
        rows, grad, _, denom, dtype = self._rows(y_true, scores, sample_weight, reduction, backend,
                                              want_grad)
        if want_grad:
            out = v.check_out(out, grad.shape, dtype)
        value = self._ce._reduce(rows, denom, reduction)
        if reduction == "none":
            value = value.astype(dtype)
        if want_grad and out is not None:
            out[...] = grad
            grad = out
        return value, grad

    def __call__(self, y_true, scores, *, sample_weight=None, reduction="mean", backend=None):
        return self._run(y_true, scores, sample_weight, reduction, backend, False)[0]

    value = __call__

    def partial(self, y_true, scores, *, sample_weight=None, reduction="mean", backend=None):
        """(sum of the row losses, the mean's denominator): see ``fastloss.Loss.partial``."""
        _check_partial_reduction(reduction)
        if _backend_name(backend, y_true, scores, sample_weight) == "cuda":
            return _cuda_partial(self, y_true, scores, sample_weight)
        rows, _, _, denom, _ = self._rows(y_true, scores, sample_weight, "sum", backend, False)
        return float(np.sum(rows)), denom

    def value_and_grad(self, y_true, scores, *, sample_weight=None, reduction="mean", out=None,
                       backend=None):
        return self._run(y_true, scores, sample_weight, reduction, backend, True, out)

    def grad(self, y_true, scores, *, sample_weight=None, reduction="mean", out=None, backend=None):
        return self._run(y_true, scores, sample_weight, reduction, backend, True, out)[1]

    def _grad_hess(self, y_true, scores, sample_weight, out, backend):
        """(gradient, Hessian's diagonal) of the summed loss, from the row kernel's one pass
        or the NumPy ``_reference`` and ``_reference_hess`` (``_rows``)."""
        gout, hout = _grad_hess_outs(out, scores)
        if _backend_name(backend, y_true, scores, sample_weight) == "cuda":
            _, g, h, _ = self._cuda(y_true, scores, sample_weight, "sum", grad=True, out=gout,
                                    hess=True, hess_out=hout)
            return g, h
        _, g, h, _, dtype = self._rows(y_true, scores, sample_weight, "sum", backend, True, True)
        gout = v.check_out(gout, g.shape, dtype, "out[0]")
        hout = v.check_out(hout, h.shape, dtype, "out[1]")
        for result, given in ((g, gout), (h, hout)):
            if given is not None:
                given[...] = result
        return (g if gout is None else gout), (h if hout is None else hout)


class MultiMargin(_LabelRowLoss):
    """Multi-class margin (hinge) loss over scores, as ``torch.nn.functional.multi_margin_loss``.

    l_i = w[t_i] / C * sum_{j != t_i} max(0, margin - x[i, t_i] + x[i, j])^p, p in {1, 2};
    the mean divides by N (PyTorch's convention).  Labels must lie in [0, C).
    """

    name = "multi_margin"

    def __init__(self, p=1, margin=1.0, class_weight=None):
        if p not in (1, 2) or isinstance(p, bool):
            raise ValueError(f"multi_margin: p must be 1 or 2, got {p!r}")
        if isinstance(margin, (bool, str)) or not np.isscalar(margin) or not np.isfinite(margin):
            raise ValueError(f"multi_margin: margin must be a finite number, got {margin!r}")
        super().__init__(class_weight)
        self.params = {"p": int(p), "margin": float(margin), "class_weight": class_weight}

    def _reference(self, x, labels, w):
        from .backends.reference import multi_margin_rows
        return multi_margin_rows(x, labels, self._ce.class_weight, w, self.params["p"],
                                 self.params["margin"])

    def _cuda_launch(self):
        p, margin = self.params["p"], self.params["margin"]
        return _cuda_rows("multi_margin", lambda x: (x.x, x.labels, x.class_weight, x.weights, p,
                                                     margin), takes_hess=True)

    def _kernel(self, x, labels, w, scale, grad, rows, hess):
        call_parallel = _numba_module(".backends.cpu").call_parallel
        multi_margin_rows = _numba_module(".kernels.margin").multi_margin_rows
        call_parallel(multi_margin_rows, x, labels, self._ce.class_weight, w, self.params["p"],
                      self.params["margin"], scale, grad, hess, rows)

    def _reference_hess(self, x, labels, w):
        from .backends.reference import multi_margin_diag_hess
        return multi_margin_diag_hess(x, labels, self._ce.class_weight, w, self.params["p"],
                                      self.params["margin"])

    def grad_hess(self, y_true, scores, *, sample_weight=None, out=None, backend=None):
        """Gradient ("sum" convention) and the Hessian's diagonal: 0 for p = 1; for p = 2,
        2 w[t] / C for each class j != t whose margin term is positive, and their sum for
        the target t (the loss is piecewise quadratic: its value at a kink is the side where
        the term is 0)."""
        return self._grad_hess(y_true, scores, sample_weight, out, backend)


def multi_margin(y_true, scores, *, p=1, margin=1.0, class_weight=None, sample_weight=None,
                 reduction="mean", backend=None):
    return MultiMargin(p, margin, class_weight)(y_true, scores, sample_weight=sample_weight,
                                                reduction=reduction, backend=backend)


multi_margin.__doc__ = MultiMargin.__doc__
LOSSES["multi_margin"] = MultiMargin


class SoftmaxFocal(_LabelRowLoss):
    """Softmax focal loss over logits: l_i = -(1 - p_t)^gamma log p_t, p = softmax(x_i).

    Lin et al. (2017) applied to a softmax; gamma = 0 is the cross-entropy.
    log p_t comes from the streaming log-sum-exp and 1 - p_t from expm1, so
    values and gradients stay finite at saturation for any gamma >= 0 (rows of at
    most 16 classes by blocks of rows, as cross_entropy's).  The
    mean divides by N (or the sum of sample weights).  Labels must lie in [0, C).
    """

    name = "softmax_focal"

    def __init__(self, gamma=2.0):
        if isinstance(gamma, (bool, str)) or not np.isscalar(gamma) or not (
                np.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"softmax_focal: gamma must be a finite number >= 0, got {gamma!r}")
        super().__init__()
        self.params = {"gamma": float(gamma)}

    def _reference(self, x, labels, w):
        from .backends.reference import softmax_focal_rows
        return softmax_focal_rows(x, labels, w, self.params["gamma"])

    def _cuda_launch(self):
        gamma = self.params["gamma"]
        return _cuda_rows("softmax_focal", lambda x: (x.x, x.labels, x.weights, gamma),
                          takes_hess=True)

    def _kernel(self, x, labels, w, scale, grad, rows, hess):
        call_parallel = _numba_module(".backends.cpu").call_parallel
        softmax = _numba_module(".kernels.softmax")
        softmax_few = _numba_module(".kernels.softmax_few")
        kernel = (softmax_few.softmax_focal_few if x.shape[1] <= softmax_few.FEW
                  else softmax.softmax_focal_rows)
        call_parallel(kernel, x, labels, w, self.params["gamma"], scale, grad, hess, rows)

    def _reference_hess(self, x, labels, w):
        from .backends.reference import softmax_focal_diag_hess
        return softmax_focal_diag_hess(x, labels, w, self.params["gamma"])

    def grad_hess(self, y_true, logits, *, sample_weight=None, out=None, backend=None):
        """Gradient ("sum" convention) and the exact diagonal of the Hessian per class:
        B ((delta_tj - p_j) / (1 - p_t))^2 - A p_j (1 - p_j), with A the gradient's factor
        and B = gamma p_t (1 - p_t)^gamma ((1 - gamma p_t) log p_t + 2 (1 - p_t)); gamma = 0
        gives cross_entropy's p_j (1 - p_j).  Unlike cross-entropy's, it can be negative
        (for gamma > 0, where p_t is small)."""
        return self._grad_hess(y_true, logits, sample_weight, out, backend)


def softmax_focal(y_true, logits, *, gamma=2.0, sample_weight=None, reduction="mean",
                  backend=None):
    return SoftmaxFocal(gamma)(y_true, logits, sample_weight=sample_weight, reduction=reduction,
                               backend=backend)


softmax_focal.__doc__ = SoftmaxFocal.__doc__
LOSSES["softmax_focal"] = SoftmaxFocal
