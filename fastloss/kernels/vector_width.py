"""Compile kernels for the full width of AVX-512 registers on every AVX-512 CPU.

LLVM sizes vectorized loops by the target's preferred vector width.  For
Intel's AVX-512 CPUs (Skylake-X through Emerald Rapids) it prefers 256 bits,
a default chosen for the clock penalty 512-bit instructions carried on the
first of them; for AMD's Zen 4 it prefers 512.  So the same kernel ran sixteen
float32 lanes on Zen 4 and eight on an Emerald Rapids Xeon, where marking it
for 512 bits made the transcendental losses' float32 values 20-30% faster
(binary_cross_entropy 5.5 -> 3.9 ms at n = 1e7 on 2 cores, poisson_nll
5.6 -> 4.1), hinge's 25%, the float64 ones of binary_cross_entropy_with_logits
and log_cosh 20-25%, and the memory-bound ones the same.

The preference is a function attribute (clang's ``-mprefer-vector-width``)
that Numba has no option for, set as ``llvm_attributes`` sets attributes.  On
CPUs without AVX-512 nothing changes.
"""
from .llvm_attributes import compiled_with

_WIDTH_ATTRIBUTE = '"prefer-vector-width"="512"'


def has_avx512():
    import llvmlite.binding as llvm
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


def has_avx2():
    import llvmlite.binding as llvm
    return bool(llvm.get_host_cpu_features().get("avx2", False))


def full_width(dispatcher):
    """Make ``dispatcher`` compile its signatures for 512-bit vectors on AVX-512 CPUs."""
    if not has_avx512():
        return dispatcher
    return compiled_with(dispatcher, _WIDTH_ATTRIBUTE)
