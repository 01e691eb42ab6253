/* The XNOR-Net layer's convolution on binary tensor cores (the third rung of the ladder of kernels/README.md; CUDA
 * only, sm_80 and later). Same arguments, result and twins as xnor_conv.cu (binarize.xnor_conv for P,
 * cpu_binary.xnor_layer for the whole).
 *
 * The convolution as a product: rows are pixels, columns output channels, and the reduction runs over
 * the 9·words words of (tap, input word), the input of a row being its pixel shifted by the tap (0
 * outside the image). mma.m16n8k256 .and.popc gives Σ popcount(x AND w) over that reduction; with
 * popcount(x XOR w) = popcount(x) + popcount(w) − 2·popcount(x AND w), the mismatches over a pixel's
 * in-image taps are X + F − 2·AND, X the popcounts of its in-image input words and F those of the
 * filter's in-image taps, and P = n·channels − 2·mismatches for n in-image taps (xnor_conv.cu's P).
 *
 * A block of 4 warps computes 64 pixels x 64 channels, each warp 32 x 32 (2 x 4 mma tiles); the
 * operands go through shared memory 16 words (two k256 steps) at a time. Fragment layout (PTX ISA,
 * mma.m16n8k256 .b1): lane = 4 g + q; A registers 0..3 = rows g, g+8, g, g+8 at words q, q, q+4, q+4
 * of the step; B registers 0..1 = column g at words q, q+4; D = rows g, g, g+8, g+8 at columns 2q,
 * 2q+1, 2q, 2q+1. */
#include "prelude.h"

#define TILE 64
#define STEP 16 /* words staged at a time */
#define PITCH 20 /* words per staged row: rows g = 0..7 at words q = 0..3 fall in 32 different banks */

KERNEL void xnor_conv_mma(const u32* x, const u32* filters, const float* scale, const float* alpha,
                          const float* tap_sums, const float* bias, float* out, int channels, int outs, int h,
                          int w, int words)
{
#ifdef BINARY_MMA
    __shared__ u32 xs[TILE][PITCH];
    __shared__ u32 ws[TILE][PITCH];
    __shared__ int x_pop[TILE];     /* X of each pixel of the tile */
    __shared__ int w_pop[TILE][9];  /* popcount of each filter's tap */
    __shared__ int w_all[TILE];     /* F of an interior pixel */
    __shared__ float m_all[TILE];   /* M of an interior pixel, summed in tap order as xnor_conv.cu */
    int lid = threadIdx.x, lane = lid % 32, warp = lid / 32, g = lane / 4, q = lane % 4;
    int pixel0 = blockIdx.x * TILE, out0 = blockIdx.y * TILE, pixels = h * w, depth = 9 * words;
    int row0 = (warp % 2) * 32, col0 = (warp / 2) * 32;
    int acc[2][4][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[mi][ni][r] = 0;

    for (int j0 = 0; j0 < depth; j0 += STEP) {
        for (int e = lid; e < TILE * STEP; e += 128) {
            int row = e / STEP, kk = e % STEP, j = j0 + kk;
            u32 xv = 0u, wv = 0u;
            if (j < depth) {
                int p = pixel0 + row, o = out0 + row, t = j / words;
                if (p < pixels) {
                    int y = p / w + t / 3 - 1, xx = p % w + t % 3 - 1;
                    if (y >= 0 && y < h && xx >= 0 && xx < w) xv = x[(y * w + xx) * words + j % words];
                }
                if (o < outs) wv = filters[o * depth + j];
            }
            xs[row][kk] = xv;
            ws[row][kk] = wv;
        }
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < STEP; ks += 8) {
            u32 a[2][4], b[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                int r = row0 + 16 * mi + g;
                a[mi][0] = xs[r][ks + q];
                a[mi][1] = xs[r + 8][ks + q];
                a[mi][2] = xs[r][ks + q + 4];
                a[mi][3] = xs[r + 8][ks + q + 4];
            }
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) {
                b[ni][0] = ws[col0 + 8 * ni + g][ks + q];
                b[ni][1] = ws[col0 + 8 * ni + g][ks + q + 4];
            }
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni)
                    mma_and_popc(acc[mi][ni], a[mi], b[ni]);
        }
        __syncthreads();
    }

    /* the epilogue's per-pixel and per-filter terms */
    for (int e = lid; e < TILE * 9; e += 128) {
        int row = e / 9, t = e % 9, o = out0 + row, total = 0;
        if (o < outs)
            for (int k = 0; k < words; ++k) total += __popc(filters[(o * 9 + t) * words + k]);
        w_pop[row][t] = total;
    }
    if (lid < TILE) {
        int p = pixel0 + lid, total = 0;
        if (p < pixels)
            for (int t = 0; t < 9; ++t) {
                int y = p / w + t / 3 - 1, xx = p % w + t % 3 - 1;
                if (y >= 0 && y < h && xx >= 0 && xx < w)
                    for (int k = 0; k < words; ++k) total += __popc(x[(y * w + xx) * words + k]);
            }
        x_pop[lid] = total;
    }
    __syncthreads();
    if (lid < TILE) {
        int o = out0 + lid, f = 0;
        float m = 0.0f;
        for (int t = 0; t < 9; ++t) {
            f += w_pop[lid][t];
            if (o < outs) m += tap_sums[o * 9 + t];
        }
        w_all[lid] = f;
        m_all[lid] = m;
    }
    __syncthreads();

#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                int row = row0 + 16 * mi + g + 8 * (r / 2), col = col0 + 8 * ni + 2 * q + r % 2;
                int p = pixel0 + row, o = out0 + col;
                if (p >= pixels || o >= outs) continue;
                int i = p / w, jj = p % w, inside = 9, f = w_all[col];
                float m = m_all[col];
                if (i == 0 || i == h - 1 || jj == 0 || jj == w - 1) {
                    inside = 0;
                    f = 0;
                    m = 0.0f;
                    for (int t = 0; t < 9; ++t) {
                        int y = i + t / 3 - 1, xx = jj + t % 3 - 1;
                        if (y < 0 || y >= h || xx < 0 || xx >= w) continue;
                        inside += 1;
                        f += w_pop[col][t];
                        m += tap_sums[o * 9 + t];
                    }
                }
                int mismatches = x_pop[row] + f - 2 * acc[mi][ni][r];
                out[o * pixels + p] = alpha[o] * (scale[p] * (float)(inside * channels - 2 * mismatches) + m) + bias[o];
            }
#else
    __trap(); /* binary tensor cores need sm_80 or later; gpu_binary picks another rung there */
#endif
}
