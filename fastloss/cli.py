"""The ``fastloss`` command line.

``fastloss bench`` compares fastloss with its peers on this machine;
``fastloss score`` computes a loss over files larger than memory;
``fastloss compile`` fills the kernel cache ahead of first use.
"""
import argparse
import ast
import json
import sys

import numpy as np

PEER_COLUMNS = ("numpy", "torch", "sklearn")
# The start-up cost is also measured for a parallel float32 kernel of a
# transcendental loss, whose first call compiles the most.
STARTUP_PARALLEL = ("binary_cross_entropy", "float32", 1_000_000)


def _fmt_ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.2f}"


def _fmt_ratio(ratio):
    return "-" if ratio is None else f"{ratio:.1f}x"


def _table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*r) for r in rows]
    return "\n".join(out)


def _throughput_tables(rows, bandwidth):
    tables = []
    # value reads two arrays: judged against the read bandwidth; value_and_grad
    # reads two and writes one: judged against the triad (2 reads + 1 write).
    for method, bw_label, bw_key in (("value", "read", "read"),
                                     ("value_and_grad", "r+w", "read_write")):
        body = []
        for r in (r for r in rows if r.method == method):
            body.append([r.loss] + [_fmt_ms(r.seconds.get(k)) for k in ("fastloss",) + PEER_COLUMNS]
                        + [_fmt_ratio(r.speedup(k)) for k in PEER_COLUMNS]
                        + [f"{r.gbs():.1f}", f"{100 * r.gbs() / (r.bandwidth or bandwidth)[bw_key]:.0f}%"])
        headers = (["loss", "fastloss ms", "numpy ms", "torch ms", "sklearn ms",
                    "vs numpy", "vs torch", "vs sklearn", "GB/s", f"of {bw_label} bw"])
        title = ("value (mean): reads y_true and y_pred" if method == "value" else
                 "value_and_grad (mean): reads y_true and y_pred, writes the gradient; "
                 "torch = forward+backward, "
                 "sklearn = loss_gradient, then the mean of its losses")
        tables.append(title + "\n" + _table(headers, body))
    return "\n\n".join(tables)


def _cross_entropy_line(ce, bw):
    N, C = ce["shape"]
    fwd, fb = ce["forward"], ce["forward_backward"]
    gbs = ce["bytes"] / fwd["fastloss"] / 1e9
    parts = [f"cross_entropy ({N}, {C}) float32: forward {fwd['fastloss'] * 1e3:.0f} ms "
             f"({gbs:.1f} GB/s, {100 * gbs / ce.get('bandwidth', bw)['read']:.0f}% of the read bw "
             f"probed beside it), "
             f"NumPy {fwd['numpy'] * 1e3:.0f} ms ({fwd['numpy'] / fwd['fastloss']:.1f}x)"]
    if "torch" in fwd:
        parts.append(f"PyTorch {fwd['torch'] * 1e3:.0f} ms ({fwd['torch'] / fwd['fastloss']:.1f}x)")
    parts.append(f"forward+backward {fb['fastloss'] * 1e3:.0f} ms")
    if "torch" in fb:
        parts.append(f"PyTorch {fb['torch'] * 1e3:.0f} ms ({fb['torch'] / fb['fastloss']:.1f}x)")
    return "; ".join(parts)


def _linear_ce_line(results, shape):
    labels = {"fastloss": "fastloss", "torch-chunked": "PyTorch chunked F.linear_cross_entropy",
              "torch": "PyTorch F.linear + F.cross_entropy"}
    parts = [f"{labels[k]} {r['seconds'] * 1e3:.0f} ms, {r['extra_bytes'] / 2**20:.0f} MiB"
             for k, r in results.items()]
    return (f"linear_cross_entropy (N, H, C) = {shape} float32, forward+backward, time and peak "
            f"memory above the inputs: " + "; ".join(parts))


def _custom_line(rows, compile_s):
    parts = []
    for (c, b), r in rows.items():
        ratios = ", ".join(f"{m} {r[m][0] * 1e3:.2f} vs {r[m][1] * 1e3:.2f} ms "
                           f"({r[m][0] / r[m][1]:.2f}x)" for m in ("value", "value_and_grad"))
        parts.append(f"{c} (custom) vs {b}: {ratios}")
    return ("custom losses (fastloss.custom_loss) against the built-in of the same arithmetic: "
            + "; ".join(parts) + "\n  first value_and_grad of a new custom loss in a fresh "
            + ("process: not measured with --quick" if compile_s is None else
               f"process: {compile_s['cold']:.2f} s compiling, {compile_s['warm']:.2f} s from "
               f"the kernel cache"))


def bench(args):
    import warnings

    if args.gpu or args.simulate:
        from .bench import gpu
        argv = ["--simulate"] if args.simulate else []
        if args.n:
            argv += ["--n", str(args.n)]
        if args.losses:
            argv += ["--losses", args.losses]
        return gpu.main(argv)

    import numba
    from .bench import bandwidth, custom, linear_ce, softmax, startup, throughput
    import fastloss as fl

    # PyTorch warns on every kl_div(reduction="mean") call; the bench means it
    warnings.filterwarnings("ignore", message="reduction: 'mean' divides", category=UserWarning)

    if args.threads:
        fl.set_num_threads(args.threads)
    if args.score_files:
        return _bench_score_files(args)
    if args.adapters:
        from .bench import adapters
        rows = adapters.measure(n=args.n or 10_000_000, repeats=2 if args.quick else 5)
        if args.json:
            print(json.dumps({"adapters": rows}, indent=2))
        else:
            print("fastloss bench --adapters: trainer adapters against the bare fastloss call "
                  "and the trainer's own loss\n")
            print(adapters.table(rows))
        return 0
    # 1e7 float32 per array is 80 MB per call, beyond the last-level cache, so
    # --quick keeps the size and only repeats less.
    n = args.n or 10_000_000
    repeats = 2 if args.quick else 5
    dtype = np.dtype(args.dtype)
    from .specs import REGISTRY
    names = (args.losses.split(",") if args.losses
             else sorted(n for n, spec in REGISTRY.items() if not spec.custom))
    unknown = [x for x in names if x not in REGISTRY]
    if unknown:
        print(f"fastloss bench: unknown elementwise loss(es): {', '.join(unknown)} "
              f"(cross_entropy has its own line)", file=sys.stderr)
        return 2

    def progress(name):
        if not args.json:
            print(f"  measuring {name}...", file=sys.stderr, flush=True)

    from .bench import warmup
    progress("(compiling kernels on all cores)")
    warmup.warm(names, dtype)

    probe_n = 1 << 25 if args.quick else 1 << 26
    bw = bandwidth.measure(n=probe_n, repeats=1 if args.quick else repeats)
    # cross-entropy first: the elementwise phase ends with PyTorch, whose
    # threads keep spinning for a while afterwards
    ce = softmax.measure(N=1024 if args.quick else 8192, repeats=repeats,
                         peers_too=not args.no_peers)
    # and tall-skinny: many rows of few classes (a classifier's scores)
    ce_few = softmax.measure(N=250_000 if args.quick else 2_000_000, C=10, repeats=repeats,
                             peers_too=not args.no_peers)
    lce_shape = (256, 512, 16000) if args.quick else (4096, 1024, 32000)
    peers = () if args.no_peers else ("torch-chunked",) if args.quick else ("torch-chunked", "torch")
    lce = linear_ce.measure(*lce_shape, implementations=("fastloss", *peers),
                            timed=1 if args.quick else 2)
    # fastloss's own runs take milliseconds: --quick repeats them less than the full run only
    # as far as its minute requires (on 2 Zen 3 cores, 60 s warm and 70 s cold at 5)
    rows = throughput.measure(names, n=n, dtype=dtype, repeats=3 if args.quick else 5,
                              quick_baselines=args.quick,
                              peers_too=not args.no_peers, progress=progress)
    # Probed again after the losses, and the better kept: on a shared machine the
    # bandwidth a neighbour leaves us changes during a run, and a share judged
    # against a low first probe would overstate how close a kernel comes.
    bw = bandwidth.best_of(bw, bandwidth.measure(n=probe_n, repeats=1 if args.quick else repeats))
    small = throughput.small_call_overhead(repeats=500 if args.quick else 2000)
    start = startup.measure()
    start_parallel = None if args.quick else startup.measure(*STARTUP_PARALLEL)
    custom_rows = custom.measure(n=n, dtype=dtype, repeats=repeats)
    custom_compile = None if args.quick else custom.compile_seconds()   # 4 s of a quick run
    if args.json:
        print(json.dumps({
            "n": n, "dtype": str(dtype), "threads": fl.get_num_threads(),
            "threading_layer": numba.threading_layer(),
            "bandwidth_gbs": {"read": bw["read"], "read_write": bw["read_write"]},
            "rows": [{"loss": r.loss, "method": r.method, "seconds": r.seconds, "gbs": r.gbs(),
                      "bandwidth_beside": r.bandwidth and {k: r.bandwidth[k] for k in
                                                           ("read", "read_write")}}
                     for r in rows],
            "cross_entropy": ce, "cross_entropy_few_classes": ce_few, "linear_cross_entropy": {"shape": lce_shape, **lce},
            "small_call_us": small, "startup_s": start, "startup_parallel_s": start_parallel,
            "custom": {f"{c} vs {b}": r for (c, b), r in custom_rows.items()},
            "custom_compile_s": custom_compile,
        }, indent=2))
        return 0
    print(f"fastloss bench: n = {n:,} {dtype}, {fl.get_num_threads()} threads "
          f"(Numba's {numba.threading_layer()} threading layer)")
    print(f"memory bandwidth measured here: read {bw['read']:.1f} GB/s "
          f"(best of 1-3 streams over 1..{max(t for _, t, _ in bw['detail'])} threads, "
          f"probed before and after the losses), "
          f"2 reads + 1 write {bw['read_write']:.1f} GB/s")
    beside = [r.bandwidth for r in rows if r.bandwidth]
    if beside:
        print("each loss's share is of the bandwidth probed in turn with its own runs, "
              f"over its own arrays: read {min(b['read'] for b in beside):.1f}-"
              f"{max(b['read'] for b in beside):.1f} GB/s, 2 reads + 1 write "
              f"{min(b['read_write'] for b in beside):.1f}-{max(b['read_write'] for b in beside):.1f}")
    print()
    print(_throughput_tables(rows, bw))
    if args.quick:
        print(f"(--quick: NumPy timed on the first n/{throughput.NUMPY_QUICK_FRACTION} elements, "
              f"its times scaled to n)")
    print("\n" + _cross_entropy_line(ce, bw))
    print(_cross_entropy_line(ce_few, bw))
    print(_linear_ce_line(lce, lce_shape))
    print(f"\nper call at n = 10: fastloss.mse {small['fastloss']:.2f} us, "
          f"NumPy expression np.mean((p - y) ** 2) {small['numpy']:.2f} us")
    print(_custom_line(custom_rows, custom_compile))
    print(f"start-up: import fastloss {start['import']:.3f} s; first value_and_grad in a fresh "
          f"process (imports included) {start['first_call_cold']:.2f} s with a cold kernel cache, "
          f"{start['first_call_warm']:.2f} s warm (mse, float64, n = 1000)")
    if start_parallel:
        name, dtype, n = STARTUP_PARALLEL
        print(f"  {name}, {dtype}, n = {n:,} (a parallel kernel): "
              f"{start_parallel['first_call_cold']:.2f} s cold, "
              f"{start_parallel['first_call_warm']:.2f} s warm")
    else:
        print("  a transcendental loss's parallel kernel: not measured with --quick")
    return 0


def _parse_params(pairs):
    """{name: value} from ``k=v`` strings; values are Python literals, else strings."""
    params = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param takes NAME=VALUE, got {pair!r}")
        try:
            params[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            params[key] = text
    return params


def score(args):
    from .score import score as score_files
    from .sources import SourceError

    import warnings

    import fastloss as fl
    try:
        if args.threads:
            fl.set_num_threads(args.threads)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            result = score_files(args.loss, args.y_true, args.y_pred, args.sample_weight,
                                 params=_parse_params(args.param), reduction=args.reduction,
                                 chunk_rows=args.chunk_rows,
                                 progress=not args.quiet and sys.stderr.isatty())
    except (SourceError, ValueError, TypeError, OSError) as e:
        print(f"fastloss score: error: {e}", file=sys.stderr)
        return 2
    for warning in caught:
        print(f"fastloss score: warning: {warning.message}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        value = result["value"]
        print("\n".join(f"{k} {v!r}" for k, v in value.items()) if isinstance(value, dict)
              else repr(value))
        if not args.quiet:
            print(f"{result['count']:,} values, weight sum {result['weight_sum']:.6g}, "
                  f"{result['seconds']:.2f} s ({result['throughput'] / 1e6:.3g} M values/s, "
                  f"{result['bytes'] / result['seconds'] / 1e9:.3g} GB/s)", file=sys.stderr)
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes as one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _bench_score_files(args):
    from .bench import scoring
    n = args.n or 250_000_000
    results = scoring.measure(n=n, repeats=2 if args.quick else 3)
    if args.json:
        print(json.dumps({"n": n, "dtype": "float32", "score_files": results}, indent=2))
        return 0
    size = 2 * n * 4 / 1e9
    print(f"fastloss bench --score-files: a {size:.1f} GB float32 .npy pair from the page cache "
          f"(fastloss score) against the same kernel on the arrays in memory\n")
    print(scoring.table(results))
    return 0


def compile_kernels(args):
    from .precompile import DTYPES, compile_names, precompile
    names = args.losses.split(",") if args.losses else compile_names()
    dtypes = DTYPES if args.dtype == "both" else (args.dtype,)
    done = []

    def progress(name, dtype):
        done.append(name)
        print(f"  compiled {name} {dtype} ({len(done)}/{len(names) * len(dtypes)})",
              flush=True)

    try:
        seconds = precompile(names, dtypes, weighted=args.weighted, workers=args.workers,
                             progress=progress)
    except ValueError as e:
        raise SystemExit(f"fastloss compile: {e}") from None
    print(f"fastloss compile: {len(done)} loss and dtype pairs in {seconds:.1f} s")
    return 0


def _count(text):
    """An argparse type: a whole number >= 1, also written as 1e7 or 10_000_000."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return int(value)


def main(argv=None):
    parser = _Parser(prog="fastloss", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="benchmark fastloss against NumPy, PyTorch and scikit-learn")
    b.add_argument("--quick", action="store_true", help="fewer repeats (under a minute)")
    b.add_argument("--n", type=_count, help="elements per array (default 1e7)")
    b.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    b.add_argument("--losses", help="comma-separated loss names (default: all)")
    b.add_argument("--threads", type=_count, help="threads for fastloss and PyTorch")
    b.add_argument("--no-peers", action="store_true", help="skip PyTorch and scikit-learn")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    b.add_argument("--gpu", action="store_true",
                   help="check and time the cuda backend on this machine's GPU instead")
    b.add_argument("--simulate", action="store_true",
                   help="with --gpu: under Numba's CUDA simulator (tiny sizes; no GPU needed)")
    b.add_argument("--adapters", action="store_true",
                   help="only measure the PyTorch, XGBoost and LightGBM adapters' overhead")
    b.add_argument("--score-files", action="store_true",
                   help="only measure scoring .npy files (a 2 GB pair by default; --n sets "
                        "the elements per file) against in-memory arrays")
    b.set_defaults(func=bench)
    sc = sub.add_parser(
        "score", help="compute a loss over files larger than memory",
        description="Stream y_true and y_pred (and sample weights) from files in chunks and "
                    "print the loss. FILE is .npy (memory-mapped), .npz, .parquet or .csv, or a "
                    "directory or quoted glob of such files (read in path order as one "
                    "column); FILE:NAME picks a column or npz member. A progress bar shows on a "
                    "terminal when tqdm is installed.")
    sc.add_argument("loss", help="loss name, e.g. mse or cross_entropy; several as mse,mae,huber "
                                 "(one read of the files)")
    sc.add_argument("--y-true", required=True, metavar="FILE[:COL]")
    sc.add_argument("--y-pred", required=True, metavar="FILE[:COL]")
    sc.add_argument("--sample-weight", metavar="FILE[:COL]")
    sc.add_argument("--param", action="append", metavar="NAME=VALUE",
                    help="a loss parameter (repeatable), e.g. --param delta=2.0; with several "
                         "losses, named with its loss: --param huber.delta=2.0")
    sc.add_argument("--reduction", choices=["mean", "sum", "batchmean"], default="mean")
    sc.add_argument("--chunk-rows", type=_count, help="rows per chunk (default: about 32 MiB)")
    sc.add_argument("--threads", type=_count, help="threads for the kernels")
    sc.add_argument("--json", action="store_true",
                    help="print one JSON object: value, count, weight_sum, seconds, throughput")
    sc.add_argument("--quiet", action="store_true", help="no progress bar or summary line")
    sc.set_defaults(func=score)
    c = sub.add_parser(
        "compile", help="compile the kernels into the on-disk cache ahead of first use",
        description="Compile every method's kernels (serial and parallel builds, default "
                    "parameters) into Numba's on-disk cache, in one worker process per core, "
                    "so that later processes load them instead of compiling.")
    c.add_argument("--losses", help="comma-separated loss names (default: all)")
    c.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    c.add_argument("--weighted", action="store_true",
                   help="also the kernels of calls with sample_weight")
    c.add_argument("--workers", type=_count, help="worker processes (default: one per core)")
    c.set_defaults(func=compile_kernels)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
