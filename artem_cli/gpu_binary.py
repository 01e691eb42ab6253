"""The binarized network's GPU kernels (``kernels/*.cu``) and how they are launched.

One kernel source serves two runtimes (``kernels/prelude.h`` spells the differences): CUDA through
CuPy on an NVIDIA GPU, and OpenCL through PyOpenCL, which is how the tests run the very same source on
the CPU (PoCL) where no GPU is, against the NumPy twins in ``binarize.py``. ``BinaryKernels`` wraps a
runtime with the interface of ``cpu_binary``: same arguments, same layouts, device arrays in and out.

The XNOR convolution is a ladder of kernels (kernels/README.md), each held to the same twins:
``direct`` (one thread per output), ``tiled`` (shared-memory tiles, 4 x 4 outputs a thread) and, on
CUDA devices of compute capability 8.0 or later, ``mma`` and ``mma_async`` (binary tensor cores; the
second stages by asynchronous copies and keeps the popcounts out of its epilogue). Measured on an H200
(BENCHMARKS.md §7, ``make gpu-check``), ``mma`` is the fastest on every VGG16 layer at 512 and 1024
px, and ``tiled`` beats ``direct`` on the whole pass and on all but the smallest layers, so a runtime
uses by default the first of ``FASTEST_FIRST`` that it runs. The bit-packing comes two ways
(``PACKERS``): a thread per pixel (portable), or warp votes (``__ballot_sync``, CUDA only).
"""
import functools
import re
import threading
from pathlib import Path

import numpy as np

from .backend import to_host
from .errors import ArtemError
from .binarize import words

KERNELS = Path(__file__).resolve().parent.parent / "kernels"
SOURCES = ("pack_pixels", "pack_pixels_ballot", "scale_map", "straight_through", "xnor_conv", "xnor_conv_tiled",
           "xnor_conv_mma", "xnor_conv_mma_async", "xnor_gemm_mma", "mma_peak",
           # gpu_float's
           "im2col", "im2col_16", "winograd_input", "winograd_output", "max_pool", "max_pool_backward", "relu_backward", "taps_sum",
           "adam_step")  # kernels/NAME.cu: NAME
# PTX or warp intrinsics in the source: no OpenCL
CUDA_ONLY = ("pack_pixels_ballot", "xnor_conv_mma", "xnor_conv_mma_async", "xnor_gemm_mma", "mma_peak")
BLOCK = 256  # threads per block (CUDA) or work-group (OpenCL)
TILE = 64  # output channels and pixels of a tiled rung's block (TILE, BM and BN in its source)
# rung: (kernel, threads per block, outputs along the grid's x and y per block; None = one per thread)
RUNGS = {"direct": ("xnor_conv", BLOCK, None), "tiled": ("xnor_conv_tiled", 256, TILE),
         "mma": ("xnor_conv_mma", 128, TILE), "mma_async": ("xnor_conv_mma_async", 128, TILE)}
# as measured on an H200 (BENCHMARKS.md §7); mma_async, not yet timed on a GPU, after mma until it is
FASTEST_FIRST = ("mma", "mma_async", "tiled", "direct")
# the bit-packing, two ways: (kernel, threads per block, pixels per block)
PACKERS = {"per_pixel": ("pack_pixels", BLOCK, BLOCK), "ballot": ("pack_pixels_ballot", 256, 32)}
PACKERS_FASTEST_FIRST = ("per_pixel", "ballot")  # ballot (warp votes), not yet timed on a GPU, second until it is
TAP_POPCOUNTS = ("mma_async",)  # rungs whose filters carry each tap's popcount after its words
GEMM_TILE = (128, 64)  # rows and columns of xnor_gemm_mma's block (BM, BN in its source)


INDEX_LIMIT = 2**31  # the kernels index an array's elements with 32-bit ints


def _check_indexable(what, *shape):
    count = 1
    for n in shape:
        count *= int(n)
    if count >= INDEX_LIMIT:
        raise ArtemError(f"{what} of {' x '.join(map(str, shape))} values is too large for the GPU's XNOR kernels "
                         f"(32-bit indices: under {INDEX_LIMIT:,}); use a smaller --size or a later --binary-from layer")


def runnable_rungs(runtime):
    """The rungs of ``RUNGS`` that ``runtime`` runs, fastest first."""
    return [rung for rung in FASTEST_FIRST if runtime.supports(RUNGS[rung][0])]


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[^\n]*$', re.MULTILINE)


def _source(name):
    """kernels/NAME.cu with the files of kernels/ it includes written in (recursively; their include
    guards keep each once): the text then determines the kernel, as CuPy's cache of compiled kernels
    assumes (it keys them by the source text, and would reuse a kernel built before a header changed)."""

    def expand(file):
        text = (KERNELS / file).read_text(encoding="utf-8")
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return expand(f"{name}.cu")


class CudaRuntime:
    """CuPy: modules compiled by NVRTC on first use (CuPy caches them on disk), once per runtime even
    when several threads launch at the same time. A compiled function holds no data, so threads
    may share it."""

    def __init__(self):
        import cupy

        self.xp = cupy
        self._functions = {}
        self._compiling = threading.Lock()

    def array(self, a, dtype):
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype=dtype)

    def supports(self, name):
        return name not in CUDA_ONLY or int(self.xp.cuda.Device().compute_capability) >= 80

    def launch(self, name, groups, block, args):
        """``groups`` blocks (a tuple, x first) of ``block`` threads each."""
        with self._compiling:
            if name not in self._functions:
                module = self.xp.RawModule(code=_source(name))  # CuPy adds -ftz=true (subnormals flush)
                self._functions[name] = module.get_function(name)
        self._functions[name](groups, (block,), args)


class OpenCLRuntime:
    """PyOpenCL on the first OpenCL device found (PoCL's CPU device in the tests)."""

    def __init__(self):
        import pyopencl
        import pyopencl.array

        self._cl, self._cl_array = pyopencl, pyopencl.array
        self.context = pyopencl.create_some_context(interactive=False)
        self.queue = pyopencl.CommandQueue(self.context)
        self._kernels = {}

    def array(self, a, dtype):
        if isinstance(a, self._cl_array.Array) and a.dtype == dtype and a.flags.c_contiguous:
            return a
        host = a.get() if isinstance(a, self._cl_array.Array) else a
        return self._cl_array.to_device(self.queue, np.ascontiguousarray(host, dtype=dtype))

    def empty(self, shape, dtype):
        return self._cl_array.empty(self.queue, shape, dtype)

    def supports(self, name):
        return name not in CUDA_ONLY

    def launch(self, name, groups, block, args):
        if name not in self._kernels:
            program = self._cl.Program(self.context, _source(name)).build(
                options=["-cl-fp32-correctly-rounded-divide-sqrt"])  # as CUDA's are
            self._kernels[name] = self._cl.Kernel(program, name)
        buffers = [a.data if isinstance(a, self._cl_array.Array) else a for a in args]
        size = (groups[0] * block, *groups[1:])  # OpenCL counts work-items; the group is along x
        self._kernels[name](self.queue, size, (block, *[1] * (len(groups) - 1)), *buffers)


class BinaryKernels:
    """``cpu_binary``'s functions on a GPU runtime: arrays in may be host or device arrays; arrays out
    are the runtime's device arrays."""

    def __init__(self, runtime, rung=None, packer=None):
        """``rung``: one of ``RUNGS``, by default the fastest that ``runtime`` runs; ``packer``: one of
        ``PACKERS``, likewise."""
        if rung is None:
            rung = runnable_rungs(runtime)[0]
        if packer is None:
            packer = next(p for p in PACKERS_FASTEST_FIRST if runtime.supports(PACKERS[p][0]))
        for kind, name, table in (("XNOR kernel rung", rung, RUNGS), ("packer", packer, PACKERS)):
            if name not in table:
                raise ValueError(f"no {kind} {name!r}; there are {', '.join(table)}")
            if not runtime.supports(table[name][0]):
                raise ValueError(f"the {name} {kind.split()[-1]} does not run on this device")
        self.runtime, self.rung, self.packer = runtime, rung, packer

    def filters_for_kernel(self, w_packed):
        """(O, 9, words) uint32 filters from ``binarize.pack_filters`` on the device: as they are, or
        for the rungs of ``TAP_POPCOUNTS`` (O, 12 + 9·words): each filter's 9 tap popcounts
        (computed here, once per layer, on the host), 3 zeros (its words then start 16-byte aligned),
        then its words."""
        if self.rung not in TAP_POPCOUNTS:
            return self.runtime.array(w_packed, np.uint32)
        host = np.asarray(to_host(w_packed), dtype=np.uint32)
        pops = np.bitwise_count(host).sum(axis=-1, dtype=np.uint32)
        rows = np.concatenate([pops, np.zeros((len(host), 3), np.uint32), host.reshape(len(host), -1)], axis=1)
        return self.runtime.array(rows, np.uint32)

    def pack_pixels(self, x, centre, spread=None):
        """Signs of x - centre[:, None, None] for x (C, H, W): uint32 (H, W, words(C)) as
        ``binarize.pack_pixels``; ``spread`` (H, W) float32, when given, gets the mean over channels
        of |x - centre| (XNOR-Net's A)."""
        rt = self.runtime
        c, h, w = x.shape
        _check_indexable("an XNOR layer's input", c, h, w)
        out = rt.empty((h, w, words(c)), np.uint32)
        if spread is None:
            spread = rt.empty((h, w), np.float32)
        name, block, pixels = PACKERS[self.packer]
        rt.launch(name, (-(-h * w // pixels),), block, (rt.array(x, np.float32), rt.array(centre, np.float32), out, spread,
                                                       np.int32(c), np.int32(h * w), np.int32(words(c))))
        return out

    def scale_map(self, a):
        """K (H, W) float32 for A (H, W): the zero-padded 3x3 box sum / 9, as ``binarize.scale_map``."""
        rt = self.runtime
        h, w = a.shape
        k = rt.empty((h, w), np.float32)
        rt.launch("scale_map", (-(-h * w // BLOCK),), BLOCK, (rt.array(a, np.float32), k, np.int32(h), np.int32(w)))
        return k

    def straight_through(self, ds, x, centre, a):
        """The input gradient through sign(x − centre), as ``binarize.straight_through``: float32
        (C, H, W) from ds and x (C, H, W), centre (C,) and A (H, W), in one launch."""
        rt = self.runtime
        c, h, w = x.shape
        dx = rt.empty((c, h, w), np.float32)
        f32 = lambda v: rt.array(v, np.float32)  # noqa: E731
        rt.launch("straight_through", (-(-h * w // BLOCK), c), BLOCK, (f32(ds), f32(x), f32(centre), f32(a), dx, np.int32(h * w)))
        return dx

    def xnor_layer(self, x_packed, filters, channels, scale, alpha, tap_sums, bias):
        """float32 (O, H, W): alpha (scale P + M) + bias, as ``cpu_binary.xnor_layer``; ``filters``
        from ``filters_for_kernel``."""
        rt = self.runtime
        h, w, k = x_packed.shape
        o = filters.shape[0]
        _check_indexable("an XNOR layer's output", o, h, w)
        out = rt.empty((o, h, w), np.float32)
        f32 = lambda a: rt.array(a, np.float32)  # noqa: E731
        name, block, tile = RUNGS[self.rung]
        groups = (-(-o * h * w // block),) if tile is None else (-(-h * w // tile), -(-o // tile))
        rt.launch(name, groups, block, (rt.array(x_packed, np.uint32), filters, f32(scale), f32(alpha), f32(tap_sums),
                                        f32(bias), out, np.int32(channels), np.int32(o), np.int32(h), np.int32(w),
                                        np.int32(k)))
        return out

    def xnor_gemm(self, a_packed, b_packed, bits):
        """int32 (M, N): the ±1 product of a (M, words) and b (N, words), rows of packed bits of which
        the first ``bits`` count (the rest 0), as ``binarize.xnor_gemm``; on binary tensor cores
        (``xnor_gemm_mma``) whatever the rung, each row's popcount taken on the device first."""
        rt = self.runtime
        if not rt.supports("xnor_gemm_mma"):
            raise ValueError("the binary GEMM needs binary tensor cores (CUDA, compute capability 8.0 or later)")
        xp = rt.xp
        a, b = rt.array(a_packed, np.uint32), rt.array(b_packed, np.uint32)
        if a.shape[1] % 4:  # whole 16-byte copies: zero words change no popcount
            a, b = (xp.pad(v, ((0, 0), (0, -v.shape[1] % 4))) for v in (a, b))
        pop_a, pop_b = (xp.bitwise_count(v).sum(axis=1, dtype=np.int32) for v in (a, b))
        m, n = len(a), len(b)
        out = rt.empty((m, n), np.int32)
        rt.launch("xnor_gemm_mma", (-(-m // GEMM_TILE[0]), -(-n // GEMM_TILE[1])), 128,
                  (a, b, pop_a, pop_b, out, np.int32(m), np.int32(n), np.int32(a.shape[1]), np.int32(bits)))
        return out

    def xnor_conv(self, x_packed, filters, channels):
        """int32 (O, H, W): the ±1 convolution, as ``binarize.xnor_conv`` (unit scales, exact)."""
        h, w = x_packed.shape[:2]
        o = filters.shape[0]
        y = self.xnor_layer(x_packed, filters, channels, np.ones((h, w)), np.ones(o), np.zeros((o, 9)), np.zeros(o))
        return y.astype(np.int32)


_made = threading.Lock()


@functools.cache
def _runtime():
    return CudaRuntime()


def cuda_runtime():
    """The one ``CudaRuntime`` of the process, made under a lock, so that two threads asking at once
    share it and its compiled modules."""
    with _made:
        return _runtime()


def cuda_kernels(rung=None):
    """The kernels of ``rung`` (by default the fastest there) on the current CUDA device, over
    ``cuda_runtime()``."""
    return BinaryKernels(cuda_runtime(), rung)
