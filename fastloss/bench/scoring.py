"""Scoring .npy files from the page cache beside the same kernel on in-memory arrays.

Writes a (y_true, y_pred) pair of float32 .npy files, reads them once so they
sit in the page cache, then times, best of ``repeats``: ``fastloss.score.score``
over the files (memory-mapped, chunked, pages released after each chunk) and
the in-memory call on the same data loaded into RAM.  mse shows the cost of
mapping pages against a kernel at memory bandwidth; log_cosh a loss whose
kernel computes more than it reads.
"""
import os
import tempfile

import numpy as np

import fastloss as fl
from fastloss.score import score

from .throughput import best_time


def _write_pair(folder, n, rng):
    """Two float32 .npy files written as np.save writes them (write(), not a memory map).

    How a file was written matters: the kernel caches write()n data in large
    folios, which map in few page-table operations, while pages dirtied
    through a memory map stay 4 KiB and map at a third of the speed.
    """
    paths = []
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
              "fortran_order": False, "shape": (n,)}
    for name in ("y_true", "y_pred"):
        path = os.path.join(folder, f"{name}.npy")
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            step = 1 << 24
            for lo in range(0, n, step):
                rng.standard_normal(min(step, n - lo), dtype=np.float32).tofile(f)
        paths.append(path)
    os.sync()                     # written back: no writeback competes with the reads
    return paths


def measure(n=250_000_000, losses=("mse", "log_cosh"), repeats=3, folder=None):
    """{loss: {"file": s, "memory": s, "bytes": b, "value_file": v, "value_memory": v}}."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        y_path, p_path = _write_pair(tmp, n, rng)
        y, p = np.load(y_path), np.load(p_path)              # also warms the page cache
        results = {}
        for name in losses:
            loss = fl.get(name)
            memory = best_time(lambda: loss(y, p), repeats)
            file = best_time(lambda: score(name, y_path, p_path), repeats)
            results[name] = {"memory": memory, "file": file, "bytes": y.nbytes + p.nbytes,
                             "value_memory": loss(y, p),
                             "value_file": score(name, y_path, p_path)["value"]}
        del y, p
    return results


def table(results):
    lines = ["loss      in memory GB/s  from files GB/s  files / memory"]
    for name, r in results.items():
        gm, gf = r["bytes"] / r["memory"] / 1e9, r["bytes"] / r["file"] / 1e9
        lines.append(f"{name:<9} {gm:>14.1f}  {gf:>15.1f}  {100 * gf / gm:>13.0f}%")
    return "\n".join(lines)
