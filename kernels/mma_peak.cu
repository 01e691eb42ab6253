/* The binary tensor cores' peak, the yardstick of xnor_conv_mma.cu (CUDA only, sm_80 and later): each
 * warp issues `iterations` x 4 independent mma.m16n8k256 .and.popc on operands held in registers
 * (16 x 8 x 256 binary multiply-accumulates each), no memory traffic but the final store, which keeps
 * the compiler from dropping the work. bench.gpu_layers times it. */
#include "prelude.h"

KERNEL void mma_peak(int* out, int iterations)
{
#ifdef BINARY_MMA
    u32 a[4], b[2];
    int acc[4][4];
    u32 seed = blockIdx.x * blockDim.x + threadIdx.x;
#pragma unroll
    for (int r = 0; r < 4; ++r) a[r] = seed * 2654435761u + r;
    b[0] = seed ^ 0x9e3779b9u;
    b[1] = seed * 40503u;
#pragma unroll
    for (int c = 0; c < 4; ++c)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[c][r] = 0;
    for (int i = 0; i < iterations; ++i)
#pragma unroll
        for (int c = 0; c < 4; ++c)
            mma_and_popc(acc[c], a, b);
    int total = 0;
#pragma unroll
    for (int c = 0; c < 4; ++c)
#pragma unroll
        for (int r = 0; r < 4; ++r) total += acc[c][r];
    out[seed] = total;
#else
    __trap();
#endif
}
