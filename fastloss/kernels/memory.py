"""Software prefetch for the streaming kernels.

A loop that does tens of operations per element (the transcendental losses)
reads its inputs slowly enough that the hardware prefetchers stop running
ahead of it: at n = 1e7 it ran about 20% slower from memory than from the
last-level cache.  Asking for the cache lines a few pages ahead, one request
per line, a chunk at a time (``prefetch_chunk`` before each ``PREFETCH_CHUNK``
elements), made it run as fast from memory as from cache.  (All at once per
block of 4096 elements, the requests stalled the loop; one per element inside
the loop stopped LLVM vectorizing it.)
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .fmath import SCALAR_OPTIONS
from .llvm_attributes import inlined_jit

# Elements computed between two rounds of prefetch requests, and how far ahead
# (in elements of a 4-byte type: 4 KiB pages) the requested lines lie.
PREFETCH_CHUNK = 256
PREFETCH_DISTANCE = 4096
_LINE = 64


@intrinsic
def _prefetch(typingctx, a, i):
    """A read prefetch (kept in every cache level) of the line holding element i of C-ordered
    a, counted in its memory order (a.flat[i]); no check of i."""
    if not (isinstance(a, types.Array) and a.layout == "C" and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
        address = builder.bitcast(builder.gep(data, [args[1]]), i8p)
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(a, i), codegen


@inlined_jit(**SCALAR_OPTIONS)
def prefetch_range(a, lo, hi):
    """Prefetch the lines of a.flat[lo:hi] (a C-ordered), the part of it inside a (a hint:
    no effect on results)."""
    if a is not None:
        step = max(_LINE // a.itemsize, 1)
        for i in range(np.uint64(lo), np.uint64(min(hi, a.size)), np.uint64(step)):
            _prefetch(a, i)


@inlined_jit(**SCALAR_OPTIONS)
def prefetch_chunk(a, b, c, hi):
    """The end of the chunk of a loop over [., hi) that starts at c, after asking for
    the lines ``PREFETCH_DISTANCE`` elements ahead of it in a and b."""
    e = min(c + PREFETCH_CHUNK, hi)
    prefetch_range(a, c + PREFETCH_DISTANCE, e + PREFETCH_DISTANCE)
    prefetch_range(b, c + PREFETCH_DISTANCE, e + PREFETCH_DISTANCE)
    return e
