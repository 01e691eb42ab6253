"""Compiled CPU kernels for the float convolution (numba): the two transforms of Winograd F(2x2, 3x3).

The 16 GEMMs between them stay OpenBLAS's. These kernels replace the NumPy element-wise passes of
their twins in ``layers`` (``winograd_input`` and ``winograd_output``, which the tests hold them to):
one read and one write of each element instead of a dozen passes, each row's arithmetic in L1.
Each parallel job is one (channel, tile row).
"""
import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def winograd_input(x, v):
    """v[4a + b, c, i, j] = (B^T d B)[a, b] for the 4x4 tile d of x[c] (zero-padded) whose top left
    is at row 2i - 1, column 2j - 1. x (C, H, W); v (16, C, ceil(H/2), ceil(W/2))."""
    c, h, w = x.shape
    th, tw = v.shape[2], v.shape[3]
    n = 2 * tw + 2
    for job in prange(c * th):
        ch, i = job // th, job % th
        d = np.zeros((4, n), dtype=x.dtype)  # the tile row's four padded input rows
        for k in range(4):
            r = 2 * i - 1 + k
            if 0 <= r < h:
                d[k, 1 : w + 1] = x[ch, r]
        t = np.empty((4, n), dtype=x.dtype)  # B^T d: the rows combined, every column at once
        for q in range(n):
            t[0, q] = d[0, q] - d[2, q]
            t[1, q] = d[1, q] + d[2, q]
            t[2, q] = d[2, q] - d[1, q]
            t[3, q] = d[1, q] - d[3, q]
        for a in range(4):  # (B^T d) B: the four columns of each tile combined
            for j in range(tw):
                q = 2 * j
                v[4 * a, ch, i, j] = t[a, q] - t[a, q + 2]
                v[4 * a + 1, ch, i, j] = t[a, q + 1] + t[a, q + 2]
                v[4 * a + 2, ch, i, j] = t[a, q + 2] - t[a, q + 1]
                v[4 * a + 3, ch, i, j] = t[a, q + 1] - t[a, q + 3]


@njit(parallel=True, cache=True)
def winograd_output(m, bias, y):
    """y[o, 2i + a, 2j + b] = (A^T m A)[a, b] + bias[o] for each tile (i, j) of m (16, O, th, tw),
    clipped to y's (O, H, W)."""
    o, h, w = y.shape
    th, tw = m.shape[2], m.shape[3]
    for job in prange(o * th):
        ch, i = job // th, job % th
        s = np.empty((2, 4, tw), dtype=m.dtype)  # A^T m: the tile's rows combined
        for b in range(4):
            for j in range(tw):
                s[0, b, j] = m[b, ch, i, j] + m[4 + b, ch, i, j] + m[8 + b, ch, i, j]
                s[1, b, j] = m[4 + b, ch, i, j] - m[8 + b, ch, i, j] - m[12 + b, ch, i, j]
        for a in range(min(2, h - 2 * i)):  # (A^T m) A, and the bias
            r = 2 * i + a
            for j in range(w // 2):
                y[ch, r, 2 * j] = s[a, 0, j] + s[a, 1, j] + s[a, 2, j] + bias[ch]
                y[ch, r, 2 * j + 1] = s[a, 1, j] - s[a, 2, j] - s[a, 3, j] + bias[ch]
            if w % 2:
                y[ch, r, w - 1] = s[a, 0, tw - 1] + s[a, 1, tw - 1] + s[a, 2, tw - 1] + bias[ch]
