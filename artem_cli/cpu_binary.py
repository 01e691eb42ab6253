"""Compiled CPU kernels for the binarized network (numba): bit-packing and XNOR-popcount convolution,
and the bare XNOR-popcount loop that ``artem benchmark --layers`` measures them against; with the
rest of an XNOR layer's interface (``scale_map``, ``straight_through``), which on the CPU are their
NumPy twins as they are.

Each kernel has a NumPy twin in ``binarize.py`` that the tests hold it to, bit for bit. Popcount is
LLVM's ``ctpop`` intrinsic, which LLVM turns into AVX-512 ``vpopcntq`` where the CPU has it (numba
does not support ``np.bitwise_count``). Words are read as 64-bit: two little-endian 32-bit words of
the packing layout are one little-endian 64-bit word with the same bit order.
"""
import time
from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import carray, get_num_threads, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import binarize
from .backend import one_at_a_time
from .binarize import words

# the rest of an XNOR layer's interface (gpu_binary.BinaryKernels has the same): the NumPy twins as they are
scale_map, straight_through = binarize.scale_map, binarize.straight_through


@intrinsic
def _popcount64(typingctx, value):
    """llvm.ctpop.i64 of a uint64, typed int64 so that sums stay integer (numba would make
    int64 + uint64 a float64)."""

    def codegen(context, builder, signature, args):
        ctpop = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(ctpop, args)

    return types.int64(types.uint64), codegen


@one_at_a_time
@njit(parallel=True, cache=True)
def _pack_pixels(x, centre, out, spread):
    c, h, w = x.shape
    for i in prange(h):
        row = np.empty(w, dtype=np.uint32)
        total = np.zeros(w, dtype=np.float32)
        for word in range(out.shape[2]):
            row[:] = 0
            for bit in range(min(32, c - 32 * word)):  # one channel at a time, vectorized along the row
                ch = 32 * word + bit
                threshold = centre[ch]
                for j in range(w):
                    value = x[ch, i, j]
                    row[j] |= np.uint32(value >= threshold) << np.uint32(bit)
                    total[j] += abs(value - threshold)
            for j in range(w):
                out[i, j, word] = row[j]
        for j in range(w):
            spread[i, j] = total[j] / c


def pack_pixels(x, centre, spread=None):
    """Signs of x - centre[:, None, None] for x (C, H, W) float32: uint32 (H, W, words(C)), the
    layout of ``binarize.pack_pixels``. In the same pass, ``spread`` (H, W) float32, when given, gets
    the mean over channels of |x - centre| (XNOR-Net's A)."""
    c, h, w = x.shape
    out = np.empty((h, w, words(c)), dtype=np.uint32)
    if spread is None:
        spread = np.empty((h, w), dtype=np.float32)
    _pack_pixels(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(centre, dtype=np.float32), out, spread)
    return out


PIXELS, FILTERS = 4, 16  # register block of the XNOR kernel (8 zmm of counts); its body is written out for 4 pixels
_BLOCK = PIXELS * FILTERS
CHUNK = 64  # pixels of a row whose counts are staged before they are written out


class KernelFilters(NamedTuple):
    """Packed filters as the kernel reads them."""

    words: np.ndarray  # uint64 (9 * words64, O padded to FILTERS): word n of every filter, filters contiguous
    tap_counts: np.ndarray  # int64 (O, 9): set bits of each filter tap, to correct for zero-padded taps


def filters_for_kernel(w_packed):
    """(O, 9, words) uint32 filters from ``binarize.pack_filters`` -> ``KernelFilters``."""
    w64 = np.ascontiguousarray(w_packed).view(np.uint64)
    o, _, k = w64.shape
    words = np.zeros((9 * k, -(-o // FILTERS) * FILTERS), dtype=np.uint64)
    words[:, :o] = w64.reshape(o, 9 * k).T
    return KernelFilters(words, np.bitwise_count(w64).sum(axis=2).astype(np.int64))


@intrinsic
def _stack_int64(typingctx, count):
    """A pointer to ``count`` (a literal) int64 on the stack: with constant indices LLVM keeps them
    in registers, which a heap array never is."""
    if not isinstance(count, types.IntegerLiteral):
        return None
    n = count.literal_value

    def codegen(context, builder, signature, args):
        block = cgutils.alloca_once(builder, ir.ArrayType(ir.IntType(64), n))
        return builder.bitcast(block, ir.IntType(64).as_pointer())

    return types.CPointer(types.int64)(count), codegen


@njit(cache=True)
def _border_value(count, i, j, h, w, o, channels, tap_counts, tap_sums):
    """(P, M) of a border pixel from its mismatch count over all 9 taps, zero words standing in for
    the out-of-image taps: those taps are dropped from P (the float network adds 0 there) and M."""
    valid = 0
    centre = np.float32(0)
    for t in range(9):
        y, x = i + t // 3 - 1, j + t % 3 - 1
        if y >= 0 and y < h and x >= 0 and x < w:
            valid += 1
            centre += tap_sums[o, t]
        else:
            count -= tap_counts[o, t]
    return channels * valid - 2 * count, centre


@one_at_a_time
@njit(parallel=True, cache=True)
def _xnor_conv(xw, words, tap_counts, channels, scale, alpha, tap_sums, bias, out):
    """out[o, i, j] = alpha[o] (scale[i, j] P[o, i, j] + M[o, i, j]) + bias[o], P the ±1 convolution
    (channels - 2 * mismatches per in-image tap), M the sum of tap_sums[o, t] over in-image taps.

    Each row gathers its pixels' 3x3 neighbourhoods (zero words outside the image) into ``patch``;
    a block of PIXELS pixels x FILTERS filters then keeps its counts in registers over all taps and
    words, with the filters along the vector lanes (one vpopcntq covers 8 filters)."""
    h, w, k_words = xw.shape
    n_words, o_padded = words.shape
    o_count = out.shape[0]
    full = channels * 9
    for i in prange(h):
        patch = np.zeros((-(-w // PIXELS) * PIXELS, n_words), dtype=np.uint64)
        for t in range(9):
            y, dx = i + t // 3 - 1, t % 3 - 1
            if y >= 0 and y < h:
                for j in range(max(0, -dx), min(w, w - dx)):
                    for k in range(k_words):
                        patch[j, t * k_words + k] = xw[y, j + dx, k]
        counts = carray(_stack_int64(_BLOCK), (PIXELS, FILTERS))
        staged = np.empty((FILTERS, CHUNK), dtype=np.int32)
        edge_row = i == 0 or i == h - 1
        for c0 in range(0, w, CHUNK):
            c_len = min(CHUNK, w - c0)
            for o0 in range(0, o_padded, FILTERS):
                for j0 in range(c0, c0 + c_len, PIXELS):
                    for p in range(PIXELS):
                        for f in range(FILTERS):
                            counts[p, f] = 0
                    x0, x1, x2, x3 = patch[j0], patch[j0 + 1], patch[j0 + 2], patch[j0 + 3]
                    for n in range(n_words):
                        v0, v1, v2, v3 = x0[n], x1[n], x2[n], x3[n]
                        filters = words[n, o0 : o0 + FILTERS]
                        for f in range(FILTERS):
                            wv = filters[f]
                            counts[0, f] += _popcount64(v0 ^ wv)
                            counts[1, f] += _popcount64(v1 ^ wv)
                            counts[2, f] += _popcount64(v2 ^ wv)
                            counts[3, f] += _popcount64(v3 ^ wv)
                    for p in range(PIXELS):
                        for f in range(FILTERS):
                            staged[f, j0 - c0 + p] = counts[p, f]
                for f in range(min(FILTERS, o_count - o0)):
                    o = o0 + f
                    a, b, m_full = alpha[o], bias[o], np.float32(0)
                    for t in range(9):
                        m_full += tap_sums[o, t]
                    row, k_row, counted = out[o, i, c0 : c0 + c_len], scale[i, c0 : c0 + c_len], staged[f]
                    for jj in range(c_len):
                        row[jj] = a * (k_row[jj] * np.float32(full - 2 * counted[jj]) + m_full) + b
                    # border pixels: every one of an edge row, else the row's first and last
                    step = 1 if edge_row else max(1, w - 1)
                    for j in range(0, w, step):
                        if j >= c0 and j < c0 + c_len:
                            jj = j - c0
                            p_value, m_value = _border_value(counted[jj], i, j, h, w, o, channels, tap_counts, tap_sums)
                            row[jj] = a * (k_row[jj] * np.float32(p_value) + m_value) + b


def xnor_layer(x_packed, filters, channels, scale, alpha, tap_sums, bias):
    """float32 (O, H, W): alpha (scale P + M) + bias in one pass, P the ±1 convolution of
    ``xnor_conv`` and M the sum of ``tap_sums`` (O, 9) over each pixel's in-image taps (the
    convolution of the filters' signs with a per-channel constant); ``scale`` is (H, W)."""
    h, w = x_packed.shape[:2]
    out = np.empty((filters.tap_counts.shape[0], h, w), dtype=np.float32)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    _xnor_conv(np.ascontiguousarray(x_packed).view(np.uint64), filters.words, filters.tap_counts, channels,
               f32(scale), f32(alpha), f32(tap_sums), f32(bias), out)
    return out


def xnor_conv(x_packed, filters, channels):
    """int32 (O, H, W): the 3x3 zero-padded convolution of ±1 filters with ±1 inputs, as
    ``binarize.xnor_conv``; ``x_packed`` from ``pack_pixels``, ``filters`` from ``filters_for_kernel``.
    The kernel's float output is exact here: integers below 2^24 and unit scales."""
    h, w = x_packed.shape[:2]
    o = filters.tap_counts.shape[0]
    y = xnor_layer(x_packed, filters, channels, np.ones((h, w)), np.ones(o), np.zeros((o, 9)), np.zeros(o))
    return y.astype(np.int32)


_LANES = 8  # int64 lanes of a 512-bit register
_PROBE_PIXELS, _PROBE_FILTERS = 16, 8  # the probe's block: 16 <8 x i64> counts in registers


@intrinsic
def _xnor_block_total(typingctx, x, w, offset):
    """The sum over n, p < 16, f < 8 of popcount(x[n, offset + p] ^ w[f, n]), x and w C-contiguous
    uint64 (N, >= offset + 16) and (8, N): the XNOR-popcount block with nothing around it, written in
    LLVM vector IR so that the code is known: per word two vector loads, 8 broadcasts, and 16 XOR,
    16 popcounts and 16 adds into counts that stay in registers (3 instructions per 512 binary MACs)."""
    vec = ir.VectorType(ir.IntType(64), _LANES)

    def codegen(context, builder, signature, args):
        xa = context.make_array(signature.args[0])(context, builder, args[0])
        wa = context.make_array(signature.args[1])(context, builder, args[1])
        n_words, row = builder.extract_value(xa.shape, 0), builder.extract_value(xa.shape, 1)
        ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec]), "llvm.ctpop.v8i64")
        i64 = lambda v: ir.Constant(ir.IntType(64), v)  # noqa: E731
        groups = _PROBE_PIXELS // _LANES
        counts = [cgutils.alloca_once_value(builder, ir.Constant(vec, [0] * _LANES)) for _ in range(_PROBE_FILTERS * groups)]
        with cgutils.for_range(builder, n_words) as loop:
            start = builder.gep(xa.data, [builder.add(builder.mul(loop.index, row), args[2])])
            xs = [builder.load(builder.bitcast(builder.gep(start, [i64(_LANES * g)]), vec.as_pointer()), align=8)
                  for g in range(groups)]
            for f in range(_PROBE_FILTERS):
                word = builder.load(builder.gep(wa.data, [builder.add(builder.mul(i64(f), n_words), loop.index)]))
                splat = builder.insert_element(ir.Constant(vec, ir.Undefined), word, ir.Constant(ir.IntType(32), 0))
                splat = builder.shuffle_vector(splat, ir.Constant(vec, ir.Undefined),
                                               ir.Constant(ir.VectorType(ir.IntType(32), _LANES), [0] * _LANES))
                for g in range(groups):
                    acc = counts[f * groups + g]
                    builder.store(builder.add(builder.load(acc), builder.call(ctpop, [builder.xor(xs[g], splat)])), acc)
        total = i64(0)
        for acc in counts:
            vector = builder.load(acc)
            for lane in range(_LANES):
                total = builder.add(total, builder.extract_element(vector, ir.Constant(ir.IntType(32), lane)))
        return total

    return types.int64(x, w, offset), codegen


@one_at_a_time
@njit(parallel=True, cache=True)
def _probe(x, w, repeats, totals):
    """On each of totals.size threads, ``repeats`` blocks alternating between two offsets (so that no
    repeat can be hoisted out of the loop); each thread's total popcount into ``totals``."""
    for t in prange(totals.size):
        total = 0
        for r in range(repeats):
            total += _xnor_block_total(x, w, (r & 1) * _PROBE_PIXELS)
        totals[t] = total


def popcount_ceiling(words=72, repeats=20000):
    """Binary MACs per second of the bare XNOR-popcount block on every thread at once, on words in
    L1 (72: conv4/5's words per pixel): the most this CPU's popcount gives a kernel, the yardstick
    for the layers' rates. Best of 3."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**63, (words, 2 * _PROBE_PIXELS), dtype=np.uint64)
    w = rng.integers(0, 2**63, (_PROBE_FILTERS, words), dtype=np.uint64)
    totals = np.zeros(get_num_threads(), dtype=np.int64)
    _probe(x, w, 2, totals)  # compile
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        _probe(x, w, repeats, totals)
        best = min(best, time.perf_counter() - start)
    return totals.size * repeats * words * 64 * _PROBE_PIXELS * _PROBE_FILTERS / best
