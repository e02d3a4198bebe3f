"""Numba code: the scalar maths of every loss and the kernels built from it.

Nothing here is imported by ``import fastloss``; the backends import it on
first use so that importing the package does not pay Numba's import cost.

Every module of fastloss that defines a parallel kernel imports from this
package, so the threading layer is chosen here, before any of them can launch
(``_config.choose_fork_safe_threading_layer``): ``fastloss bench``'s bandwidth
probes, which run first, used to start Numba's default layer, GNU OpenMP.
"""
from .. import _config

_config.choose_fork_safe_threading_layer()
