"""A kernel's callees are compiled for linking only, and still work from Python.

``fastloss.kernels.link_only`` leaves the module optimization and the machine
code of the functions a kernel calls to the kernel.  These check that it does
(the callees' libraries are link-only, so the saving is real) and that nothing
else changes: the kernels compute what plain Numba builds compute, a callee
called from Python afterwards gives its result or raises its exception, and a
link-only library can still be serialized for Numba's cache.
"""
import math

import numpy as np
import pytest
from numba import config, njit, prange

from fastloss.kernels.link_only import compiled_alone

pytestmark = pytest.mark.skipif(config.ENABLE_CUDASIM, reason="off under the CUDA simulator")


def _helpers():
    """A fresh pair of jitted functions (so this test compiles them, not an earlier one)."""
    @njit
    def checked_sqrt(x):
        if x < 0.0:
            raise ValueError("negative input")
        return math.sqrt(x)

    @njit
    def term(x):
        return checked_sqrt(x) * 2.0 + 1.0

    return checked_sqrt, term


def _kernels(term):
    def serial(a):
        s = 0.0
        for i in range(a.shape[0]):
            s += term(a[i])
        return s

    def parallel(a):
        s = 0.0
        for i in prange(a.shape[0]):
            s += term(a[i])
        return s

    return serial, parallel


def _library(dispatcher):
    return dispatcher.overloads[dispatcher.signatures[0]].library


@pytest.mark.parametrize("parallel", [False, True])
def test_callees_are_link_only_and_the_kernel_computes_as_plain_numba(parallel):
    checked_sqrt, term = _helpers()
    plain_sqrt, plain_term = _helpers()
    serial, par = _kernels(term)
    kernel = compiled_alone(njit(parallel=parallel)(par if parallel else serial))
    plain = njit(parallel=parallel)(_kernels(plain_term)[parallel])
    a = np.linspace(0.0, 9.0, 1001)

    assert kernel(a) == plain(a)
    assert _library(term)._fastloss_link_only
    assert _library(checked_sqrt)._fastloss_link_only
    assert not getattr(_library(kernel), "_fastloss_link_only", False)
    assert not getattr(_library(plain_term), "_fastloss_link_only", False)


def test_a_link_only_callee_called_from_python_gives_its_result_and_its_exception():
    checked_sqrt, term = _helpers()
    kernel = compiled_alone(njit(_kernels(term)[0]))
    kernel(np.array([4.0]))
    assert _library(term)._fastloss_link_only

    assert term(4.0) == 5.0
    assert checked_sqrt(2.25) == 1.5
    assert not _library(term)._fastloss_link_only
    with pytest.raises(ValueError, match="negative input"):
        checked_sqrt(-1.0)
    assert term(9.0) == 7.0
    assert term(x=16.0) == 9.0


def test_a_link_only_library_serializes_for_the_cache():
    checked_sqrt, term = _helpers()
    kernel = compiled_alone(njit(_kernels(term)[0]))
    kernel(np.array([1.0]))
    library = _library(term)
    assert library._fastloss_link_only
    name, kind, (object_code, bitcode) = library.serialize_using_object_code()
    assert kind == "object" and len(object_code) > 0 and len(bitcode) > 0
    assert not library._fastloss_link_only


def test_without_what_it_needs_from_numba_kernels_compile_as_plain_numba(monkeypatch):
    from fastloss.kernels import link_only
    monkeypatch.setattr(link_only, "_trampoline", None)
    monkeypatch.setattr(link_only, "_numba_has_what_is_needed", lambda: False)
    checked_sqrt, term = _helpers()
    kernel = compiled_alone(njit(_kernels(term)[0]))
    assert kernel(np.array([4.0, 9.0])) == 12.0
    assert not getattr(_library(term), "_fastloss_link_only", False)
    assert link_only._trampoline is False
