"""Which backend runs a call, and how many threads the CPU kernels use."""
import contextlib
import contextvars
import numbers
import os

BACKENDS = ("auto", "numpy", "cpu", "cuda")
ENV_BACKEND = "FASTLOSS_BACKEND"

_default_backend = None
_UNSET = object()
_env_backend = _UNSET          # FASTLOSS_BACKEND, read once, on first use
_context_backend = contextvars.ContextVar("fastloss_backend", default=None)
_num_threads = None


def check_backend(name, argument="backend"):
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a string, one of {', '.join(BACKENDS)}; got {name!r}")
    if name not in BACKENDS:
        raise ValueError(f"unknown {argument} {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def set_backend(name):
    """Set the backend used when a call passes ``backend=None`` (None restores the default)."""
    global _default_backend
    _default_backend = None if name is None else check_backend(name)


@contextlib.contextmanager
def use_backend(name):
    """Within the block (and in this thread or task only), use backend ``name`` by default."""
    token = _context_backend.set(check_backend(name))
    try:
        yield
    finally:
        _context_backend.reset(token)


def get_backend():
    """The backend a call with ``backend=None`` would ask for now.

    In order: ``use_backend``, then ``set_backend``, then the environment
    variable FASTLOSS_BACKEND (read once, when first needed), then "auto".
    """
    global _env_backend
    name = _context_backend.get() or _default_backend
    if name is None:
        if _env_backend is _UNSET:
            env = os.environ.get(ENV_BACKEND)
            _env_backend = check_backend(env, ENV_BACKEND) if env else "auto"
        name = _env_backend
    return name


def set_num_threads(n):
    """Limit the threads of the parallel CPU kernels (None: all that Numba has)."""
    global _num_threads
    if n is None:
        _num_threads = None
        return
    import numba
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):     # NumPy's ints too
        raise TypeError(f"n must be an int, got {n!r}")
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"n must be between 1 and {numba.config.NUMBA_NUM_THREADS}, got {n}")
    _num_threads = int(n)


def get_num_threads():
    """The thread count the CPU kernels use."""
    if _num_threads is not None:
        return _num_threads
    import numba
    return numba.config.NUMBA_NUM_THREADS


def choose_fork_safe_threading_layer():
    """Numba's threading layer, unless the user chose one: TBB where installed, else workqueue.

    Never GNU OpenMP, which is not fork-safe: a child process forked after a
    parallel kernel ran (multiprocessing pools, process workers) would abort
    or hang on its first parallel kernel.  Takes effect only before Numba's
    first parallel launch in this process.
    """
    import numba
    if numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "forksafe"
    if numba.config.THREADING_LAYER in ("forksafe", "safe", "threadsafe", "tbb"):
        _load_pip_installed_tbb()


def _load_pip_installed_tbb():
    """Make the ``tbb`` wheel's library findable by Numba's TBB layer.

    The wheel puts ``libtbb.so.12`` in ``<prefix>/lib``, which the dynamic
    loader does not search in a virtual environment, and Numba's extension
    has no run path to it (numba/numba#6108), so Numba would fall back to
    workqueue.  A library loaded with RTLD_GLOBAL is found by its soname.
    """
    import ctypes
    import sys
    if not sys.platform.startswith("linux"):
        return
    path = os.path.join(sys.prefix, "lib", "libtbb.so.12")
    if os.path.exists(path):
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass
