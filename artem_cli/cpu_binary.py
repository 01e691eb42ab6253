"""Compiled CPU kernels for the binarized network (numba): bit-packing and XNOR-popcount convolution.

Each kernel has a NumPy twin in ``binarize.py`` that the tests hold it to, bit for bit. Popcount is
LLVM's ``ctpop`` intrinsic, which LLVM turns into AVX-512 ``vpopcntq`` where the CPU has it (numba
does not support ``np.bitwise_count``). Words are read as 64-bit: two little-endian 32-bit words of
the packing layout are one little-endian 64-bit word with the same bit order.
"""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .binarize import words


@intrinsic
def _popcount64(typingctx, value):
    """llvm.ctpop.i64 of a uint64, typed int64 so that sums stay integer (numba would make
    int64 + uint64 a float64)."""

    def codegen(context, builder, signature, args):
        ctpop = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(ctpop, args)

    return types.int64(types.uint64), codegen


@njit(parallel=True, cache=True)
def _pack_pixels(x, centre, out):
    c, h, w = x.shape
    for i in prange(h):
        row = np.empty(w, dtype=np.uint32)
        for word in range(out.shape[2]):
            row[:] = 0
            for bit in range(min(32, c - 32 * word)):  # one channel at a time, vectorized along the row
                ch = 32 * word + bit
                threshold = centre[ch]
                for j in range(w):
                    row[j] |= np.uint32(x[ch, i, j] >= threshold) << np.uint32(bit)
            for j in range(w):
                out[i, j, word] = row[j]


def pack_pixels(x, centre):
    """Signs of x - centre[:, None, None] for x (C, H, W) float32: uint32 (H, W, words(C)), the
    layout of ``binarize.pack_pixels``."""
    c, h, w = x.shape
    out = np.empty((h, w, words(c)), dtype=np.uint32)
    _pack_pixels(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(centre, dtype=np.float32), out)
    return out


def filters_for_kernel(w_packed):
    """(O, 9, words) uint32 filters -> (9, words/2, O) uint64, so the kernel's innermost loop runs
    over output channels with unit stride (vectorized: one vpopcntq covers 8 filters)."""
    return np.ascontiguousarray(np.ascontiguousarray(w_packed).view(np.uint64).transpose(1, 2, 0))


@njit(parallel=True, cache=True)
def _xnor_conv(xw, wt, channels, out):
    h, w, k_words = xw.shape
    o_count = wt.shape[2]
    for i in prange(h):
        mismatches = np.empty(o_count, dtype=np.int64)
        for j in range(w):
            mismatches[:] = 0
            valid = 0
            for t in range(9):
                y, x = i + t // 3 - 1, j + t % 3 - 1
                if y < 0 or y >= h or x < 0 or x >= w:
                    continue  # a padded tap contributes 0 in the float network: skip it
                valid += 1
                for k in range(k_words):
                    v = xw[y, x, k]
                    for o in range(o_count):
                        mismatches[o] += _popcount64(wt[t, k, o] ^ v)
            for o in range(o_count):
                out[o, i, j] = channels * valid - 2 * mismatches[o]


def xnor_conv(x_packed, w_kernel, channels):
    """int32 (O, H, W): the 3x3 zero-padded convolution of ±1 filters with ±1 inputs, as
    ``binarize.xnor_conv``; ``x_packed`` from ``pack_pixels``, ``w_kernel`` from ``filters_for_kernel``."""
    h, w = x_packed.shape[:2]
    out = np.empty((w_kernel.shape[2], h, w), dtype=np.int32)
    _xnor_conv(np.ascontiguousarray(x_packed).view(np.uint64), w_kernel, channels, out)
    return out
