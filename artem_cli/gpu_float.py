"""The float network's kernels of ``kernels/`` on a GPU runtime (``gpu_binary``'s runtimes: CUDA
through CuPy, OpenCL and the emulator in the tests), each one launch where its NumPy twin in ``layers``
(which CuPy would otherwise run) takes two to nineteen: the im2col copy of a 3x3 convolution's input,
Winograd's two transforms, 2x2 max pooling both ways, a ReLU's backward and the sums of the `taps`
formulation; and Adam's step (twin: ``optim.adam_step``). All but im2col and Adam's step also have CPU
twins in the numba kernels of ``cpu_float`` (same names, same arguments but the runtime). Each
matches its compiled CPU twin, or where it has none its NumPy twin, bit for bit: the same operations
in the same order, none fused.

Arrays are float32 (``which``: uint8; im2col's may be float16), contiguous; outputs are written in
place and returned."""
import functools

import numpy as np

from .gpu_binary import BLOCK, cuda_runtime


def _blocks(n):
    return -(-n // BLOCK)


_IM2COL = {np.dtype(np.float32): "im2col", np.dtype(np.float16): "im2col_16"}  # the kernel for each dtype


def im2col(runtime, x, cols):
    """cols (9C, H·W) gets the nine shifted copies of x (C, H, W) (0 outside the image), rows
    [c, dy, dx], as ``layers._im2col``; float32, or float16 (``im2col_16``: copied as its bits)."""
    c, h, w = x.shape
    runtime.launch(_IM2COL[np.dtype(cols.dtype)], (_blocks(h * w), 9 * c), BLOCK, (runtime.array(x, cols.dtype), cols, np.int32(h), np.int32(w)))
    return cols


def winograd_input(runtime, x, v):
    """v (36, C, ceil(H/4), ceil(W/4)) gets B^T d B of each zero-padded 6x6 tile d of x (C, H, W), as
    ``cpu_float.winograd_input``."""
    c, h, w = x.shape
    th, tw = v.shape[2:]
    runtime.launch("winograd_input", (_blocks(th * tw), c), BLOCK,
                   (runtime.array(x, np.float32), v, *map(np.int32, (c, h, w, th, tw))))
    return v


def winograd_output(runtime, m, bias, y):
    """y (O, H, W) gets A^T m A + bias[o] of each tile of m (36, O, th, tw), as ``cpu_float.winograd_output``."""
    o, h, w = y.shape
    th, tw = m.shape[2:]
    runtime.launch("winograd_output", (_blocks(th * tw), o), BLOCK,
                   (runtime.array(m, np.float32), runtime.array(bias, np.float32), y, *map(np.int32, (o, h, w, th, tw))))
    return y


def max_pool(runtime, x, out, which):
    """out and which (C, H/2, W/2) get each 2x2 window's maximum of x (C, H, W) and its index, as
    ``cpu_float.max_pool``."""
    c, h, w = x.shape
    runtime.launch("max_pool", (_blocks(out.shape[1] * out.shape[2]), c), BLOCK,
                   (runtime.array(x, np.float32), out, which, np.int32(h), np.int32(w)))
    return out


def max_pool_backward(runtime, grad, which, out):
    """out (C, H, W) gets grad (C, H/2, W/2) where ``which`` names each window's maximum, 0 elsewhere,
    as ``cpu_float.max_pool_backward``."""
    c, h, w = out.shape
    runtime.launch("max_pool_backward", (_blocks(h * w), c), BLOCK,
                   (runtime.array(grad, np.float32), runtime.array(which, np.uint8), out, np.int32(h), np.int32(w)))
    return out


def relu_backward(runtime, grad, out):
    """grad (C, H, W) times [out > 0], in place, as ``cpu_float.relu_backward``."""
    c, h, w = grad.shape
    runtime.launch("relu_backward", (_blocks(h * w), c), BLOCK, (grad, runtime.array(out, np.float32), np.int32(h * w)))
    return grad


def taps_sum(runtime, y, out):
    """out (O, H, W) gets the sum over the taps of y (3, 3, O, H, W) at each pixel, as
    ``cpu_float.taps_sum``."""
    o, h, w = out.shape
    runtime.launch("taps_sum", (_blocks(h * w), o), BLOCK, (runtime.array(y, np.float32), out, *map(np.int32, (o, h, w))))
    return out


def adam_step(runtime, x, grad, m, v, k, lr, beta1, beta2, eps):
    """Adam's step number k: the new (x, m, v) as new arrays, as ``optim.adam_step``."""
    out = [runtime.empty(x.shape, np.float32) for _ in range(3)]
    arrays = [runtime.array(a, np.float32) for a in (x, grad, m, v)]
    scalars = map(np.float32, (beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1**k, 1 - beta2**k, lr, eps))
    runtime.launch("adam_step", (_blocks(x.size),), BLOCK, (*arrays, *out, np.int32(x.size), *scalars))
    return tuple(out)


DTYPES = {"im2col": tuple(_IM2COL)}  # the dtypes each kernel takes: float32 where not listed
_FLOAT32 = (np.dtype(np.float32),)


def for_arrays(xp, name, dtype):
    """The kernel ``name`` of this module on the current CUDA device (its runtime argument given:
    ``gpu_binary.cuda_runtime()``) for CuPy arrays of ``dtype``; None for NumPy's, or for a dtype it
    does not take: the caller then runs the kernel's twin."""
    if xp is np or np.dtype(dtype) not in DTYPES.get(name, _FLOAT32):
        return None
    return functools.partial(globals()[name], cuda_runtime())
