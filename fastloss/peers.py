"""How other libraries compute fastloss's losses: the test oracles and benchmark baselines.

``torch_loss(name)`` gives a function (input, target, reduction, **params) in
PyTorch (``torch.nn.functional`` where it has the loss, else the formula in
torch ops, as torchvision writes the focal loss); ``sklearn_loss(name)`` gives
a ``sklearn._loss`` object and the factor that maps it to fastloss's loss.
Both import their library lazily and return None where it has no such loss.
"""


def _reduce(values, reduction):
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _torch_table():
    import torch
    import torch.nn.functional as F

    def signed(y, x):
        return torch.where(y > 0, 1.0, -1.0).to(x.dtype)

    def focal(x, y, reduction, alpha=0.25, gamma=2.0):
        # torchvision.ops.sigmoid_focal_loss
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        loss = ce * ((1 - p_t) ** gamma)
        if alpha >= 0:
            loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
        return _reduce(loss, reduction)

    def bce_logits(x, y, reduction, pos_weight=None):
        pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=x.dtype)
        return F.binary_cross_entropy_with_logits(x, y, reduction=reduction, pos_weight=pw)

    return {
        "mse": lambda x, y, reduction: F.mse_loss(x, y, reduction=reduction),
        "mae": lambda x, y, reduction: F.l1_loss(x, y, reduction=reduction),
        "huber": lambda x, y, reduction, delta=1.0: F.huber_loss(x, y, reduction=reduction,
                                                                 delta=delta),
        "smooth_l1": lambda x, y, reduction, beta=1.0: F.smooth_l1_loss(x, y, reduction=reduction,
                                                                        beta=beta),
        "poisson_nll": lambda x, y, reduction, full=False: F.poisson_nll_loss(
            x, y, log_input=True, full=full, reduction=reduction),
        "binary_cross_entropy": lambda x, y, reduction: F.binary_cross_entropy(
            x, y, reduction=reduction),
        "binary_cross_entropy_with_logits": bce_logits,
        "sigmoid_focal": focal,
        "kl_div": lambda x, y, reduction, log_target=False: F.kl_div(
            x, y, reduction=reduction, log_target=log_target),
        "log_cosh": lambda x, y, reduction: _reduce(torch.log(torch.cosh(x - y)), reduction),
        "pinball": lambda x, y, reduction, quantile=0.5: _reduce(
            torch.maximum(quantile * (y - x), (quantile - 1) * (y - x)), reduction),
        "hinge": lambda x, y, reduction: _reduce(torch.clamp(1 - signed(y, x) * x, min=0),
                                                 reduction),
        "squared_hinge": lambda x, y, reduction: _reduce(
            torch.clamp(1 - signed(y, x) * x, min=0) ** 2, reduction),
    }


_TORCH = None


def torch_loss(name):
    """PyTorch's version of loss ``name``, or None if torch is not installed."""
    global _TORCH
    if _TORCH is None:
        try:
            _TORCH = _torch_table()
        except ImportError:
            return None
    return _TORCH.get(name)


# fastloss name -> (sklearn._loss class, its parameters, factor with fastloss = factor * sklearn)
_SKLEARN = {
    "mse": ("HalfSquaredError", {}, 2.0),
    "mae": ("AbsoluteError", {}, 1.0),
    "pinball": ("PinballLoss", {"quantile": 0.5}, 1.0),
    "poisson_nll": ("HalfPoissonLoss", {}, 1.0),
    "binary_cross_entropy_with_logits": ("HalfBinomialLoss", {}, 1.0),
}


def sklearn_loss(name):
    """(sklearn._loss object, factor) for loss ``name``, or None."""
    if name not in _SKLEARN:
        return None
    try:
        from sklearn._loss import loss as sk
    except ImportError:
        return None
    cls, params, factor = _SKLEARN[name]
    return getattr(sk, cls)(**params), factor
