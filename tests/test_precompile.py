"""``fastloss compile``: after it, a fresh process loads every kernel its calls take."""
import os
import subprocess
import sys

import pytest

import fastloss as fl
from fastloss.precompile import precompile

# The calls a user makes, on other data than the compile step used; then the kernels'
# cache statistics: (loaded from the cache, compiled).
CALLS = """
import numpy as np, fastloss as fl
from fastloss.backends import cpu
from fastloss.kernels import softmax, softmax_few
rng = np.random.default_rng(1)
for n in (100, 100_000):
    y, p = rng.normal(size=n), rng.normal(size=n)
    mse = fl.get("mse")
    mse(y, p); mse(y, p, reduction="sum"); mse(y, p, reduction="none")
    mse.grad(y, p); mse.value_and_grad(y, p); mse.grad_hess(y, p)
    for C in (5, 50):                 # cross_entropy's kernels for few classes and for rows
        x = rng.normal(size=(n // C, C))
        fl.get("cross_entropy").value_and_grad(rng.integers(0, C, n // C), x)
        fl.get("cross_entropy").grad_hess(rng.integers(0, C, n // C), x)
dispatchers = [d for ks in cpu._kernels.values() for d in ks.values()]
dispatchers += [softmax.cross_entropy_labels, softmax_few.cross_entropy_few]
print(sum(sum(d.stats.cache_hits.values()) for d in dispatchers),
      sum(sum(d.stats.cache_misses.values()) for d in dispatchers))
"""


def _cache_statistics(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    root = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", CALLS], capture_output=True, text=True,
                         env=env, check=True)
    return tuple(int(v) for v in out.stdout.split())


def test_after_compile_a_fresh_process_compiles_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    done = []
    precompile(["mse", "cross_entropy"], ["float64"], workers=2,
               progress=lambda name, dtype: done.append((name, dtype)))
    assert sorted(done) == [("cross_entropy", "float64"), ("mse", "float64")]
    hits, misses = _cache_statistics(tmp_path)
    assert misses == 0
    assert hits >= 8            # mse's serial and parallel value, none, grad, v&g, grad_hess


def test_without_compile_the_same_calls_compile(tmp_path):
    hits, misses = _cache_statistics(tmp_path)      # the check above can fail
    assert hits == 0 and misses >= 8


@pytest.mark.parametrize("kwargs, argument", [({"names": ["nope"]}, "names"),
                                              ({"dtypes": ["float16"]}, "dtypes")])
def test_bad_arguments_are_named(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        precompile(**{"names": ["mse"], **kwargs})
