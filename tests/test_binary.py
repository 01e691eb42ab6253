"""Bit-packing and the XNOR-popcount convolution: compiled kernels equal their NumPy twins bit for
bit, and both equal the float convolution of the ±1 operands, borders included."""
import numpy as np
import pytest

from artem_cli import binarize, cpu_binary, layers


def signed_conv_reference(x_signs, w_signs):
    """Float (float64) 3x3 zero-padded convolution of ±1 arrays, by direct loops over taps."""
    c, h, w = x_signs.shape
    padded = np.zeros((c, h + 2, w + 2))
    padded[:, 1:-1, 1:-1] = x_signs
    out = np.zeros((w_signs.shape[0], h, w))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("oc,chw->ohw", w_signs[:, :, dy, dx], padded[:, dy : dy + h, dx : dx + w])
    return out


@pytest.mark.parametrize("channels", [1, 5, 31, 32, 33, 64, 100, 128, 256, 512])
def test_packing_round_trip_and_layout(channels):
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((channels, 3, 4)).astype(np.float32)
    x[0, 0, 0] = 0.0  # zero counts as +1
    packed = binarize.pack_pixels(x)
    assert packed.dtype == np.uint32 and packed.shape == (3, 4, binarize.words(channels))
    assert binarize.words(channels) % 2 == 0  # whole 64-bit words
    np.testing.assert_array_equal(binarize.unpack(packed, channels), binarize.sign(x).transpose(1, 2, 0))
    # bit j of word w is channel 32 w + j, 1 for +1
    for ch in range(channels):
        bit = (packed[..., ch // 32] >> (ch % 32)) & 1
        np.testing.assert_array_equal(bit, (x[ch] >= 0).astype(np.uint32))
    padding = binarize.unpack(packed, 32 * binarize.words(channels))[..., channels:]
    assert np.all(padding == -1)  # 0 bits beyond the last channel
    w = rng.standard_normal((7, channels, 3, 3)).astype(np.float32)
    wp = binarize.pack_filters(w)
    assert wp.shape == (7, 9, binarize.words(channels))
    np.testing.assert_array_equal(binarize.unpack(wp, channels), binarize.sign(w).reshape(7, channels, 9).transpose(0, 2, 1))


@pytest.mark.parametrize("channels", [3, 64, 100, 512])
@pytest.mark.parametrize("h,w", [(1, 1), (2, 5), (7, 3), (9, 12)])
def test_compiled_packing_equals_its_twin(channels, h, w):
    rng = np.random.default_rng(channels + h * w)
    x = rng.standard_normal((channels, h, w)).astype(np.float32)
    centre = rng.standard_normal(channels).astype(np.float32) * 0.5
    x[:, 0, 0] = centre  # exactly at the centre: +1
    spread = np.full(x.shape[1:], np.nan, dtype=np.float32)
    np.testing.assert_array_equal(cpu_binary.pack_pixels(x, centre, spread), binarize.pack_pixels(x - centre[:, None, None]))
    np.testing.assert_allclose(spread, np.abs(x - centre[:, None, None]).mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize("channels,outs", [(1, 3), (33, 5), (64, 64), (128, 24), (256, 8), (512, 17)])
@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (4, 4), (5, 9), (13, 6)])
def test_xnor_conv_is_exactly_the_signed_float_conv(channels, outs, h, w):
    rng = np.random.default_rng(channels * outs + h + w)
    x = rng.standard_normal((channels, h, w)).astype(np.float32)
    wt = rng.standard_normal((outs, channels, 3, 3)).astype(np.float32)
    reference = signed_conv_reference(binarize.sign(x), binarize.sign(wt))
    twin = binarize.xnor_conv(binarize.pack_pixels(x), binarize.pack_filters(wt), channels)
    compiled = cpu_binary.xnor_conv(cpu_binary.pack_pixels(x, np.zeros(channels, np.float32)),
                                    cpu_binary.filters_for_kernel(binarize.pack_filters(wt)), channels)
    assert twin.dtype == compiled.dtype == np.int32
    np.testing.assert_array_equal(twin, reference)
    np.testing.assert_array_equal(compiled, twin)


def test_xnor_conv_on_every_vgg_channel_count_at_a_real_size():
    rng = np.random.default_rng(0)
    for cin, cout, h, w in [(64, 64, 24, 20), (64, 128, 12, 10), (128, 256, 6, 5), (256, 512, 3, 3), (512, 512, 2, 2)]:
        x = rng.standard_normal((cin, h, w)).astype(np.float32)
        wt = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
        compiled = cpu_binary.xnor_conv(cpu_binary.pack_pixels(x, np.zeros(cin, np.float32)),
                                        cpu_binary.filters_for_kernel(binarize.pack_filters(wt)), cin)
        float_conv = layers.conv3x3(binarize.sign(x).astype(np.float64), layers._prepare(binarize.sign(wt).astype(np.float64)))
        np.testing.assert_array_equal(compiled, np.rint(float_conv).astype(np.int32))


@pytest.mark.parametrize("channels,outs,h,w", [(100, 21, 3, 70), (64, 16, 1, 130), (512, 35, 5, 4)])
def test_fused_xnor_layer_equals_its_parts(channels, outs, h, w):
    """``xnor_layer`` = alpha (scale P + M) + bias with P the twin's ±1 convolution and M the sum of
    tap_sums over in-image taps, on rows longer than the kernel's chunk and ragged pixel/filter blocks."""
    rng = np.random.default_rng(channels + outs + w)
    x = rng.standard_normal((channels, h, w)).astype(np.float32)
    wt = rng.standard_normal((outs, channels, 3, 3)).astype(np.float32)
    scale, alpha = rng.random((h, w)).astype(np.float32), rng.random(outs).astype(np.float32)
    tap_sums, bias = rng.standard_normal((outs, 9)).astype(np.float32), rng.standard_normal(outs).astype(np.float32)
    y = cpu_binary.xnor_layer(cpu_binary.pack_pixels(x, np.zeros(channels, np.float32)),
                              cpu_binary.filters_for_kernel(binarize.pack_filters(wt)), channels, scale, alpha, tap_sums, bias)
    p = binarize.xnor_conv(binarize.pack_pixels(x), binarize.pack_filters(wt), channels).astype(np.float64)
    m = np.zeros((outs, h, w))
    for i in range(h):
        for j in range(w):
            for t in range(9):
                if 0 <= i + t // 3 - 1 < h and 0 <= j + t % 3 - 1 < w:
                    m[:, i, j] += tap_sums[:, t]
    expected = alpha[:, None, None] * (scale * p + m) + bias[:, None, None]
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)


def direct_conv(x, w):
    """float64 zero-padded 3x3 cross-correlation by loops over taps (x (C,H,W), w (O,C,3,3))."""
    c, h, wd = x.shape
    padded = np.zeros((c, h + 2, wd + 2))
    padded[:, 1:-1, 1:-1] = x
    return sum(np.einsum("oc,chw->ohw", w[:, :, dy, dx], padded[:, dy : dy + h, dx : dx + wd])
               for dy in range(3) for dx in range(3))


def hand_xnor(x, wt, b, centre):
    """The xnor layer by hand, in float64, around the centres given: (y, K, u = x − t, A, α·S)."""
    (c, h, w), o = x.shape, len(wt)
    x64 = x.astype(np.float64)
    u = x64 - centre[:, None, None]
    a = np.abs(u).mean(axis=0)
    k = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            k[i, j] = a[max(0, i - 1) : i + 2, max(0, j - 1) : j + 2].sum() / 9
    signs_w = np.where(wt >= 0, 1.0, -1.0)
    alpha = np.abs(wt.astype(np.float64)).reshape(o, -1).mean(axis=1)
    p = direct_conv(np.where(u >= 0, 1.0, -1.0), signs_w)
    m = direct_conv(np.broadcast_to(centre[:, None, None], (c, h, w)), signs_w)
    return alpha[:, None, None] * (k * p + m) + b[:, None, None], k, u, a, alpha[:, None, None, None] * signs_w


def test_xnor_layer_forward_and_straight_through_backward_match_hand_computation():
    rng = np.random.default_rng(5)
    c, o, h, w = 70, 9, 6, 7
    x = np.maximum(rng.standard_normal((c, h, w)), 0).astype(np.float32)  # post-ReLU
    wt = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    layer = layers.XnorConv3x3(binarize.untrained(wt, b))
    y = layer.forward(x)

    expected, k, u, a, weights = hand_xnor(x, wt, b, x.astype(np.float64).mean(axis=(1, 2)))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())

    g = rng.standard_normal((o, h, w))
    transposed = direct_conv(g * k, np.flip(weights, (2, 3)).transpose(1, 0, 2, 3))
    ste = np.where((np.abs(u) <= a) & (a > 0), 1 / np.where(a > 0, a, 1), 0)
    np.testing.assert_allclose(layer.backward(g.astype(np.float32)), transposed * ste, rtol=1e-4, atol=1e-5)


def test_a_live_channels_zeros_stay_below_its_centre_however_far_the_shift_goes():
    """A centre t = μ + shift at or below 0 is held just above 0: a channel's ReLU zeros stay −1, so the
    layer does not jump as t crosses 0 (all of them turning +1 at once was a cliff in the loss that
    stalled L-BFGS), and the shift, which no longer moves anything there, gets no gradient. A dead
    channel (all zeros, untrained t = 0) is all −1 too, so nothing jumps when its first pixel wakes."""
    rng = np.random.default_rng(12)
    c, o, h, w = 8, 4, 6, 6
    x = np.maximum(rng.standard_normal((c, h, w)), 0).astype(np.float32)
    x[0] = 0
    x[0, 1, 2], x[0, 4, 4], x[0, 5, 0] = 1.0, 2.0, 3.0  # 33 zeros of 36
    x[1] = 0  # dead
    wt = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    binary = binarize.untrained(wt, b)
    mu = x.astype(np.float64).mean(axis=(1, 2))
    outputs = {}
    for t0 in (-1e-3, 1e-3, -5.0):
        shift = np.zeros(c, np.float32)
        shift[0] = np.float32(t0 - mu[0])
        layer = layers.XnorConv3x3(binary._replace(shift=shift))
        outputs[t0] = y = layer.forward(x)
        layer.backward(rng.standard_normal((o, h, w)).astype(np.float32), parameters=True)
        centre = np.maximum(mu + shift, np.finfo(np.float32).tiny)
        expected = hand_xnor(x, wt, b, centre)[0]
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
        assert (layer.grads["shift"][0] == 0) == (t0 < 0) and layer.grads["shift"][1] == 0
        assert np.all(layer.grads["shift"][2:] != 0)
    woken = x.copy()
    woken[1, 3, 3] = 1e-4
    outputs["woken"] = layers.XnorConv3x3(binary._replace(shift=shift)).forward(woken)
    scale = np.abs(outputs[1e-3]).max()
    away = np.ones((h, w), bool)
    away[2:5, 2:5] = False  # beyond the woken pixel's own reach, nothing flipped
    np.testing.assert_allclose(outputs["woken"][:, away], outputs[-5.0][:, away], atol=1e-3 * scale)
    np.testing.assert_allclose(outputs[-1e-3], outputs[1e-3], atol=1e-3 * scale)  # t moved by 2e-3: no jump
    np.testing.assert_array_equal(outputs[-5.0], outputs[-1e-3])


def test_bwn_network_gradient_matches_finite_differences():
    from artem_cli.vgg import VGG16
    from test_layers import random_weights

    rng = np.random.default_rng(6)
    net = VGG16(random_weights(rng, np.float64), mode="bwn")
    conv = net.layer("conv2_1")
    assert len(np.unique(np.abs(conv.weight).round(12))) <= 128  # one |value| per filter: α
    image = rng.standard_normal((3, 16, 18)) * 50
    probe = rng.standard_normal(net.forward(image, ["relu4_1"])["relu4_1"].shape)

    def loss(img):
        return float(np.vdot(net.forward(img, ["relu4_1"])["relu4_1"], probe))

    loss(image)
    grad = net.backward({"relu4_1": probe.copy()})
    d = rng.standard_normal(image.shape)
    numeric = (loss(image + 1e-4 * d) - loss(image - 1e-4 * d)) / 2e-4
    assert numeric == pytest.approx(float(np.vdot(grad, d)), rel=1e-4)


def test_popcount_probe_counts_every_binary_mac():
    """The ceiling probe does the work its rate counts: 16 pixels x 8 filters x all words, each repeat
    at an alternating offset, on every thread."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2**63, (13, 32), dtype=np.uint64)
    w = rng.integers(0, 2**63, (8, 13), dtype=np.uint64)
    totals = np.zeros(2, dtype=np.int64)
    cpu_binary._probe(x, w, 3, totals)
    block = [int(np.bitwise_count(x[:, off : off + 16, None] ^ w.T[:, None, :]).sum()) for off in (0, 16)]
    assert list(totals) == [2 * block[0] + block[1]] * 2
    assert cpu_binary.popcount_ceiling(words=8, repeats=10) > 0
