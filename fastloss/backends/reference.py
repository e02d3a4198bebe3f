"""The NumPy reference backend: each loss written again from its textbook formula.

Vectorized, computed in float64, numerically stable, and independent of the
Numba scalar maths, so that the tests can catch mistakes in either.  It is
also the baseline that the benchmarks compare against.  Each entry of
``FORMULAS`` is (value, dl/dp, d2l/dp2), functions of (y, p, **params).
A NaN in y or p gives NaN in all three, constant derivatives included (the
``_nan_of`` and ``+ 0 * y`` terms), as the compiled backends do.
"""
import numpy as np

from .. import _validation as arrays  # noqa: F401  (host arrays in, host arrays out)
from ..specs import REGISTRY


def _sigmoid(x):
    """1 / (1 + e^-x) without overflow in either direction."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _nan_of(y, p):
    """NaN where y or p is NaN or infinite, else 0: for the derivatives that are constant
    in pieces; 0 (p - y) would also be NaN where p - y overflows from finite inputs."""
    return np.where(np.isfinite(y) & np.isfinite(p), 0.0, np.nan)


def _softplus(x):
    """log(1 + e^x)."""
    return np.logaddexp(0.0, x)


def mse_value(y, p):
    return (p - y) ** 2


def mse_grad(y, p):
    return 2 * (p - y)


def mse_hess(y, p):
    return 2.0 + _nan_of(y, p)


def mae_value(y, p):
    return np.abs(p - y)


def mae_grad(y, p):
    return np.sign(p - y)


def mae_hess(y, p):
    return _nan_of(y, p)


def huber_value(y, p, delta):
    r = p - y
    return np.where(np.abs(r) < delta, 0.5 * r ** 2, delta * (np.abs(r) - 0.5 * delta))


def huber_grad(y, p, delta):
    return np.clip(p - y, -delta, delta)


def huber_hess(y, p, delta):
    return (np.abs(p - y) < delta) + _nan_of(y, p)


def smooth_l1_value(y, p, beta):
    if beta == 0:
        return mae_value(y, p)
    r = p - y
    return np.where(np.abs(r) < beta, 0.5 * r ** 2 / beta, np.abs(r) - 0.5 * beta)


def smooth_l1_grad(y, p, beta):
    if beta == 0:
        return mae_grad(y, p)
    r = p - y
    return np.where(np.abs(r) < beta, r / beta, np.sign(r))


def smooth_l1_hess(y, p, beta):
    if beta == 0:
        return mae_hess(y, p)
    return (np.abs(p - y) < beta) / beta + _nan_of(y, p)


def log_cosh_value(y, p):
    r = p - y
    # logaddexp(r, -r) - log 2 cancels for small r, where the series
    # r^2/2 - r^4/12 + r^6/45 - 17 r^8/2520 is exact to float64.
    r2 = r * r
    series = r2 * (0.5 - r2 * (1 / 12 - r2 * (1 / 45 - r2 * 17 / 2520)))
    return np.where(np.abs(r) < 1e-3, series, np.logaddexp(r, -r) - np.log(2.0))


def log_cosh_grad(y, p):
    return np.tanh(p - y)


def log_cosh_hess(y, p):
    return 1.0 / np.cosh(np.minimum(np.abs(p - y), 710.0)) ** 2


def pinball_value(y, p, quantile):
    r = y - p
    return np.where(r >= 0, quantile * r, (quantile - 1) * r)


def pinball_grad(y, p, quantile):
    return np.where(y >= p, -quantile, 1 - quantile) + _nan_of(y, p)


def pinball_hess(y, p, quantile):
    return _nan_of(y, p)


def poisson_nll_value(y, p, full):
    # where e^p overflows, so does the value (y p may overflow too: inf - inf)
    value = np.exp(p) - y * np.where(p < 709.79, p, 0.0)
    if full:
        safe = np.where(y > 1, y, 2.0)
        stirling = safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe)
        value = value + np.where(y > 1, stirling, 0.0)
    return value


def poisson_nll_grad(y, p, full):
    return np.exp(p) - y


def poisson_nll_hess(y, p, full):
    return np.exp(p) + 0 * y


def kl_div_value(y, p, log_target):
    if log_target:
        return np.exp(y) * (y - p)
    safe = np.where(y > 0, y, 1.0)
    xlogy = np.where(y > 0, y * np.log(safe), np.where(y == 0, 0.0, np.nan))
    return xlogy - y * p


def kl_div_grad(y, p, log_target):
    return (-np.exp(y) if log_target else -y) + 0 * p


def kl_div_hess(y, p, log_target):
    return 0 * (y + p)


def _signed(y):
    return np.where(y > 0, 1.0, -1.0) + 0 * y


def hinge_value(y, p):
    return np.maximum(0.0, 1 - _signed(y) * p)


def hinge_grad(y, p):
    t = _signed(y)
    return np.where(1 - t * p > 0, -t, 0.0) + 0 * (y + p)


def hinge_hess(y, p):
    return 0 * (y + p)


def squared_hinge_value(y, p):
    return np.maximum(0.0, 1 - _signed(y) * p) ** 2


def squared_hinge_grad(y, p):
    t = _signed(y)
    return -2 * t * np.maximum(0.0, 1 - t * p)


def squared_hinge_hess(y, p):
    return np.where(_signed(y) * p < 1, 2.0, 0.0) + 0 * (y + p)


def binary_cross_entropy_value(y, p):
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), -100.0)
        log_1mp = np.maximum(np.log1p(-p), -100.0)
    return -(y * log_p + (1 - y) * log_1mp)


def binary_cross_entropy_grad(y, p):
    return (p - y) / np.maximum(p * (1 - p), 1e-12)


def binary_cross_entropy_hess(y, p):
    return y / np.maximum(p ** 2, 1e-12) + (1 - y) / np.maximum((1 - p) ** 2, 1e-12)


def _pw(pos_weight):
    return 1.0 if pos_weight is None else pos_weight


def binary_cross_entropy_with_logits_value(y, x, pos_weight):
    # PyTorch's form: (1 - y) x + (1 + (pos_weight - 1) y) softplus(-x), with
    # softplus(-x) = max(-x, 0) + log1p(e^-|x|) kept in two terms so that the
    # small tail is not absorbed before the linear terms cancel; for x < 0 the
    # linear terms are -pos_weight y x, which keeps x = -inf from giving inf - inf.
    log_weight = 1 + (_pw(pos_weight) - 1) * y
    linear = np.where(x >= 0, (1 - y) * x, -_pw(pos_weight) * y * x)
    return linear + log_weight * np.log1p(np.exp(-np.abs(x)))


def binary_cross_entropy_with_logits_grad(y, x, pos_weight):
    return (1 - y) * _sigmoid(x) - _pw(pos_weight) * y * _sigmoid(-x)


def binary_cross_entropy_with_logits_hess(y, x, pos_weight):
    return (1 + (_pw(pos_weight) - 1) * y) * _sigmoid(x) * _sigmoid(-x)


def _focal_parts(y, x, alpha, gamma):
    # torchvision.ops.sigmoid_focal_loss, with log(p_t) and log(1 - p_t) from
    # log-sigmoid terms so that nothing over- or underflows.
    pos = y > 0.5
    log_pt = -_softplus(np.where(pos, -x, x))
    log_q = -_softplus(np.where(pos, x, -x))
    alpha_t = np.where(pos, alpha, 1 - alpha) if alpha >= 0 else np.ones_like(x)
    c = np.where(pos, -1.0, 1.0)          # d(1 - p_t)/dx = c p_t (1 - p_t)
    return alpha_t + 0 * y, -log_pt, np.exp(log_pt), np.exp(log_q), np.exp(gamma * log_q), c


def sigmoid_focal_value(y, x, alpha, gamma):
    alpha_t, ce, pt, q, qg, c = _focal_parts(y, x, alpha, gamma)
    return alpha_t * ce * qg


def sigmoid_focal_grad(y, x, alpha, gamma):
    alpha_t, ce, pt, q, qg, c = _focal_parts(y, x, alpha, gamma)
    return alpha_t * qg * (c * q + gamma * c * (ce * pt))     # ce pt = -pt log pt <= 1/e


def sigmoid_focal_hess(y, x, alpha, gamma):
    alpha_t, ce, pt, q, qg, c = _focal_parts(y, x, alpha, gamma)
    return alpha_t * qg * (pt * q * (1 + 2 * gamma) + gamma * (ce * pt) * (gamma * pt - q))


FORMULAS = {name: tuple(globals()[f"{name}_{part}"] for part in ("value", "grad", "hess"))
            for name, spec in REGISTRY.items() if not spec.custom}

DOMAIN_MASKS = {
    "real": lambda v: np.ones(v.shape, bool),
    "unit": lambda v: ~((v < 0) | (v > 1)),
    "nonneg": lambda v: ~(v < 0),
    "binary": lambda v: (v == 0) | (v == 1) | np.isnan(v),
    "signed_binary": lambda v: (v == -1) | (v == 0) | (v == 1) | np.isnan(v),
}


def invalid_mask(name, y, p):
    spec = REGISTRY[name]
    return ~(DOMAIN_MASKS[spec.y_domain](y) & DOMAIN_MASKS[spec.p_domain](p))


def _params(name, theta):
    params = {}
    for param, value in zip(REGISTRY[name].params, theta):
        if param.name in ("full", "log_target"):
            value = bool(value)
        params[param.name] = value
    return params


def evaluate(name, y, p, theta, parts):
    """The requested parts (indices into (value, grad, hess)) as float64 arrays."""
    params = _params(name, theta)
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    formulas = FORMULAS.get(name) or _custom_formulas(name)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return [formulas[k](y, p, **params) for k in parts]


# -- custom losses: the user's function run in Python, element by element ----------

_CUSTOM_FORMULAS = {}


def _custom_formulas(name):
    """(value, grad, hess) of a custom loss, from its Python function and Python jets.

    Independent of the compiled path (Numba's typing, the kernel templates and
    the Numba jet type), slow, and meant for tests and small inputs.
    """
    formulas = _CUSTOM_FORMULAS.get(name)
    if formulas is None:
        from ..custom import get_custom
        from ..kernels.jet import Jet, first, second
        value, grad, hess = get_custom(name).py

        def elementwise(fn):
            fn = like_kernels(fn)

            def run(y, p, **params):
                th = tuple(params.values())
                out = np.frompyfunc(lambda yi, pi: fn(yi, pi, th), 2, 1)(y, p)
                return np.asarray(out, dtype=np.float64)
            return run

        def on_jet(f, part):
            return lambda y, p, th: part(f(np.float64(y), Jet(p, 1.0, 0.0), *th))

        def plain(f):
            return lambda y, p, th: f(np.float64(y), np.float64(p), *th)

        def like_kernels(fn):
            # Python's math raises where the kernels give inf or nan
            def run(y, p, th):
                try:
                    return fn(y, p, th)
                except OverflowError:
                    return np.inf
                except (ValueError, ZeroDivisionError):
                    return np.nan
            return run

        formulas = (elementwise(plain(value)),
                    elementwise(plain(grad) if grad else on_jet(value, first)),
                    elementwise(plain(hess) if hess else
                                on_jet(grad, first) if grad else on_jet(value, second)))
        _CUSTOM_FORMULAS[name] = formulas
    return formulas


def forget(name):
    _CUSTOM_FORMULAS.pop(name, None)


def _bad(name, y, p):
    return int(np.count_nonzero(invalid_mask(name, y, p)))


def _weighted(a, w):
    return a if w is None else a * np.asarray(w, dtype=np.float64)


def reduce_value(name, y, p, w, theta):
    (value,) = evaluate(name, y, p, theta, (0,))
    return float(np.sum(_weighted(value, w))), _bad(name, y, p)


# the invalid inputs are counted before any output is written: out may be y_true or y_pred

def value_none(name, y, p, w, theta, out):
    (value,) = evaluate(name, y, p, theta, (0,))
    bad = _bad(name, y, p)
    out[...] = _weighted(value, w)
    return bad


def grad(name, y, p, w, theta, scale, out):
    (g,) = evaluate(name, y, p, theta, (1,))
    bad = _bad(name, y, p)
    out[...] = _weighted(g * scale, w)
    return bad


def value_and_grad(name, y, p, w, theta, scale, out):
    value, g = evaluate(name, y, p, theta, (0, 1))
    bad = _bad(name, y, p)
    out[...] = _weighted(g * scale, w)
    return float(np.sum(_weighted(value, w))), bad


def grad_hess(name, y, p, w, theta, gout, hout):
    g, h = evaluate(name, y, p, theta, (1, 2))
    bad = _bad(name, y, p)
    gout[...] = _weighted(g, w)
    hout[...] = _weighted(h, w)
    return bad


def weight_stats(w):
    w = np.asarray(w, dtype=np.float64)
    return float(np.sum(w)), int(np.count_nonzero(w < 0))


# -- softmax cross-entropy over rows (independent of fastloss.kernels.softmax) --

def _log_softmax_and_lse(z):
    """(log softmax of each row, its log-sum-exp), both from the row's maximum."""
    m = np.max(z, axis=1, keepdims=True)
    shifted = z - m
    log_sum = np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    return shifted - log_sum, (m + log_sum)[:, 0]


def _log_softmax(z):
    return _log_softmax_and_lse(z)[0]


def _ce_target_weights(labels, targets, class_weight, ignore_index, eps, C):
    """(N, C) weight of each class in each row's target, PyTorch's definition."""
    w = np.ones(C) if class_weight is None else np.asarray(class_weight, dtype=np.float64)
    if labels is None:
        q = (1 - eps) * np.asarray(targets, dtype=np.float64) + eps / C
        return q * w
    N = labels.shape[0]
    keep = labels != ignore_index
    onehot = np.zeros((N, C))
    onehot[np.flatnonzero(keep), labels[keep]] = 1.0
    return ((1 - eps) * onehot + eps / C * keep[:, None]) * w


def cross_entropy_rows(x, labels, targets, class_weight, sample_weight, ignore_index, eps, z,
                       softcap):
    """Per-row losses (N,) and the gradient of their sum (N, C), in float64."""
    x = np.asarray(x, dtype=np.float64)
    N, C = x.shape
    with np.errstate(over="ignore", under="ignore"):
        zc = x if softcap is None else softcap * np.tanh(x / softcap)
        logp, lse = _log_softmax_and_lse(zc) if C else (np.zeros((N, 0)), np.zeros(N))
    b = _ce_target_weights(labels, targets, class_weight, ignore_index, eps, C)
    keep = np.ones(N, bool) if labels is None else labels != ignore_index
    r = np.ones(N) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    r = r * keep
    # a class with no target weight adds nothing, even where its logit is -inf (a masked class)
    rows = r * (-(b * np.where(b != 0, logp, 0.0)).sum(axis=1) + z * lse ** 2)
    p = np.exp(logp)
    grad = r[:, None] * (b.sum(axis=1, keepdims=True) * p - b + 2 * z * lse[:, None] * p)
    if softcap is not None:
        grad = grad * (1 - np.tanh(x / softcap) ** 2)
    return rows, grad


def cross_entropy_diag_hess(x, labels, targets, class_weight, sample_weight, ignore_index, eps):
    """Diagonal of the Hessian of the summed loss: a_i p_ij (1 - p_ij)."""
    x = np.asarray(x, dtype=np.float64)
    N, C = x.shape
    p = np.exp(_log_softmax(x))
    b = _ce_target_weights(labels, targets, class_weight, ignore_index, eps, C)
    r = np.ones(N) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return (r * b.sum(axis=1))[:, None] * p * (1 - p)


def multi_margin_rows(x, labels, class_weight, sample_weight, power, margin):
    """F.multi_margin_loss per row (N,) and the gradient of the summed rows (N, C)."""
    x = np.asarray(x, dtype=np.float64)
    N, C = x.shape
    rows = np.arange(N)
    h = np.maximum(0.0, margin - x[rows, labels][:, None] + x)
    h[rows, labels] = 0.0
    w = np.ones(N) if class_weight is None else np.asarray(class_weight, dtype=np.float64)[labels]
    if sample_weight is not None:
        w = w * np.asarray(sample_weight, dtype=np.float64)
    terms = h if power == 1 else h ** 2
    slopes = np.where(np.isnan(h), np.nan, h > 0) if power == 1 else 2 * h
    grad = (w / C)[:, None] * slopes
    grad[rows, labels] = -grad.sum(axis=1)
    return w / C * terms.sum(axis=1), grad


def multi_margin_diag_hess(x, labels, class_weight, sample_weight, power, margin):
    """Diagonal of the Hessian of the summed F.multi_margin_loss: 0 for p = 1; for p = 2,
    2 w / C where class j's term max(0, margin - x_t + x_j) is positive, and at the target
    the sum of those (d2/dx_t^2 of each term equals d2/dx_j^2).  NaN where a term is NaN."""
    x = np.asarray(x, dtype=np.float64)
    N, C = x.shape
    rows = np.arange(N)
    z = margin - x[rows, labels][:, None] + x
    z[rows, labels] = 0.0
    curvature = np.where(np.isnan(z), np.nan, 0.0 if power == 1 else 2.0 * (z > 0))
    w = np.ones(N) if class_weight is None else np.asarray(class_weight, dtype=np.float64)[labels]
    if sample_weight is not None:
        w = w * np.asarray(sample_weight, dtype=np.float64)
    hess = (w / C)[:, None] * curvature
    hess[rows, labels] = hess.sum(axis=1)
    return hess


def softmax_focal_rows(x, labels, sample_weight, gamma):
    """-(1 - p_t)^gamma log p_t per row (N,) and the gradient of their sum (N, C)."""
    x = np.asarray(x, dtype=np.float64)
    N, C = x.shape
    logp = _log_softmax(x)
    lp = logp[np.arange(N), labels]
    q = -np.expm1(lp)
    with np.errstate(divide="ignore", invalid="ignore"):
        qg = np.ones(N) if gamma == 0 else np.where(q > 0, q ** gamma, 0.0)
        ratio = np.where(q > 1e-300, lp / q, -1.0)
    r = np.ones(N) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    a = r * qg * (gamma * np.exp(lp) * ratio - 1.0)
    onehot = np.zeros((N, C))
    onehot[np.arange(N), labels] = 1.0
    return -r * qg * lp, a[:, None] * (onehot - np.exp(logp))


def softmax_focal_diag_hess(x, labels, sample_weight, gamma):
    """Diagonal of the Hessian of the summed softmax focal loss.

    l = f(u) with u = p_t and f(u) = -(1 - u)^gamma log u.  The gradient is
    a(u) (delta_tj - p_j) with a(u) = u f'(u), since du/dx_j = u (delta_tj - p_j), so
    d2 l / dx_j^2 = a'(u) u (delta_tj - p_j)^2 - a(u) p_j (1 - p_j), where
    a'(u) u = gamma u (1 - u)^(gamma - 2) ((1 - gamma u) log u + 2 (1 - u)).  The factor
    (1 - u)^(gamma - 2) (delta_tj - p_j)^2 is taken as (1 - u)^gamma times the square of
    (delta_tj - p_j) / (1 - u), which is at most 1 (and 0 where u = 1).
    """
    x = np.asarray(x, dtype=np.float64)
    N, C = x.shape
    logp = _log_softmax(x)
    p = np.exp(logp)
    lp = logp[np.arange(N), labels]
    u = np.exp(lp)
    q = -np.expm1(lp)
    onehot = np.zeros((N, C))
    onehot[np.arange(N), labels] = 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        qg = np.ones(N) if gamma == 0 else np.where(q > 0, q ** gamma, 0.0)
        d = np.where(q[:, None] > 0, (onehot - p) / q[:, None], 0.0)
        a = np.where(q > 1e-300, gamma * u * qg * lp / q, -gamma * u * qg) - qg
    curvature = gamma * u * qg * ((1 - gamma * u) * lp + 2 * q)
    r = np.ones(N) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return r[:, None] * (curvature[:, None] * d ** 2 - a[:, None] * p * (1 - p))
