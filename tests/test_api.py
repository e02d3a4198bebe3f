"""The public API: functions, Loss objects, backend choice, threads, start-up."""
import inspect
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastloss as fl
from fastloss.specs import REGISTRY

from .conftest import loss_function, loss_name, sample


def test_every_registered_loss_is_a_public_function():
    assert fl.available() == sorted([*REGISTRY, "cross_entropy", "linear_cross_entropy", "multi_margin", "nll",
                                      "softmax_focal"])
    for name in (n for n, spec in REGISTRY.items() if not spec.custom):
        f = getattr(fl, name)
        assert f.__name__ == name
        assert REGISTRY[name].formula.split(";")[0] in f.__doc__
        params = inspect.signature(f).parameters
        assert list(params)[:2] == ["y_true", "y_pred"]
        for p in REGISTRY[name].params:
            assert params[p.name].default == p.default


@loss_name
def test_function_and_loss_object_agree(name, rng):
    y, p = sample(name, 50, rng)
    spec = REGISTRY[name]
    params = dict(spec.test_params[0]) if spec.test_params else {}
    loss = fl.get(name, **params)
    assert loss_function(name)(y, p, **params) == loss(y, p) == loss.value(y, p)
    assert repr(loss).startswith(f"fastloss.get({name!r}")


def test_huber_example_from_the_issue():
    y = np.array([0.0, 1.0, 5.0])
    p = np.array([0.5, 1.0, 0.0])
    loss = fl.get("huber", delta=2.0)
    # 0.5*0.25, 0, 2*(5 - 1)
    assert loss(y, p) == pytest.approx((0.125 + 0.0 + 8.0) / 3, rel=1e-15)
    assert loss(y, p) == fl.huber(y, p, delta=2.0)


def test_backend_selection_order(monkeypatch):
    calls = []
    from fastloss import backends
    real = backends.load

    def spy(name):
        calls.append(name)
        return real(name)

    monkeypatch.setattr(backends, "load", spy)
    y, p = [0.0, 1.0], [1.0, 1.0]
    fl.mse(y, p)
    assert calls[-1] == "cpu"                       # auto -> cpu for host arrays
    fl.set_backend("numpy")
    fl.mse(y, p)
    assert calls[-1] == "numpy"
    with fl.use_backend("cpu"):
        fl.mse(y, p)
        assert calls[-1] == "cpu"                   # the context beats set_backend
        fl.mse(y, p, backend="numpy")
        assert calls[-1] == "numpy"                 # an explicit argument beats all
    fl.mse(y, p)
    assert calls[-1] == "numpy"
    fl.set_backend(None)
    fl.mse(y, p)
    assert calls[-1] == "cpu"


def test_environment_variable_sets_the_default():
    code = "import fastloss as fl; print(fl.get_backend()); fl.set_backend('cpu'); print(fl.get_backend())"
    assert _run_python(code, {"FASTLOSS_BACKEND": "numpy"}).split() == ["numpy", "cpu"]
    bad = subprocess.run([sys.executable, "-c", "import fastloss as fl; fl.mse([1.0], [2.0])"],
                         capture_output=True, text=True,
                         env=dict(os.environ, FASTLOSS_BACKEND="bogus"))
    assert bad.returncode != 0 and "FASTLOSS_BACKEND" in bad.stderr


def test_use_backend_is_local_to_a_thread():
    seen = {}

    def worker():
        seen["other"] = fl.get_backend()

    with fl.use_backend("numpy"):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert fl.get_backend() == "numpy"
    assert seen["other"] == "auto"


def test_available_backends():
    assert fl.available_backends() == ["numpy", "cpu"]


def test_cuda_backend_restores_the_numpy_alias_numba_cuda_registers(monkeypatch):
    """NumPy 2.5 removed np.row_stack; numba-cuda 0.30 overloads it on its first compile."""
    from fastloss.backends import cuda
    monkeypatch.delattr(np, "row_stack", raising=False)
    cuda._restore_numpy_names()
    assert np.row_stack is np.vstack
    own = object()
    monkeypatch.setattr(np, "row_stack", own)
    cuda._restore_numpy_names()
    assert np.row_stack is own


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="between 1 and"):
        fl.set_num_threads(0)
    with pytest.raises(TypeError):
        fl.set_num_threads(1.5)
    with pytest.raises(TypeError):
        fl.set_num_threads(True)
    fl.set_num_threads(np.int64(1))                  # NumPy's integers are ints here
    assert fl.get_num_threads() == 1 and type(fl.get_num_threads()) is int
    fl.set_num_threads(1)
    assert fl.get_num_threads() == 1


CONCURRENT_CALLS_SCRIPT = """
import threading, numpy as np, numba, fastloss as fl
rng = np.random.default_rng(0)
x = rng.normal(size=(4096, 64))
labels = rng.integers(0, 64, 4096)
targets = rng.dirichlet(np.ones(64), 4096)
y = rng.integers(0, 2, 1 << 18).astype(np.float64)
p = rng.normal(size=1 << 18)
calls = [lambda: fl.get("cross_entropy").value_and_grad(labels, x),
         lambda: fl.get("cross_entropy").value_and_grad(targets, x),
         lambda: fl.get("multi_margin").value_and_grad(labels, x),
         lambda: fl.get("softmax_focal").value_and_grad(labels, x),
         lambda: fl.get("binary_cross_entropy_with_logits").value_and_grad(y, p)]
expected = [call() for call in calls]
errors = []
def work():
    for _ in range(3):
        for call, (value, grad) in zip(calls, expected):
            v, g = call()
            if v != value or not np.array_equal(g, grad):
                errors.append(call)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
print(numba.threading_layer())
"""


@pytest.mark.parametrize("layer", ["fastloss's choice", "workqueue"])
def test_concurrent_calls_from_python_threads(layer):
    """Every parallel kernel, the row losses' included, from four threads at once:
    the same results, and no abort (workqueue aborts the process when entered
    from two threads at once, so fastloss serializes those calls)."""
    env = {"NUMBA_NUM_THREADS": "2"}
    if layer == "workqueue":
        env["NUMBA_THREADING_LAYER"] = layer
    chosen = _run_python(CONCURRENT_CALLS_SCRIPT, env=env)     # the script checks the results
    if layer == "workqueue":
        assert chosen == "workqueue"


THRESHOLD_SCRIPT = """
import numpy as np, fastloss as fl
from fastloss.backends import cpu
for name in ("mse", "log_cosh"):
    m = cpu.parallel_min_size(name)
    x = np.linspace(-1.0, 1.0, m)
    fl.get(name)(x[:-1], x[:-1] * 0.5)
    built_below = sorted(k for k in cpu._kernels if k[0] == name)
    fl.get(name)(x, x * 0.5)
    built_at = sorted(k for k in cpu._kernels if k[0] == name)
    print(m, built_below == [(name, False)], built_at == [(name, False), (name, True)])
"""


@pytest.mark.parametrize("layer", ["fastloss's choice", "workqueue"])
def test_serial_builds_run_below_the_threading_layers_threshold(layer):
    """Waking the threads costs tens of microseconds under TBB and hundreds under
    workqueue: inputs below the layer's threshold (higher for the arithmetic losses)
    take the serial builds, and no parallel kernel is even built for them."""
    env = {"NUMBA_NUM_THREADS": "2"}
    if layer == "workqueue":
        env["NUMBA_THREADING_LAYER"] = layer
    from fastloss.backends import cpu
    factor = cpu.WORKQUEUE_FACTOR if layer == "workqueue" else 1
    lines = _run_python(THRESHOLD_SCRIPT, env=env).splitlines()
    expected = [cpu.ARITHMETIC_PARALLEL_MIN_SIZE * factor, cpu.PARALLEL_MIN_SIZE * factor]
    for line, size in zip(lines, expected, strict=True):       # mse, then log_cosh
        assert line.split() == [str(size), "True", "True"]


def test_kernels_without_serial_builds_run_serial_twins_for_small_inputs():
    """call_parallel (the row losses' kernels) runs a kernel's serial twin below
    SERIAL_BELOW elements of its first argument, and the parallel build on fastloss's
    thread count from there up; the thread's Numba count stays fastloss's."""
    numba = pytest.importorskip("numba")
    from fastloss.backends import cpu

    @numba.njit(parallel=True)
    def threads_seen(a, out):
        for i in numba.prange(1):
            out[i] = numba.get_num_threads()

    seen = np.zeros(1, np.int64)
    cpu.call_parallel(threads_seen, np.zeros(cpu.SERIAL_BELOW - 1), seen)
    assert cpu.serial_twin(threads_seen).signatures and not threads_seen.signatures
    assert not cpu.serial_twin(threads_seen).targetoptions.get("parallel")
    cpu.call_parallel(threads_seen, np.zeros(cpu.SERIAL_BELOW), seen)
    assert threads_seen.signatures
    assert seen[0] == fl.get_num_threads()
    # this thread's own parallel Numba code is not left on one thread
    assert numba.get_num_threads() == fl.get_num_threads()


SMALL_ROW_LOSSES_SCRIPT = """
import numpy as np, numba, fastloss as fl
x = np.random.default_rng(0).normal(size=(32, 10)).astype(np.float32)
labels = np.arange(32) % 10
for name in ("cross_entropy", "nll", "multi_margin", "softmax_focal"):
    loss = fl.get(name)
    loss(labels, x); loss.value_and_grad(labels, x); loss.grad_hess(labels, x)
try:
    print(numba.threading_layer())
except ValueError:
    print("not started")
fl.cross_entropy(np.zeros(4096, int), np.zeros((4096, 10)))
print(numba.threading_layer() in ("tbb", "workqueue"))
"""


def test_small_row_losses_start_no_threads():
    """Small batches of the row losses run serial twins: in a fresh process, the threading
    layer is not started (woken threads cost more than such a call)."""
    assert _run_python(SMALL_ROW_LOSSES_SCRIPT).splitlines() == ["not started", "True"]


def _run_python(code, env=None):
    full_env = dict(os.environ, **(env or {}))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=full_env, check=True)
    return out.stdout.strip()


def test_import_does_not_import_numba():
    out = _run_python("import sys, fastloss; print('numba' in sys.modules)")
    assert out == "False"


def test_kernels_are_cached_on_disk():
    code = ("import numpy as np, fastloss as fl; from fastloss.backends import cpu;"
            "fl.mse(np.ones(10), np.zeros(10));"
            "k = cpu.kernels('mse', False)['reduce_value'];"
            "print(sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values()))")
    _run_python(code)
    hits, misses = _run_python(code).split()
    assert (hits, misses) == ("1", "0")
