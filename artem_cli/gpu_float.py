"""The float kernels of ``kernels/`` on a GPU runtime (``gpu_binary``'s runtimes: CUDA through CuPy,
OpenCL in the tests): the im2col copy of a 3x3 convolution's input, one launch where the NumPy twin
(``layers._im2col``, which CuPy would otherwise run) takes eleven."""
import numpy as np

from .gpu_binary import BLOCK, cuda_runtime


def im2col(runtime, x, cols):
    """cols (9C, H·W) float32, contiguous, gets the nine shifted copies of x (C, H, W) float32 (0
    outside the image), rows [c, dy, dx], as ``layers._im2col``; returns cols."""
    c, h, w = x.shape
    runtime.launch("im2col", (-(-h * w // BLOCK), 9 * c), BLOCK, (runtime.array(x, np.float32), cols, np.int32(h), np.int32(w)))
    return cols


def cuda_im2col(x, cols):
    """``im2col`` on the current CUDA device, for CuPy arrays."""
    return im2col(cuda_runtime(), x, cols)
