/* XNOR-Net's scale map: K = the zero-padded 3x3 box sum of A (H, W) / 9, one thread per pixel, the
 * taps added in order (row by row) as the twin adds them. Twin: binarize.scale_map. */
#include "prelude.h"

KERNEL void scale_map(GLOBAL const float* a, GLOBAL float* k, int h, int w)
{
    int p = GLOBAL_ID_X;
    if (p >= h * w) return;
    int i = p / w, j = p % w;
    float total = 0.0f;
    for (int t = 0; t < 9; ++t) {
        int y = i + t / 3 - 1, x = j + t % 3 - 1;
        if (y >= 0 && y < h && x >= 0 && x < w) total += a[y * w + x];
    }
    k[p] = total / 9.0f;
}
