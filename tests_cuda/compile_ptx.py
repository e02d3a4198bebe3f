"""Compile every CUDA kernel of fastloss to PTX for sm_90 (H100/H200) without a GPU.

The simulator runs the kernels' Python, not their compiled form; this script
runs the real numba-cuda compiler (NVVM from the CUDA toolkit) on each
kernel with the argument types the backend launches it with, and, where
``ptxas`` is found, assembles the PTX as well.  It needs no driver: numba-cuda
asks the current device for its compute capability only to compile device
functions, and here is told (9, 0).  Exit status 0: all compiled; 77: no
NVVM on this machine (the test skips); 1: a kernel failed, printed.

    NUMBA_ENABLE_CUDASIM=0 python -m tests_cuda.compile_ptx [--all] [--stats] [--part K/N]

Without ``--all`` it compiles a covering set: every kernel of one loss
(``EVERY_KERNEL_OF``), and of every other loss the kernels that between them call each
of its device functions (value, gradient, Hessian, domain check) at float32 and float64,
weighted and not, in float64 and float32 working types: ``value_and_grad``,
``grad_hess``, ``value_and_grad_f32`` and ``reduce_value_f32`` with integer targets.
The templates are the same for every loss (``backends.cuda.elementwise``), so what the
full set adds is the same code once more per loss, at 0.9 s of compiling a kernel.

``--stats`` also prints each kernel's registers and spills (``ptxas -v``) and the
instruction mix of its main loop: a static look at the kernels without a GPU
(pip install nvidia-cuda-nvcc-cu12 nvidia-cuda-nvrtc-cu12 gives NVVM, NVRTC and
ptxas where no CUDA toolkit is installed).  ``--part K/N`` compiles the K-th of N
consecutive slices of the kernels only (K from 0), so that the test can spread
the five minutes of compiling over pytest's workers.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

CC = (9, 0)
EVERY_KERNEL_OF = "binary_cross_entropy"
# of the other losses: (kernel, float32 targets and predictions, or float64 ones with weights)
_COVERING = {("value_and_grad", "f32"), ("value_and_grad", "f64"), ("grad_hess", "f32"),
             ("grad_hess", "f64"), ("value_and_grad_f32", "f32"), ("reduce_value_f32", "i64")}


def _fake_device():
    dispatcher = sys.modules["numba.cuda.dispatcher"]

    class Device:
        compute_capability = CC

    dispatcher.get_current_device = lambda: Device()


def _cases(every=True):
    """(label, kernel, example arguments) for every kernel the backend launches, or
    without ``every`` for the covering set (see the module's docstring)."""
    from tests.conftest import LOSS_CASES  # noqa: F401  (registers the test's custom loss)
    from fastloss.backends.cuda import elementwise, launch, rows
    from fastloss.specs import REGISTRY

    f32, f64, i64 = np.zeros(4, np.float32), np.zeros(4), np.zeros(4, np.int64)
    sums, counts = np.zeros(2), np.zeros(2, np.int64)
    for name, spec in REGISTRY.items():
        theta = tuple(0.5 for _ in spec.params)
        ks = elementwise.templates(name)
        def chosen(cases, tag):
            return (c for c in cases if every or name == EVERY_KERNEL_OF
                    or (c[0].split(".")[1], tag) in _COVERING)

        for dtype_array, w in ((f32, None), (f64, f64)):
            y = p = out = dtype_array
            yield from chosen((
                (f"{name}.reduce_value", ks["reduce_value"], (y, p, w, 1, theta, sums, counts)),
                (f"{name}.value_none", ks["value_none"], (y, p, w, 1, theta, out, sums, counts)),
                (f"{name}.grad", ks["grad"], (y, p, w, 1, theta, 1.0, out, sums, counts)),
                (f"{name}.value_and_grad", ks["value_and_grad"],
                 (y, p, w, 1, theta, 1.0, out, sums, counts)),
                (f"{name}.grad_hess", ks["grad_hess"], (y, p, w, 1, theta, out, out, sums, counts))),
                str(y.dtype)[0] + str(y.dtype)[-2:])
        if spec.float32_value:
            for y, w in ((f32, None), (f64, f64), (i64, f32)):
                yield from chosen((
                    (f"{name}.reduce_value_f32", ks["reduce_value_f32"],
                     (y, f32, w, 1, theta, sums, counts)),
                    (f"{name}.value_none_f32", ks["value_none_f32"],
                     (y, f32, w, 1, theta, f32, sums, counts))), str(y.dtype)[0] + str(y.dtype)[-2:])
            yield from chosen((
                (f"{name}.grad_f32", ks["grad_f32"], (f32, f32, None, 1, theta, 1.0, f32, sums,
                                                      counts)),
                (f"{name}.value_and_grad_f32", ks["value_and_grad_f32"],
                 (f32, f32, None, 1, theta, 1.0, f32, sums, counts))), "f32")
    yield "sum_and_negatives", elementwise.sum_and_negatives, (f64, sums, counts)
    yield "copy_1d", elementwise.copy_1d, (f64, np.zeros(4, np.float16))
    yield "copy_2d", elementwise.copy_2d, (np.zeros((3, 4), np.float32).T, f32)

    for x in (np.zeros((4, 5), np.float32), np.zeros((4, 5))):
        cw, rw, rows_out = np.ones(5), np.ones(4), np.zeros(4)
        yield "label_check", rows.label_check, (i64, 5, -100, cw, rw, i64[:1], sums, counts)
        for cap, weights, grad, hess in ((None, None, x, None), (30.0, rw, x, None),
                                         (None, rw, None, None), (None, None, x, x)):
            yield ("cross_entropy_labels", rows.cross_entropy_labels,
                   (x, i64, cw, weights, -100, 0.1, 0.0, cap, 1.0, grad, hess, rows_out))
            yield ("cross_entropy_targets", rows.cross_entropy_targets,
                   (x, x, None, weights, 0.0, 1e-4, cap, 1.0, grad, hess, rows_out))
        for hess in (None, x):
            yield "softmax_focal", rows.softmax_focal, (x, i64, rw, 2.0, 1.0, x, hess, rows_out)
        for hess in (None, x):
            yield "multi_margin", rows.multi_margin, (x, i64, cw, None, 2, 1.0, 1.0, x, hess,
                                                      rows_out)
        yield "nll", rows.nll, (x, i64, cw, rw, -100, 1.0, x, rows_out)


def _toolkit_missing():
    """The errors that mean no NVVM or NVRTC here (the test skips); any other error fails it."""
    from numba.cuda.cudadrv.error import CudaSupportError, NvrtcSupportError, NvvmSupportError
    errors = [CudaSupportError, NvrtcSupportError, NvvmSupportError, OSError]
    try:
        from cuda import pathfinder
        errors += [pathfinder.DynamicLibNotFoundError, pathfinder.BitcodeLibNotFoundError]
    except ImportError:
        pass
    return tuple(errors)


def loop_profile(ptx):
    """(instructions, 64-bit integer ones, float64 ones, global loads) of the innermost loop
    in ``ptx`` (a label and a later branch back to it, holding no other such loop) with the
    most global loads, the longest of those: what a kernel does per step over its data
    (not the last block's walk over the partials), without a GPU.  LLVM may have unrolled
    the loop: divide by the loads per element."""
    lines = [line.strip() for line in ptx.splitlines()]
    labels = {line[:-1]: i for i, line in enumerate(lines) if re.fullmatch(r"\$L__BB\d+_\d+:", line)}
    loops = []
    for i, line in enumerate(lines):
        back = re.search(r"bra(?:\.uni)?\s+(\$L__BB\d+_\d+);", line)
        if back and labels.get(back.group(1), i) < i:
            loops.append((labels[back.group(1)], i))
    innermost = [(a, b) for a, b in loops
                 if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops)]
    best = []
    for a, b in innermost:
        body = [x for x in lines[a:b + 1] if x and not x.startswith(("$", "//", ".", "{", "}"))]
        best = max(best, body, key=lambda b: (sum("ld.global" in x for x in b), len(b)))
    return (len(best), sum(bool(re.search(r"\.[sub]64\s", x)) for x in best),
            sum(".f64" in x for x in best), sum("ld.global" in x for x in best))


def _part(argv):
    """(K, N) from ``--part K/N`` in argv, (0, 1) without it."""
    if "--part" not in argv:
        return 0, 1
    k, n = (int(v) for v in argv[argv.index("--part") + 1].split("/"))
    if not 0 <= k < n:
        raise SystemExit(f"--part K/N needs 0 <= K < N, not {k}/{n}")
    return k, n


def main():
    stats = "--stats" in sys.argv[1:]
    part, parts = _part(sys.argv[1:])
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
    from numba import cuda, typeof

    import fastloss.backends.cuda  # noqa: F401  (what every use of the backend imports first)
    _fake_device()
    try:
        cuda.compile_ptx(lambda a: None, (typeof(np.zeros(1)),), cc=CC)
    except _toolkit_missing() as e:
        print(f"cannot compile PTX here: {type(e).__name__}: {e}")
        return 77
    ptxas = shutil.which("ptxas") or next(
        (p for p in ("/usr/local/cuda/bin/ptxas", *sorted(
            f"/usr/local/{d}/bin/ptxas" for d in os.listdir("/usr/local") if d.startswith("cuda")))
         if os.path.exists(p)), None)
    failures = 0
    count = 0
    cases = list(_cases(every="--all" in sys.argv[1:]))
    # consecutive slices keep a loss's kernels, which share device functions, in one process
    cases = cases[part * len(cases) // parts:(part + 1) * len(cases) // parts]
    with tempfile.TemporaryDirectory() as tmp:
        for label, kernel, args in cases:
            count += 1
            signature = tuple(typeof(a) for a in args)
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=CC)
            except Exception as e:
                failures += 1
                print(f"FAIL {label} {signature}: {type(e).__name__}: {str(e)[:2000]}")
                continue
            if ptxas:
                path = os.path.join(tmp, "k.ptx")
                with open(path, "w") as f:
                    f.write(ptx)
                run = subprocess.run([ptxas, f"-arch=sm_{CC[0]}{CC[1]}", "-v", path,
                                      "-o", path + ".o"], capture_output=True, text=True)
                if run.returncode:
                    failures += 1
                    print(f"FAIL ptxas {label}: {run.stderr[:2000]}")
                elif stats:
                    registers = re.search(r"Used (\d+) registers", run.stderr)
                    spills = re.search(r"(\d+) bytes spill stores", run.stderr)
                    n, i64, f64, loads = loop_profile(ptx)
                    print(f"{label:45} {signature[0]!s:30.30} registers {registers and registers.group(1)}"
                          f" spill {spills and spills.group(1)}  loop: {n} instructions, "
                          f"{i64} 64-bit integer, {f64} float64, {loads} loads")
    print(f"{count - failures} of {count} kernels compiled to sm_{CC[0]}{CC[1]} PTX"
          + (" and assembled by ptxas" if ptxas else " (no ptxas found: not assembled)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
