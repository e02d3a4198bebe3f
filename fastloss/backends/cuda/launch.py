"""Launch geometry and the deterministic two-step reduction shared by all CUDA kernels.

A reducing kernel runs a fixed grid: every thread adds its elements (a
grid-stride loop) in float64, each block adds its threads' sums with a tree
in shared memory and writes one partial, and ``finish`` (one block) adds the
partials, again in a fixed order.  No floating-point atomics: the same inputs
on the same grid give the same bits on every run.  The grid depends on the
input size only, never on the device, so two GPUs agree too.

Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) every thread is a
Python thread, so blocks and grids are kept small there.
"""

import threading

import numpy as np
from numba import cuda, float64, types
from numba.core import config

SIMULATED = bool(config.ENABLE_CUDASIM)
THREADS = 4 if SIMULATED else 256          # a power of two: the trees halve it
MAX_BLOCKS = 2 if SIMULATED else 1024       # about eight resident blocks per SM on an H100/H200


class NoneAsNullPointer:
    """Launch an argument that is None (no weights, no class weights) as the null pointer it is.

    numba-cuda types such an argument ``none``, whose data model is an opaque
    pointer, but its launcher marshals no ``none`` (NotImplementedError), and
    the simulator passes None through.  A numba-cuda launch extension.
    """

    def prepare_args(self, ty, val, stream=None, retr=None):
        if ty == types.none:
            return types.uintp, 0
        return ty, val


def kernel(fn):
    """``cuda.jit`` for a kernel (not a device function) that may be launched with None arguments."""
    if SIMULATED:
        return cuda.jit(fn)
    return cuda.jit(extensions=[NoneAsNullPointer()])(fn)


def blocks_for(n):
    """Blocks of THREADS threads for a grid-stride loop over n elements."""
    return max(1, min(MAX_BLOCKS, -(-n // THREADS)))


@cuda.jit(device=True, inline="always")
def block_sum(value):
    """The sum of ``value`` over the block's threads (float64), returned to thread 0."""
    shared = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    shared[t] = value
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step:
            shared[t] += shared[t + step]
        cuda.syncthreads()
        step //= 2
    total = shared[0]
    cuda.syncthreads()                       # the buffer may be reused by the next call
    return total


@cuda.jit(device=True, inline="always")
def block_max(value):
    """The maximum of ``value`` (never NaN) over the block's threads."""
    shared = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    shared[t] = value
    cuda.syncthreads()
    step = THREADS // 2
    while step > 0:
        if t < step and shared[t + step] > shared[t]:
            shared[t] = shared[t + step]
        cuda.syncthreads()
        step //= 2
    top = shared[0]
    cuda.syncthreads()
    return top


@cuda.jit(device=True, inline="always")
def store_partial(s, k, sums, counts):
    """Block partials: the float64 sum ``s`` and the integer count ``k`` of this block."""
    total = block_sum(s)
    count = block_sum(np.float64(k))          # exact: counts stay far below 2^53
    if cuda.threadIdx.x == 0:
        sums[cuda.blockIdx.x] = total
        counts[cuda.blockIdx.x] = np.int64(count)


@kernel
def finish(sums, counts, blocks, result):
    """result[0] = sum of the first ``blocks`` partial sums, result[1] = of the counts (one block)."""
    s = 0.0
    k = 0
    for b in range(cuda.threadIdx.x, blocks, THREADS):
        s += sums[b]
        k += counts[b]
    total = block_sum(s)
    count = block_sum(np.float64(k))
    if cuda.threadIdx.x == 0:
        result[0] = total
        result[1] = count


class Partials:
    """Per-block sum and count buffers for up to MAX_BLOCKS blocks, and their reduction.

    One set per thread and CUDA context, reused by every call (allocating device
    memory costs more than a small kernel); ``total`` synchronizes, so a call's
    buffers are free again when it returns.
    """

    def __init__(self):
        self.sums = cuda.device_array(MAX_BLOCKS, np.float64)
        self.counts = cuda.device_array(MAX_BLOCKS, np.int64)
        self.result = cuda.device_array(2, np.float64)
        self.host = cuda.pinned_array(2, np.float64)

    def total(self, blocks):
        """(sum, count) over the first ``blocks`` partials, as a Python float and int."""
        finish[1, THREADS](self.sums, self.counts, blocks, self.result)
        self.result.copy_to_host(self.host)
        return float(self.host[0]), int(self.host[1])


_pool = threading.local()


def partials():
    """This thread's Partials for the current CUDA context."""
    pool = getattr(_pool, "partials", None)
    if pool is None:
        pool = _pool.partials = {}
    key = id(cuda.current_context())
    found = pool.get(key)
    if found is None:
        found = pool[key] = Partials()
    return found


def reduce(kernel, n, *args):
    """Launch a reducing kernel over n elements (its last two arguments are the partial
    buffers); (sum, count) over all its blocks."""
    blocks = blocks_for(n)
    parts = partials()
    kernel[blocks, THREADS](*args, parts.sums, parts.counts)
    return parts.total(blocks)
