"""LLVM function attributes that Numba has no option for, and the two fastloss sets.

* ``inlined_jit``: ``alwaysinline``.  A loss's maths is small scalar functions
  that the kernels call in their loops; a call left in a loop stops it
  vectorizing, and LLVM's inliner declines a function past its size threshold,
  which the transcendental losses' maths passes.  Numba's own
  ``inline="always"`` would inline them too, but at the level of Numba's IR,
  where every later pass (the parallel kernels' parfor passes above all) then
  walks and deep-copies the whole inlined body: binary_cross_entropy's first
  float32 value took 5.8 s to compile that way, 3.8 s with the inlining left
  to LLVM, to the same machine code.
* ``vector_width.full_width``: ``"prefer-vector-width"="512"``.

Both work the same way: while a marked dispatcher compiles (under Numba's
compiler lock, which every compilation takes), every function of every LLVM
module Numba lowers gets the attribute, the functions it compiles on the way
(callees compiled for the first time) included.
"""
import contextlib

from numba import njit


@contextlib.contextmanager
def _functions_marked(attribute):
    from numba.core.codegen import CPUCodeLibrary
    add_ir_module = CPUCodeLibrary.add_ir_module

    def add_marked_ir_module(library, ir_module):
        for function in ir_module.functions:
            # not NRT's helpers (NRT_incref is noinline; LLVM rejects both), which the
            # Python wrapper of a function first compiled by a Python call (the CUDA
            # simulator's) brings into the module
            if function.blocks and "noinline" not in function.attributes:
                # llvmlite.ir knows only LLVM's keyword attributes; a string
                # attribute is written out verbatim from the set
                set.add(function.attributes, attribute)
        return add_ir_module(library, ir_module)

    CPUCodeLibrary.add_ir_module = add_marked_ir_module
    try:
        yield
    finally:
        CPUCodeLibrary.add_ir_module = add_ir_module


def compiled_with(dispatcher, attribute):
    """Make ``dispatcher`` give ``attribute`` to the functions it compiles (see above)."""
    compile_default = dispatcher.compile

    def compile(sig):
        from numba.core.compiler_lock import global_compiler_lock
        with global_compiler_lock, _functions_marked(attribute):
            return compile_default(sig)

    dispatcher.compile = compile
    return dispatcher


def inlined_jit(**options):
    """``njit(**options)`` for a function that compiled code calls, inlined by LLVM into
    every caller however long it is (``alwaysinline``).  It keeps its Python
    wrapper (the CUDA simulator calls it from Python) but gets no C one."""
    def decorate(function):
        dispatcher = njit(no_cfunc_wrapper=True, **options)(function)
        return compiled_with(dispatcher, "alwaysinline")
    return decorate
