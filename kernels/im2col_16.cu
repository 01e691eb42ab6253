/* im2col.cu for 16-bit elements: float16 copied as its bits (a float16 0 is all zero bits), for the
 * float16 backward through binary weights (layers.HalfInputGradient). NumPy twin: layers._im2col. */
#define IM2COL im2col_16
#define ELEMENT unsigned short
#include "im2col.cu"
