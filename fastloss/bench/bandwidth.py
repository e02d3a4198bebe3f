"""The memory bandwidth this machine delivers, measured by streaming kernels.

One stream on one thread understates it (a core cannot keep enough loads in
flight), so several streams and every thread count are tried and the best
rate is kept: that is the bound a loss kernel can approach.  The streams are
256 MiB each: on this kind of virtual machine the host's cache can hold more
than the last-level cache the guest reports, and 64 MiB streams measured up to
1.5x the rate that larger ones sustain.
"""
import time

import numba
import numpy as np
from numba import njit, prange

from ..kernels.vector_width import full_width

_BLOCK = 8192


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _read1(a):
    nb = (a.shape[0] + _BLOCK - 1) // _BLOCK
    parts = np.empty(nb)
    for b in prange(nb):
        s = np.float32(0.0)
        for i in range(np.uint64(b * _BLOCK), np.uint64(min(a.shape[0], (b + 1) * _BLOCK))):
            s += a[i]
        parts[b] = s
    return parts.sum()


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _read2(a, c):
    nb = (a.shape[0] + _BLOCK - 1) // _BLOCK
    parts = np.empty(nb)
    for b in prange(nb):
        s = np.float32(0.0)
        for i in range(np.uint64(b * _BLOCK), np.uint64(min(a.shape[0], (b + 1) * _BLOCK))):
            s += a[i] + c[i]
        parts[b] = s
    return parts.sum()


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _read3(a, c, d):
    nb = (a.shape[0] + _BLOCK - 1) // _BLOCK
    parts = np.empty(nb)
    for b in prange(nb):
        s = np.float32(0.0)
        for i in range(np.uint64(b * _BLOCK), np.uint64(min(a.shape[0], (b + 1) * _BLOCK))):
            s += a[i] + c[i] + d[i]
        parts[b] = s
    return parts.sum()


@njit(parallel=True, cache=True)
def _triad(a, c, out):
    nb = (a.shape[0] + _BLOCK - 1) // _BLOCK
    for b in prange(nb):
        for i in range(np.uint64(b * _BLOCK), np.uint64(min(a.shape[0], (b + 1) * _BLOCK))):
            out[i] = a[i] + np.float32(1.5) * c[i]


# compiled as the loss kernels are: the probes should not be held to a narrower vector
for _probe in (_read1, _read2, _read3, _triad):
    full_width(_probe)


def _best(fn, args, repeats):
    fn(*args)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def measure(n=1 << 26, repeats=3, max_threads=None):
    """{"read": GB/s, "read_write": GB/s, "detail": [...]}: best over streams and threads.

    ``n`` float32 per stream (256 MiB by default, far beyond any cache).
    ``read_write`` is a triad kernel, two reads and one write, counted as 3 streams.
    """
    a, c, d = (np.full(n, k, dtype=np.float32) for k in (1.0, 2.0, 3.0))
    out = np.empty_like(a)
    previous = numba.get_num_threads()
    detail = []
    try:
        for threads in range(1, (max_threads or numba.config.NUMBA_NUM_THREADS) + 1):
            numba.set_num_threads(threads)
            for label, fn, args, streams in (("read x1", _read1, (a,), 1),
                                             ("read x2", _read2, (a, c), 2),
                                             ("read x3", _read3, (a, c, d), 3),
                                             ("2 read + 1 write", _triad, (a, c, out), 3)):
                seconds = _best(fn, args, repeats)
                detail.append((label, threads, streams * 4 * n / seconds / 1e9))
    finally:
        numba.set_num_threads(previous)
    read = max(gbs for label, _, gbs in detail if label.startswith("read"))
    read_write = max(gbs for label, _, gbs in detail if "write" in label)
    return {"read": read, "read_write": read_write, "detail": detail}


class Beside:
    """Quick probes over the benchmark's own arrays, to time in turn with each measurement
    (``throughput.best_of_rounds``).

    The machine's bandwidth changes while a benchmark runs (neighbours on the
    host), and arrays of the benchmark's size can read faster than the 256 MiB
    streams of ``measure`` (the host's caches): a share judged against either alone
    can exceed 100% or understate one.  The probes read (and write) the very
    arrays the measured kernel does, so that both find the caches in the same
    state: on a host whose caches hold part of the data, probes over arrays of
    their own took the cache from the kernel (mse's value at n = 1e7 float32 took
    1.7 ms in a loop of its own and 2.7 ms right after a read of 80 MB of other
    arrays, on an Intel host with a 480 MiB cache) and the other way round.

    ``runs``: the probes as calls: a read of (a, c), and with ``out`` (an array
    of a's size and type, holding finite values) a read of (a, c, out) and the
    triad out = a + 1.5 c; all threads.  ``rates`` turns their best seconds into GB/s.
    """

    def __init__(self, a, c, out=None):
        self.runs = [lambda: _read2(a, c)]
        self._moved = [(a.nbytes + c.nbytes, "read")]
        if out is not None:
            self.runs += [lambda: _read3(a, c, out), lambda: _triad(a, c, out)]
            self._moved += [(a.nbytes + c.nbytes + out.nbytes, "read"),
                            (a.nbytes + c.nbytes + out.nbytes, "read_write")]

    def rates(self, seconds):
        """{"read": GB/s, "read_write": GB/s} from the best seconds of each of ``runs``
        (read_write 0.0 without ``out``)."""
        rates = {"read": 0.0, "read_write": 0.0, "detail": []}
        for (nbytes, rate), s in zip(self._moved, seconds):
            rates[rate] = max(rates[rate], nbytes / s / 1e9)
        return rates


def best_of(*measurements):
    """The better of several ``measure`` results (each rate's maximum, all the detail)."""
    return {"read": max(m["read"] for m in measurements),
            "read_write": max(m["read_write"] for m in measurements),
            "detail": [d for m in measurements for d in m["detail"]]}
