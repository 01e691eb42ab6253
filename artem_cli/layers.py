"""VGG16's layers, forward and backward to their input: 3x3 convolution, ReLU, 2x2 pooling.

Arrays are (C, H, W). Each layer's ``forward`` keeps what its ``backward`` needs; ``backward`` takes
the gradient of the loss with respect to the layer's output and returns it with respect to the input.
No weight gradients are ever computed: style transfer only optimizes the image.

The 3x3 convolution (stride 1, zero padding 1) has three GEMM formulations, chosen by channel counts
because that is where each is fastest on a 2-core CPU with OpenBLAS (measured, see BENCHMARKS.md):

* ``winograd``: Winograd F(4x4, 3x3): an input transform, 36 batched (O, C) x (C, tiles) GEMMs with
  4x fewer multiplies than the direct convolution, an output transform with the bias; the transforms
  are numba kernels (``cpu_float``) on NumPy arrays and CUDA kernels (``gpu_float``) on CuPy's, one
  pass over memory each. Every VGG16 layer but conv1_1 uses it (measured at 512 px: 1.1-1.4x faster
  than F(2x2, 3x3), which was 1.3-1.9x faster than the best plain GEMM formulation). Its float32
  error is about 1e-5 of the output's largest value (F(2x2, 3x3): 5e-7); through the network that
  only decides a few ReLU and max-pool near-ties the other way (BENCHMARKS.md §1);
* ``taps``: for few outputs (O <= 16): a (9O, C) GEMM on the image itself, then nine shifted sums;
* ``im2col``: for few inputs (C <= 16): the full (9C, H·W) copy and one (O, 9C) GEMM.

The input gradient of a convolution is the convolution of the output gradient with the weights
transposed (in/out swapped) and flipped, so ``backward`` reuses the forward code.
"""
import math

import numpy as np

from .backend import array_module, matmul, split_channels

TAPS_MAX_OUTPUTS = 16
IM2COL_MAX_INPUTS = 16

# Winograd F(4x4, 3x3) (Lavin & Gray 2016): output tile 4x4, input tile 6x6, Y = A^T [(G g G^T) * (B^T d B)] A.
_WINOGRAD_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
               (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_WINOGRAD_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
                (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_WINOGRAD_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


class Workspace:
    """Reusable buffers for convolution temporaries (a fresh 100 MB array costs its page faults on
    every call, about 15 % of conv1_2's time). A network owns one and shares it among its layers,
    which run one at a time; two networks never share one, so two runs in two threads cannot
    overwrite each other's temporaries."""

    def __init__(self):
        self._buffers = {}

    def get(self, key, shape, dtype, xp):
        size = 1
        for n in shape:
            size *= n
        buf = self._buffers.get(key)
        if buf is None or buf.size < size or buf.dtype != dtype or array_module(buf) is not xp:
            buf = self._buffers[key] = xp.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def constant(self, key, make):
        """``make()``, made on the first call for ``key`` only: constants on the device once, not a
        transfer to it each call (none may happen while a CUDA graph is recorded)."""
        if key not in self._buffers:
            self._buffers[key] = make()
        return self._buffers[key]


# the float kernels of ``cpu_float`` (numba) and ``gpu_float`` (CUDA), each with its NumPy twin here
FLOAT_KERNELS = ("winograd_input", "winograd_output", "max_pool", "max_pool_backward", "relu_backward", "taps_sum")


def _kernel(xp, name, dtype):
    """The float kernel ``name`` for arrays of ``xp``: numba's (``cpu_float``, compiled on first use and
    cached on disk) for NumPy, the CUDA kernel of ``kernels/`` (``gpu_float``) for CuPy's float32. Its
    NumPy twin of the same name here is the reference both are held to, and CuPy's path for other
    dtypes."""
    if xp is np:
        from . import cpu_float

        return getattr(cpu_float, name)
    from . import gpu_float

    return gpu_float.for_arrays(xp, name, dtype) or globals()[name]


FORMULATIONS = (None, "im2col")  # None: chosen by channel counts; "im2col": one GEMM for every layer


def _prepare(weight, formulation=None):
    """Rearrange (O, C, 3, 3) weights for ``formulation``, or by default the one chosen for C inputs
    and O outputs."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"no convolution formulation {formulation!r}")
    xp = array_module(weight)
    out_ch, in_ch = weight.shape[:2]
    if in_ch <= IM2COL_MAX_INPUTS or formulation == "im2col":  # o x [c, dy, dx]
        return "im2col", xp.ascontiguousarray(weight.reshape(out_ch, 9 * in_ch))
    if out_ch <= TAPS_MAX_OUTPUTS:  # [dy, dx, o] x c
        return "taps", xp.ascontiguousarray(weight.transpose(2, 3, 0, 1).reshape(9 * out_ch, in_ch))
    g = xp.asarray(_WINOGRAD_G, dtype=weight.dtype)
    # (G w G^T)[a, b] = sum over k, l of g[a, k] g[b, l] w[k, l]: one (36, 9) x (9, O·C) GEMM
    u = xp.kron(g, g) @ weight.reshape(out_ch * in_ch, 9).T
    return "winograd", u.reshape(36, out_ch, in_ch)


def _im2col(x, workspace):
    """All nine shifted copies of x (C, H, W) zero-padded by 1, as (9C, H·W) rows [c, dy, dx]. The
    NumPy twin of ``kernels/im2col.cu`` (and ``im2col_16.cu``), which does it in one launch for CuPy's
    float32 (float16) arrays."""
    xp = array_module(x)
    c, h, w = x.shape
    cols = workspace.get(f"im2col_{x.dtype}", (c, 3, 3, h, w), x.dtype, xp)
    from . import gpu_float

    if kernel := gpu_float.for_arrays(xp, "im2col", x.dtype):
        return kernel(x, cols.reshape(9 * c, h * w))
    xpad = xp.zeros((c, h + 2, w + 2), dtype=x.dtype)
    xpad[:, 1:-1, 1:-1] = x
    for dy in range(3):
        for dx in range(3):
            cols[:, dy, dx] = xpad[:, dy : dy + h, dx : dx + w]
    return cols.reshape(9 * c, h * w)


def _conv_im2col(x, wt, workspace):
    """The classic: all nine shifted copies of the padded input, (9C, H·W), and one GEMM; best
    when C is tiny (conv1_1, C = 3), where the copy is small and the GEMM writes O rows directly."""
    h, w = x.shape[1:]
    return matmul(wt, _im2col(x, workspace)).reshape(-1, h, w)


def weight_grad(x, grad, workspace=None):
    """dLoss/dW (O, C, 3, 3) of the convolution of x (C, H, W) whose output has the gradient grad
    (O, H, W): dW[o, c, dy, dx] = Σ over pixels of grad[o, i, j] · x[c, i + dy - 1, j + dx - 1] (zero
    outside the image), one (O, H·W) x (H·W, 9C) GEMM on the im2col copy of x."""
    c, h, w = x.shape
    cols = _im2col(x, workspace or Workspace())
    return (grad.reshape(len(grad), h * w) @ cols.T).reshape(len(grad), c, 3, 3)


def _conv_taps(x, wt, workspace):
    """One GEMM giving every tap's contribution at every input pixel, (9O, H·W), then the nine
    shifted sums: cheapest when O is small (the image gradient through conv1_1, O = 3)."""
    xp = array_module(x)
    c, h, w = x.shape
    y = workspace.get("taps_out", (wt.shape[0], h * w), x.dtype, xp)
    matmul(wt, x.reshape(c, -1), out=y)
    out = xp.empty((wt.shape[0] // 9, h, w), dtype=x.dtype)
    _kernel(xp, "taps_sum", x.dtype)(y.reshape(3, 3, -1, h, w), out)
    return out


def taps_sum(y, out):
    """out[o, i, j] = the sum over dy, dx of y[dy, dx, o, i + dy - 1, j + dx - 1] (3, 3, O, H, W),
    taps outside the image left out, added from 0 in the order dy, dx. The NumPy twin of
    ``cpu_float.taps_sum`` and ``kernels/taps_sum.cu``."""
    h, w = out.shape[1:]
    out[...] = 0
    for dy in range(3):
        i0, i1 = max(0, 1 - dy), min(h, h + 1 - dy)
        for dx in range(3):
            j0, j1 = max(0, 1 - dx), min(w, w + 1 - dx)
            out[:, i0:i1, j0:j1] += y[dy, dx, :, i0 + dy - 1 : i1 + dy - 1, j0 + dx - 1 : j1 + dx - 1]


def winograd_transform(name, xp, dtype):
    """kron(B^T, B^T) (36, 36) for "input", kron(A^T, A^T) (16, 36) for "output", on xp's device."""
    t = xp.asarray(_WINOGRAD_BT if name == "input" else _WINOGRAD_AT, dtype=dtype)
    return xp.kron(t, t)


def winograd_input(x, v, transform=None):
    """v[6a + b, c, i, j] = (B^T d B)[a, b], d the zero-padded 6x6 tile of x[c] at row 4i - 1, column
    4j - 1, into the GEMM operand v (36, C, ceil(H/4), ceil(W/4)): the tiles gathered as (36, tiles)
    and transformed by one (36, 36) x (36, tiles) product with ``transform`` (kron(B^T, B^T), made
    here when not given). The NumPy twin of ``cpu_float.winograd_input`` and ``kernels/winograd_input.cu``."""
    xp = array_module(x)
    c, h, w = x.shape
    th, tw = v.shape[2:]
    xpad = xp.zeros((c, 4 * th + 2, 4 * tw + 2), dtype=x.dtype)
    xpad[:, 1 : h + 1, 1 : w + 1] = x
    sc, sh, sw = xpad.strides
    tiles = xp.lib.stride_tricks.as_strided(xpad, (6, 6, c, th, tw), (sh, sw, sc, 4 * sh, 4 * sw))
    if transform is None:
        transform = winograd_transform("input", xp, x.dtype)
    matmul(transform, tiles.reshape(36, -1), out=v.reshape(36, -1))


def winograd_output(m, bias, y, transform=None):
    """y[o, 4i + a, 4j + b] = (A^T m A)[a, b] + bias[o] for each tile of m (36, O, th, tw), by one
    (16, 36) x (36, tiles) product with ``transform`` (kron(A^T, A^T), made here when not given),
    clipped to y (O, H, W). The NumPy twin of ``cpu_float.winograd_output`` and ``kernels/winograd_output.cu``."""
    xp = array_module(m)
    o, h, w = y.shape
    th, tw = m.shape[2:]
    if transform is None:
        transform = winograd_transform("output", xp, m.dtype)
    tiles = matmul(transform, m.reshape(36, -1)).reshape(4, 4, o, th, tw)  # [a, b, o, i, j]
    full = tiles.transpose(2, 3, 0, 4, 1).reshape(o, 4 * th, 4 * tw)
    xp.add(full[:, :h, :w], bias[:, None, None], out=y)


def _conv_winograd(x, u, bias, workspace):
    """Winograd F(4x4, 3x3): input transform, 36 (O, C) x (C, tiles) GEMMs, output transform (with
    the bias)."""
    xp = array_module(x)
    c, h, w = x.shape
    o = u.shape[1]
    th, tw = (h + 3) // 4, (w + 3) // 4
    x = xp.ascontiguousarray(x)  # the compiled kernels index it as laid out
    v = workspace.get("winograd_in", (36, c, th, tw), x.dtype, xp)
    m = workspace.get("winograd_out", (36, o, th, tw), x.dtype, xp)
    y = xp.empty((o, h, w), dtype=x.dtype)
    if bias is None:  # the backward pass's: zeros, made once per network
        bias = workspace.constant(f"no_bias_{o}_{x.dtype}", lambda: xp.zeros(o, x.dtype))
    _kernel(xp, "winograd_input", x.dtype)(x, v)
    matmul(u, v.reshape(36, c, th * tw), out=m.reshape(36, o, th * tw))
    _kernel(xp, "winograd_output", x.dtype)(m, bias.astype(x.dtype, copy=False), y)
    return y


_CONV = {"im2col": _conv_im2col, "taps": _conv_taps}


def conv3x3(x, prepared, bias=None, workspace=None):
    """Cross-correlation of x (C, H, W) with weights prepared by ``_prepare``, plus ``bias`` (O,);
    temporaries in ``workspace`` (a fresh one when None)."""
    kind, w = prepared
    workspace = workspace or Workspace()
    if kind == "winograd":
        return _conv_winograd(x, w, bias, workspace)
    y = _CONV[kind](x, w, workspace)
    if bias is not None:
        y += bias[:, None, None]
    return y


class Conv3x3:
    """3x3 convolution, stride 1, zero padding 1, with bias; temporaries in ``workspace`` (its own
    when None). ``formulation``: by default chosen by channel counts (above), or "im2col" for any
    (one GEMM on the im2col copy, forward and backward: on a GPU, a product that TF32 runs wholly on
    tensor cores, where Winograd's transforms stay in float32).

    ``backward(grad, parameters=True)`` also leaves the gradients of the parameters in ``grads``
    ({"weight": (O, C, 3, 3), "bias": (O,)}); style transfer itself never asks for them."""

    def __init__(self, weight, bias, workspace=None, formulation=None):
        self.weight, self.bias = weight, bias
        self.workspace = workspace or Workspace()
        self._forward_weights = _prepare(weight, formulation)
        self._backward_weights = _prepare(weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1], formulation)

    @property
    def formulation(self):
        """The forward pass's: "winograd", "taps" or "im2col"."""
        return self._forward_weights[0]

    def forward(self, x):
        self._x = x  # the previous layer's output, which nothing changes afterwards: no copy
        return conv3x3(x, self._forward_weights, self.bias, self.workspace)

    def backward(self, grad, parameters=False):
        if parameters:
            self.grads = {"weight": weight_grad(self._x, grad, self.workspace), "bias": grad.sum(axis=(1, 2))}
        return conv3x3(grad, self._backward_weights, workspace=self.workspace)


HALF_SUM_MAX = 32768.0  # float16 sums stay below this (its largest value is 65504)


class HalfInputGradient:
    """The input gradient of a convolution with weights α·S (S = ±1, α per filter), computed where
    ±1 is exact, in float16: the output gradient times α, scaled by a power of two (so that no sum of
    9·O terms can pass ``HALF_SUM_MAX``) and rounded to float16, convolved with S summing in float32,
    the result rounded to float16 once and scaled back. On CuPy, one float16 GEMM (cuBLAS: tensor
    cores, float32 accumulation) on the im2col copy; on NumPy the same numbers by a float32 GEMM of
    the float16 values (products of two float16 are exact in float32), which is how the tests hold it
    to the float gradient without a GPU. Relative error: about 3e-4 of a layer's gradient, mostly the
    rounding of the sums (test_layers), and 1e-4 of the image gradient through the network."""

    def __init__(self, alpha, signs, workspace):
        xp = array_module(signs)
        self.alpha, self.workspace = alpha, workspace
        flipped = signs.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]  # (C, O, 3, 3): the transposed convolution
        self.signs = xp.ascontiguousarray(flipped.reshape(len(flipped), -1), dtype=xp.float16 if xp is not np else np.float32)
        # k, with 2^k <= HALF_SUM_MAX / (9·O): a sum of 9·O terms below 2^k each stays below HALF_SUM_MAX
        self._exponent = math.frexp(HALF_SUM_MAX / (9 * signs.shape[0]))[1] - 1

    def __call__(self, grad):
        xp = array_module(grad)
        g = grad * self.alpha[:, None, None]
        h, w = grad.shape[1:]
        # The scale, where g is (on a GPU a read on the host is a wait for it): with top = m·2^e,
        # 1/2 <= m < 1, the scale 2^(k - e) puts top·scale = m·2^k below 2^k (within 2x of it), exactly
        # in integers; kept a normal float32 (top's own exponent may not be); a zero top leaves 2^k.
        e = xp.frexp(xp.abs(g).max())[1]
        scale = xp.ldexp(np.float32(1), xp.clip(self._exponent - e, -126, 127))
        cols = _im2col((g * scale).astype(xp.float16), self.workspace)
        if xp is np:
            dx = (self.signs @ cols.astype(np.float32)).astype(np.float16)
        else:
            dx = matmul(self.signs, cols)  # float16 on tensor cores, summed in float32; recordable in a graph
        return xp.divide(dx, scale, dtype=grad.dtype).reshape(-1, h, w)  # exact: a power of two


class BinaryConv3x3(Conv3x3):
    """XNOR-Net's binary-weight convolution (BWN): weights α·S, S = ±1 per weight and α per filter,
    from a ``binarize.BinaryLayer``; a float convolution of float inputs, so its gradients are exact.

    Parameter gradients (``backward(grad, parameters=True)``): "signs", dLoss/dS as if S were free
    (the straight-through estimator hands it to the latent weights whose signs S are), "alpha" and
    "bias". With ``half_backward`` the input gradient is ``HalfInputGradient``'s (float16)."""

    def __init__(self, binary, workspace=None, half_backward=False, formulation=None):
        xp = array_module(binary.bias)
        self.signs = xp.asarray(binary.unpacked())
        self.alpha = binary.alpha
        super().__init__(self.alpha[:, None, None, None] * self.signs, binary.bias, workspace, formulation)
        self._half = None
        if half_backward:  # the float backward's prepared weights (Winograd: 4x the weights) go unused
            self._half, self._backward_weights = HalfInputGradient(self.alpha, self.signs, self.workspace), None

    def backward(self, grad, parameters=False):
        if parameters:
            d = weight_grad(self._x, grad, self.workspace)  # dLoss/d(α S)
            self.grads = {"signs": self.alpha[:, None, None, None] * d, "alpha": (d * self.signs).sum(axis=(1, 2, 3)),
                          "bias": grad.sum(axis=(1, 2))}
        if self._half is not None:
            return self._half(grad)
        return conv3x3(grad, self._backward_weights, workspace=self.workspace)


def _binary_kernels(xp):
    """Bit-packing and the XNOR layer for arrays of ``xp``: numba's (``cpu_binary``, compiled on first
    use) for NumPy, the CUDA kernels of ``kernels/`` (``gpu_binary``) for CuPy."""
    if xp is np:
        from . import cpu_binary

        return cpu_binary
    from . import gpu_binary

    return gpu_binary.cuda_kernels()


_LOWEST_CENTRE = np.float32(np.finfo(np.float32).tiny)  # the smallest normal float32: above 0, at most any activation


class XnorConv3x3:
    """XNOR-Net convolution: binary weights α·S (S = ±1) and binary inputs; the ±1 dot products are
    XNOR + popcount (``cpu_binary`` or ``gpu_binary``) on the packed signs of a ``binarize.BinaryLayer``,
    exactly equal to the float convolution of the signed operands.

    Post-ReLU inputs are all >= 0, so they are binarized around a per-channel centre t = μ + shift,
    μ the channel mean of this input and ``shift`` a per-channel offset (0 untrained, learned by
    distillation), held above 0 (the smallest normal float32), so that a ReLU zero is always −1:
    x ≈ t + K·sign(x − t), with XNOR-Net's scale map K = box3x3(A) / 9 and A = the
    mean over channels of |x − t| at each pixel. Then

        y = α · (K · P + M) + b,   P = S ⊛ sign(x − t),   M = S ⊛ t  (in-image taps only).

    Backward treats μ and K as constants and passes the gradient of sign(u), u = x − t, with the
    straight-through estimator 1{|u| <= A} / A: the identity on the range that is binarized.
    Parameter gradients (``backward(grad, parameters=True)``): "signs" (dLoss/dS as if S were free),
    "alpha", "bias" and "shift", the same approximations included. With ``half_backward`` the
    gradient through the ±1 weights is ``HalfInputGradient``'s (float16). ``kernels``: the packing
    and XNOR layer to use (a ``gpu_binary.BinaryKernels`` of some rung); by default those of
    ``binary``'s array module. ``formulation``: the float backward's, as ``Conv3x3``'s.
    """

    def __init__(self, binary, workspace=None, half_backward=False, kernels=None, formulation=None):
        xp = array_module(binary.bias)
        self._kernels = kernels or _binary_kernels(xp)
        self.alpha, self.bias, self.shift = binary.alpha, binary.bias, binary.shift
        self.signs = xp.asarray(binary.unpacked())
        o, c = self.signs.shape[:2]
        # for M on a GPU: the signs as (O·9, C) rows [o, tap], for one matrix product that a graph can record
        self._tap_signs = None if xp is np else xp.ascontiguousarray(
            self.signs.reshape(o, c, 9).transpose(0, 2, 1)).reshape(o * 9, c)
        self.filters = self._kernels.filters_for_kernel(binary.signs)  # the packed signs, as they are
        self.workspace = workspace or Workspace()
        if half_backward:  # dLoss/d sign(u) = (α S)ᵀ ⊛ (K · grad), in float16 or float32
            self._transposed = HalfInputGradient(self.alpha, self.signs, self.workspace)
        else:
            self._transposed = Conv3x3(self.alpha[:, None, None, None] * self.signs, xp.zeros_like(self.bias),
                                       self.workspace, formulation).backward

    def forward(self, x):
        xp = array_module(x)
        x = x.astype(xp.float32, copy=False)
        c = x.shape[0]
        centre = x.mean(axis=(1, 2)) + self.shift
        # Held above 0, so that a ReLU zero is always -1: were the centre to reach 0, all of a channel's
        # zeros would turn +1 at once, a cliff in the loss at which L-BFGS stalls.
        self._held = centre < _LOWEST_CENTRE
        centre = xp.maximum(centre, _LOWEST_CENTRE)
        a = xp.empty(x.shape[1:], dtype=xp.float32)
        packed = self._kernels.pack_pixels(x, centre, a)  # and A = mean over channels of |x - t|
        k = self._kernels.scale_map(a)  # K: A's 3x3 box mean
        if xp is np:  # M = Σ taps of these
            tap_sums = np.einsum("oct,c->ot", self.signs.reshape(len(self.alpha), c, 9), centre)
        else:
            tap_sums = matmul(self._tap_signs, centre[:, None]).reshape(len(self.alpha), 9)
        y = self._kernels.xnor_layer(packed, self.filters, c, k, self.alpha, tap_sums, self.bias)
        self._x, self._centre, self._a, self._k = x, centre, a, k  # x: the previous layer's output, left unchanged
        return y

    def backward(self, grad, parameters=False):
        xp = array_module(grad)
        scaled = grad * self._k
        ds = self._transposed(scaled)
        dx = self._kernels.straight_through(ds, self._x, self._centre, self._a)
        if parameters:
            u = self._x - self._centre[:, None, None]
            ones = weight_grad(xp.ones((1, *grad.shape[1:]), grad.dtype), grad, self.workspace)  # (O, 1, 3, 3): Σ grad over in-image taps
            signs_x = xp.where(u >= 0, xp.float32(1), xp.float32(-1))
            d = weight_grad(signs_x, scaled, self.workspace) + self._centre[None, :, None, None] * ones  # dLoss/d(α S)
            alpha_ones = (self.alpha[:, None] * ones.reshape(len(grad), 9))
            self.grads = {"signs": self.alpha[:, None, None, None] * d, "alpha": (d * self.signs).sum(axis=(1, 2, 3)),
                          "bias": grad.sum(axis=(1, 2)),
                          "shift": (xp.einsum("oct,ot->c", self.signs.reshape(*self.signs.shape[:2], 9), alpha_ones)
                                    - dx.sum(axis=(1, 2))) * ~self._held}
        return dx


class ReLU:
    """max(x, 0), computed in place: the caller gives up ``x`` (the network copies tapped inputs)."""

    def forward(self, x):
        xp = array_module(x)
        split_channels(xp, x.shape[0], lambda ch: xp.maximum(x[ch], 0, out=x[ch]))
        self._out = x
        return x

    def backward(self, grad):
        """In place on ``grad`` (on a contiguous copy where it is not), like every ``backward`` here that can be."""
        xp = array_module(grad)
        grad = xp.ascontiguousarray(grad)  # as the kernels index it
        _kernel(xp, "relu_backward", grad.dtype)(grad, self._out)
        return grad


def relu_backward(grad, out):
    """grad (C, H, W) times [out > 0], in place: a ReLU's input gradient, ``out`` its output. The
    NumPy twin of ``cpu_float.relu_backward`` and ``kernels/relu_backward.cu``."""
    xp = array_module(grad)
    xp.multiply(grad, out > 0, out=grad)  # without the copy back that CuPy's grad *= ... makes


def max_pool(x, out, which):
    """out[c, i, j] = the maximum of x[c, 2i:2i+2, 2j:2j+2], which[c, i, j] = the index (2dy + dx) of
    its first occurrence in row-major order. The NumPy twin of ``cpu_float.max_pool`` and
    ``kernels/max_pool.cu``."""
    xp = array_module(x)
    ho, wo = out.shape[1:]
    corners = xp.stack([x[:, dy : 2 * ho : 2, dx : 2 * wo : 2] for dy in (0, 1) for dx in (0, 1)])
    out[...] = corners.max(axis=0)
    which[...] = corners.argmax(axis=0)


def max_pool_backward(grad, which, out):
    """out (C, H, W): grad[c, i, j] at the maximum ``which`` names in each window, 0 elsewhere.
    The NumPy twin of ``cpu_float.max_pool_backward`` and ``kernels/max_pool_backward.cu``."""
    ho, wo = grad.shape[1:]
    out[...] = 0
    for k in range(4):
        dy, dx = divmod(k, 2)
        out[:, dy : 2 * ho : 2, dx : 2 * wo : 2] = grad * (which == k)


class MaxPool2:
    """2x2 max pooling, stride 2; odd trailing rows and columns are dropped (floor), as in the peers.

    The gradient goes to the first maximum of each window in row-major order (a valid subgradient
    where values tie, as they do in windows of ReLU zeros). Both directions are numba kernels
    (``cpu_float``) on NumPy arrays and CUDA kernels (``gpu_float``) on CuPy's; the input-gradient
    buffer is kept and reused from one backward pass to the next (fresh pages for it cost more than
    the arithmetic).
    """

    def __init__(self):
        self._grad_in = None

    def forward(self, x):
        xp = array_module(x)
        c, h, w = self._shape = x.shape
        out = xp.empty((c, h // 2, w // 2), dtype=x.dtype)
        self._which = xp.empty(out.shape, dtype=np.uint8)
        _kernel(xp, "max_pool", x.dtype)(xp.ascontiguousarray(x), out, self._which)
        return out

    def backward(self, grad):
        xp = array_module(grad)
        out = self._grad_in
        if out is None or out.shape != self._shape or out.dtype != grad.dtype or array_module(out) is not xp:
            out = self._grad_in = xp.empty(self._shape, dtype=grad.dtype)
        _kernel(xp, "max_pool_backward", grad.dtype)(xp.ascontiguousarray(grad), self._which, out)
        return out


class AvgPool2:
    """2x2 average pooling, stride 2, floor."""

    def forward(self, x):
        c, h, w = x.shape
        self._shape = x.shape
        ho, wo = h // 2, w // 2
        return x[:, : 2 * ho, : 2 * wo].reshape(c, ho, 2, wo, 2).mean(axis=(2, 4))

    def backward(self, grad):
        xp = array_module(grad)
        c, ho, wo = grad.shape
        out = xp.zeros(self._shape, dtype=grad.dtype)
        quarter = (grad * 0.25)[:, :, None, :, None]
        out[:, : 2 * ho, : 2 * wo] = xp.broadcast_to(quarter, (c, ho, 2, wo, 2)).reshape(c, 2 * ho, 2 * wo)
        return out
