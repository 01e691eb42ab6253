"""Matrix products that a CUDA graph can record.

cuBLAS supports stream capture, but CuPy refuses every cuBLAS call on a stream that is being
recorded (its bindings raise ``NotImplementedError`` in ``cublasSetStream``). ``matmul`` therefore
calls cuBLAS itself, through ctypes, on the recording graph's own handle and workspace (``Cublas``,
made before the recording, so that nothing is allocated during it), in the precision CuPy would use
by default: ``cublasGemmStridedBatchedEx`` summing in float32 (float16 operands too, as the float16
backward through binary weights has them), or in TF32 under ``CUPY_TF32=1`` where CuPy would (a
single float32 product; its batched products stay float32).
``backend.matmul`` sends it the products made while a ``backend.CudaGraph`` records, and those of
a benchmark that times TF32 beside float32 (``products_on``); every other product is CuPy's (or
NumPy's) own.

``gemm_call`` works out cuBLAS's column-major arguments from the row-major operands' shapes and
strides alone, so the tests check it on the CPU against NumPy (``tests/test_gpu_gemm.py``).
"""
import contextlib
import ctypes
import os
import threading
import weakref

import numpy as np

from .errors import ArtemError

OP_N, OP_T = 0, 1  # cublasOperation_t
CUDA_R_32F, CUDA_R_16F = 0, 2  # cudaDataType
DATA_TYPES = {np.dtype(np.float32): CUDA_R_32F, np.dtype(np.float16): CUDA_R_16F}
COMPUTE_32F, COMPUTE_32F_FAST_TF32 = 68, 77  # cublasComputeType_t
GEMM_DEFAULT = -1  # cublasGemmAlgo_t
WORKSPACE_BYTES = 32 * 2**20  # cuBLAS's recommendation for Hopper


def _layout(rows, cols, row_stride, col_stride):
    """How cuBLAS sees a row-major (rows, cols) matrix with these element strides: ("N", ld) where its
    memory holds the transpose column by column (rows contiguous), ("T", ld) where it holds the
    matrix itself column by column (a transposed view); None where it is neither."""
    if (cols == 1 or col_stride == 1) and (rows == 1 or row_stride >= cols):
        return OP_N, row_stride if rows > 1 else max(cols, 1)
    if (rows == 1 or row_stride == 1) and (cols == 1 or col_stride >= rows):
        return OP_T, col_stride if cols > 1 else max(rows, 1)
    return None


def _matrices(shape, strides, itemsize):
    """(batch, rows, cols, element strides of the batch, row and column) of a 2-D or 3-D operand;
    a 2-D one is the same matrix for every product of a batch (stride 0)."""
    if len(shape) == 2:
        return 1, *shape, 0, strides[0] // itemsize, strides[1] // itemsize
    if len(shape) == 3:
        return shape[0], shape[1], shape[2], *(s // itemsize for s in strides)
    raise ValueError(f"gemm_call takes 2-D or 3-D operands, not {len(shape)}-D")


def gemm_call(a_shape, a_strides, b_shape, b_strides, out_strides, itemsize=4):
    """The arguments of ``cublasGemmStridedBatchedEx`` that write out = a @ b, for row-major operands
    of ``itemsize`` bytes given by shapes and byte strides, a and b each 2-D or a 3-D stack (batches equal, or
    one 2-D), ``out`` C-contiguous in its last two axes: a dict of transa, transb, m, n, k, lda,
    stride_a, ldb, stride_b, ldc, stride_c, batch, with cuBLAS's A the right factor ``b`` (a
    row-major product C = a b is the column-major Cᵀ = bᵀ aᵀ). None where an operand is neither
    contiguous nor a transposed view in its last two axes (copy it first)."""
    ba, m, k, sa_batch, sa_row, sa_col = _matrices(a_shape, a_strides, itemsize)
    bb, k_b, n, sb_batch, sb_row, sb_col = _matrices(b_shape, b_strides, itemsize)
    if k != k_b or (ba != bb and 1 not in (ba, bb)) or (len(a_shape) == len(b_shape) == 3 and ba != bb):
        raise ValueError(f"matmul of {tuple(a_shape)} and {tuple(b_shape)}: the shapes do not match")
    batch = max(ba, bb)
    layout_b, layout_a = _layout(k, n, sb_row, sb_col), _layout(m, k, sa_row, sa_col)
    if layout_a is None or layout_b is None:
        return None
    out_row = out_strides[-2] // itemsize if m > 1 else n
    out_batch = out_strides[0] // itemsize if len(out_strides) == 3 else 0
    return {"transa": layout_b[0], "transb": layout_a[0], "m": n, "n": m, "k": k,
            "lda": layout_b[1], "stride_a": sb_batch, "ldb": layout_a[1], "stride_b": sa_batch,
            "ldc": out_row, "stride_c": out_batch, "batch": batch}


def _loaded_cublas():
    """The cuBLAS library that CuPy has loaded (its path read from /proc/self/maps), else by name."""
    try:
        with open("/proc/self/maps") as f:  # in the order the libraries were loaded: CuPy's before any other's
            paths = list(dict.fromkeys(line.split()[-1] for line in f if "/libcublas.so" in line))
    except OSError:
        paths = []
    for name in paths + ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise ArtemError("a CUDA graph's matrix products need the cuBLAS library, which cannot be found")


_spare_handles = []  # cuBLAS handles of graphs gone, for new ones (append and pop: atomic, no lock to hold)


class Cublas:
    """A cuBLAS handle of artem's own, on the current device, with its own workspace (from CuPy's
    default pool), one per graph: graphs replayed at the same time on different streams would race
    on a shared workspace. Made before the graph records: creating it may not be recorded."""

    def __init__(self):
        import cupy

        cupy.cuda.device.get_cublas_handle()  # CuPy loads its cuBLAS
        lib = self.lib = _loaded_cublas()
        void, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(void)]
        lib.cublasSetStream_v2.argtypes = [void, void]
        lib.cublasSetWorkspace_v2.argtypes = [void, void, ctypes.c_size_t]
        lib.cublasGemmStridedBatchedEx.argtypes = [void, i32, i32, i32, i32, i32, void, void, i32, i32, i64, void, i32,
                                                   i32, i64, void, void, i32, i32, i64, i32, i32, i32]
        try:
            self.handle = _spare_handles.pop()
        except IndexError:
            self.handle = void()
            self._check(lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        # the handle goes back with this object (a graph's, so with the graph), to the next graph's:
        # a batch of thousands of frames records as many graphs. Not destroyed: cublasDestroy waits
        # for the whole device, which would spoil a graph that is being recorded meanwhile, and
        # Python frees a graph when its collector runs, at any moment.
        weakref.finalize(self, _spare_handles.append, self.handle)
        with cupy.cuda.using_allocator(cupy.get_default_memory_pool().malloc):  # not a graph's pool: it outlives them
            self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=cupy.uint8)
        self.one, self.zero = ctypes.c_float(1), ctypes.c_float(0)
        self._calls = threading.Lock()  # one stream set and one product at a time on the handle

    @staticmethod
    def _check(status, what):
        if status != 0:
            raise ArtemError(f"{what} failed (cuBLAS status {status})")

    def matmul(self, a, b, out=None, tf32=None):
        """out = a @ b on the current stream: float32 or float16 (both alike, and ``out``), 2-D or 3-D
        operands as ``gemm_call`` takes; float32 ones in TF32 where ``tf32`` (None: where CuPy would)."""
        import cupy

        if a.dtype != b.dtype or a.dtype not in DATA_TYPES:
            raise ValueError(f"a recorded matrix product takes float32 or float16 alike, not {a.dtype} and {b.dtype}")
        shape = (*([max(len(v) for v in (a, b) if v.ndim == 3)] if 3 in (a.ndim, b.ndim) else []), a.shape[-2], b.shape[-1])
        if out is None:
            out = cupy.empty(shape, dtype=a.dtype)
        if tuple(out.shape) != shape or out.dtype != a.dtype or not out.flags.c_contiguous:
            raise ValueError(f"matmul's out must be C-contiguous {a.dtype} of shape {shape}")
        call = gemm_call(a.shape, a.strides, b.shape, b.strides, out.strides, a.itemsize)
        if call is None:
            a, b = cupy.ascontiguousarray(a), cupy.ascontiguousarray(b)
            call = gemm_call(a.shape, a.strides, b.shape, b.strides, out.strides, a.itemsize)
        if tf32 is None:  # as CuPy computes: TF32 under CUPY_TF32=1 for a single float32 product; its batched
            # matmul sums in float32 regardless, as its float16 products do
            tf32 = a.ndim == b.ndim == 2 and int(os.getenv("CUPY_TF32", "0")) > 0
        compute = COMPUTE_32F_FAST_TF32 if tf32 and a.dtype == np.float32 else COMPUTE_32F
        data = DATA_TYPES[a.dtype]
        c = call
        with self._calls:
            self._check(self.lib.cublasSetStream_v2(self.handle, cupy.cuda.get_current_stream().ptr), "cublasSetStream")
            # after each cublasSetStream, which puts the handle back on cuBLAS's own workspace pool
            self._check(self.lib.cublasSetWorkspace_v2(self.handle, self.workspace.data.ptr, WORKSPACE_BYTES),
                        "cublasSetWorkspace")
            self._check(self.lib.cublasGemmStridedBatchedEx(
                self.handle, c["transa"], c["transb"], c["m"], c["n"], c["k"], ctypes.byref(self.one),
                b.data.ptr, data, c["lda"], c["stride_a"], a.data.ptr, data, c["ldb"], c["stride_b"],
                ctypes.byref(self.zero), out.data.ptr, data, c["ldc"], c["stride_c"], c["batch"], compute,
                GEMM_DEFAULT), "cublasGemmStridedBatchedEx")
        return out


_routes = {}  # (thread, stream pointer): (the Cublas that takes the products made there, tf32)
_registry = threading.Lock()


def _key(stream):
    """Where a route holds: this thread's work on ``stream`` (the null stream is every thread's)."""
    return threading.get_ident(), stream.ptr


@contextlib.contextmanager
def products_on(stream, handle, tf32=None):
    """Within, the matrix products of ``backend.matmul`` that this thread makes on ``stream`` go to
    ``handle`` (a ``Cublas``), in TF32 where ``tf32`` (None: where CuPy would): while a CUDA graph
    records (the graph keeps the handle as long as itself: its kernels use the handle's workspace),
    to run an objective in TF32, or to time products in TF32 and float32 in one process
    (``bench.gpu_layers``; CuPy reads CUPY_TF32 once a process). Nested, the inner one holds until
    it ends."""
    key = _key(stream)
    with _registry:
        outer = _routes.get(key)
        _routes[key] = (handle, tf32)
    try:
        yield
    finally:
        with _registry:
            if outer is None:
                del _routes[key]
            else:
                _routes[key] = outer


def tf32_products(handle):
    """``products_on`` the current stream, in TF32."""
    import cupy

    return products_on(cupy.cuda.get_current_stream(), handle, tf32=True)


def routed(stream):
    """Whether this thread's products on ``stream`` go to a handle of ``products_on``."""
    return _key(stream) in _routes


def matmul(a, b, out=None):
    """a @ b for CuPy float32 (or float16) arrays on the current stream, whose products go to a
    handle (``products_on``)."""
    import cupy

    with _registry:
        handle, tf32 = _routes.get(_key(cupy.cuda.get_current_stream()), (None, None))
    if handle is None:
        raise ArtemError("a matrix product while a stream records needs gpu_gemm.products_on around the recording")
    return handle.matmul(a, b, out, tf32)
