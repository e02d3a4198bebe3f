import numpy as np


def assert_close(actual, expected, dtype, what=""):
    """Elementwise agreement to float64 (1e-12) or float32 (2e-6) accuracy.

    The absolute floor scales with the typical magnitude of ``expected`` so
    that values that cancel to near zero (a gradient sigmoid(x) - y, say) are
    judged against the size of the terms they came from.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if np.dtype(dtype) != np.float64:
        # what the output dtype can hold (tiny values flush to 0, huge ones to inf)
        with np.errstate(over="ignore", under="ignore"):
            expected = expected.astype(dtype).astype(np.float64)
    rtol = 1e-12 if np.dtype(dtype) == np.float64 else 2e-6
    finite = np.isfinite(expected)
    scale = np.mean(np.abs(expected[finite])) if finite.any() else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale + 1e-300,
                               err_msg=what)


def assert_scalar_close(actual, expected, dtype, what=""):
    rtol = 1e-12 if np.dtype(dtype) == np.float64 else 1e-6
    assert isinstance(actual, float), f"{what}: expected a Python float, got {type(actual)}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-300, err_msg=what)


ROW_LOSS_TARGETS = [("cross_entropy", "labels"), ("cross_entropy", "probs"),
                    ("softmax_focal", "labels"), ("nll", "labels"), ("multi_margin", "labels")]
ROW_OUT_ALIASES = ["logits shifted down", "logits shifted up", "sample_weight", "targets"]


def row_out_overlap(alias, x, y, w, to_device=lambda a: a):
    """(y, x, w, out) of a row loss whose gradient buffer ``out`` overlaps an input as
    ``alias`` says, with the values of x, y (labels or probabilities) and w (N sample
    weights): the arrays are views of one block of memory, made by ``to_device``."""
    N, C = x.shape
    if alias.startswith("logits"):
        lo = 0 if alias.endswith("down") else 1        # x's first row; out's is one off it
        room = np.zeros((N + 1, C), x.dtype)
        room[lo:lo + N] = x
        room = to_device(room)
        return to_device(y), room[lo:lo + N], to_device(w), room[1 - lo:1 - lo + N]
    if alias == "sample_weight":
        room = np.zeros(N * C, x.dtype)
        room[:N] = w
        room = to_device(room)
        return to_device(y), to_device(x), room[:N], room.reshape(N, C)
    room = to_device(np.array(y, x.dtype))                  # "targets": probabilities
    return room, to_device(x), to_device(w), room
