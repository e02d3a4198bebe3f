"""Softmax cross-entropy over (N, C) logits: fastloss beside NumPy and PyTorch."""
import numpy as np

import fastloss as fl

from . import bandwidth
from .throughput import best_of_rounds, best_time


def _numpy_forward(labels, x):
    m = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - x[np.arange(x.shape[0]), labels]))


def measure(N=8192, C=32000, repeats=3, peers_too=True):
    """{implementation: seconds} for the forward and forward+backward, float32 logits."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((N, C), dtype=np.float32) * 2)
    labels = rng.integers(0, C, N)
    loss = fl.get("cross_entropy")
    out = np.empty_like(x)
    # the bandwidth timed in turn with the forward, as for the elementwise rows: a read
    # of the logits themselves, as two halves
    half = x.size // 2
    beside = bandwidth.Beside(x.reshape(-1)[:half], x.reshape(-1)[half:2 * half])
    *probe_seconds, forward_seconds = best_of_rounds(beside.runs + [lambda: loss(labels, x)],
                                                     repeats)
    result = {"shape": (N, C), "bytes": x.nbytes, "forward": {"fastloss": forward_seconds},
              "bandwidth": beside.rates(probe_seconds)}
    result["forward_backward"] = {"fastloss": best_time(
        lambda: loss.value_and_grad(labels, x, out=out), repeats)}
    reps = max(1, repeats // 2)
    result["forward"]["numpy"] = best_time(lambda: _numpy_forward(labels, x), reps)
    if peers_too:
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            return result
        xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
        xg = xt.clone().requires_grad_(True)

        def forward_backward():
            xg.grad = None
            F.cross_entropy(xg, yt).backward()

        result["forward"]["torch"] = best_time(lambda: F.cross_entropy(xt, yt).item(), reps)
        result["forward_backward"]["torch"] = best_time(forward_backward, reps)
    return result
