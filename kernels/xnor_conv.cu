/* The XNOR-Net layer's convolution with its epilogue, one thread per output value (the first rung of the
 * ladder of kernels/README.md). NumPy twin: binarize.xnor_conv for P; cpu_binary.xnor_layer for the whole.
 *
 * x (H, W, words) and filters (O, 9, words) are packed signs (pack_pixels, binarize.pack_filters);
 * out[o, i, j] = alpha[o] * (scale[i, j] * P + M) + bias[o], where over the in-image taps t of (i, j)
 * P = sum of (channels - 2 popcount(x XOR w)), the ±1 convolution with zero padding, exactly, and
 * M = sum of tap_sums[o, t]. Taps outside the image are skipped, so padding needs no correction. */
#include "prelude.h"

KERNEL void xnor_conv(GLOBAL const u32* x, GLOBAL const u32* filters, GLOBAL const float* scale,
                      GLOBAL const float* alpha, GLOBAL const float* tap_sums, GLOBAL const float* bias,
                      GLOBAL float* out, int channels, int outs, int h, int w, int words)
{
    int index = GLOBAL_ID_X;
    if (index >= outs * h * w) return;
    int o = index / (h * w), pixel = index % (h * w);
    int i = pixel / w, j = pixel % w;
    int p = 0;
    float m = 0.0f;
    for (int t = 0; t < 9; ++t) {
        int y = i + t / 3 - 1, xx = j + t % 3 - 1;
        if (y < 0 || y >= h || xx < 0 || xx >= w) continue;
        GLOBAL const u32* a = x + (y * w + xx) * words;
        GLOBAL const u32* b = filters + (o * 9 + t) * words;
        int mismatches = 0;
        for (int k = 0; k < words; ++k) mismatches += POPC(a[k] ^ b[k]);
        p += channels - 2 * mismatches;
        m += tap_sums[o * 9 + t];
    }
    out[index] = alpha[o] * (scale[pixel] * (float)p + m) + bias[o];
}
