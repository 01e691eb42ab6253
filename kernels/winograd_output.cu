/* Winograd F(4x4, 3x3)'s output transform with the bias, one thread per tile and output channel: the
 * tile's 36 values m[·, o, i, j] (the GEMMs' products) become A^T m A + bias[o], the 4x4 outputs at
 * row 4i, column 4j of y (those inside it). One launch where CuPy ran the NumPy twin's five (the
 * transform as a GEMM, the tiles put in place, the bias). The arithmetic is
 * cpu_float.winograd_output's, operation for operation and unfused (MUL), so the two agree bit for
 * bit. Twins: cpu_float.winograd_output (numba), layers.winograd_output (NumPy).
 *
 * m (36, O, th, tw), bias (O,) -> y (O, H, W). The grid's y is the output channel, its x the tiles. */
#include "prelude.h"
#ifdef __OPENCL_VERSION__
#pragma OPENCL FP_CONTRACT OFF
#endif

KERNEL void winograd_output(GLOBAL const float* m, GLOBAL const float* bias, GLOBAL float* y, int channels, int h,
                            int w, int th, int tw)
{
    int p = GLOBAL_ID_X, o = GROUP_ID_Y, tiles = th * tw;
    if (p >= tiles) return;
    int i = p / tw, j = p % tw;
    float s[4][6]; /* A^T m: the tile's rows combined, column by column */
    for (int b = 0; b < 6; ++b) {
        float r[6];
        for (int a = 0; a < 6; ++a) r[a] = m[((long)(6 * a + b) * channels + o) * tiles + p];
        s[0][b] = r[0] + r[1] + r[2] + r[3] + r[4];
        s[1][b] = r[1] - r[2] + MUL(2.0f, r[3] - r[4]);
        s[2][b] = r[1] + r[2] + MUL(4.0f, r[3] + r[4]);
        s[3][b] = r[1] - r[2] + MUL(8.0f, r[3] - r[4]) + r[5];
    }
    float beta = bias[o];
    GLOBAL float* out = y + (long)o * h * w;
    for (int a = 0; a < 4 && 4 * i + a < h; ++a) { /* (A^T m) A, and the bias */
        float e0 = s[a][0], e1 = s[a][1], e2 = s[a][2], e3 = s[a][3], e4 = s[a][4], e5 = s[a][5];
        float row[4] = {e0 + e1 + e2 + e3 + e4 + beta, e1 - e2 + MUL(2.0f, e3 - e4) + beta,
                        e1 + e2 + MUL(4.0f, e3 + e4) + beta, e1 - e2 + MUL(8.0f, e3 - e4) + e5 + beta};
        for (int b = 0; b < 4 && 4 * j + b < w; ++b) out[(long)(4 * i + a) * w + 4 * j + b] = row[b];
    }
}
