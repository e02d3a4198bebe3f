"""How every fastloss kernel (a jitted function that Python calls) is compiled."""
from . import cache
from .link_only import compiled_alone
from .vector_width import full_width


def as_kernel(dispatcher, tag):
    """``dispatcher``, cached on disk under ``tag`` (``cache``; None: not cached), compiled
    for the full vector width (``vector_width``) and with its callees compiled for linking
    into it only (``link_only``)."""
    if tag is not None:
        cache.enable(dispatcher, tag)
    return compiled_alone(full_width(dispatcher))
