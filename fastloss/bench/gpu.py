"""Check fastloss's cuda backend on a GPU against its CPU backend, then measure it.

``fastloss bench --gpu`` and ``benchmarks/gpu_check.py`` run this.  On a
machine with a CUDA GPU, from a source checkout, with no network and no
install (NumPy, Numba and numba-cuda are all it needs; CuPy and PyTorch, where
present, add the fused linear cross-entropy on their arrays and the PyTorch
CUDA baselines):

    PYTHONPATH=. python benchmarks/gpu_check.py

Elsewhere: ``pip install -e ".[cuda]"`` and, for the baselines, a CUDA build of
torch (and ``cupy-cuda12x`` or ``cupy-cuda13x``).  ``--simulate`` runs the same
script under Numba's CUDA simulator with tiny sizes: every check and every
table row runs, the figures mean nothing.  Takes about two to four minutes on
an H200, most of it compiling kernels; exits 1 if any check fails.

What it prints:
1. the device, and the bandwidths this script measures: a device-to-device
   copy (read + write) and a read probe (a kernel of the same launch shape
   as the losses' that only sums a float32 array of n = 2e8, the bytes of a
   loss's y and p), beside the card's nominal HBM bandwidth where known;
2. checks: every registered loss (value, value_and_grad, grad_hess; float32
   and float64; weights) and the row losses (cross_entropy over its options,
   nll, multi_margin, softmax_focal, linear_cross_entropy, the PyTorch
   module) on device arrays, against the CPU backend on the same data, and
   bitwise reproducibility;
3. throughput: each loss's value at n = 1e8 float32 as bytes read per second,
   whole call (what a user gets: launch, reduction, copy of the result),
   kernel alone (launches queued back to back) as a share of the read
   probe's bandwidth and of the nominal one, and one launch waited for; the
   kernel's registers per thread and its grid in waves (grid blocks over the
   blocks resident at once); beside PyTorch CUDA eager; then
   cross_entropy forward and forward+backward at (8192, 128000) float32
   against PyTorch.
"""
import argparse
import os
import statistics
import sys
import time
import traceback

NOMINAL_GBS = {"H200": 4800.0, "H100": 3350.0, "A100": 2039.0, "L40S": 864.0, "A10": 600.0}


def parser():
    ap = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("--simulate", action="store_true", help="run under Numba's CUDA simulator")
    ap.add_argument("--n", type=float, default=None, help="elements per elementwise loss (1e8)")
    ap.add_argument("--rows", type=int, default=None, help="cross_entropy rows (8192)")
    ap.add_argument("--classes", type=int, default=None, help="cross_entropy classes (128000)")
    ap.add_argument("--repeat", type=int, default=None, help="timed repetitions (median; 7)")
    ap.add_argument("--losses", default=None,
                    help="comma-separated elementwise losses to check and time (default: all)")
    return ap


SIM = False
N = CE_SHAPE = REPEAT = CHECK_N = ROW_SHAPE = LOSSES = None
np = cuda = fl = peers = launch = ops = elementwise = sample = REGISTRY = None
torch = TORCH = cupy = CUPY = None


def _configure(args):
    """Sizes from the arguments; the imports (after NUMBA_ENABLE_CUDASIM is set)."""
    global SIM, N, CE_SHAPE, REPEAT, CHECK_N, ROW_SHAPE, LOSSES
    global np, cuda, fl, peers, launch, ops, elementwise, sample, REGISTRY, torch, TORCH, cupy, CUPY
    if args.simulate:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    SIM = args.simulate
    N = int(args.n or (256 if SIM else 1e8))
    CE_SHAPE = (args.rows or (4 if SIM else 8192), args.classes or (9 if SIM else 128000))
    REPEAT = args.repeat or (1 if SIM else 7)
    # more elements than the grid's 4096 x 256 threads take in one step of four each, and
    # rows longer than two steps of a block's 256 x 4 columns: each kernel's last step partial
    CHECK_N = 40 if SIM else 5_000_011
    ROW_SHAPE = (5, 7) if SIM else (2048, 3001)
    import numpy
    from numba import cuda as numba_cuda

    import fastloss
    from fastloss import peers as fastloss_peers
    from fastloss.backends.cuda import elementwise as cuda_elementwise
    from fastloss.backends.cuda import launch as cuda_launch
    from fastloss.backends.cuda import ops as cuda_ops
    from fastloss.examples import inputs
    from fastloss.specs import REGISTRY as registry
    np, cuda, fl, peers, launch, ops = numpy, numba_cuda, fastloss, fastloss_peers, cuda_launch, cuda_ops
    elementwise = cuda_elementwise
    sample, REGISTRY = inputs, registry
    LOSSES = ([name for name in registry if not registry[name].custom] if args.losses is None
              else args.losses.split(","))
    try:
        import torch as torch_module
        torch, TORCH = torch_module, torch_module.cuda.is_available() and not SIM
    except ImportError:
        torch, TORCH = None, False
    try:
        import cupy as cupy_module
        cupy, CUPY = cupy_module, not SIM
    except ImportError:
        cupy, CUPY = None, False


FAILURES = []


def sync():
    cuda.synchronize()
    if TORCH:
        torch.cuda.synchronize()


def timed(fn):
    """Median seconds of fn() followed by a synchronization (after one warm-up call)."""
    fn()
    sync()
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def host(a):
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    if torch is not None and isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if cupy is not None and isinstance(a, cupy.ndarray):
        return a.get()
    return np.asarray(a)


def check(label, got, expected, dtype):
    """Agreement to 1e-12 (float64) or 2e-6 (float32) relative, judged against the typical size."""
    got = np.asarray(host(got), dtype=np.float64)
    expected = np.asarray(host(expected), dtype=np.float64)
    tol = 1e-12 if np.dtype(dtype) == np.float64 else 2e-6
    finite = np.isfinite(expected)
    scale = np.mean(np.abs(expected[finite])) if finite.any() else 0.0
    err = np.abs(got - expected)
    ok = got.shape == expected.shape and bool(np.all((err <= tol * np.abs(expected) + tol * scale)
                                                     | (np.isnan(got) & np.isnan(expected))))
    if not ok:
        FAILURES.append(label)
        worst = float(np.nanmax(err / np.maximum(np.abs(expected), 1e-300))) if err.size else 0.0
        print(f"  FAIL {label}: max relative error {worst:.3g} (tolerance {tol:g})")
    return ok


def section(title):
    print(f"\n## {title}")


# -- 1. the device ------------------------------------------------------------

def device():
    section("device")
    print(f"  {fl.backend_info()['cuda']}")
    src = cuda.to_device(np.ones(N, np.float32))
    dst = cuda.device_array(N, np.float32)
    seconds = timed(lambda: dst.copy_to_device(src))
    copy = 2 * 4 * N / seconds / 1e9
    name = "simulator" if SIM else cuda.get_current_device().name
    name = name.decode() if isinstance(name, bytes) else name
    nominal = next((v for k, v in NOMINAL_GBS.items() if k in name), None)
    print(f"  device-to-device copy of {N:.3g} float32: {copy:,.0f} GB/s (read + write)"
          + (f"; nominal HBM {nominal:,.0f} GB/s" if nominal else ""))
    del src, dst
    probe = cuda.to_device(np.ones(2 * N, np.float32))
    kernel, blocks, partials = elementwise.sum_and_negatives, launch.blocks_for(2 * N), launch.partials()
    reps = 2 if SIM else 20

    def queued():
        for _ in range(reps):
            kernel[blocks, launch.THREADS](probe, partials.sums, partials.counts)

    read = 4 * 2 * N * reps / timed(queued) / 1e9
    print(f"  read probe (sum of {2 * N:.3g} float32, the losses' launch shape): {read:,.0f} GB/s"
          + (f", {read / nominal:.0%} of nominal" if nominal else ""))
    return read, nominal


# -- 2. checks ------------------------------------------------------------------

def check_elementwise():
    section(f"checks: elementwise losses, n = {CHECK_N:,}, cuda (device arrays) against cpu")
    rng = np.random.default_rng(0)
    cases = [(name, {}) for name in LOSSES] + [
        (name, dict(p)) for name in LOSSES for p in REGISTRY[name].test_params]
    for name, params in cases:
        loss = fl.get(name, **params)
        label = name + "".join(f",{k}={v}" for k, v in params.items())
        before = len(FAILURES)
        y, p = sample(name, CHECK_N, rng, np.float32)
        dy, dp = cuda.to_device(y), cuda.to_device(p)
        check(f"{label} value f32", loss(dy, dp), loss(y, p, backend="cpu"), np.float32)
        value, grad = loss.value_and_grad(dy, dp)
        ev, eg = loss.value_and_grad(y, p, backend="cpu")
        check(f"{label} value_and_grad f32 value", value, ev, np.float32)
        check(f"{label} value_and_grad f32 grad", grad, eg, np.float32)
        y, p = sample(name, CHECK_N, rng, np.float64)
        w = rng.uniform(0.0, 2.0, CHECK_N)
        g, h = loss.grad_hess(cuda.to_device(y), cuda.to_device(p), sample_weight=cuda.to_device(w))
        eg, eh = loss.grad_hess(y, p, sample_weight=w, backend="cpu")
        check(f"{label} grad_hess f64 weighted g", g, eg, np.float64)
        check(f"{label} grad_hess f64 weighted h", h, eh, np.float64)
        print(f"  {'ok  ' if len(FAILURES) == before else 'FAIL'} {label}")
    y, p = sample("log_cosh", CHECK_N, rng, np.float32)
    dy, dp = cuda.to_device(y), cuda.to_device(p)
    runs = {fl.log_cosh(dy, dp) for _ in range(3)}
    if len(runs) != 1:
        FAILURES.append("reproducibility")
    print(f"  {'ok  ' if len(runs) == 1 else 'FAIL'} log_cosh: three runs, {len(runs)} distinct result(s)")


def check_rows():
    N_, C = ROW_SHAPE
    section(f"checks: row losses at ({N_}, {C}), cuda against cpu")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((N_, C)) * 4).astype(np.float32)
    labels = rng.integers(0, C, N_)
    labels[::17] = -100
    probs = rng.dirichlet(np.ones(C), N_).astype(np.float32)
    cw = rng.uniform(0.5, 2.0, C)
    sw = rng.uniform(0.0, 2.0, N_)
    for options in ({}, {"label_smoothing": 0.1, "class_weight": cw}, {"z_loss": 1e-4, "softcap": 30.0}):
        loss = fl.get("cross_entropy", **options)
        for target_name, y in (("labels", labels), ("probs", probs)):
            label = f"cross_entropy {target_name} {sorted(options)}"
            before = len(FAILURES)
            value, grad = loss.value_and_grad(cuda.to_device(y), cuda.to_device(x),
                                              sample_weight=cuda.to_device(sw))
            ev, eg = loss.value_and_grad(y, x, sample_weight=sw, backend="cpu")
            check(label + " value", value, ev, np.float32)
            check(label + " grad", grad, eg, np.float32)
            print(f"  {'ok  ' if len(FAILURES) == before else 'FAIL'} {label}")
    dx = cuda.to_device(x)
    value, grad = fl.get("cross_entropy").value_and_grad(cuda.to_device(labels), dx, out=dx)
    ev, eg = fl.get("cross_entropy").value_and_grad(labels, x, backend="cpu")
    ok = check("cross_entropy in place", grad, eg, np.float32) & check(
        "cross_entropy in place value", value, ev, np.float32)
    print(f"  {'ok  ' if ok else 'FAIL'} cross_entropy in place (out=logits)")
    kept = np.where(labels < 0, 0, labels)
    for name, options, xs in (("nll", {"class_weight": cw}, x - np.log(np.exp(x).sum(1, keepdims=True))),
                              ("multi_margin", {"margin": 0.5}, x),
                              ("multi_margin", {"margin": 0.5, "p": 2}, x),
                              ("softmax_focal", {"gamma": 2.0}, x)):
        loss = fl.get(name, **options)
        y = labels if name == "nll" else kept
        xs = xs.astype(np.float32)
        value, grad = loss.value_and_grad(cuda.to_device(y), cuda.to_device(xs),
                                          sample_weight=cuda.to_device(sw))
        ev, eg = loss.value_and_grad(y, xs, sample_weight=sw, backend="cpu")
        ok = check(f"{name} value", value, ev, np.float32) & check(f"{name} grad", grad, eg, np.float32)
        if name != "nll":                   # nll's Hessian is 0 (linear), not from a kernel
            g, h = loss.grad_hess(cuda.to_device(y), cuda.to_device(xs), sample_weight=cuda.to_device(sw))
            eg, eh = loss.grad_hess(y, xs, sample_weight=sw, backend="cpu")
            ok &= check(f"{name} grad_hess grad", g, eg, np.float32)
            ok &= check(f"{name} grad_hess hess", h, eh, np.float32)
        print(f"  {'ok  ' if ok else 'FAIL'} {name}{' p=2' if options.get('p') == 2 else ''}")
    check_linear(rng)
    if TORCH:
        from fastloss.integrations.torch import FastCrossEntropyLoss
        xt = torch.tensor(x, device="cuda", requires_grad=True)
        tt = torch.tensor(labels, device="cuda")
        FastCrossEntropyLoss(label_smoothing=0.1)(xt, tt).backward()
        xr = torch.tensor(x, device="cuda", requires_grad=True)
        ref = torch.nn.functional.cross_entropy(xr, tt, label_smoothing=0.1)
        ref.backward()
        ok = check("torch module grad", xt.grad, xr.grad, np.float32)
        print(f"  {'ok  ' if ok else 'FAIL'} FastCrossEntropyLoss on CUDA tensors against "
              "F.cross_entropy (autograd)")


def check_linear(rng):
    n, hidden, classes = (9, 4, 7) if SIM else (1024, 256, 4000)
    h = rng.standard_normal((n, hidden)).astype(np.float32)
    w = (rng.standard_normal((classes, hidden)) / 16).astype(np.float32)
    b = rng.standard_normal(classes).astype(np.float32)
    y = rng.integers(0, classes, n)
    loss = fl.get("linear_cross_entropy", chunk_size=max(1, n // 3))
    ev, eg = loss.value_and_grad(y, h, w, b, backend="cpu")
    kinds = [("host arrays", lambda a: a)]
    if TORCH:
        kinds.append(("torch", lambda a: torch.as_tensor(a, device="cuda")))
    if CUPY:
        kinds.append(("cupy", cupy.asarray))
    for kind, convert in kinds:
        value, grads = loss.value_and_grad(convert(y), convert(h), convert(w), convert(b),
                                           backend="cuda")
        ok = check(f"linear_cross_entropy {kind} value", value, ev, np.float32)
        for g, e, part in zip(grads, eg, ("hidden", "weight", "bias")):
            ok &= check(f"linear_cross_entropy {kind} grad_{part}", g, e, np.float32)
        print(f"  {'ok  ' if ok else 'FAIL'} linear_cross_entropy on {kind}")


# -- 3. throughput ----------------------------------------------------------------

def throughput(read, nominal):
    section(f"throughput: value at n = {N:.3g} float32 (bytes read / s; shares of the read "
            f"probe's bandwidth{' and of nominal' if nominal else ''})")
    rng = np.random.default_rng(2)
    head = (f"  {'loss':34} {'call GB/s':>10} {'share':>12} {'kernel GB/s':>12} {'share':>12}"
            f" {'1 launch':>9} {'regs':>5} {'waves':>6} {'v&g GB/s':>9} {'torch GB/s':>10}"
            f" {'vs torch':>8}")
    print(head)

    def share(gbs):
        text = f"{gbs / read:.0%}"
        return text + (f"/{gbs / nominal:.0%}" if nominal else "")

    for name in LOSSES:
        y, p = sample(name, N, rng, np.float32)
        dy, dp = cuda.to_device(y), cuda.to_device(p)
        del y, p
        loss = fl.get(name)
        nbytes = 8 * N
        call = nbytes / timed(lambda: loss(dy, dp)) / 1e9
        kernel = ops.kernels(name)[ops.value_kind("reduce_value", name, dy, dp)]   # the call's
        blocks, partials = launch.blocks_for(N), launch.partials()
        args = (dy, dp, None, 1, loss._theta, partials.sums, partials.counts)
        reps = 2 if SIM else 20

        def queued():
            for _ in range(reps):
                kernel[blocks, launch.THREADS](*args)

        kernel_gbs = nbytes * reps / timed(queued) / 1e9
        single = nbytes / timed(lambda: kernel[blocks, launch.THREADS](*args)) / 1e9
        regs, waves = launch_shape(kernel, args, blocks)
        out = cuda.device_array(N, np.float32)
        vg = 12 * N / timed(lambda: loss.value_and_grad(dy, dp, out=out)) / 1e9
        torch_text, ratio = "-", "-"
        fn = peers.torch_loss(name) if TORCH else None
        if fn is not None:
            ty, tp = torch.as_tensor(dy, device="cuda"), torch.as_tensor(dp, device="cuda")
            if name in ("hinge", "squared_hinge"):
                ty = torch.where(ty > 0, 1.0, -1.0)
            tgbs = nbytes / timed(lambda: fn(tp, ty, "mean").item()) / 1e9
            torch_text, ratio = f"{tgbs:,.0f}", f"{call / tgbs:.2f}x"
        print(f"  {name:34} {call:10,.0f} {share(call):>12} {kernel_gbs:12,.0f} {share(kernel_gbs):>12}"
              f" {single:9,.0f} {regs:>5} {waves:>6} {vg:9,.0f} {torch_text:>10} {ratio:>8}")
        del dy, dp, out


def launch_shape(kernel, args, blocks):
    """(registers per thread, grid blocks / blocks resident at once on this GPU) of the
    kernel compiled for ``args``, as text; "-" where unknown (the simulator).  More than
    one wave leaves a tail of blocks running on a partly idle GPU."""
    if SIM:
        return "-", "-"
    try:
        compiled = kernel.overloads[tuple(kernel.typeof_pyval(a) for a in args)]
        resident = compiled.max_cooperative_grid_blocks(launch.THREADS)
        return str(compiled.regs_per_thread), f"{blocks / resident:.2f}"
    except Exception as e:      # a diagnostic: the table goes on without it
        print(f"  (launch shape unknown: {type(e).__name__}: {e})")
        return "?", "?"


def throughput_cross_entropy(read):
    rows, classes = CE_SHAPE
    section(f"throughput: cross_entropy at ({rows}, {classes}) float32, integer labels")
    rng = np.random.default_rng(3)
    x = cuda.to_device(rng.standard_normal((rows, classes), dtype=np.float32))
    t = cuda.to_device(rng.integers(0, classes, rows))
    grad = cuda.device_array((rows, classes), np.float32)
    loss = fl.get("cross_entropy")
    nbytes = 4 * rows * classes
    fwd = timed(lambda: loss(t, x))
    fwd_bwd = timed(lambda: loss.value_and_grad(t, x, out=grad))
    print(f"  fastloss forward          {fwd * 1e3:8.2f} ms  {nbytes / fwd / 1e9:8,.0f} GB/s read"
          f" ({nbytes / fwd / 1e9 / read:.0%} of the read probe)")
    print(f"  fastloss forward+backward {fwd_bwd * 1e3:8.2f} ms  "
          f"(reads the logits twice, writes the gradient once: "
          f"{3 * nbytes / fwd_bwd / 1e9:,.0f} GB/s moved)")
    if not TORCH:
        print("  (PyTorch with CUDA not available: no baseline)")
        return
    F = torch.nn.functional
    tx = torch.as_tensor(x, device="cuda")
    tt = torch.as_tensor(t, device="cuda")
    tfwd = timed(lambda: F.cross_entropy(tx, tt).item())

    def torch_fwd_bwd():
        xg = tx.detach().requires_grad_()
        F.cross_entropy(xg, tt).backward()
        return xg.grad

    tboth = timed(torch_fwd_bwd)
    print(f"  torch forward             {tfwd * 1e3:8.2f} ms   fastloss is {tfwd / fwd:.2f}x")
    print(f"  torch forward+backward    {tboth * 1e3:8.2f} ms   fastloss is {tboth / fwd_bwd:.2f}x")


def run_section(step, *args):
    """Run one part of the report; an error in it is a failure, and the later parts still run."""
    try:
        step(*args)
    except Exception:
        FAILURES.append(step.__name__)
        print(f"  FAIL {step.__name__} raised:")
        traceback.print_exc(file=sys.stdout)
    sys.stdout.flush()


def main(argv=None):
    args = parser().parse_args(argv)
    if not args.simulate:
        from fastloss.backends.cuda import missing
        why = missing()
        if why is not None:
            print(f"gpu check: {why}; --simulate runs it under Numba's CUDA simulator",
                  file=sys.stderr)
            return 2
    _configure(args)
    FAILURES.clear()
    start = time.perf_counter()
    read, nominal = device()
    for step, call_args in ((check_elementwise, ()), (check_rows, ()),
                            (throughput, (read, nominal)), (throughput_cross_entropy, (read,))):
        run_section(step, *call_args)
    print(f"\n{len(FAILURES)} failed check(s); {time.perf_counter() - start:.0f} s in all")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
