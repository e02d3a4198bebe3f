"""Launch geometry and the deterministic two-step reduction shared by all CUDA kernels.

A reducing kernel runs a fixed grid: every thread adds its elements (a
grid-stride loop) in float64, each block adds its threads' sums with a tree
in shared memory and writes one partial, and the last block to finish (an
integer ticket counts them, as in the CUDA Programming Guide's example of
``__threadfence``) adds all the partials in block order: one launch per
reduction, not a second kernel for the grid's sum.  No floating-point
atomics decide any sum: the same inputs on the same grid give the same bits
on every run.  The grid depends on the input size only, never on the device,
so two GPUs agree too.

Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) every thread is a
Python thread, so blocks and grids are kept small there.
"""

import threading

import numpy as np
from numba import cuda, float64, int32, types
from numba.core import config

SIMULATED = bool(config.ENABLE_CUDASIM)
THREADS = 4 if SIMULATED else 256          # a power of two: the trees halve it
# Four to eight blocks of 256 are resident per SM (64 to 32 registers a thread): on an
# H100/H200's 132 SMs a 4096-block grid is 3.9 to 7.8 waves, so the last, partial wave
# costs little (1024 blocks were 1.9 waves at 64 registers, the second 94% full but then
# reading with half the threads).
MAX_BLOCKS = 2 if SIMULATED else 4096


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


TICKET = MAX_BLOCKS          # counts[TICKET]: how many blocks have stored their partials
RESULT = MAX_BLOCKS          # sums[RESULT], sums[RESULT + 1]: the grid's sum and count


@cuda.jit(device=True, inline="always")
def store_partial(s, k, sums, counts):
    """Store this block's sum of ``s`` (float64) and count ``k``; the grid's last block
    then writes the sums of all blocks' partials, in block order, to sums[RESULT] and
    sums[RESULT + 1] and re-arms the ticket.  Every block of the grid calls it once,
    at its end (a block that returned early would leave the result unwritten)."""
    total = block_sum(s)
    count = block_sum(np.float64(k))          # exact: counts stay far below 2^53
    last = cuda.shared.array(1, int32)
    t = cuda.threadIdx.x
    if t == 0:
        sums[cuda.blockIdx.x] = total
        counts[cuda.blockIdx.x] = np.int64(count)
        cuda.threadfence()                    # the partial is visible before the ticket is
        last[0] = cuda.atomic.add(counts, TICKET, 1) == cuda.gridDim.x - 1
    cuda.syncthreads()
    if last[0]:
        cuda.threadfence()
        s = 0.0
        c = 0.0
        b = np.uint32(t)                      # 32-bit index and float count: no more registers
        while b < cuda.gridDim.x:             # than the loop before it needed (ptxas -v)
            s += cuda.atomic.add(sums, b, 0.0)    # reads from L2: other blocks' stores
            c += np.float64(cuda.atomic.add(counts, b, 0))
            b += np.uint32(THREADS)
        total = block_sum(s)
        count = block_sum(c)
        if t == 0:
            sums[RESULT] = total
            sums[RESULT + 1] = count
            counts[TICKET] = 0


class Partials:
    """Per-block sum and count buffers for up to MAX_BLOCKS blocks, the ticket and the result.

    One set per thread and CUDA context, reused by every call (allocating device
    memory costs more than a small kernel); ``total`` synchronizes, so a call's
    buffers are free again when it returns.
    """

    def __init__(self):
        self.sums = cuda.to_device(np.zeros(MAX_BLOCKS + 2))
        self.counts = cuda.to_device(np.zeros(MAX_BLOCKS + 1, np.int64))
        self.result = self.sums[RESULT:RESULT + 2]
        self.host = cuda.pinned_array(2, np.float64)

    def total(self):
        """(sum, count) of the last reducing kernel launched on these buffers."""
        self.result.copy_to_host(self.host)
        return float(self.host[0]), int(self.host[1])


_pool = threading.local()


def partials():
    """This thread's Partials for the current CUDA context (the simulator's contexts are
    new objects on every call, so there one set serves all, and the tests reuse it
    as a GPU does)."""
    pool = getattr(_pool, "partials", None)
    if pool is None:
        pool = _pool.partials = {}
    key = None if SIMULATED else id(cuda.current_context())
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
    return parts.total()
