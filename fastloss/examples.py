"""Example inputs for each registered loss, drawn from its declared domains.

Used by the test suite and the benchmarks alike, so that both exercise every
registered loss on data it accepts.
"""
import numpy as np

from .specs import REGISTRY


def draw(domain, rng, shape, scale=3.0):
    """Values from a domain: labels for the discrete ones, spread reals otherwise."""
    if domain == "binary":
        return rng.integers(0, 2, shape).astype(np.float64)
    if domain == "signed_binary":
        return rng.choice([-1.0, 1.0], shape)
    if domain == "unit":
        u = rng.uniform(0.0, 1.0, shape)
        edge = rng.uniform(size=shape) < 0.05          # some exact 0s and 1s
        return np.where(edge, np.round(u), u)
    if domain == "nonneg":
        return rng.poisson(2.0, shape).astype(np.float64)
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)


def domains(name):
    """(y_true's domain, y_pred's domain) that ``inputs`` draws loss ``name``'s inputs from."""
    spec = REGISTRY[name]
    return spec.example_y_domain or spec.y_domain, spec.p_domain


def inputs(name, n, rng, dtype=np.float64, shape=None):
    """(y_true, y_pred) for loss ``name``: n elements, or the given shape."""
    y_domain, p_domain = domains(name)
    shape = (n,) if shape is None else shape
    y = draw(y_domain, rng, shape)
    if p_domain == "unit":
        p = np.clip(rng.uniform(0.0, 1.0, shape), 1e-6, 1 - 1e-6)
    else:
        p = draw(p_domain, rng, shape)
    return y.astype(dtype), p.astype(dtype)
