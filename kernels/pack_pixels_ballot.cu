/* Bit-packing of a layer's input by warp votes (CUDA only: __ballot_sync, __shfl_xor_sync). Same
 * arguments and results as pack_pixels.cu (the bits exactly; the spread to float rounding, its sum
 * taken in another order); NumPy twin binarize.pack_pixels, CPU twin cpu_binary.pack_pixels.
 *
 * pack_pixels.cu gives each pixel one thread, which reads the pixel's C channels one after another:
 * few threads (H·W; 2,688 at conv5_1 of a 1024 px image) each waiting on C loads. Here a block of 8
 * warps takes 32 pixels and, 32 channels at a time, stages the 32 x 32 values in shared memory
 * (each warp reading rows of 32 consecutive pixels: whole 128-byte lines); then each warp turns one
 * pixel's 32 channels into its word with one vote (lane = channel: bit b of word k is 1 where
 * x[32k + b] >= centre[32k + b], channels past C 0) and adds their |x - centre| by a butterfly of
 * shuffles. Lane 0 keeps the sums of the warp's 4 pixels and writes spread (H, W) = their mean. */
#include "prelude.h"

#define PIXELS 32 /* a block's pixels */
#define WARPS 8   /* a block's warps: 256 threads */

KERNEL void pack_pixels_ballot(const float* x, const float* centre, u32* out, float* spread, int channels,
                               int pixels, int words)
{
    __shared__ float tile[32][PIXELS + 1]; /* [channel][pixel]; +1: a warp reading one pixel's column hits 32 banks */
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, p0 = blockIdx.x * PIXELS;
    float total[PIXELS / WARPS];
    for (int j = 0; j < PIXELS / WARPS; ++j) total[j] = 0.0f;
    for (int k = 0; k < words; ++k) {
        for (int r = warp; r < 32; r += WARPS) {
            int ch = 32 * k + r, p = p0 + lane;
            tile[r][lane] = ch < channels && p < pixels ? x[ch * pixels + p] : 0.0f;
        }
        __syncthreads();
        int ch = 32 * k + lane;
        bool real = ch < channels;
        float threshold = real ? centre[ch] : 0.0f;
        for (int j = 0; j < PIXELS / WARPS; ++j) {
            int q = warp + WARPS * j;
            float value = tile[lane][q];
            u32 bits = __ballot_sync(0xffffffffu, real && value >= threshold);
            float d = real ? fabs(value - threshold) : 0.0f;
            for (int m = 16; m > 0; m >>= 1) d += __shfl_xor_sync(0xffffffffu, d, m);
            if (lane == 0 && p0 + q < pixels) out[(p0 + q) * words + k] = bits;
            total[j] += d;
        }
        __syncthreads(); /* every warp has read the tile before the next chunk replaces it */
    }
    for (int j = 0; j < PIXELS / WARPS; ++j) {
        int p = p0 + warp + WARPS * j;
        if (lane == 0 && p < pixels) spread[p] = total[j] / (float)channels;
    }
}
