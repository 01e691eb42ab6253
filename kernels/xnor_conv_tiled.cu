/* The XNOR-Net layer's convolution, tiled in shared memory with register blocking (the second rung of
 * ladder of kernels/README.md). Same arguments, result and twins as xnor_conv.cu (binarize.xnor_conv for P,
 * cpu_binary.xnor_layer for the whole).
 *
 * A work-group of 256 threads computes 64 output channels x 64 pixels (pixels numbered row by row);
 * thread (to, tp) owns channels to + 16r and pixels tp + 16s, r, s < 4, so that neighbouring threads
 * read neighbouring words of shared memory. For each tap t and each chunk of up to 16 words, the
 * group stages the chunk of its 64 pixels' input (the pixel shifted by t; 0 where that falls outside
 * the image) and of its 64 filters in shared memory, then each thread adds 16 popcount(x XOR w).
 *
 * Out-of-image taps are not skipped in that loop (no branch in it): their input words are 0, so they
 * add popcount(w) of their filter; the epilogue takes that back. With n in-image taps,
 * P = n·channels − 2·(mismatches over in-image taps), exactly as xnor_conv.cu. */
#include "prelude.h"

#define TILE 64  /* output channels and pixels per work-group */
#define CHUNK 16 /* words staged at a time */

KERNEL void xnor_conv_tiled(GLOBAL const u32* x, GLOBAL const u32* filters, GLOBAL const float* scale,
                            GLOBAL const float* alpha, GLOBAL const float* tap_sums, GLOBAL const float* bias,
                            GLOBAL float* out, int channels, int outs, int h, int w, int words)
{
    LOCAL u32 xs[CHUNK][TILE + 1]; /* +1: the 16 threads that store one pixel's words hit 16 banks */
    LOCAL u32 ws[CHUNK][TILE + 1];
    int lid = LOCAL_ID_X, tp = lid % 16, to = lid / 16;
    int pixel0 = GROUP_ID_X * TILE, out0 = GROUP_ID_Y * TILE, pixels = h * w;
    int acc[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int s = 0; s < 4; ++s) acc[r][s] = 0;

    for (int t = 0; t < 9; ++t) {
        int dy = t / 3 - 1, dx = t % 3 - 1;
        for (int k0 = 0; k0 < words; k0 += CHUNK) {
            int chunk = words - k0 < CHUNK ? words - k0 : CHUNK;
            for (int e = lid; e < CHUNK * TILE; e += 256) {
                int kk = e % CHUNK, q = e / CHUNK; /* consecutive threads: consecutive words */
                u32 xv = 0u, wv = 0u;
                if (kk < chunk) {
                    int p = pixel0 + q, o = out0 + q;
                    if (p < pixels) {
                        int y = p / w + dy, xx = p % w + dx;
                        if (y >= 0 && y < h && xx >= 0 && xx < w) xv = x[(y * w + xx) * words + k0 + kk];
                    }
                    if (o < outs) wv = filters[(o * 9 + t) * words + k0 + kk];
                }
                xs[kk][q] = xv;
                ws[kk][q] = wv;
            }
            BARRIER();
            for (int kk = 0; kk < chunk; ++kk) {
                u32 a[4], b[4];
#pragma unroll
                for (int s = 0; s < 4; ++s) a[s] = xs[kk][tp + 16 * s];
#pragma unroll
                for (int r = 0; r < 4; ++r) b[r] = ws[kk][to + 16 * r];
#pragma unroll
                for (int r = 0; r < 4; ++r)
#pragma unroll
                    for (int s = 0; s < 4; ++s) acc[r][s] += POPC(a[s] ^ b[r]);
            }
            BARRIER();
        }
    }

#pragma unroll
    for (int r = 0; r < 4; ++r) {
        int o = out0 + to + 16 * r;
        if (o >= outs) continue;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            int p = pixel0 + tp + 16 * s;
            if (p >= pixels) continue;
            int i = p / w, j = p % w, inside = 0, mismatches = acc[r][s];
            float m = 0.0f;
            for (int t = 0; t < 9; ++t) {
                int y = i + t / 3 - 1, xx = j + t % 3 - 1;
                if (y < 0 || y >= h || xx < 0 || xx >= w) {
                    for (int k = 0; k < words; ++k) mismatches -= POPC(filters[(o * 9 + t) * words + k]);
                    continue;
                }
                inside += 1;
                m += tap_sums[o * 9 + t];
            }
            out[o * pixels + p] = alpha[o] * (scale[p] * (float)(inside * channels - 2 * mismatches) + m) + bias[o];
        }
    }
}
