"""On-disk caching for kernels generated from a template by closure.

Numba's own ``cache=True`` does not work for closures over other jitted
functions: it keys the cache on a pickle of the closure cells, and a
dispatcher pickles differently in every process, so every run misses.  The
kernels here are closures (one template, many losses), so they get this cache
instead: the same on-disk format and locations as Numba's, one index file per
(template, loss, variant), keyed on the template's bytecode plus a hash of the
sources the kernel is compiled from (so editing a loss invalidates its
kernels).
"""
import hashlib
import os

from numba.core.caching import FunctionCache, IndexDataCacheFile

_SOURCE_DIGEST = None


def source_digest():
    """A hash of the package's kernel sources; part of every cache key."""
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        h = hashlib.sha256()
        for sub in ("kernels", "backends"):
            folder = os.path.join(root, sub)
            for name in sorted(os.listdir(folder)):
                if name.endswith(".py"):
                    with open(os.path.join(folder, name), "rb") as f:
                        h.update(name.encode() + b"\0" + f.read())
        # the specs too: kernels close over a spec's parameter order and constants
        with open(os.path.join(root, "specs.py"), "rb") as f:
            h.update(b"specs.py\0" + f.read())
        _SOURCE_DIGEST = h.hexdigest()
    return _SOURCE_DIGEST


class KernelCache(FunctionCache):
    """A FunctionCache whose key names the kernel instead of pickling its closure."""

    def __init__(self, py_func, tag):
        self._tag = tag
        super().__init__(py_func)
        stamp = (self._impl.locator.get_source_stamp(), source_digest())
        self._cache_file = IndexDataCacheFile(
            cache_path=self._cache_path,
            # the sources' digest in the name: after an upgrade, a kernel without
            # a cache entry has no index file (fastloss bench compiles those first)
            filename_base=f"{self._impl.filename_base}-{tag}-{source_digest()[:12]}",
            source_stamp=stamp,
        )

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except ImportError:
            # The entry's environment names the module of a function it was compiled
            # from, which this process cannot import: a custom loss whose functions
            # cloudpickle copied here by value.  Compile instead.
            return None

    def _index_key(self, sig, codegen):
        code = hashlib.sha256(self._py_func.__code__.co_code).hexdigest()
        return (sig, codegen.magic_tuple(), (code, self._tag, source_digest()))


def enable(dispatcher, tag):
    """Give a jitted closure an on-disk cache named by ``tag``."""
    dispatcher._cache = KernelCache(dispatcher.py_func, tag)
    return dispatcher
