/* The nine shifted copies of a float32 image for a 3x3 convolution as one GEMM (the `im2col`
 * formulation of layers.py), one thread per element. NumPy twin: layers._im2col. im2col_16.cu builds
 * the same for 16-bit elements (float16, copied as its bits).
 *
 * x (C, H, W) -> cols (9C, H·W): row 9c + 3dy + dx, column i·W + j holds x[c, i + dy − 1, j + dx − 1],
 * 0 outside the image. The grid's y is the row, its x the pixels: consecutive threads write
 * consecutive words, and read them too but at the image's edges. */
#include "prelude.h"

#ifndef IM2COL
#define IM2COL im2col
#define ELEMENT float
#endif

KERNEL void IM2COL(GLOBAL const ELEMENT* x, GLOBAL ELEMENT* cols, int h, int w)
{
    int p = GLOBAL_ID_X, row = GROUP_ID_Y, pixels = h * w;
    if (p >= pixels) return;
    int c = row / 9, t = row % 9, i = p / w + t / 3 - 1, j = p % w + t % 3 - 1;
    cols[(long)row * pixels + p] = (i >= 0 && i < h && j >= 0 && j < w) ? x[(long)c * pixels + i * w + j] : (ELEMENT)0;
}
