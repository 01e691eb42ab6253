/* Winograd F(4x4, 3x3)'s input transform, one thread per tile and channel: the 6x6 tile d of x (zero
 * outside the image) whose top left is at row 4i − 1, column 4j − 1 becomes B^T d B, written as
 * v[6a + b, c, i, j], the operand of the convolution's 36 GEMMs. One launch where CuPy ran the NumPy
 * twin's five (padding, gathering the tiles, the transform as a GEMM). The arithmetic is
 * cpu_float.winograd_input's, operation for operation and unfused (MUL), so the two agree bit for
 * bit. Twins: cpu_float.winograd_input (numba), layers.winograd_input (NumPy).
 *
 * x (C, H, W) -> v (36, C, th, tw), th = ceil(H / 4), tw = ceil(W / 4). The grid's y is the channel,
 * its x the tiles: consecutive threads write consecutive words of each of the 36 planes. */
#include "prelude.h"
#ifdef __OPENCL_VERSION__
#pragma OPENCL FP_CONTRACT OFF
#endif

/* (o0 ... o5) = B^T (d0 ... d5): six values of a tile's column, or of a row of B^T d */
#define INPUT_TRANSFORM(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5) \
    o0 = MUL(4.0f, d0) - MUL(5.0f, d2) + d4;                         \
    o1 = d3 + d4 - MUL(4.0f, d1 + d2);                                \
    o2 = MUL(4.0f, d1 - d2) + d4 - d3;                                \
    o3 = MUL(2.0f, d3 - d1) + d4 - d2;                                \
    o4 = MUL(2.0f, d1 - d3) + d4 - d2;                                \
    o5 = MUL(4.0f, d1) - MUL(5.0f, d3) + d5

KERNEL void winograd_input(GLOBAL const float* x, GLOBAL float* v, int channels, int h, int w, int th, int tw)
{
    int p = GLOBAL_ID_X, c = GROUP_ID_Y, tiles = th * tw;
    if (p >= tiles) return;
    int i = p / tw, j = p % tw;
    GLOBAL const float* image = x + (long)c * h * w;
    float d[6][6], t[6][6];
    for (int k = 0; k < 6; ++k) {
        int r = 4 * i - 1 + k;
        for (int l = 0; l < 6; ++l) {
            int q = 4 * j - 1 + l;
            d[k][l] = (r >= 0 && r < h && q >= 0 && q < w) ? image[(long)r * w + q] : 0.0f;
        }
    }
    for (int l = 0; l < 6; ++l) { /* B^T d: the rows combined, column by column */
        INPUT_TRANSFORM(d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l], t[0][l], t[1][l], t[2][l], t[3][l], t[4][l],
                        t[5][l]);
    }
    for (int a = 0; a < 6; ++a) { /* (B^T d) B: each row's six columns combined */
        float e[6];
        INPUT_TRANSFORM(t[a][0], t[a][1], t[a][2], t[a][3], t[a][4], t[a][5], e[0], e[1], e[2], e[3], e[4], e[5]);
        for (int b = 0; b < 6; ++b) v[((long)(6 * a + b) * channels + c) * tiles + p] = e[b];
    }
}
