/* 2x2 max pooling, stride 2 (odd trailing rows and columns dropped), one thread per output: the
 * maximum of each window and which of its four (2dy + dx) first holds it in row-major order, which
 * the backward pass (max_pool_backward.cu) routes the gradient to. Twins: cpu_float.max_pool (numba),
 * layers.max_pool (NumPy).
 *
 * x (C, H, W) -> out (C, H/2, W/2), which (C, H/2, W/2) uint8. The grid's y is the channel. */
#include "prelude.h"

KERNEL void max_pool(GLOBAL const float* x, GLOBAL float* out, GLOBAL u8* which, int h, int w)
{
    int p = GLOBAL_ID_X, c = GROUP_ID_Y, ho = h / 2, wo = w / 2;
    if (p >= ho * wo) return;
    int i = p / wo, j = p % wo;
    GLOBAL const float* window = x + (long)c * h * w + (long)(2 * i) * w + 2 * j;
    float best = window[0];
    int k = 0;
    for (int q = 1; q < 4; ++q) {
        float value = window[(q / 2) * w + q % 2];
        if (value > best) {
            best = value;
            k = q;
        }
    }
    long at = (long)c * ho * wo + p;
    out[at] = best;
    which[at] = (u8)k;
}
