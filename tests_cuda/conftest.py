"""The CUDA backend's tests: run with ``pytest tests_cuda``, in a process of their own.

Without a GPU they run under Numba's CUDA simulator, which this file turns on
before Numba is imported (NUMBA_ENABLE_CUDASIM=0 in the environment runs them
on a real GPU instead).  The simulator runs each GPU thread as a Python
thread, so inputs are small here; ``benchmarks/gpu_check.py`` checks
realistic sizes on a GPU.  Skipped when numba-cuda is not installed.
"""
import importlib.util
import os
import sys

import pytest

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
if "numba" in sys.modules and os.environ["NUMBA_ENABLE_CUDASIM"] == "1":
    from numba.core import config
    if not config.ENABLE_CUDASIM:                    # pragma: no cover
        raise RuntimeError("run the CUDA tests in their own process: pytest tests_cuda")

if importlib.util.find_spec("numba_cuda") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    from tests.conftest import LOSS_CASES, LOSS_IDS  # noqa: E402,F401  (registers the test's custom loss)


@pytest.fixture
def rng():
    import numpy as np
    return np.random.default_rng(2024)


@pytest.fixture(autouse=True)
def _restore_defaults():
    yield
    import fastloss as fl
    fl.set_backend(None)


SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
