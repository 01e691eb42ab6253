/* The XNOR-Net layer's convolution on binary tensor cores with asynchronous, double-buffered staging
 * (rung `mma_async` of the ladder of kernels/README.md; CUDA only, sm_80 and later). Same result and twins as
 * xnor_conv.cu (binarize.xnor_conv for P, cpu_binary.xnor_layer for the whole), the same arguments
 * but for the filters: gpu_binary.BinaryKernels.filters_for_kernel gives this rung each filter as
 * the popcount of each of its 9 taps (computed once per layer), 3 zeros, then its 9·words words.
 *
 * The product and its correction are xnor_conv_mma.cu's: rows are pixels, columns output channels,
 * the reduction runs over the 9·words words of (tap, input word), the input of a row being its pixel
 * shifted by the tap (0 outside the image); mma .and.popc gives AND = Σ popcount(x AND w), and the
 * mismatches over a pixel's in-image taps are X + F − 2·AND, X the popcount of its in-image input
 * words, F that of the filter's in-image taps; P = n·channels − 2·mismatches for n in-image taps.
 *
 * What differs from xnor_conv_mma.cu, each to take work out of the loop around the mma:
 * - staging by cp.async into two buffers: the next STEP words are in flight while the tensor cores
 *   work on these, and no thread holds them in registers; out-of-image and out-of-range words are
 *   zero-filled by the copy itself; 16 bytes a copy where words is a multiple of 4;
 * - no division in the loop: each thread stages one position kk of every chunk (one division by
 *   words a chunk), for rows whose pixel coordinates the block computed once;
 * - X from the staged words themselves (an mma against all-ones columns in the warps of the first
 *   column), F from the per-tap popcounts given with the filters: no epilogue that reads the input
 *   and the filters again. */
#include "prelude.h"
#include "xnor_output.h"

#define BM 64 /* pixels a block */
#define BN 64 /* output channels a block */
#define WARPS_M 2
#define WARPS_N 2
#define STEP 32  /* words staged at a time */
#define PITCH 40 /* 32 + 8: conflict-free fragment loads (mma_tile.h); rows 16-byte aligned */
#define TAP_WORDS 12 /* a filter's row: its 9 taps' popcounts, 3 zeros, then its words (16-byte aligned) */

template <int N> struct Words {
    static constexpr int value = N;
};

#ifdef BINARY_MMA
#include "mma_tile.h"
#endif

KERNEL void xnor_conv_mma_async(const u32* x, const u32* filters, const float* scale, const float* alpha,
                                const float* tap_sums, const float* bias, float* out, int channels, int outs, int h,
                                int w, int words)
{
#ifdef BINARY_MMA
    __shared__ __align__(16) u32 xs[2][BM][PITCH];
    __shared__ __align__(16) u32 ws[2][BN][PITCH];
    __shared__ int row_y[BM], row_x[BM], x_pop[BM];
    __shared__ int f_tap[BN][9], f_all[BN];
    __shared__ float m_tap[BN][9], m_all[BN];
    int lid = threadIdx.x, lane = lid % 32, warp = lid / 32;
    int pixel0 = blockIdx.x * BM, out0 = blockIdx.y * BN, pixels = h * w, depth = 9 * words, stride = TAP_WORDS + depth;
    int row0 = (warp % WARPS_M) * (BM / WARPS_M), col0 = (warp / WARPS_M) * (BN / WARPS_N);

    for (int r = lid; r < BM; r += THREADS) {
        int p = pixel0 + r;
        row_y[r] = p < pixels ? p / w : -2; /* -2: every tap falls outside, the row stages zeros */
        row_x[r] = p < pixels ? p % w : 0;
    }
    for (int e = lid; e < BN * 9; e += THREADS) {
        int c = e / 9, t = e % 9, o = out0 + c;
        f_tap[c][t] = o < outs ? (int)filters[o * stride + t] : 0;
        m_tap[c][t] = o < outs ? tap_sums[o * 9 + t] : 0.0f;
    }
    __syncthreads();
    if (lid < BN) {
        int f = 0;
        float m = 0.0f; /* in tap order, as xnor_conv.cu */
        for (int t = 0; t < 9; ++t) {
            f += f_tap[lid][t];
            m += m_tap[lid][t];
        }
        f_all[lid] = f;
        m_all[lid] = m;
    }

    /* Chunk j0 of the reduction into buffer: each thread stages VEC consecutive words (one copy) at
     * the same position kk of every chunk, for every (THREADS / (STEP / VEC))-th row and column from
     * its first: one division by words a chunk. VEC = 4 (16-byte copies) where words is a multiple of
     * 4, so that 4 consecutive words stay within one tap and are aligned; else 1. */
    auto stage_by = [&](auto vec, int j0, int buffer) {
        constexpr int VEC = decltype(vec)::value, LANES = STEP / VEC;
        int kk = VEC * (lid % LANES), j = j0 + kk, t = j / words, k = j - t * words, dy = t / 3 - 1, dx = t % 3 - 1;
        bool real = j < depth;
        for (int r = lid / LANES; r < BM; r += THREADS / LANES) {
            int y = row_y[r] + dy, xx = row_x[r] + dx;
            bool valid = real && y >= 0 && y < h && xx >= 0 && xx < w;
            copy_async<4 * VEC>(&xs[buffer][r][kk], x + (valid ? (y * w + xx) * words + k : 0), valid);
        }
        for (int c = lid / LANES; c < BN; c += THREADS / LANES) {
            bool valid = real && out0 + c < outs;
            copy_async<4 * VEC>(&ws[buffer][c][kk], filters + (valid ? (out0 + c) * stride + TAP_WORDS + j : 0), valid);
        }
        copy_async_commit();
    };
    auto stage = [&](int j0, int buffer) {
        if (words % 4 == 0)
            stage_by(Words<4>(), j0, buffer);
        else
            stage_by(Words<1>(), j0, buffer);
    };

    int acc[MI][NI][4], rows[MI][4];
    tile_product(acc, rows, xs, ws, depth, row0, col0, lane, col0 == 0, stage);
    if (col0 == 0 && lane % 4 == 0)
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
            x_pop[TILE_ROW(row0, mi, lane, 0)] = rows[mi][0];
            x_pop[TILE_ROW(row0, mi, lane, 2)] = rows[mi][2];
        }
    __syncthreads();

    FOR_TILE_OUTPUTS(mi, ni, r) {
        int row = TILE_ROW(row0, mi, lane, r), col = TILE_COL(col0, ni, lane, r);
        int p = pixel0 + row, o = out0 + col;
        if (p >= pixels || o >= outs) continue;
        out[o * pixels + p] = xnor_output(acc[mi][ni][r], x_pop[row], row_y[row], row_x[row], h, w, channels,
                                          f_tap[col], m_tap[col], f_all[col], m_all[col], scale[p], alpha[o], bias[o]);
    }
#else
    __trap(); /* binary tensor cores need sm_80 or later; gpu_binary picks another rung there */
#endif
}
