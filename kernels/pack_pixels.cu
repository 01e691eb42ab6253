/* Bit-packing of a layer's input, one thread per pixel. NumPy twin: binarize.pack_pixels (the bits);
 * CPU twin: cpu_binary.pack_pixels (the bits and the spread).
 *
 * x (C, H, W) float32 -> out (H, W, words) u32: bit b of word k is 1 where x[32k + b] >= centre[32k + b]
 * (channels past C are 0); spread (H, W) = the mean over channels of |x - centre| (XNOR-Net's A). */
#include "prelude.h"

KERNEL void pack_pixels(GLOBAL const float* x, GLOBAL const float* centre, GLOBAL u32* out,
                        GLOBAL float* spread, int channels, int pixels, int words)
{
    int p = GLOBAL_ID_X;
    if (p >= pixels) return;
    float total = 0.0f;
    for (int k = 0; k < words; ++k) {
        u32 bits = 0u;
        for (int b = 0; b < 32; ++b) {
            int ch = 32 * k + b;
            if (ch < channels) {
                float value = x[ch * pixels + p];
                float threshold = centre[ch];
                bits |= (u32)(value >= threshold) << b;
                total += fabs(value - threshold);
            }
        }
        out[p * words + k] = bits;
    }
    spread[p] = total / (float)channels;
}
