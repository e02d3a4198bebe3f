"""Every loss's maths is inlined into its CPU kernels.

A call left in a kernel's loop (LLVM declines to inline a function past its
size threshold, unless it is marked ``alwaysinline`` as
``llvm_attributes.inlined_jit`` marks the loss maths) stops the loop vectorizing: the kernel still gives the right
answer, about ten times slower.  This checks the compiled code itself, not a
timing: no kernel calls a function of ``fastloss.kernels`` (the scalar losses
and ``fmath``); only the Numba runtime and the kernel's own wrapper remain.
"""
import functools
import re

import numpy as np
import pytest

from fastloss.backends import cpu
from fastloss.specs import REGISTRY
from .conftest import LOSS_CASES  # noqa: F401  (registers the test custom loss)

KERNEL_MODULE_SYMBOL = "8fastloss7kernels"      # how Numba mangles fastloss.kernels.*


def _example_arguments(name, kind, dtype):
    spec = REGISTRY[name]
    theta = tuple(p.to_float(p.default) for p in spec.params)
    y = np.full(8, 1.0, dtype)
    p = np.full(8, 0.5, dtype)
    out = np.empty(8, dtype)
    return {
        "reduce_value": (y, p, None, theta),
        "reduce_weighted_value": (y, p, np.ones(8, dtype), theta),
        "value_none": (y, p, None, theta, out),
        "grad": (y, p, None, theta, 1.0, out),
        "value_and_grad": (y, p, None, theta, 1.0, out),
        "grad_hess": (y, p, None, theta, out, out),
    }[kind.removesuffix(cpu.CONSTANT).removesuffix("_f32")]


@functools.lru_cache(maxsize=None)
def _compiled_ir(name):
    """{(kind, signature): LLVM IR} of every kernel of ``name`` (serial builds), each built
    fresh (cached code cannot be inspected) but otherwise as ``cpu.kernels`` builds it
    (``cpu.build_kernels``).  Built as bare templates, a kernel would take its
    callees as they were first compiled in this process: fully optimized in a module of
    their own, or, where an earlier production kernel compiled them, for linking only.
    That mix, which production never sees, changed what LLVM made of a block loop
    written as a helper (huber's grad_hess: its scalar remainder unrolled eight times,
    6 vector and 60 scalar operations, after any serial log_cosh kernel)."""
    kernels = cpu.build_kernels(name, parallel=False, cached=False)
    found = {}
    for kind, kernel in kernels.items():
        dtypes = [np.float32] if "_f32" in kind else [np.float32, np.float64]
        for dtype in dtypes:
            kernel(*_example_arguments(name, kind, dtype))
        for signature, ir in kernel.inspect_llvm().items():
            found[kind, signature] = ir
    return found


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_no_calls_to_loss_maths_remain_in_the_kernels(name):
    for (kind, signature), ir in _compiled_ir(name).items():
        called = set(re.findall(r'call [^@\n]*@"?([\w.$]+)', ir))
        left = sorted(c for c in called if KERNEL_MODULE_SYMBOL in c)
        assert not left, f"{name}.{kind}{signature}: calls {left}"


FLOAT_OP = re.compile(r"= (?:fadd|fsub|fmul|fdiv|fcmp \w+|call [^(]*@llvm\.fma\.[\w.]+)"
                      r"(?: \w+)* (<\d+ x (?:float|double)>|float|double)[ ,(]")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_loss_arithmetic_is_vectorized(name):
    """The loss's floating-point operations appear in vector form.

    A vectorized loop keeps scalar copies (for its remainder, and behind its
    run-time aliasing check), so scalar operations remain: here 0.4 to 1.7
    vector ones per scalar one.  A loop LLVM declined to vectorize (a branch it
    could not turn into a select, as a domain check written with a conditional
    expression once was) leaves none, and the kernel runs several times slower
    with the same results.
    """
    for (kind, signature), ir in _compiled_ir(name).items():
        types = FLOAT_OP.findall(ir)
        vector = sum(t.startswith("<") for t in types)
        assert vector >= 0.2 * (len(types) - vector), (
            f"{name}.{kind}{signature}: {vector} vector and {len(types) - vector} scalar "
            "floating-point operations")


def test_the_llvm_options_are_set_for_float32_data_only(monkeypatch):
    import llvmlite.binding
    from numba import njit
    options = []
    monkeypatch.setattr(llvmlite.binding, "set_option", lambda _, option: options.append(option))
    monkeypatch.setattr(cpu, "has_avx512", lambda: True)

    @njit
    def dot(y, p):
        return (y * p).sum()

    cpu.tuned_for_float32(dot, 4, by_float32=True)
    assert dot(np.ones(3), np.ones(3)) == 3.0
    assert dot(np.ones(3), np.ones(3, np.float32)) == 3.0
    assert options == []
    assert dot(np.ones(3, np.float32), np.ones(3, np.float32)) == 3.0
    assert options == ["-force-vector-interleave=4", "-vectorizer-maximize-bandwidth=true",
                       "-force-vector-interleave=0", "-vectorizer-maximize-bandwidth=false"]
    assert dot(np.ones(3, np.float32), np.ones(3, np.float32)) == 3.0    # compiled once
    assert len(options) == 4


def _llvm_options_asked(monkeypatch, names):
    """{name: {kind: (interleave, by_float32)}} that the kernels of ``names`` ask
    ``tuned_for_float32`` for."""
    tuned = {}
    monkeypatch.setattr(cpu, "tuned_for_float32",
                        lambda disp, interleave, by_float32: tuned.setdefault(
                            disp, (interleave, by_float32)))
    asked = {}
    for name in names:
        cpu.forget(name)
        ks = cpu.kernels(name, False)
        asked[name] = {kind: tuned[disp] for kind, disp in ks.items()}
        cpu.forget(name)
    return asked


def test_kernels_get_the_llvm_options_their_spec_asks_for_on_avx512(monkeypatch):
    monkeypatch.setattr(cpu, "has_avx512", lambda: True)
    asked = _llvm_options_asked(monkeypatch, ("hinge", "log_cosh", "mse", "kl_div"))
    for name in ("hinge", "log_cosh", "mse"):
        spec = REGISTRY[name]
        for kind, options in asked[name].items():
            base = kind.removesuffix("_f32")
            expected = (spec.float32_in_one_pass and base != kind
                        and base not in spec.float32_sum_width_kinds)
            assert options == (spec.float32_interleave, expected), kind
    kl = asked["kl_div"]
    assert {kind: options[0] for kind, options in kl.items()} == dict.fromkeys(kl, 4)
    assert REGISTRY["hinge"].float32_in_one_pass and REGISTRY["log_cosh"].float32_interleave
    sixteen_lanes = {name: [asked[name][k + "_f32"][1] for k in cpu.FLOAT32_KINDS]
                     for name in ("hinge", "log_cosh", "mse")}
    assert sixteen_lanes["hinge"] == [True] * 5
    assert sixteen_lanes["mse"] == [False, False, True, True, True]   # its values at eight
    assert sixteen_lanes["log_cosh"] == [False] * 5                     # two passes


def test_on_avx2_every_float32_kernel_is_one_pass_sized_by_its_inputs(monkeypatch):
    monkeypatch.setattr(cpu, "has_avx512", lambda: False)
    monkeypatch.setattr(cpu, "has_avx2", lambda: True)
    names = [name for name, spec in REGISTRY.items() if spec.float32_value]
    asked = _llvm_options_asked(monkeypatch, names)
    for name in names:
        avx2_interleave = REGISTRY[name].float32_interleave_avx2
        for kind, options in asked[name].items():
            f32 = "_f32" in kind
            assert options == ((avx2_interleave if f32 else 0), f32), (name, kind)
        ks = cpu.kernels(name, False)
        assert ks["value_none_f32"].py_func.__name__ == "value_none", name
        cpu.forget(name)
    assert REGISTRY["sigmoid_focal"].float32_interleave_avx2 == 2


def test_other_cpus_keep_the_two_pass_float32_kernels(monkeypatch):
    monkeypatch.setattr(cpu, "has_avx512", lambda: False)
    monkeypatch.setattr(cpu, "has_avx2", lambda: False)
    assert not cpu.float32_in_one_pass(REGISTRY["log_cosh"])
    assert cpu.float32_in_one_pass(REGISTRY["mse"])
    assert not cpu._sized_by_float32(REGISTRY["log_cosh"], "reduce_value_f32")


@pytest.mark.parametrize("avx512,avx2,expected", [
    (True, True, ["-force-vector-interleave=2", "-vectorizer-maximize-bandwidth=true",
                  "-force-vector-interleave=0", "-vectorizer-maximize-bandwidth=false"]),
    (False, True, ["-force-vector-interleave=2", "-vectorizer-maximize-bandwidth=true",
                   "-force-vector-interleave=0", "-vectorizer-maximize-bandwidth=false"]),
    (False, False, [])], ids=["avx512", "avx2", "neither"])
def test_llvm_options_are_set_on_avx2_and_avx512_cpus_only(monkeypatch, avx512, avx2, expected):
    import llvmlite.binding
    from numba import njit
    options = []
    monkeypatch.setattr(llvmlite.binding, "set_option", lambda _, option: options.append(option))
    monkeypatch.setattr(cpu, "has_avx512", lambda: avx512)
    monkeypatch.setattr(cpu, "has_avx2", lambda: avx2)

    @njit
    def dot(y, p):
        return (y * p).sum()

    cpu.tuned_for_float32(dot, 2, by_float32=True)
    assert dot(np.ones(3, np.float32), np.ones(3, np.float32)) == 3.0
    assert options == expected


def test_the_maths_the_kernels_call_is_built_with_the_kernels_fast_math_flags():
    """A jitted function without fast-math flags of its own takes those of its first
    caller, and Numba reuses that build for every later caller: a first call from plain
    Numba code would leave the kernels compiled after it with a build of fmath without
    fused multiply-adds (other last bits; 1.8x slower binary_cross_entropy_with_logits)."""
    import numba
    from fastloss.kernels import fmath, fmath32, memory
    functions = [f for module in (fmath, fmath32, memory) for f in vars(module).values()
                 if isinstance(f, numba.core.registry.CPUDispatcher)]
    assert len(functions) > 20
    for f in functions:
        assert f.targetoptions.get("fastmath") == cpu.KERNEL_OPTIONS["fastmath"], f.__name__


def _summing_kernel():
    from numba import njit

    @njit
    def total(a):
        s = 0.0
        for x in a:
            s += x
        return s
    return total


def _kernel_attributes(ir):
    """The attributes of each function ``_summing_kernel`` defines itself (not of the
    helpers linked in: Numba compiles those once per process, for whichever caller
    comes first)."""
    groups = dict(re.findall(r"^attributes (#\d+) = \{(.*)\}$", ir, re.M))
    defines = re.findall(r"^define .*5total.*$", ir, re.M)
    return [" ".join(groups.get(g, g) for g in re.findall(r"#\d+", line.rsplit(")", 1)[1])
                     ) for line in defines]


def test_full_width_marks_every_function_it_compiles_for_512_bit_vectors(monkeypatch):
    from numba.core.codegen import CPUCodeLibrary
    from fastloss.kernels import vector_width
    monkeypatch.setattr(vector_width, "has_avx512", lambda: True)
    add_ir_module = CPUCodeLibrary.add_ir_module
    wide = vector_width.full_width(_summing_kernel())
    plain = _summing_kernel()
    assert wide(np.ones(5)) == plain(np.ones(5)) == 5.0
    [wide_ir] = wide.inspect_llvm().values()
    [plain_ir] = plain.inspect_llvm().values()
    assert _kernel_attributes(wide_ir) and all(
        '"prefer-vector-width"="512"' in a for a in _kernel_attributes(wide_ir))
    assert not any('"prefer-vector-width"' in a for a in _kernel_attributes(plain_ir))
    assert CPUCodeLibrary.add_ir_module is add_ir_module    # restored after compiling


def test_full_width_leaves_cpus_without_avx512_alone(monkeypatch):
    from fastloss.kernels import vector_width
    monkeypatch.setattr(vector_width, "has_avx512", lambda: False)
    kernel = _summing_kernel()
    compile_default = kernel.compile
    assert vector_width.full_width(kernel).compile == compile_default


def test_every_loss_kernel_is_compiled_at_full_width(monkeypatch):
    from fastloss.kernels import as_kernel
    widened = []
    monkeypatch.setattr(as_kernel, "full_width", lambda disp: widened.append(disp) or disp)
    cpu.forget("hinge")
    ks = cpu.kernels("hinge", False)
    cpu.forget("hinge")
    assert widened and sorted(map(id, widened)) == sorted(map(id, ks.values()))


_FIRST_COMPILED_OUTSIDE_A_KERNEL = """
import re
import numpy as np
from numba import njit
from numba.core.registry import CPUDispatcher
from fastloss.kernels import fmath, fmath32

@njit(error_model="numpy")
def first_use(x, f):
    return (fmath.fexp(x) + fmath.fexpm1(x) + fmath.flog(x) + fmath.flog1p(x)
            + fmath.flog1p_unit(x) + fmath.flog1p_quotient(x, x) + fmath.fexp_of_float32(f)
            + fmath.flog_of_float32(f) + fmath32.exp(f) + fmath32.exp_nonpositive(-f)
            + fmath32.exp_sum_term(-f) + fmath32.expm1(f) + fmath32.log(f) + fmath32.log1p(f)
            + fmath32.log1p_unit(f) + fmath32.log1p_quotient(f, f))

first_use(0.5, np.float32(0.5))
for module in (fmath, fmath32):
    for name, d in sorted(vars(module).items()):
        if isinstance(d, CPUDispatcher) and d.__module__ == module.__name__:
            for sig in d.signatures:
                ir = d.inspect_llvm(sig)
                attributes = dict(re.findall(r"^attributes (#\\d+) = \\{(.*)\\}", ir, re.M))
                marked = [a for a in re.findall(r"^define .*?@\\S*" + name + r"\\S*\\(.*\\) (?:.*?)(#\\d+)",
                                                ir, re.M) if "alwaysinline" in attributes[a]]
                print(module.__name__, name, bool(marked))
"""


def test_the_maths_is_inlined_whatever_compiled_it_first(tmp_path):
    """Every ``fmath`` and ``fmath32`` function is marked ``alwaysinline`` even when code
    outside any kernel compiled it first.  Marked only when a kernel's compilation
    compiled it (its callees' are marked, ``llvm_attributes``), the cross-entropy
    kernels (not marked) compiled first left ``fmath.flog`` to LLVM's size threshold,
    and kl_div's float32 kernels, compiled after them in the same process, came out
    unvectorized and six times slower (a cold-cache ``fastloss bench``, whose worker
    processes compile the losses in turn).  Run in a fresh process: in this one the
    kernels of earlier tests may have compiled the maths first."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", _FIRST_COMPILED_OUTSIDE_A_KERNEL],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    found = [line.split() for line in run.stdout.splitlines()]
    assert len(found) >= 20, run.stdout
    unmarked = [f"{module}.{name}" for module, name, marked in found if marked != "True"]
    assert not unmarked, unmarked


_AFTER_CROSS_ENTROPY = """
import re
import numpy as np
import fastloss as fl
from fastloss.backends import cpu
from fastloss.examples import inputs
from tests.test_inlined import FLOAT_OP

rng = np.random.default_rng(0)
labels = rng.integers(0, 10, 64)
fl.get("cross_entropy")(labels, rng.standard_normal((64, 10)).astype(np.float32))
for name in ("kl_div", "poisson_nll"):
    y, p = inputs(name, cpu.parallel_min_size(name), rng, np.float32)
    fl.get(name)(y, p)
    fl.get(name).value_and_grad(y, p)
    for kind, kernel in cpu.kernels(name, True).items():
        for sig in kernel.signatures:
            types = FLOAT_OP.findall(kernel.inspect_llvm(sig))
            vector = sum(t.startswith("<") for t in types)
            print(name, kind, vector, len(types) - vector)
"""


def test_kernels_compiled_after_the_cross_entropy_kernels_are_vectorized(tmp_path):
    """The production kernels (parallel, as the bench's worker processes build them) of
    kl_div and poisson_nll, compiled in a process that compiled a cross-entropy kernel
    first, keep their loss arithmetic in vector form (the criterion of
    ``test_the_loss_arithmetic_is_vectorized``).  Before every ``fmath`` function was
    ``inlined_jit``, this order left their float32 loops scalar.  A fresh process, with a
    kernel cache of its own: code loaded from the cache cannot be inspected."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-c", _AFTER_CROSS_ENTROPY], capture_output=True,
                         text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    found = [line.split() for line in run.stdout.splitlines()]
    assert len(found) >= 4, run.stdout
    for name, kind, vector, scalar in found:
        assert int(vector) >= 0.2 * int(scalar), f"{name}.{kind}: {vector} vector, {scalar} scalar"
