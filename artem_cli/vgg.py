"""VGG16's convolutional part: the layer table, forward with taps, backward to the input image.

Layer names follow the peers: conv1_1, relu1_1, ..., pool1, ..., relu5_3, pool5. A forward pass runs
only up to the deepest layer asked for and returns the outputs of the named ("tapped") layers;
``backward`` takes the loss gradients at those taps and returns the gradient at the input image.
"""
import zlib

import numpy as np

from .backend import array_module
from .errors import ArtemError
from . import binarize
from .layers import AvgPool2, BinaryConv3x3, Conv3x3, MaxPool2, ReLU, Workspace, XnorConv3x3

# (block, convolutions in block, output channels)
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def _conv_table():
    table, in_ch = [], 3
    for block, count, out_ch in _BLOCKS:
        for i in range(1, count + 1):
            table.append((f"conv{block}_{i}", in_ch, out_ch))
            in_ch = out_ch
    return tuple(table)


CONV_LAYERS = _conv_table()  # ((name, in_channels, out_channels), ...) in network order
CONV_NAMES = tuple(name for name, _, _ in CONV_LAYERS)


def _layer_names():
    names = []
    for block, count, _ in _BLOCKS:
        for i in range(1, count + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


LAYER_NAMES = _layer_names()


def min_side(layer):
    """The least side, in pixels, of an image whose ``layer`` map is not empty: each 2x2 pooling up
    to it (itself included) halves a side, rounding down."""
    return 2 ** sum(1 for name in LAYER_NAMES[: LAYER_NAMES.index(layer) + 1] if name.startswith("pool"))

# BGR channel means of the ImageNet images these weights were trained on (0..255 scale).
BGR_MEAN = (103.939, 116.779, 123.68)


MODES = ("fp32", "bwn", "xnor", "random")


def _random_like(a, name):
    """Gaussian values with the mean and spread of ``a``, the same for every run (seeded by name)."""
    xp = array_module(a)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    mean, std = float(a.mean()), float(a.std())
    return xp.asarray(rng.standard_normal(a.shape) * std + mean, dtype=a.dtype)


def untrained_binary(weights, binary_from="conv1_2"):
    """{name: binarize.BinaryLayer} of XNOR-Net's binarization of the float ``weights``, for every
    convolution from ``binary_from`` on (conv1_1, with its 3 input channels, stays full precision in
    the binarized modes, as in XNOR-Net)."""
    xp = array_module(weights["conv1_1.weight"])
    first = CONV_NAMES.index(binary_from)
    return {name: binarize.untrained(weights[f"{name}.weight"], weights[f"{name}.bias"], xp)
            for name in CONV_NAMES[first:]}


def _conv(weights, name, mode, binary, workspace, half_backward, xnor_kernels, float_conv):
    """The convolution of each mode: ``binary`` layers for the binarized modes (the rest full
    precision); ``random`` is the yardstick a binarized network must beat: VGG16 with Gaussian weights
    of each layer's own scale (known to give passable textures)."""
    weight, bias = weights[f"{name}.weight"], weights[f"{name}.bias"]
    if mode == "random":
        return Conv3x3(_random_like(weight, name + ".weight"), _random_like(bias, name + ".bias"), workspace, float_conv)
    if mode == "fp32" or name not in binary:
        return Conv3x3(weight, bias, workspace, float_conv)
    if mode == "bwn":
        return BinaryConv3x3(binary[name], workspace, half_backward, float_conv)
    return XnorConv3x3(binary[name], workspace, half_backward, xnor_kernels, float_conv)


def check_layer_names(names):
    unknown = [n for n in names if n not in LAYER_NAMES]
    if unknown:
        raise ArtemError(
            f"unknown layer name {', '.join(map(repr, unknown))}; layers are conv1_1..conv5_3, relu1_1..relu5_3, pool1..pool5"
        )


class VGG16:
    """The 13 convolutions with ReLU and 2x2 pooling, on the array module and dtype of ``weights``.

    ``weights`` maps ``convX_Y.weight`` (O, C, 3, 3) and ``convX_Y.bias`` (O,) to arrays. ``mode``:
    ``fp32`` (the network as trained), ``bwn`` (binary weights α·sign(W)), ``xnor`` (binary
    weights and binary inputs, XNOR + popcount; on CuPy arrays through the CUDA kernels of
    ``kernels/``), or ``random`` (random weights of each layer's scale, the baseline). In the
    binarized modes ``binary`` ({name: binarize.BinaryLayer}, trained or not) gives the binary
    convolutions; the others are full precision. By default: ``untrained_binary(weights)``. With
    ``half_backward`` the binary convolutions' input gradients are computed in float16, where their
    ±1 weights are exact (``layers.HalfInputGradient``: on a GPU, tensor cores). ``xnor_kernels``
    (xnor): the kernels of the XNOR layers, by default ``gpu_binary.cuda_kernels()`` on CuPy arrays.
    ``float_conv``: the formulation of the float convolutions (``layers.Conv3x3``'s): by default
    chosen by channel counts, or "im2col" (one GEMM a layer).

    A network serves one caller at a time: its layers keep what ``backward`` needs from the last
    ``forward``, and its convolutions share one ``layers.Workspace``. Each run builds its own, so runs
    in several threads share nothing but the (read-only) weight arrays.
    """

    def __init__(self, weights, pooling="max", mode="fp32", binary=None, half_backward=False, xnor_kernels=None,
                 float_conv=None):
        if pooling not in ("max", "avg"):
            raise ArtemError(f"pooling must be 'max' or 'avg', not {pooling!r}")
        if mode not in MODES:
            raise ArtemError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.pooling, self.mode = pooling, mode
        if binary is None and mode in ("bwn", "xnor"):
            binary = untrained_binary(weights)
        workspace = Workspace()  # the convolutions' temporaries: this network's own, shared by its layers
        convs = {name: _conv(weights, name, mode, binary, workspace, half_backward, xnor_kernels, float_conv)
                 for name in CONV_NAMES}
        pool = MaxPool2 if pooling == "max" else AvgPool2
        self._layers = []
        for name in LAYER_NAMES:
            if name.startswith("conv"):
                self._layers.append((name, convs[name]))
            elif name.startswith("relu"):
                self._layers.append((name, ReLU()))
            else:
                self._layers.append((name, pool()))
        self._first, self._depth = 0, 0

    def layer(self, name):
        return dict(self._layers)[name]

    def forward(self, image, taps, start=None):
        """Run ``image`` (3, H, W), preprocessed, up to the deepest of ``taps``; {tap: output}.
        With ``start`` (a layer name), ``image`` is that layer's input instead (the activations of
        another network, say) and the layers before it are skipped, in ``backward`` too."""
        check_layer_names(taps)
        self._first = 0 if start is None else LAYER_NAMES.index(start)
        self._depth = max(LAYER_NAMES.index(t) for t in taps) + 1
        outputs, x = {}, image
        for name, layer in self._layers[self._first : self._depth]:
            x = layer.forward(x)
            if name in taps:
                # ReLU works in place on its input: keep a copy of a tapped convolution's output
                outputs[name] = x.copy() if name.startswith("conv") else x
        return outputs

    def backward(self, tap_grads, parameters=False):
        """Gradient at the input image (or ``start``'s input) of the last ``forward``, given {tap:
        dLoss/d(tap output)}. With ``parameters``, each convolution also leaves its parameters'
        gradients in its ``grads``.

        The arrays of ``tap_grads`` are consumed: layers work on them in place.
        """
        grad = None
        for name, layer in reversed(self._layers[self._first : self._depth]):
            if name in tap_grads:
                if grad is None:
                    grad = tap_grads[name]
                else:  # in place: the gradient flowing down is a buffer of the layers' or a consumed tap's
                    grad += tap_grads[name]
            if grad is not None:
                grad = layer.backward(grad, parameters) if name.startswith("conv") else layer.backward(grad)
        return grad
