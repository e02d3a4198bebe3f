"""The CUDA backend: a slot for numba.cuda kernels built from the same scalar maths.

Not implemented yet: every operation raises a clear error.
"""


def unavailable(*args, **kwargs):
    raise RuntimeError("the 'cuda' backend is not implemented yet in this version of fastloss; "
                       "use backend='cpu' or backend='numpy'")


reduce_value = value_none = grad = value_and_grad = grad_hess = weight_stats = unavailable
