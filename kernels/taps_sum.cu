/* The second half of the `taps` formulation of a 3x3 convolution (layers._conv_taps: one GEMM gives
 * every tap's contribution at every input pixel, y = (3, 3, O, H, W)): out[o, i, j] = the sum over
 * dy, dx of y[dy, dx, o, i + dy − 1, j + dx − 1], taps outside the image left out, added from 0 in the
 * order dy, dx as the twins add them. One thread per output value, one launch where CuPy ran
 * nineteen. Twins: cpu_float.taps_sum (numba), layers.taps_sum (NumPy).
 *
 * y (3, 3, O, H, W) -> out (O, H, W). The grid's y is the output channel. */
#include "prelude.h"

KERNEL void taps_sum(GLOBAL const float* y, GLOBAL float* out, int channels, int h, int w)
{
    int p = GLOBAL_ID_X, o = GROUP_ID_Y, pixels = h * w;
    if (p >= pixels) return;
    int i = p / w, j = p % w;
    float s = 0.0f;
    for (int t = 0; t < 9; ++t) {
        int r = i + t / 3 - 1, q = j + t % 3 - 1;
        if (r >= 0 && r < h && q >= 0 && q < w) s += y[((long)t * channels + o) * pixels + r * w + q];
    }
    out[(long)o * pixels + p] = s;
}
