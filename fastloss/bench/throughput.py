"""Each loss's value and value_and_grad: fastloss beside NumPy, PyTorch and scikit-learn.

The NumPy baseline is fastloss's reference backend (the vectorized textbook
formulas).  PyTorch runs ``torch.nn.functional`` (value: the forward with
reduction "mean"; value_and_grad: forward and backward).  scikit-learn runs its
private ``sklearn._loss`` classes with as many threads as fastloss: ``loss``
(its per-element losses, into a buffer allocated once) and their mean, which is
what ``__call__`` computes, and for value_and_grad ``loss_gradient``
(per-element losses and gradients, into such buffers) followed by the same mean,
so that each peer's result is the pair fastloss returns.  Times are the best of
``repeats`` runs.
"""
import time
from dataclasses import dataclass, field

import numpy as np

import fastloss as fl
from fastloss import peers
from fastloss.bench import bandwidth
from fastloss.examples import domains, draw, inputs
from fastloss.specs import REGISTRY

# Losses measured a second time, on targets other than their examples' (row name, y_true
# domain).  binary_cross_entropy's examples are soft labels in [0, 1]; with 0/1 labels,
# its usual use, its kernels take one logarithm per element instead of two.
EXTRA_CASES = {"binary_cross_entropy": (("binary_cross_entropy, 0/1 labels", "binary"),)}


def best_time(fn, repeats, warmup=True):
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def best_of_rounds(fns, rounds):
    """The best seconds of each of ``fns``, called in turn in each of ``rounds`` rounds.

    Timed in the same rounds, none gets the others' quieter spells of a shared host
    (a share of bandwidth divides a probe's time by a kernel's: a probe timed only
    before and after a kernel's runs can catch a quiet spell the kernel missed, or the
    other way round).  Each timed call comes right after an untimed call of the same
    function, so that it finds the caches as its own last run left them, not as the
    previous function's did: on a host whose caches hold part of the data, a probe
    called right after another that read the same arrays would read faster.
    """
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], best_time(fn, 1, warmup=True))
    return tuple(best)


@dataclass
class Row:
    loss: str
    method: str            # "value" or "value_and_grad"
    bytes_moved: int       # bytes a fused kernel must read (and write)
    seconds: dict = field(default_factory=dict)   # implementation -> best seconds
    # the bandwidth probed in the same rounds as fastloss's runs (bandwidth.Beside)
    bandwidth: dict = None

    def speedup(self, peer):
        if peer not in self.seconds or "fastloss" not in self.seconds:
            return None
        return self.seconds[peer] / self.seconds["fastloss"]

    def gbs(self):
        return self.bytes_moved / self.seconds["fastloss"] / 1e9


def _torch_runners(name, y, p, threads):
    fn = peers.torch_loss(name)
    if fn is None:
        return None, None
    import torch
    torch.set_num_threads(threads)
    x = torch.from_numpy(p)
    t = torch.from_numpy(y)
    xg = x.clone().requires_grad_(True)

    def forward():
        return fn(x, t, "mean").item()

    def forward_backward():
        xg.grad = None
        loss = fn(xg, t, "mean")
        loss.backward()
        return loss.item()

    return forward, forward_backward


def _sklearn_runners(name, y, p, threads):
    found = peers.sklearn_loss(name)
    if found is None:
        return None, None
    sk, _ = found
    # scikit-learn computes in float64 where raw predictions are float32;
    # it takes y_true and raw_prediction of one dtype.
    y_sk = y.astype(p.dtype)
    grad_out = np.empty_like(p)
    loss_out = np.empty_like(p)

    def value():
        # what __call__ computes, into a buffer of its own as loss_gradient's: __call__
        # allocates its losses anew, and in some runs each call's page faults cost 45 ms
        sk.loss(y_sk, p, loss_out=loss_out, n_threads=threads)
        return np.average(loss_out)

    def value_and_grad():
        losses, grad = sk.loss_gradient(y_sk, p, loss_out=loss_out, gradient_out=grad_out,
                                        n_threads=threads)
        return np.average(losses), grad         # as __call__ averages its losses

    return value, value_and_grad


NUMPY_QUICK_FRACTION = 10


def measure(names=None, n=10_000_000, dtype=np.float32, repeats=5, peers_too=True,
            progress=None, quick_baselines=False):
    """Rows of timings for each loss (both methods), side by side in one run.

    fastloss runs ``2 * repeats`` rounds (milliseconds each), in turn with the probes of
    the bandwidth its share is of (``best_of_rounds``); the baselines, tens to
    thousands of times slower, half as often, or once with ``quick_baselines``
    (``fastloss bench --quick``), where they also skip their warm-up run but for
    PyTorch's first loss and scikit-learn's every loss (see below), and NumPy
    runs on a tenth of the elements, its time scaled to n.

    Implementations run in phases (fastloss for every loss, then NumPy, then
    PyTorch, then scikit-learn) rather than interleaved: PyTorch's OpenMP
    threads keep spinning for a while after its calls and would take the
    cores from whatever runs next.
    """
    names = list(names or sorted(REGISTRY))
    threads = fl.get_num_threads()
    rng = np.random.default_rng(0)
    itemsize = np.dtype(dtype).itemsize
    data, losses = {}, {}           # row name -> (y, p), loss name
    drawn = {}                      # (y domain, p domain) -> (y, p): losses share their inputs
    for name in names:
        if domains(name) not in drawn:
            drawn[domains(name)] = inputs(name, n, rng, dtype)
        data[name] = drawn[domains(name)]
        losses[name] = name
        for row, y_domain in EXTRA_CASES.get(name, ()):
            data[row] = draw(y_domain, rng, (n,)).astype(dtype), data[name][1]
            losses[row] = name
    out = np.zeros(n, dtype)         # finite from the start: the probes read it
    rows = {}
    for row, name in losses.items():
        if progress:
            progress(row)
        y, p = data[row]
        loss = fl.get(name)
        value = rows[row, "value"] = Row(row, "value", 2 * itemsize * n)
        fused = rows[row, "value_and_grad"] = Row(row, "value_and_grad", 3 * itemsize * n)
        beside = bandwidth.Beside(y, p, out)
        *probe_seconds, value_seconds, fused_seconds = best_of_rounds(
            beside.runs + [lambda: loss(y, p), lambda: loss.value_and_grad(y, p, out=out)],
            2 * repeats)
        value.seconds["fastloss"], fused.seconds["fastloss"] = value_seconds, fused_seconds
        value.bandwidth = fused.bandwidth = beside.rates(probe_seconds)
    reps = 1 if quick_baselines else max(1, repeats // 2)
    warm = not quick_baselines
    # With quick_baselines, NumPy runs on the first tenth of the elements and its time is
    # scaled by ten: its float64 temporaries make it compute-bound at tens to hundreds of
    # nanoseconds an element (half of --quick's time went to it), so the cost per element
    # barely depends on n, and the smaller temporaries, nearer the caches, favour NumPy.
    part = max(1, n // NUMPY_QUICK_FRACTION) if quick_baselines else n
    for row, name in losses.items():
        y, p = (a[:part] for a in data[row])
        loss = fl.get(name)
        rows[row, "value"].seconds["numpy"] = best_time(
            lambda: loss(y, p, backend="numpy"), reps, warm) * n / part
        rows[row, "value_and_grad"].seconds["numpy"] = best_time(
            lambda: loss.value_and_grad(y, p, backend="numpy"), reps, warm) * n / part
    if peers_too:
        for make_runners, label in ((_torch_runners, "torch"), (_sklearn_runners, "sklearn")):
            started = False
            for row, name in losses.items():
                y, p = data[row]
                runners = make_runners(name, y, p, threads)
                if runners[0] is not None:
                    # a first call starts the library's thread pool, and scikit-learn's
                    # first writes its freshly allocated outputs (page faults)
                    warm_up = warm or not started or label == "sklearn"
                    rows[row, "value"].seconds[label] = best_time(runners[0], reps, warm_up)
                    rows[row, "value_and_grad"].seconds[label] = best_time(runners[1], reps,
                                                                           warm_up)
                    started = True
    return [rows[row, method] for row in losses for method in ("value", "value_and_grad")]


def small_call_overhead(repeats=2000):
    """Microseconds per call at n = 10: fastloss.mse against the NumPy expression."""
    rng = np.random.default_rng(1)
    y, p = rng.random(10), rng.random(10)
    fl.mse(y, p)

    def per_call(fn):
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(repeats):
                fn()
            best = min(best, (time.perf_counter() - t) / repeats)
        return best * 1e6

    return {"fastloss": per_call(lambda: fl.mse(y, p)),
            "numpy": per_call(lambda: np.mean((p - y) ** 2))}
