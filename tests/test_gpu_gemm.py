"""``gpu_gemm.gemm_call``, the column-major cuBLAS arguments of a row-major product, held to NumPy's
matmul on the CPU: a column-major strided batched GEMM is carried out here as cuBLAS defines it,
reading the operands' memory through the pointers, leading dimensions and strides given, on every
layout the objective's products use (``tests/test_gpu.py`` runs the real cuBLAS call on a GPU)."""
import numpy as np
import pytest

from artem_cli import gpu_gemm
from cupy_on_numpy import cublas_gemm  # cuBLAS's product as its documentation defines it


def memory_of(view):
    """The flat memory from ``view``'s first element to the end of its base array."""
    base = view
    while base.base is not None:
        base = base.base
    start = (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // view.itemsize
    return base.reshape(-1)[start:]


def layouts(xp=np, dtype=np.float32):
    """Products as the objective makes them, their operands of ``dtype`` on ``xp`` (numpy or cupy)."""
    rng = np.random.default_rng(0)
    r = lambda *shape: xp.asarray(rng.standard_normal(shape).astype(dtype))  # noqa: E731
    f = r(6, 40)
    centre = r(7)
    return {
        "2-D": (r(5, 7), r(7, 3)),
        "gram f fT": (f, f.T),
        "style gradient": (r(6, 6), f),
        "transposed left": (r(7, 5).T, r(7, 3)),
        "both transposed": (r(7, 5).T, r(3, 7).T),
        "rows of a wider matrix": (r(5, 9)[:, 2:9], r(7, 3)),
        "column vector (M of an XNOR layer)": (r(18, 7), centre[:, None]),
        "row vector": (r(1, 7), r(7, 4)),
        "one column out": (r(4, 7), r(7, 1)),
        "batched (Winograd)": (r(36, 5, 7), r(36, 7, 11)),
        "batched from reshaped workspace": (r(36, 4, 3), r(36 * 3 * 20).reshape(36, 3, 20)),
        "2-D against a stack": (r(5, 7), r(4, 7, 3)),
        "a stack against 2-D": (r(4, 5, 7), r(7, 3)),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("name", list(layouts()))
def test_gemm_call_writes_what_numpy_matmul_does(name, dtype):
    """float32, and float16 (the backward through binary weights in a graph), by its strides in
    2-byte elements."""
    a, b = layouts(np, dtype)[name]
    expected = np.matmul(a.astype(np.float64), b)
    out = np.full(expected.shape, np.nan, dtype=np.float64)
    call = gpu_gemm.gemm_call(a.shape, a.strides, b.shape, b.strides, out.astype(dtype).strides, a.itemsize)
    assert call is not None
    cublas_gemm(call, memory_of(b), memory_of(a), out.reshape(-1))  # cuBLAS's A is the right factor
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_gemm_call_declines_what_is_neither_contiguous_nor_transposed():
    a, b = np.ones((5, 14), np.float32)[:, ::2], np.ones((7, 3), np.float32)
    assert gpu_gemm.gemm_call(a.shape, a.strides, b.shape, b.strides, (12, 4)) is None
    with pytest.raises(ValueError, match="do not match"):
        gpu_gemm.gemm_call((5, 7), (28, 4), (6, 3), (12, 4), (12, 4))
