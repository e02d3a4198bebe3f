"""The CUDA backend: numba.cuda kernels built from the same scalar maths as the CPU kernels.

Needs the ``numba-cuda`` package (``pip install "fastloss[cuda]"``) and either a
CUDA driver with a GPU or Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1,
which runs the kernels as Python threads: for tests, not for speed).  This
package imports nothing from numba.cuda until ``require`` is called, so
asking what is available costs nothing on a machine without a GPU.
"""
import importlib.util
import os


def _restore_numpy_names():
    """Put back the NumPy names numba-cuda registers kernels for, where this NumPy removed them.

    numba-cuda 0.30 overloads ``np.row_stack`` unconditionally when it first
    compiles a kernel; NumPy 2.5 removed that alias of ``np.vstack``, so every
    compile raised AttributeError (seen on a GPU host with NumPy 2.5.2).
    Numba's CPU target already skips it there.
    """
    import numpy
    if not hasattr(numpy, "row_stack"):
        numpy.row_stack = numpy.vstack


_restore_numpy_names()


class CudaUnavailable(RuntimeError):
    """backend="cuda" was asked for where it cannot run; the message says what is missing."""


def _simulated():
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def missing():
    """Why the cuda backend cannot run here, or None if it can."""
    if importlib.util.find_spec("numba_cuda") is None:
        return ("the cuda backend needs the numba-cuda package, which is not installed: "
                "pip install \"fastloss[cuda]\"")
    from numba import cuda
    if _simulated():
        return None
    try:
        if cuda.is_available():
            return None
    except Exception as e:                                  # pragma: no cover (driver-specific)
        return f"the CUDA driver could not be initialised: {e}"
    return ("the cuda backend found no CUDA GPU or driver on this machine "
            "(NUMBA_ENABLE_CUDASIM=1 runs Numba's CUDA simulator instead)")


def describe():
    """A one-line account of the cuda backend here: the GPU, the simulator, or what is missing."""
    why = missing()
    if why is not None:
        return f"unavailable: {why}"
    if _simulated():
        return "available: Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    from numba import cuda
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
    return f"available: {name}, compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]}"


def require():
    """Raise CudaUnavailable naming what is missing, unless the cuda backend can run."""
    why = missing()
    if why is not None:
        raise CudaUnavailable(why)
