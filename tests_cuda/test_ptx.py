"""The CUDA kernels compile for a real GPU (sm_90), not just in the simulator: a covering
set of them, in which every loss's device functions are compiled at each dtype
(``compile_ptx``'s docstring; ``python -m tests_cuda.compile_ptx --all`` compiles all)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Compiling the covering set's 125 kernels takes about 2 minutes on one of CI's two cores
# (all 275: 4.5): in slices, pytest's workers share it.
PARTS = 4


@pytest.mark.parametrize("part", range(PARTS))
def test_every_kernel_compiles_to_ptx(part):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    run = subprocess.run([sys.executable, "-m", "tests_cuda.compile_ptx", "--part", f"{part}/{PARTS}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "kernels compiled to sm_90 PTX" in run.stdout
