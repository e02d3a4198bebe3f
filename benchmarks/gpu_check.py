"""The cuda backend's checks and throughput on a GPU: ``fastloss.bench.gpu`` (see its docstring).

    PYTHONPATH=. python benchmarks/gpu_check.py              # on a machine with a CUDA GPU
    PYTHONPATH=. python benchmarks/gpu_check.py --simulate   # anywhere, under Numba's CUDA simulator

Needs NumPy, Numba and numba-cuda (``pip install -e ".[cuda]"``); CuPy and a
CUDA build of PyTorch, where installed, add the linear cross-entropy on their
arrays and the PyTorch baselines.  Nothing to install on a machine that has
them; finishes in a few minutes.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastloss.bench.gpu import main  # noqa: E402  (imports nothing from Numba yet)

if __name__ == "__main__":
    sys.exit(main())
