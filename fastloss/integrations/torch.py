"""fastloss losses as PyTorch autograd functions and modules (``pip install "fastloss[torch]"``).

    criterion = fastloss.integrations.torch.FastCrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(logits, target)          # PyTorch's argument order and option names
    loss.backward()

Forward runs the fused value-and-gradient kernel on the tensors' memory (CPU
tensors are shared with NumPy, not copied) and keeps the gradient; backward
scales it by the incoming gradient.  The functions are once differentiable
(no double backward).  CUDA tensors run on the cuda backend (``fastloss[cuda]``),
in place on the GPU, and the gradient stays there.
"""
import numpy as np
import torch

from ..loss import get

__all__ = ["loss_function", "FastLoss", "FastMSELoss", "FastL1Loss", "FastHuberLoss",
           "FastSmoothL1Loss", "FastBCELoss", "FastBCEWithLogitsLoss", "FastKLDivLoss",
           "FastPoissonNLLLoss", "FastCrossEntropyLoss", "FastNLLLoss", "FastMultiMarginLoss"]


def _numpy(t, name):
    """A CPU tensor's memory as a NumPy array; a CUDA tensor as itself (the cuda backend's input).

    bfloat16, which neither NumPy nor Numba has, as a float32 copy."""
    if t.dtype == torch.bfloat16:
        t = t.float()
    if t.device.type == "cuda":
        return t.detach()
    if t.device.type != "cpu":
        raise TypeError(f"{name} is on {t.device}; fastloss takes CPU and CUDA tensors")
    return t.detach().numpy()


def _tensor(a):
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(a)


class _LossFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, weight, loss, reduction):
        x = _numpy(input, "input")
        y = _numpy(target, "target")
        w = None if weight is None else _numpy(weight, "weight")
        if ctx.needs_input_grad[2]:
            raise ValueError("weight requires grad, but fastloss differentiates in input only; "
                             "detach the weight")
        ctx.target_grad = ctx.needs_input_grad[1]
        if ctx.target_grad and not getattr(getattr(loss, "spec", None), "difference", False):
            raise ValueError(f"target requires grad, but fastloss differentiates {loss.name} in "
                             "input only; detach the target, or use PyTorch's loss for both")
        value, grad = loss.value_and_grad(y, x, sample_weight=w, reduction=reduction)
        ctx.save_for_backward(_tensor(grad))
        ctx.scalar = reduction != "none"
        ctx.dtypes = input.dtype, target.dtype
        return torch.as_tensor(value, dtype=input.dtype, device=input.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        if ctx.scalar:
            grad = grad if bool(grad_output == 1) else grad * grad_output
        else:
            shape = grad_output.shape + (1,) * (grad.dim() - grad_output.dim())
            grad = grad * grad_output.reshape(shape)
        # a loss of input - target alone: d/d target = -d/d input
        grad_target = -grad.to(ctx.dtypes[1]) if ctx.target_grad else None
        return grad.to(ctx.dtypes[0]), grad_target, None, None, None


def loss_function(input, target, loss, *, weight=None, reduction="mean"):
    """``loss`` (a fastloss loss object) of ``input`` against ``target``, differentiable in input."""
    return _LossFunction.apply(input, target, weight, loss, reduction)


class FastLoss(torch.nn.Module):
    """A module around the fastloss loss ``name``: ``forward(input, target, weight=None)``.

    ``weight`` in forward is a per-sample weight of shape (N,).
    """

    def __init__(self, name, reduction="mean", **params):
        super().__init__()
        self.loss = get(name, **params)
        self.reduction = reduction

    def forward(self, input, target, weight=None):
        return loss_function(input, target, self.loss, weight=weight, reduction=self.reduction)

    def extra_repr(self):
        return f"{self.loss!r}, reduction={self.reduction!r}"


def _class_weight(weight):
    return None if weight is None else torch.as_tensor(weight).detach().cpu().numpy().astype(np.float64)


class FastMSELoss(FastLoss):
    """nn.MSELoss."""

    def __init__(self, reduction="mean"):
        super().__init__("mse", reduction)


class FastL1Loss(FastLoss):
    """nn.L1Loss."""

    def __init__(self, reduction="mean"):
        super().__init__("mae", reduction)


class FastHuberLoss(FastLoss):
    """nn.HuberLoss."""

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__("huber", reduction, delta=delta)


class FastSmoothL1Loss(FastLoss):
    """nn.SmoothL1Loss."""

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__("smooth_l1", reduction, beta=beta)


class FastBCELoss(FastLoss):
    """nn.BCELoss (per-sample weights in forward)."""

    def __init__(self, reduction="mean"):
        super().__init__("binary_cross_entropy", reduction)


class FastBCEWithLogitsLoss(FastLoss):
    """nn.BCEWithLogitsLoss; ``pos_weight`` a scalar."""

    def __init__(self, reduction="mean", pos_weight=None):
        if pos_weight is not None:
            pos_weight = torch.as_tensor(pos_weight)
            if pos_weight.numel() != 1:
                raise ValueError(f"pos_weight must be one number here (fastloss has no per-class "
                                 f"pos_weight), got shape {tuple(pos_weight.shape)}")
            pos_weight = float(pos_weight.reshape(()))
        super().__init__("binary_cross_entropy_with_logits", reduction, pos_weight=pos_weight)


class FastKLDivLoss(FastLoss):
    """nn.KLDivLoss (input holds log-probabilities); reduction "batchmean" too."""

    def __init__(self, reduction="mean", log_target=False):
        super().__init__("kl_div", reduction, log_target=log_target)


class FastPoissonNLLLoss(FastLoss):
    """nn.PoissonNLLLoss with log_input=True (the only form fastloss has)."""

    def __init__(self, log_input=True, full=False, reduction="mean"):
        if not log_input:
            raise ValueError("FastPoissonNLLLoss supports log_input=True only")
        super().__init__("poisson_nll", reduction, full=full)


class _RowLoss(torch.nn.Module):
    # whether (N, C, d1, ...) input is taken, as (N d1 ..., C) rows (PyTorch's CrossEntropyLoss
    # and NLLLoss; MultiMarginLoss takes (N, C) and (C,) only)
    spatial = True

    def forward(self, input, target):
        shape = input.shape[:1] + input.shape[2:]
        if input.dim() == 1:                       # one row of C scores
            input, shape = input.unsqueeze(0), ()
            target = target.reshape(1) if target.dim() == 0 else target.unsqueeze(0)
        elif input.dim() > 2 and self.spatial:     # the class axis last, then rows
            C = input.shape[1]
            input = input.movedim(1, -1).reshape(-1, C)
            target = (target.movedim(1, -1).reshape(-1, C) if target.dim() == len(shape) + 1
                      else target.reshape(-1))
        value = loss_function(input, target, self.loss, reduction=self.reduction)
        return value.reshape(shape) if self.reduction == "none" else value

    def extra_repr(self):
        return f"{self.loss!r}, reduction={self.reduction!r}"


class FastCrossEntropyLoss(_RowLoss):
    """nn.CrossEntropyLoss over (N, C) logits with class-index or probability targets."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__()
        self.loss = get("cross_entropy", class_weight=_class_weight(weight),
                        ignore_index=ignore_index, label_smoothing=label_smoothing)
        self.reduction = reduction


class FastNLLLoss(_RowLoss):
    """nn.NLLLoss over (N, C) log-probabilities."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__()
        self.loss = get("nll", class_weight=_class_weight(weight), ignore_index=ignore_index)
        self.reduction = reduction


class FastMultiMarginLoss(_RowLoss):
    """nn.MultiMarginLoss (p in {1, 2})."""

    spatial = False

    def __init__(self, p=1, margin=1.0, weight=None, reduction="mean"):
        super().__init__()
        self.loss = get("multi_margin", p=p, margin=margin, class_weight=_class_weight(weight))
        self.reduction = reduction
