/* 2x2 max pooling's input gradient, one thread per input element: the output gradient of its window
 * where max_pool.cu's `which` names this element, else 0 (0 too in a dropped odd row or column).
 * Twins: cpu_float.max_pool_backward (numba), layers.max_pool_backward (NumPy).
 *
 * grad (C, H/2, W/2), which (C, H/2, W/2) uint8 -> out (C, H, W). The grid's y is the channel. */
#include "prelude.h"

KERNEL void max_pool_backward(GLOBAL const float* grad, GLOBAL const u8* which, GLOBAL float* out, int h, int w)
{
    int p = GLOBAL_ID_X, c = GROUP_ID_Y, ho = h / 2, wo = w / 2;
    if (p >= h * w) return;
    int r = p / w, q = p % w, i = r / 2, j = q / 2;
    float g = 0.0f;
    if (i < ho && j < wo) {
        long at = (long)c * ho * wo + (long)i * wo + j;
        if (which[at] == 2 * (r % 2) + q % 2) g = grad[at];
    }
    out[(long)c * h * w + p] = g;
}
