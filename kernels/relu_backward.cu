/* A ReLU's input gradient, in place, one thread per element: grad · [out > 0], out the ReLU's output
 * (positive exactly where its input was). One launch where CuPy ran two (the comparison, the product).
 * Twins: cpu_float.relu_backward (numba), layers.relu_backward (NumPy).
 *
 * grad, out (C, H, W). The grid's y is the channel. */
#include "prelude.h"

KERNEL void relu_backward(GLOBAL float* grad, GLOBAL const float* out, int pixels)
{
    int p = GLOBAL_ID_X;
    if (p >= pixels) return;
    long at = (long)GROUP_ID_Y * pixels + p;
    grad[at] = grad[at] * (out[at] > 0.0f ? 1.0f : 0.0f); /* as NumPy's product with the mask: -0 and NaN kept */
}
