/* One output of the XNOR-Net layer from the binary tensor cores' AND (xnor_conv_mma_async.cu): pixel
 * (i, j) of an h x w image, one filter. xnor_conv_mma.cu spells the same out in its epilogue: written
 * with this function its registers went from 64 to 80 a thread, and its timings are the ones
 * measured (BENCHMARKS.md §7); whichever of the two rungs a GPU ranks slower goes.
 *
 * and_count = Σ popcount(x AND w) over the pixel's in-image taps, x_pop = X (the popcount of its
 * in-image input words); f_tap and m_tap the filter's 9 tap popcounts and M terms, f_all and m_all
 * their sums over all 9 (an interior pixel's). On the border, F, M and the count n of in-image taps
 * are summed again over the in-image taps only, in tap order as xnor_conv.cu sums M. Then the
 * mismatches are X + F − 2·AND, P = n·channels − 2·mismatches, and the output α (scale P + M) + b. */
#ifndef ARTEM_XNOR_OUTPUT_H
#define ARTEM_XNOR_OUTPUT_H

__device__ __forceinline__ float xnor_output(int and_count, int x_pop, int i, int j, int h, int w, int channels,
                                             const int* f_tap, const float* m_tap, int f_all, float m_all,
                                             float scale, float alpha, float bias)
{
    int inside = 9, f = f_all;
    float m = m_all;
    if (i == 0 || i == h - 1 || j == 0 || j == w - 1) {
        inside = 0;
        f = 0;
        m = 0.0f;
        for (int t = 0; t < 9; ++t) {
            int y = i + t / 3 - 1, x = j + t % 3 - 1;
            if (y < 0 || y >= h || x < 0 || x >= w) continue;
            inside += 1;
            f += f_tap[t];
            m += m_tap[t];
        }
    }
    int mismatches = x_pop + f - 2 * and_count;
    return alpha * (scale * (float)(inside * channels - 2 * mismatches) + m) + bias;
}

#endif
