"""Numba code: the scalar maths of every loss and the kernels built from it.

Nothing here is imported by ``import fastloss``; the backends import it on
first use so that importing the package does not pay Numba's import cost.
"""
