"""XNOR-Net binarization: signs, scales, and the bit-packing layout, as plain NumPy.

These are the reference twins of the compiled kernels in ``cpu_binary.py`` and of the CUDA kernels in
``kernels/``: same inputs, same bits out (the floats a kernel computes beside its bits, such as the
packing's mean |x - μ|, agree to rounding).

Packing layout: the bits run along the reduction dimension, the input channels of one
3x3 tap; little-endian within 32-bit words, so bit j of word w is channel 32·w + j; a 1 bit means +1
(x >= 0) and a 0 bit means -1. Each pixel (or filter tap) takes a whole number of 64-bit words;
channels beyond C are 0 bits in both operands, so they never count as mismatches. The dot product of two K-channel sign vectors is K - 2·popcount(a XOR b).
"""
from typing import NamedTuple

import numpy as np

from .backend import array_module

WORD_BITS = 32


def sign(x):
    """+1 where x >= 0, -1 elsewhere, as float32 (the binarization convention throughout)."""
    return np.where(x >= 0, np.float32(1), np.float32(-1))


def filter_scales(weight):
    """XNOR-Net's α: the mean |W| of each output filter, (O,)."""
    return np.abs(weight).reshape(weight.shape[0], -1).mean(axis=1)


def words(channels):
    """32-bit words per pixel or filter tap: whole 64-bit words, so kernels may read them as 64-bit."""
    return 2 * -(-channels // (2 * WORD_BITS))


def pack_pixels(x):
    """Signs of x (C, H, W) packed per pixel: uint32 (H, W, words(C))."""
    c = x.shape[0]
    bits = np.zeros((words(c) * WORD_BITS, *x.shape[1:]), dtype=np.uint8)
    bits[:c] = x >= 0
    packed = np.packbits(bits.transpose(1, 2, 0), axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u4")


def pack_filters(weight):
    """Signs of weights (O, C, 3, 3) packed per filter tap: uint32 (O, 9, words(C))."""
    o, c = weight.shape[:2]
    taps = weight.reshape(o, c, 9).transpose(0, 2, 1)  # (O, 9, C)
    bits = np.zeros((o, 9, words(c) * WORD_BITS), dtype=np.uint8)
    bits[..., :c] = taps >= 0
    return np.ascontiguousarray(np.packbits(bits, axis=-1, bitorder="little")).view("<u4")


def unpack(packed, channels):
    """±1 float32 signs back from packed words (..., words) -> (..., channels)."""
    bits = np.unpackbits(np.ascontiguousarray(packed).view(np.uint8), axis=-1, bitorder="little")[..., :channels]
    return bits.astype(np.float32) * 2 - 1


def scale_map(a):
    """XNOR-Net's K for A (H, W): the zero-padded 3x3 box sum / 9, float32, on A's array module.
    The twin of ``kernels/scale_map.cu`` (and what the CPU runs)."""
    xp = array_module(a)
    h, w = a.shape
    padded = xp.zeros((h + 2, w + 2), dtype=a.dtype)
    padded[1:-1, 1:-1] = a
    return sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9


def straight_through(ds, x, centre, a):
    """The input gradient through sign(x − centre) of an XNOR layer, given ds, the gradient with
    respect to that sign: ds / A where |x − centre| <= A (A > 0), else 0, float32; ds, x (C, H, W),
    centre (C,), A (H, W). The twin of ``kernels/straight_through.cu`` (and what the CPU runs)."""
    xp = array_module(ds)
    inverse = xp.where(a > 0, 1 / xp.maximum(a, 1e-30), 0).astype(ds.dtype)
    return ds * (xp.abs(x - centre[:, None, None]) <= a) * inverse


def xnor_gemm(a_packed, b_packed, bits):
    """int32 (M, N): the dot products of the ±1 rows of a (M, words) and b (N, words), packed bits of
    which the first ``bits`` count, as a float product of the unpacked signs (exact below 2^24)."""
    return (unpack(a_packed, bits) @ unpack(b_packed, bits).T).astype(np.int32)


def xnor_conv(x_packed, w_packed, channels):
    """Σ over in-image taps of (C - 2·popcount(w XOR x)): int32 (O, H, W), exactly the 3x3 convolution
    (zero padding) of the ±1 weights with the ±1 inputs."""
    h, w = x_packed.shape[:2]
    out = np.zeros((w_packed.shape[0], h, w), dtype=np.int32)
    for t in range(9):
        dy, dx = divmod(t, 3)
        i0, i1 = max(0, 1 - dy), min(h, h + 1 - dy)
        j0, j1 = max(0, 1 - dx), min(w, w + 1 - dx)
        src = x_packed[i0 + dy - 1 : i1 + dy - 1, j0 + dx - 1 : j1 + dx - 1]  # (h', w', words)
        mismatches = np.bitwise_count(src[None] ^ w_packed[:, t, None, None, :]).sum(axis=-1, dtype=np.int32)
        out[:, i0:i1, j0:j1] += channels - 2 * mismatches
    return out


class BinaryLayer(NamedTuple):
    """One binary convolution's parameters: what ``layers.BinaryConv3x3`` (bwn) and
    ``layers.XnorConv3x3`` (xnor) are built from, and what a trained binary weights file holds."""

    signs: np.ndarray  # packed signs of the weights, uint32 (O, 9, words(C)) as ``pack_filters``: on the host
    alpha: object  # (O,) float32 scale of each filter, on the network's array module
    bias: object  # (O,) float32
    shift: object  # (C,) float32: xnor's binarization centre is each input channel's mean plus this

    def unpacked(self):
        """The signs as float32 ±1 (O, C, 3, 3), on the host."""
        o = self.signs.shape[0]
        c = len(self.shift)
        return np.ascontiguousarray(unpack(self.signs, c).reshape(o, 9, c).transpose(0, 2, 1).reshape(o, c, 3, 3))


def untrained(weight, bias, xp=np):
    """XNOR-Net's binarization of float weights (O, C, 3, 3) and bias: S = sign(W), α = mean |W| of each
    filter, centre shift 0; ``alpha``, ``bias`` and ``shift`` on ``xp``."""
    host = np.asarray(weight.get() if hasattr(weight, "get") else weight, dtype=np.float32)
    return BinaryLayer(pack_filters(host), xp.asarray(filter_scales(host)),
                       xp.asarray(bias, dtype=np.float32), xp.zeros(host.shape[1], dtype=np.float32))
