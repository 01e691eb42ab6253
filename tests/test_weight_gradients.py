"""Parameter gradients of every convolution kind (what distillation trains with) against finite
differences: exact where the layer is differentiable (float weights, α, bias, the xnor centre term);
for the signs and the xnor threshold, the straight-through quantities each one stands for."""
import numpy as np
import pytest

from artem_cli import binarize, layers
from artem_cli.vgg import VGG16
from test_binary import direct_conv
from test_layers import random_weights


def numeric(loss, array, index, eps=1e-3):
    """Central difference of ``loss()`` along one entry of ``array`` (changed in place, then restored)."""
    old = array[index]
    array[index] = old + eps
    up = loss()
    array[index] = old - eps
    down = loss()
    array[index] = old
    return (up - down) / (2 * eps)


def entries(rng, shape, n=6):
    return [tuple(int(rng.integers(0, s)) for s in shape) for _ in range(n)]


def test_float_convolution_weight_and_bias_gradients():
    rng = np.random.default_rng(1)
    x, weight, bias = rng.standard_normal((5, 7, 6)), rng.standard_normal((4, 5, 3, 3)), rng.standard_normal(4)
    probe = rng.standard_normal((4, 7, 6))
    conv = layers.Conv3x3(weight, bias)
    conv.forward(x)
    conv.backward(probe, parameters=True)

    def loss():
        return float(np.vdot(layers.Conv3x3(weight, bias).forward(x), probe))

    for index in entries(rng, weight.shape):
        assert conv.grads["weight"][index] == pytest.approx(numeric(loss, weight, index), rel=1e-6)
    for o in range(4):
        assert conv.grads["bias"][o] == pytest.approx(numeric(loss, bias, (o,)), rel=1e-6)
    np.testing.assert_allclose(layers.weight_grad(x, probe), conv.grads["weight"])


def binary_layer(rng, c, o):
    weight = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    b = binarize.untrained(weight, rng.standard_normal(o))
    return b._replace(alpha=b.alpha.astype(np.float64), bias=b.bias.astype(np.float64),
                      shift=rng.standard_normal(c) * 0.1)


def test_binary_weight_convolution_gradients():
    """signs: dLoss/dS of the float convolution with weights α·S, S free; alpha and bias: exact."""
    rng = np.random.default_rng(2)
    x, probe = rng.standard_normal((6, 5, 8)), rng.standard_normal((3, 5, 8))
    binary = binary_layer(rng, 6, 3)
    conv = layers.BinaryConv3x3(binary)
    conv.forward(x)
    conv.backward(probe, parameters=True)
    signs, alpha, bias = binary.unpacked().astype(np.float64), binary.alpha.copy(), binary.bias.copy()

    def loss():
        return float(np.vdot(direct_conv(x, alpha[:, None, None, None] * signs) + bias[:, None, None], probe))

    for index in entries(rng, signs.shape):
        assert conv.grads["signs"][index] == pytest.approx(numeric(loss, signs, index), rel=1e-5)
    for o in range(3):
        assert conv.grads["alpha"][o] == pytest.approx(numeric(loss, alpha, (o,)), rel=1e-5)
        assert conv.grads["bias"][o] == pytest.approx(numeric(loss, bias, (o,)), rel=1e-5)


def test_xnor_convolution_gradients():
    """y = α (K·(S ⊛ sign(x − t)) + S ⊛ t) + b, t = mean(x) + shift: alpha and bias exact; signs: the
    derivative with S free (K and sign(x − t) as they are); shift: the exact derivative of the centre
    term M minus the straight-through term, which is the input gradient summed over pixels."""
    rng = np.random.default_rng(3)
    c, o, h, w = 40, 5, 6, 7
    x = np.maximum(rng.standard_normal((c, h, w)), 0).astype(np.float32)
    probe = rng.standard_normal((o, h, w)).astype(np.float32)
    binary = binary_layer(rng, c, o)
    binary = binary._replace(alpha=binary.alpha.astype(np.float32), bias=binary.bias.astype(np.float32),
                             shift=binary.shift.astype(np.float32))
    layer = layers.XnorConv3x3(binary)
    y = layer.forward(x)
    dx = layer.backward(probe, parameters=True)
    grads = layer.grads

    x64 = x.astype(np.float64)
    t = x64.mean(axis=(1, 2)) + binary.shift
    signs_x = np.where(x64 >= t[:, None, None], 1.0, -1.0)
    a = np.abs(x64 - t[:, None, None]).mean(axis=0)
    k = sum(np.pad(a, 1)[dy : dy + h, dx_ : dx_ + w] for dy in range(3) for dx_ in range(3)) / 9
    signs, alpha, bias = binary.unpacked().astype(np.float64), binary.alpha.astype(np.float64), binary.bias.astype(np.float64)
    centre = t.copy()

    def loss():  # the layer as a float function of S, α, b and the centre in M, sign(x − t) and K held
        m = direct_conv(np.broadcast_to(centre[:, None, None], (c, h, w)), signs)
        out = alpha[:, None, None] * (k * direct_conv(signs_x, signs) + m) + bias[:, None, None]
        return float(np.vdot(out, probe))

    assert loss() == pytest.approx(float(np.vdot(y, probe)), rel=1e-5)
    for index in entries(rng, signs.shape):
        assert grads["signs"][index] == pytest.approx(numeric(loss, signs, index), rel=1e-4, abs=1e-3)
    for i in range(o):
        assert grads["alpha"][i] == pytest.approx(numeric(loss, alpha, (i,)), rel=1e-4)
        assert grads["bias"][i] == pytest.approx(numeric(loss, bias, (i,)), rel=1e-4)
    for ch in entries(rng, (c,)):
        expected = numeric(loss, centre, ch) - float(dx[ch].sum())
        assert grads["shift"][ch] == pytest.approx(expected, rel=1e-4, abs=1e-3)


@pytest.mark.parametrize("mode", ["fp32", "bwn"])
def test_network_parameter_gradients_match_finite_differences(mode):
    """Through the whole network (ReLU, pooling, several taps): deep and shallow convolutions."""
    rng = np.random.default_rng(4)
    weights = random_weights(rng, np.float64)
    image = rng.standard_normal((3, 16, 18)) * 50
    taps = ["relu2_2", "relu3_1", "relu4_2"]
    binary = {name: binary_layer(rng, weights[f"{name}.weight"].shape[1], weights[f"{name}.weight"].shape[0])
              for name in ("conv2_1", "conv3_1", "conv4_2")}
    net = VGG16(weights, mode=mode, binary=binary)
    probes = {t: rng.standard_normal(v.shape) for t, v in net.forward(image, taps).items()}
    net.backward({t: p.copy() for t, p in probes.items()}, parameters=True)

    def loss(network):
        return sum(float(np.vdot(v, probes[t])) for t, v in network.forward(image, taps).items())

    for name in ("conv1_2", "conv3_1", "conv4_2"):
        layer = net.layer(name)
        if name in binary and mode == "bwn":
            b = binary[name]
            bias = b.bias.copy()
            value = numeric(lambda: loss(VGG16(weights, mode=mode, binary={**binary, name: b._replace(bias=bias)})),
                            bias, (1,), eps=1e-4)
            assert layer.grads["bias"][1] == pytest.approx(value, rel=1e-4)
            alpha = b.alpha.copy()
            value = numeric(lambda: loss(VGG16(weights, mode=mode, binary={**binary, name: b._replace(alpha=alpha)})),
                            alpha, (2,), eps=1e-5)
            assert layer.grads["alpha"][2] == pytest.approx(value, rel=1e-3)
        else:
            weight = weights[f"{name}.weight"]
            for index in entries(rng, weight.shape, 3):
                value = numeric(lambda: loss(VGG16(weights, mode=mode, binary=binary)), weight, index, eps=1e-4)
                assert layer.grads["weight"][index] == pytest.approx(value, rel=1e-4, abs=1e-6)
