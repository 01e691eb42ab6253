"""Compiled CPU kernels for the float network (numba): the two transforms of Winograd F(2x2, 3x3)
around the convolution's GEMMs (which stay OpenBLAS's), and 2x2 max pooling.

Each replaces NumPy element-wise passes by one read and one write of each element; each has a NumPy
twin of the same name in ``layers`` (also the path for CuPy) that the tests hold it to. Each parallel
job is one (channel, row).
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
