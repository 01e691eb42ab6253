/* The XNOR layer's input gradient through its sign (straight-through): dx = ds / A where
 * |x − centre| <= A (and A > 0), else 0, one thread per element, in the twin's operations and order.
 * ds, x, dx (C, H·W); centre (C); A (H·W). The grid's y is the channel. Twin: binarize.straight_through. */
#include "prelude.h"

KERNEL void straight_through(GLOBAL const float* ds, GLOBAL const float* x, GLOBAL const float* centre,
                             GLOBAL const float* a, GLOBAL float* dx, int pixels)
{
    int p = GLOBAL_ID_X, c = GROUP_ID_Y;
    if (p >= pixels) return;
    long e = (long)c * pixels + p;
    float spread = a[p];
    float inverse = spread > 0.0f ? 1.0f / (spread > 1e-30f ? spread : 1e-30f) : 0.0f;
    float inside = fabs(x[e] - centre[c]) <= spread ? 1.0f : 0.0f;
    dx[e] = ds[e] * inside * inverse;
}
