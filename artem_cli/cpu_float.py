"""Compiled CPU kernels for the float network (numba): the two transforms of Winograd F(4x4, 3x3)
around the convolution's GEMMs (which stay OpenBLAS's), 2x2 max pooling, a ReLU's backward and the
sums of the `taps` formulation.

Each replaces NumPy element-wise passes by one read and one write of each element; each has a NumPy
twin of the same name in ``layers`` that the tests hold it to, and a CUDA twin in ``kernels/`` (the
path for CuPy, ``gpu_float``) that matches it bit for bit. Each parallel job is one (channel, row),
or one (channel, row of 4x4 tiles) for the Winograd transforms.
"""
import numpy as np
from numba import njit, prange

from .backend import one_at_a_time


# The transforms' coefficients, typed float32 so that float32 data is not promoted to float64.
_2, _4, _5, _8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)


@one_at_a_time
@njit(parallel=True, cache=True)
def winograd_input(x, v):
    """v[6a + b, c, i, j] = (B^T d B)[a, b] for the 6x6 tile d of x[c] (zero-padded) whose top left
    is at row 4i - 1, column 4j - 1. x (C, H, W); v (36, C, ceil(H/4), ceil(W/4))."""
    c, h, w = x.shape
    th, tw = v.shape[2], v.shape[3]
    n = 4 * tw + 2
    for job in prange(c * th):
        ch, i = job // th, job % th
        d = np.zeros((6, n), dtype=x.dtype)  # the tile row's six padded input rows
        for k in range(6):
            r = 4 * i - 1 + k
            if 0 <= r < h:
                d[k, 1 : w + 1] = x[ch, r]
        t = np.empty((6, n), dtype=x.dtype)  # B^T d: the rows combined, every column at once
        for q in range(n):
            d0, d1, d2, d3, d4, d5 = d[0, q], d[1, q], d[2, q], d[3, q], d[4, q], d[5, q]
            t[0, q] = _4 * d0 - _5 * d2 + d4
            t[1, q] = d3 + d4 - _4 * (d1 + d2)
            t[2, q] = _4 * (d1 - d2) + d4 - d3
            t[3, q] = _2 * (d3 - d1) + d4 - d2
            t[4, q] = _2 * (d1 - d3) + d4 - d2
            t[5, q] = _4 * d1 - _5 * d3 + d5
        for a in range(6):  # (B^T d) B: the six columns of each tile combined
            for j in range(tw):
                q = 4 * j
                e0, e1, e2, e3, e4, e5 = t[a, q], t[a, q + 1], t[a, q + 2], t[a, q + 3], t[a, q + 4], t[a, q + 5]
                v[6 * a, ch, i, j] = _4 * e0 - _5 * e2 + e4
                v[6 * a + 1, ch, i, j] = e3 + e4 - _4 * (e1 + e2)
                v[6 * a + 2, ch, i, j] = _4 * (e1 - e2) + e4 - e3
                v[6 * a + 3, ch, i, j] = _2 * (e3 - e1) + e4 - e2
                v[6 * a + 4, ch, i, j] = _2 * (e1 - e3) + e4 - e2
                v[6 * a + 5, ch, i, j] = _4 * e1 - _5 * e3 + e5


@one_at_a_time
@njit(parallel=True, cache=True)
def winograd_output(m, bias, y):
    """y[o, 4i + a, 4j + b] = (A^T m A)[a, b] + bias[o] for each tile (i, j) of m (36, O, th, tw),
    clipped to y's (O, H, W)."""
    o, h, w = y.shape
    th, tw = m.shape[2], m.shape[3]
    for job in prange(o * th):
        ch, i = job // th, job % th
        s = np.empty((4, 6, tw), dtype=m.dtype)  # A^T m: the tile's rows combined
        for b in range(6):
            for j in range(tw):
                m0, m1, m2 = m[b, ch, i, j], m[6 + b, ch, i, j], m[12 + b, ch, i, j]
                m3, m4, m5 = m[18 + b, ch, i, j], m[24 + b, ch, i, j], m[30 + b, ch, i, j]
                s[0, b, j] = m0 + m1 + m2 + m3 + m4
                s[1, b, j] = m1 - m2 + _2 * (m3 - m4)
                s[2, b, j] = m1 + m2 + _4 * (m3 + m4)
                s[3, b, j] = m1 - m2 + _8 * (m3 - m4) + m5
        for a in range(min(4, h - 4 * i)):  # (A^T m) A, and the bias
            r = 4 * i + a
            for j in range(tw):
                e0, e1, e2, e3, e4, e5 = s[a, 0, j], s[a, 1, j], s[a, 2, j], s[a, 3, j], s[a, 4, j], s[a, 5, j]
                q = 4 * j
                y[ch, r, q] = e0 + e1 + e2 + e3 + e4 + bias[ch]
                if q + 3 < w:
                    y[ch, r, q + 1] = e1 - e2 + _2 * (e3 - e4) + bias[ch]
                    y[ch, r, q + 2] = e1 + e2 + _4 * (e3 + e4) + bias[ch]
                    y[ch, r, q + 3] = e1 - e2 + _8 * (e3 - e4) + e5 + bias[ch]
                else:  # the last tile of a row whose width is not a multiple of 4
                    if q + 1 < w:
                        y[ch, r, q + 1] = e1 - e2 + _2 * (e3 - e4) + bias[ch]
                    if q + 2 < w:
                        y[ch, r, q + 2] = e1 + e2 + _4 * (e3 + e4) + bias[ch]


@one_at_a_time
@njit(parallel=True, cache=True)
def max_pool(x, out, which):
    """out[c, i, j] = the maximum of x[c, 2i:2i+2, 2j:2j+2], which[c, i, j] = the index (2dy + dx) of
    its first occurrence in row-major order."""
    c, ho, wo = out.shape
    for job in prange(c * ho):
        ch, i = job // ho, job % ho
        for j in range(wo):
            best, k = x[ch, 2 * i, 2 * j], 0
            for q in range(1, 4):
                value = x[ch, 2 * i + q // 2, 2 * j + q % 2]
                if value > best:
                    best, k = value, q
            out[ch, i, j] = best
            which[ch, i, j] = k


@one_at_a_time
@njit(parallel=True, cache=True)
def max_pool_backward(grad, which, out):
    """out (C, H, W): grad[c, i, j] at the maximum ``which`` names in each window, 0 elsewhere
    (the odd trailing row and column of out included)."""
    c, h, w = out.shape
    ho, wo = grad.shape[1], grad.shape[2]
    for job in prange(c * h):
        ch, r = job // h, job % h
        i, dy = r // 2, r % 2
        if i >= ho:
            out[ch, r] = 0
            continue
        for j in range(wo):
            k = which[ch, i, j] - 2 * dy
            g = grad[ch, i, j]
            out[ch, r, 2 * j] = g if k == 0 else 0
            out[ch, r, 2 * j + 1] = g if k == 1 else 0
        if w % 2:
            out[ch, r, w - 1] = 0


@one_at_a_time
@njit(parallel=True, cache=True)
def relu_backward(grad, out):
    """grad (C, H, W) times [out > 0], in place: a ReLU's input gradient, ``out`` its output."""
    c, h, w = grad.shape
    one, zero = np.float32(1), np.float32(0)
    for job in prange(c * h):
        ch, r = job // h, job % h
        for j in range(w):
            grad[ch, r, j] = grad[ch, r, j] * (one if out[ch, r, j] > 0 else zero)


@one_at_a_time
@njit(parallel=True, cache=True)
def taps_sum(y, out):
    """out[o, i, j] = the sum over dy, dx of y[dy, dx, o, i + dy - 1, j + dx - 1] (3, 3, O, H, W),
    taps outside the image left out, added from 0 in the order dy, dx."""
    o, h, w = out.shape
    for job in prange(o * h):
        ch, i = job // h, job % h
        for j in range(w):
            s = np.float32(0)
            for t in range(9):
                r, q = i + t // 3 - 1, j + t % 3 - 1
                if 0 <= r < h and 0 <= q < w:
                    s += y[t // 3, t % 3, ch, r, q]
            out[ch, i, j] = s
