"""fastloss.dask: lazy losses and gradients over Dask arrays equal the in-memory calls."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastloss as fl

from .conftest import loss_case, sample, weights
from .helpers import assert_close

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

fd = pytest.importorskip("fastloss.dask")


def rel_close(actual, expected, rtol=1e-12):
    assert isinstance(actual, float)
    assert actual == pytest.approx(expected, rel=rtol, abs=1e-300), (actual, expected)


@loss_case
def test_loss_and_grad_equal_in_memory(name, params, rng):
    y, p = sample(name, 6000, rng)
    y, p = y.reshape(2000, 3), p.reshape(2000, 3)
    w = weights(2000, rng)
    Y, P, W = (da.from_array(y, chunks=(700, 2)), da.from_array(p, chunks=(450, 3)),
               da.from_array(w, chunks=900))
    loss = fl.get(name, **params)
    with dask.config.set(scheduler="sync"):
        for reduction in ("mean", "sum"):
            lazy = fd.loss(name, Y, P, sample_weight=W, reduction=reduction, **params)
            rel_close(lazy.compute(), loss(y, p, sample_weight=w, reduction=reduction))
        g = fd.grad(name, Y, P, sample_weight=W, **params)
        assert g.chunks == P.chunks
        assert_close(g.compute(), loss.grad(y, p, sample_weight=w), p.dtype)
        none = fd.loss(name, Y, P, sample_weight=W, reduction="none", **params)
        assert_close(none.compute(), loss(y, p, sample_weight=w, reduction="none"), p.dtype)


@pytest.mark.parametrize("name,params", [
    ("cross_entropy", {"class_weight": np.array([0.5, 1.0, 2.0, 1.5]), "label_smoothing": 0.1}),
    ("cross_entropy", {}), ("nll", {}), ("multi_margin", {"p": 2}), ("softmax_focal", {})])
def test_row_losses(name, params, rng):
    N, C = 1500, 4
    x = rng.standard_normal((N, C)) * 2
    if name == "nll":
        x = x - np.log(np.exp(x).sum(1, keepdims=True))
    y = rng.integers(0, C, N)
    if name in ("cross_entropy", "nll"):
        y[::6] = -100                                   # ignored rows
    w = weights(N, rng)
    Y, X, W = (da.from_array(y, chunks=400), da.from_array(x, chunks=(350, 2)),
               da.from_array(w, chunks=500))
    loss = fl.get(name, **params)
    rel_close(fd.loss(name, Y, X, sample_weight=W, **params).compute(scheduler="threads"),
              loss(y, x, sample_weight=w))
    g = fd.grad(name, Y, X, sample_weight=W, **params)
    assert g.chunks == X.rechunk({1: -1}).chunks
    assert_close(g.compute(scheduler="threads"), loss.grad(y, x, sample_weight=w), x.dtype)
    assert_close(fd.loss(name, Y, X, reduction="none", **params).compute(),
                 loss(y, x, reduction="none"), x.dtype)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_with_probability_targets(label_smoothing, rng):
    """(N, C) targets, chunked along C unlike the logits (grad failed to build its graph)."""
    N, C = 900, 5
    x = rng.standard_normal((N, C))
    t = rng.dirichlet(np.ones(C), N)
    w = weights(N, rng)
    T, X, W = (da.from_array(t, chunks=(200, 2)), da.from_array(x, chunks=(350, 3)),
               da.from_array(w, chunks=300))
    loss = fl.get("cross_entropy", label_smoothing=label_smoothing)
    rel_close(fd.loss("cross_entropy", T, X, sample_weight=W,
                      label_smoothing=label_smoothing).compute(), loss(t, x, sample_weight=w))
    g = fd.grad("cross_entropy", T, X, sample_weight=W, label_smoothing=label_smoothing)
    assert_close(g.compute(), loss.grad(t, x, sample_weight=w), x.dtype)
    assert_close(fd.loss("cross_entropy", T, X, reduction="none",
                         label_smoothing=label_smoothing).compute(),
                 loss(t, x, reduction="none"), x.dtype)


def test_unknown_chunk_sizes_after_boolean_indexing(rng):
    """Arrays filtered by a mask have NaN chunk sizes: taken block by block (their shapes
    used to be compared as NaN != NaN, a ValueError that named no cause)."""
    y, p = sample("huber", 3000, rng)
    w = weights(3000, rng)
    keep = p > -0.5
    Y, P, W, K = (da.from_array(a, chunks=700) for a in (y, p, w, keep))
    loss = fl.get("huber")
    value = fd.loss("huber", Y[K], P[K], sample_weight=W[K])
    rel_close(value.compute(), loss(y[keep], p[keep], sample_weight=w[keep]))
    assert_close(fd.grad("huber", Y[K], P[K], sample_weight=W[K]).compute(),
                 loss.grad(y[keep], p[keep], sample_weight=w[keep]), p.dtype)
    assert_close(fd.loss("huber", Y[K], P[K], reduction="none").compute(),
                 loss(y[keep], p[keep], reduction="none"), p.dtype)
    x = rng.standard_normal((3000, 4))
    t = rng.dirichlet(np.ones(4), 3000)
    labels = rng.integers(0, 4, 3000)
    X, T, L = (da.from_array(x, chunks=(700, 2)), da.from_array(t, chunks=(700, 4)),
               da.from_array(labels, chunks=700))
    ce = fl.get("cross_entropy")
    for target, target_kept in ((L[K], labels[keep]), (T[K], t[keep])):
        rel_close(fd.loss("cross_entropy", target, X[K]).compute(), ce(target_kept, x[keep]))
        assert_close(fd.grad("cross_entropy", target, X[K]).compute(),
                     ce.grad(target_kept, x[keep]), x.dtype)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        fd.loss("huber", Y[K], da.from_array(p, chunks=500)[K])
    with pytest.raises(ValueError, match="same shape"):     # blocks that correspond, rows not
        fd.loss("huber", Y[K], P[~K]).compute()


def test_float32_chunks_and_a_deep_tree(rng):
    y, p = sample("log_cosh", 100_000, rng, dtype=np.float32)
    Y, P = da.from_array(y, chunks=1000), da.from_array(p, chunks=1000)
    lazy = fd.loss("log_cosh", Y, P, split_every=3)
    # the CPU kernels add float32 values in pairs before the float64 sum (backends.cpu's
    # _buffer_sum), and chunks of 1000 pair other elements than blocks of 4096: each pair
    # is rounded to within 2**-24 of its sum, all terms non-negative
    rel_close(lazy.compute(scheduler="threads"), fl.log_cosh(y, p), rtol=2**-24)


def test_bad_input_is_named():
    Y, P = da.ones(10, chunks=5), da.ones(11, chunks=5)
    with pytest.raises(ValueError, match="same shape"):
        fd.loss("mse", Y, P)
    with pytest.raises(ValueError, match="sample_weight"):
        fd.loss("mse", Y, Y, sample_weight=da.ones(3, chunks=3))
    with pytest.raises(ValueError, match="unknown loss"):
        fd.loss("msee", Y, Y)
    with pytest.raises(TypeError, match="delta"):
        fd.grad("mse", Y, Y, delta=1.0)
    lazy = fd.loss("poisson_nll", -da.ones(10, chunks=5), Y)        # found when computed
    with pytest.raises(ValueError, match="y_true"):
        lazy.compute()


def _cluster_script(processes):
    return textwrap.dedent(f"""
        import numpy as np, dask.array as da, fastloss as fl, fastloss.dask as fd
        from dask.distributed import Client, LocalCluster
        if __name__ == "__main__":
            rng = np.random.default_rng(0)
            y, p, w = rng.standard_normal(200_000), rng.standard_normal(200_000), rng.random(200_000)
            fl.huber(y, p)                       # a parallel kernel in the parent before workers start
            with LocalCluster(n_workers=2, threads_per_worker=2, processes={processes},
                              dashboard_address=None) as cluster, Client(cluster) as client:
                Y, P, W = (da.from_array(a, chunks=30_000) for a in (y, p, w))
                value = fd.loss("huber", Y, P, sample_weight=W, delta=0.5).compute()
                grad = fd.grad("huber", Y, P, sample_weight=W, delta=0.5).compute()
            expected = fl.huber(y, p, sample_weight=w, delta=0.5)
            assert abs(value - expected) <= 1e-12 * abs(expected), (value, expected)
            g = fl.get("huber", delta=0.5).grad(y, p, sample_weight=w)
            assert np.allclose(grad, g, rtol=1e-12, atol=0), "gradients differ"
            print("ok", value)
    """)


@pytest.mark.parametrize("processes", [False, True], ids=["thread-workers", "process-workers"])
def test_distributed_local_cluster(processes, tmp_path):
    pytest.importorskip("distributed")
    script = tmp_path / "cluster.py"
    script.write_text(_cluster_script(processes))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=240, cwd=tmp_path, env=_env())
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok")


CUSTOM_CLUSTER_SCRIPT = textwrap.dedent("""
    import math, numpy as np, dask.array as da, fastloss as fl, fastloss.dask as fd
    from dask.distributed import Client, LocalCluster
    if __name__ == "__main__":
        # defined where the workers (which import this file as __mp_main__) never run it
        @fl.custom_loss
        def soft_gap(y, p, *, scale=1.0):
            return scale * math.sqrt(1.0 + (p - y) ** 2)

        rng = np.random.default_rng(1)
        y, p = rng.standard_normal(100_000), rng.standard_normal(100_000)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            Y, P = (da.from_array(a, chunks=20_000) for a in (y, p))
            value = fd.loss("soft_gap", Y, P, scale=2.0).compute()
            grad = fd.grad("soft_gap", Y, P, scale=2.0).compute()
            rows = fd.loss("soft_gap", Y, P, reduction="none").compute()
        loss = fl.get("soft_gap", scale=2.0)
        assert abs(value - loss(y, p)) <= 1e-12 * abs(value), (value, loss(y, p))
        assert np.allclose(grad, loss.grad(y, p), rtol=1e-12, atol=0)
        assert np.allclose(rows, fl.get("soft_gap")(y, p, reduction="none"), rtol=1e-12)
        print("ok", value)
""")


def test_custom_loss_on_process_workers_that_never_defined_it(tmp_path):
    """The tasks carry the loss object, whose pickle defines the custom loss on the worker;
    they used to carry its name, unknown there."""
    pytest.importorskip("distributed")
    script = tmp_path / "custom_cluster.py"
    script.write_text(CUSTOM_CLUSTER_SCRIPT)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=240, cwd=tmp_path, env=_env())
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok")


FORK_SCRIPT = textwrap.dedent("""
    import multiprocessing as mp, numpy as np, numba, fastloss as fl
    from fastloss.bench import bandwidth
    x = np.linspace(-3, 3, 1 << 18)
    FIRST_KERNEL                                  # the process's first parallel kernel
    parent = fl.log_cosh(x, x * 0.5)             # parallel kernel before forking
    def child(_):
        return fl.log_cosh(x, x * 0.5)
    if __name__ == "__main__":
        with mp.get_context("fork").Pool(2) as pool:
            values = pool.map(child, range(4))
        assert values == [parent] * 4, values
        print(numba.threading_layer())
""")


# fastloss bench's bandwidth probes run before any loss: they used to start Numba's
# default layer, GNU OpenMP, in which the forked children hung
FIRST_KERNELS = {"a loss": "pass",
                 "bench's probe": "bandwidth._read2(x.astype(np.float32), x.astype(np.float32))"}


@pytest.mark.parametrize("layer, first", [(None, "a loss"), ("workqueue", "a loss"),
                                          ("tbb", "a loss"), (None, "bench's probe")])
def test_fork_after_parallel_kernels_does_not_hang(layer, first, tmp_path):
    if layer == "tbb" and not _tbb_wheel_installed():
        pytest.skip("the tbb wheel is not installed")
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT.replace("FIRST_KERNEL", FIRST_KERNELS[first]))
    env = _env()
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    chosen = run.stdout.strip()
    assert chosen != "omp"                       # GNU OpenMP is never picked by default
    if layer:
        assert chosen == layer
    elif _tbb_wheel_installed():
        assert chosen == "tbb"                   # found in a virtual environment too


def _tbb_wheel_installed():
    import importlib.metadata
    try:
        importlib.metadata.distribution("tbb")
    except importlib.metadata.PackageNotFoundError:
        return False
    return sys.platform.startswith("linux")


def _env():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NUMBA_THREADING_LAYER", None)
    return env
