/* A block's tile of a binary product on binary tensor cores, shared by xnor_conv_mma_async.cu and
 * xnor_gemm_mma.cu (CUDA, sm_80 and later; BINARY_MMA from prelude.h).
 *
 * The including kernel defines the tile: BM rows x BN columns a block, WARPS_M x WARPS_N warps, each
 * owning (BM / WARPS_M) rows x (BN / WARPS_N) columns as MI x NI mma tiles of 16 x 8; and the
 * operands staged STEP words (a multiple of 8: STEP / 8 k256 steps) at a time in shared memory, a row
 * every PITCH words. PITCH % 32 of 8 or 24 puts the four rows a half-warp reads in four different
 * groups of 8 banks: fragment loads are free of bank conflicts.
 *
 * Words within a k256 step are assigned to lanes so that each lane reads two adjacent words (one
 * 64-bit load) per row: the mma's word q goes to physical word 2q and its word q + 4 to 2q + 1, for
 * the rows and the columns alike, which leaves Σ popcount(a AND b) as it is. Fragment layout
 * (prelude.h, PTX ISA): lane = 4g + q; d[r] is row g + 8 (r / 2), column 2q + r % 2 of its tile. */
#ifndef ARTEM_MMA_TILE_H
#define ARTEM_MMA_TILE_H

#define THREADS (32 * WARPS_M * WARPS_N)
#define MI (BM / WARPS_M / 16)
#define NI (BN / WARPS_N / 8)

/* acc[mi][ni] += the products of one staged chunk: rows xs (BM x PITCH), columns ws (BN x PITCH), this
 * warp's rows from row0 and columns from col0; where count_rows (warp-uniform), also rows[mi] += the
 * popcounts of the rows (an mma against all-ones columns, so that no thread reads the words twice). */
__device__ __forceinline__ void tile_step(int (&acc)[MI][NI][4], int (&rows)[MI][4], const u32 (*xs)[PITCH],
                                          const u32 (*ws)[PITCH], int row0, int col0, int lane, bool count_rows)
{
    int g = lane / 4, q = lane % 4;
    const u32 ones[2] = {0xffffffffu, 0xffffffffu};
#pragma unroll
    for (int ks = 0; ks < STEP; ks += 8) {
        u32 a[MI][4], b[NI][2];
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
            uint2 top = *(const uint2*)&xs[row0 + 16 * mi + g][ks + 2 * q];
            uint2 bottom = *(const uint2*)&xs[row0 + 16 * mi + g + 8][ks + 2 * q];
            a[mi][0] = top.x;
            a[mi][1] = bottom.x;
            a[mi][2] = top.y;
            a[mi][3] = bottom.y;
        }
#pragma unroll
        for (int ni = 0; ni < NI; ++ni) {
            uint2 column = *(const uint2*)&ws[col0 + 8 * ni + g][ks + 2 * q];
            b[ni][0] = column.x;
            b[ni][1] = column.y;
        }
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
            for (int ni = 0; ni < NI; ++ni) mma_and_popc(acc[mi][ni], a[mi], b[ni]);
            if (count_rows) mma_and_popc(rows[mi], a[mi], ones);
        }
    }
}

/* acc = the block's products over the whole reduction of `depth` words (and rows = its rows'
 * popcounts where count_rows), in chunks of STEP words: stage(j0, buffer) issues the copies of words
 * j0 .. j0 + STEP of the rows into xs[buffer] and of the columns into ws[buffer] and commits them;
 * two buffers in turn, the next chunk in flight while the tensor cores work on this one. */
template <class Stage>
__device__ __forceinline__ void tile_product(int (&acc)[MI][NI][4], int (&rows)[MI][4], const u32 (&xs)[2][BM][PITCH],
                                             const u32 (&ws)[2][BN][PITCH], int depth, int row0, int col0, int lane,
                                             bool count_rows, Stage stage)
{
#pragma unroll
    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            rows[mi][r] = 0;
#pragma unroll
            for (int ni = 0; ni < NI; ++ni) acc[mi][ni][r] = 0;
        }
    int chunks = (depth + STEP - 1) / STEP;
    stage(0, 0);
    for (int s = 0; s < chunks; ++s) {
        if (s + 1 < chunks) {
            stage((s + 1) * STEP, (s + 1) % 2);
            copy_async_wait<1>();
        } else {
            copy_async_wait<0>();
        }
        __syncthreads();
        tile_step(acc, rows, xs[s % 2], ws[s % 2], row0, col0, lane, count_rows);
        __syncthreads(); /* before the next stage overwrites this buffer */
    }
}

/* a loop over every d[r] of every mma tile (mi, ni) a lane holds, unrolled */
#define FOR_TILE_OUTPUTS(mi, ni, r)                                                                                \
    _Pragma("unroll") for (int mi = 0; mi < MI; ++mi) _Pragma("unroll") for (int ni = 0; ni < NI; ++ni)           \
        _Pragma("unroll") for (int r = 0; r < 4; ++r)

/* the row and column within the block tile of d[r] of mma tile (mi, ni) */
#define TILE_ROW(row0, mi, lane, r) ((row0) + 16 * (mi) + (lane) / 4 + 8 * ((r) / 2))
#define TILE_COL(col0, ni, lane, r) ((col0) + 8 * (ni) + 2 * ((lane) % 4) + (r) % 2)

#endif
