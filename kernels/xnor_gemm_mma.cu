/* A plain binary product on binary tensor cores (CUDA only, sm_80 and later): out (M, N) int32, the
 * ±1 dot products of the rows of a (M, words) and of b (N, words), packed bits of which the first
 * `bits` count (the rest 0 in both). NumPy twin: binarize.xnor_gemm.
 *
 * With AND = Σ popcount(a AND b) from mma .and.popc and each row's popcount given (pop_a, pop_b), the
 * mismatches are pop_a + pop_b − 2·AND and the dot product bits − 2·mismatches. It is the yardstick
 * of the XNOR convolutions on a large square product (bench.gpu_layers: its rate against mma_peak's),
 * with the block tile of mma_tile.h that xnor_conv_mma_async.cu uses, fed by 16-byte cp.async copies
 * into two buffers. words must be a multiple of 4 (gpu_binary pads with zero words). */
#include "prelude.h"

#define BM 128 /* rows a block */
#define BN 64  /* columns a block */
#define WARPS_M 2
#define WARPS_N 2
#define STEP 16  /* words staged at a time */
#define PITCH 24 /* 16 + 8: conflict-free fragment loads (mma_tile.h); rows 16-byte aligned */

#ifdef BINARY_MMA
#include "mma_tile.h"
#endif

KERNEL void xnor_gemm_mma(const u32* a, const u32* b, const int* pop_a, const int* pop_b, int* out, int m, int n,
                          int words, int bits)
{
#ifdef BINARY_MMA
    __shared__ __align__(16) u32 as[2][BM][PITCH];
    __shared__ __align__(16) u32 bs[2][BN][PITCH];
    int lid = threadIdx.x, lane = lid % 32, warp = lid / 32;
    int i0 = blockIdx.x * BM, j0 = blockIdx.y * BN;
    int row0 = (warp % WARPS_M) * (BM / WARPS_M), col0 = (warp / WARPS_M) * (BN / WARPS_N);

    auto stage = [&](int k0, int buffer) { /* 16-byte chunks: a row's STEP words are STEP / 4 of them */
        for (int e = lid; e < BM * (STEP / 4); e += THREADS) {
            int r = e / (STEP / 4), c = 4 * (e % (STEP / 4));
            bool valid = i0 + r < m && k0 + c < words;
            copy_async<16>(&as[buffer][r][c], a + (valid ? (long long)(i0 + r) * words + k0 + c : 0), valid);
        }
        for (int e = lid; e < BN * (STEP / 4); e += THREADS) {
            int r = e / (STEP / 4), c = 4 * (e % (STEP / 4));
            bool valid = j0 + r < n && k0 + c < words;
            copy_async<16>(&bs[buffer][r][c], b + (valid ? (long long)(j0 + r) * words + k0 + c : 0), valid);
        }
        copy_async_commit();
    };

    int acc[MI][NI][4], unused[MI][4];
    tile_product(acc, unused, as, bs, words, row0, col0, lane, false, stage);

    FOR_TILE_OUTPUTS(mi, ni, r) {
        int i = i0 + TILE_ROW(row0, mi, lane, r), j = j0 + TILE_COL(col0, ni, lane, r);
        if (i < m && j < n) out[(long long)i * n + j] = bits - 2 * (pop_a[i] + pop_b[j] - 2 * acc[mi][ni][r]);
    }
#else
    __trap();
#endif
}
