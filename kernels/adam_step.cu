/* One step of Adam (optim.Adam) on every element, one thread each: the moments m and v updated by the
 * gradient g, and x moved by lr · m̂ / (√v̂ + eps), m̂ and v̂ the moments divided by their bias
 * corrections. One launch where CuPy ran fourteen. The arithmetic is the NumPy twin's, operation for
 * operation and unfused (MUL; division and square root correctly rounded, as NVRTC's defaults and
 * C++'s are, and OpenCL's when built with -cl-fp32-correctly-rounded-divide-sqrt), so the two agree
 * bit for bit (on normal numbers: CuPy builds with -ftz=true, subnormals flush to zero on a GPU).
 * Twin: optim.adam_step (NumPy).
 *
 * x, g, m, v -> x_out, m_out, v_out, n floats each (new arrays: a caller may keep the old x). The
 * scalars as float32: beta1, 1 − beta1, beta2, 1 − beta2, the corrections 1 − beta1^k and
 * 1 − beta2^k, lr and eps. */
#include "prelude.h"
#ifdef __OPENCL_VERSION__
#pragma OPENCL FP_CONTRACT OFF
#endif

KERNEL void adam_step(GLOBAL const float* x, GLOBAL const float* g, GLOBAL const float* m, GLOBAL const float* v,
                      GLOBAL float* x_out, GLOBAL float* m_out, GLOBAL float* v_out, int n, float beta1, float rest1,
                      float beta2, float rest2, float correction1, float correction2, float lr, float eps)
{
    int i = GLOBAL_ID_X;
    if (i >= n) return;
    float gi = g[i];
    float mi = MUL(beta1, m[i]) + MUL(rest1, gi);
    float vi = MUL(beta2, v[i]) + MUL(MUL(rest2, gi), gi);
    m_out[i] = mi;
    v_out[i] = vi;
    x_out[i] = x[i] - MUL(lr, mi / correction1) / (SQRT(vi / correction2) + eps);
}
