"""Layers against direct-loop references, and the network's input gradient against finite differences."""
import numpy as np
import pytest

from artem_cli import binarize, cpu_float, layers
from artem_cli.vgg import CONV_LAYERS, VGG16


def conv_reference(x, w, b):
    """Direct loops over output channels and taps (float64)."""
    c, h, wd = x.shape
    xp = np.zeros((c, h + 2, wd + 2))
    xp[:, 1:-1, 1:-1] = x
    out = np.zeros((w.shape[0], h, wd))
    for o in range(w.shape[0]):
        for ci in range(c):
            for dy in range(3):
                for dx in range(3):
                    out[o] += w[o, ci, dy, dx] * xp[ci, dy : dy + h, dx : dx + wd]
        out[o] += b[o]
    return out


FORMULATIONS = {  # (in, out) channels: formulations of forward and backward
    (3, 64): ("im2col", "taps"),
    (20, 4): ("taps", "im2col"),
    (17, 24): ("winograd", "winograd"),
    (256, 257): ("winograd", "winograd"),
    (260, 20): ("winograd", "winograd"),
}


@pytest.mark.parametrize("formulation", [None, "im2col"])
@pytest.mark.parametrize("in_ch,out_ch", list(FORMULATIONS))
@pytest.mark.parametrize("h,w", [(1, 1), (2, 3), (7, 5), (8, 8), (9, 12)])
def test_conv_forward_and_backward_match_direct_loops(in_ch, out_ch, h, w, formulation):
    """Each formulation chosen by channel counts, and im2col asked for every layer."""
    rng = np.random.default_rng(in_ch * 100 + h * 10 + w)
    x = rng.standard_normal((in_ch, h, w))
    wt = rng.standard_normal((out_ch, in_ch, 3, 3))
    b = rng.standard_normal(out_ch)
    conv = layers.Conv3x3(wt.astype(np.float32), b.astype(np.float32), formulation=formulation)
    expected = FORMULATIONS[in_ch, out_ch] if formulation is None else ("im2col", "im2col")
    assert (conv.formulation, conv._backward_weights[0]) == expected
    y = conv.forward(x.astype(np.float32))
    ref = conv_reference(x, wt, b)
    assert y.dtype == np.float32 and y.shape == (out_ch, h, w)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    # backward is the adjoint: <conv(x) - b, g> == <x, backward(g)>
    g = rng.standard_normal((out_ch, h, w))
    conv64 = layers.Conv3x3(wt, b, formulation=formulation)
    lhs = np.vdot(conv64.forward(x) - b[:, None, None], g)
    rhs = np.vdot(x, conv64.backward(g))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


def test_every_float_kernel_is_listed_with_its_numpy_twin():
    """``layers.FLOAT_KERNELS`` names every kernel of ``cpu_float``, each with a twin in ``layers``: the
    GPU tests put the twins in numba's place by that list."""
    compiled = {name for name, f in vars(cpu_float).items() if getattr(f, "__module__", None) == cpu_float.__name__}
    assert compiled == set(layers.FLOAT_KERNELS)
    assert all(callable(getattr(layers, name)) for name in layers.FLOAT_KERNELS)


def test_an_unknown_formulation_is_refused():
    with pytest.raises(ValueError, match="formulation"):
        layers.Conv3x3(np.ones((4, 4, 3, 3), np.float32), np.zeros(4, np.float32), formulation="fft")


@pytest.mark.parametrize("in_ch,out_ch,h,w", [(3, 64, 9, 12), (64, 64, 17, 13), (256, 512, 6, 7), (512, 512, 3, 2)])
@pytest.mark.parametrize("spread", [1.0, 1e6])
def test_float16_input_gradient_of_binary_weights_is_the_float_one_to_5e4(in_ch, out_ch, h, w, spread):
    """±1 weights are exact in float16; the gradient, times α and scaled by a power of two, is
    rounded to float16, and so is each sum (2^-11 relative at most, about 3e-4 on average): within
    5e-4, also when the gradient's values span 12 orders of magnitude (``spread``) and at 512 outputs
    (4,608 terms a sum, none overflows)."""
    rng = np.random.default_rng(in_ch + out_ch + int(spread))
    signs = np.where(rng.random((out_ch, in_ch, 3, 3)) < 0.5, -1.0, 1.0).astype(np.float32)
    alpha = rng.random(out_ch).astype(np.float32) * 1e-2 + 1e-3
    grad = (rng.standard_normal((out_ch, h, w)) * spread ** rng.uniform(-1, 1, (out_ch, h, w))).astype(np.float32)
    half = layers.HalfInputGradient(alpha, signs, layers.Workspace())(grad)
    exact = layers.Conv3x3(alpha[:, None, None, None] * signs.astype(np.float64), np.zeros(out_ch)).backward(grad.astype(np.float64))
    assert half.dtype == np.float32 and half.shape == (in_ch, h, w)
    assert np.linalg.norm(half - exact) / np.linalg.norm(exact) < 5e-4
    assert not layers.HalfInputGradient(alpha, signs, layers.Workspace())(np.zeros_like(grad)).any()


@pytest.mark.parametrize("top", [1e-40, 1e-20, 1.0, 3e4, 1e30])
@pytest.mark.parametrize("out_ch", [1, 7, 512])
def test_float16_input_gradient_neither_overflows_nor_underflows(top, out_ch):
    """The largest sum there can be, every one of its 9·O terms the gradient's largest value with one
    sign (a constant gradient, all signs +1): finite and the float one to float16's rounding, from a
    gradient of subnormal float32 size (1e-40: the scale stops at 2^127) to 1e30."""
    signs = np.ones((out_ch, 2, 3, 3), np.float32)
    alpha = np.ones(out_ch, np.float32)
    grad = np.full((out_ch, 4, 5), top, np.float32)
    half = layers.HalfInputGradient(alpha, signs, layers.Workspace())(grad)
    exact = layers.Conv3x3(signs.astype(np.float64), np.zeros(out_ch)).backward(grad.astype(np.float64))
    assert np.isfinite(half).all()
    np.testing.assert_allclose(half, exact, rtol=2e-3)


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_float16_backward_of_a_binary_layer_is_its_float_backward_to_5e4(mode):
    rng = np.random.default_rng(3)
    binary = binarize.untrained(rng.standard_normal((96, 80, 3, 3)).astype(np.float32), rng.standard_normal(96).astype(np.float32))
    kind = layers.BinaryConv3x3 if mode == "bwn" else layers.XnorConv3x3
    x = np.maximum(rng.standard_normal((80, 11, 14)), 0).astype(np.float32)
    grad = rng.standard_normal((96, 11, 14)).astype(np.float32)
    full, half = kind(binary), kind(binary, half_backward=True)
    np.testing.assert_array_equal(half.forward(x), full.forward(x))
    dx_full, dx_half = full.backward(grad), half.backward(grad)
    assert np.linalg.norm(dx_half - dx_full) / np.linalg.norm(dx_full) < 5e-4


@pytest.mark.parametrize("c,o,h,w", [(1, 1, 1, 1), (3, 2, 2, 3), (5, 4, 7, 5), (64, 3, 9, 12), (17, 33, 8, 8), (2, 3, 13, 14)])
def test_winograd_kernels_match_their_numpy_twins(c, o, h, w):
    from artem_cli import cpu_float

    rng = np.random.default_rng(c + 10 * h + 100 * w)
    th, tw = (h + 3) // 4, (w + 3) // 4
    x = rng.standard_normal((c, h, w)).astype(np.float32)
    v, v_twin = np.full((2, 36, c, th, tw), np.nan, dtype=np.float32)
    cpu_float.winograd_input(x, v)
    layers.winograd_input(x, v_twin)
    np.testing.assert_allclose(v, v_twin, rtol=1e-6, atol=1e-6 * np.abs(v_twin).max())
    m = rng.standard_normal((36, o, th, tw)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    y, y_twin = np.full((2, o, h, w), np.nan, dtype=np.float32)
    cpu_float.winograd_output(m, bias, y)
    layers.winograd_output(m, bias, y_twin)
    np.testing.assert_allclose(y, y_twin, rtol=1e-6, atol=1e-6 * np.abs(y_twin).max())


def test_relu_and_pooling_match_references():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 7, 9))
    relu = layers.ReLU()
    np.testing.assert_array_equal(relu.forward(x.copy()), np.where(x > 0, x, 0))
    g = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(relu.backward(g.copy()), np.where(x > 0, g, 0))

    mx, av = layers.MaxPool2(), layers.AvgPool2()
    ym, ya = mx.forward(x), av.forward(x)
    assert ym.shape == ya.shape == (3, 3, 4)
    for c in range(3):
        for i in range(3):
            for j in range(4):
                win = x[c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
                assert ym[c, i, j] == win.max()
                assert ya[c, i, j] == pytest.approx(win.mean())
    go = rng.standard_normal(ym.shape)
    gm, ga = mx.backward(go), av.backward(go)
    assert gm.shape == ga.shape == x.shape
    assert np.all(gm[:, 6, :] == 0) and np.all(gm[:, :, 8] == 0)  # dropped odd row and column
    for c in range(3):
        for i in range(3):
            for j in range(4):
                win = x[c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
                expect = np.zeros((2, 2))
                expect[np.unravel_index(win.argmax(), (2, 2))] = go[c, i, j]
                np.testing.assert_array_equal(gm[c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2], expect)
                np.testing.assert_allclose(ga[c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2], go[c, i, j] / 4)


@pytest.mark.parametrize("shape", [(1, 2, 2), (3, 7, 9), (64, 10, 13), (5, 1, 5)])
def test_max_pool_kernels_equal_their_numpy_twins(shape):
    from artem_cli import cpu_float

    rng = np.random.default_rng(sum(shape))
    x = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0)  # ReLU output: windows of tied zeros
    out_shape = (shape[0], shape[1] // 2, shape[2] // 2)
    out, out_twin = np.full((2, *out_shape), np.nan, dtype=np.float32)
    which, which_twin = np.full((2, *out_shape), 9, dtype=np.uint8)
    cpu_float.max_pool(x, out, which)
    layers.max_pool(x, out_twin, which_twin)
    np.testing.assert_array_equal(out, out_twin)
    np.testing.assert_array_equal(which, which_twin)
    grad = rng.standard_normal(out_shape, dtype=np.float32)
    back, back_twin = np.full((2, *shape), np.nan, dtype=np.float32)
    cpu_float.max_pool_backward(grad, which, back)
    layers.max_pool_backward(grad, which_twin, back_twin)
    np.testing.assert_array_equal(back, back_twin)


def random_weights(rng, dtype):
    weights = {}
    for name, cin, cout in CONV_LAYERS:
        weights[f"{name}.weight"] = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin))).astype(dtype)
        weights[f"{name}.bias"] = (rng.standard_normal(cout) * 0.1).astype(dtype)
    return weights


@pytest.mark.parametrize("pooling,float_conv", [("max", None), ("avg", None), ("max", "im2col")])
def test_network_input_gradient_matches_finite_differences(pooling, float_conv):
    rng = np.random.default_rng(2)
    net = VGG16(random_weights(rng, np.float64), pooling=pooling, float_conv=float_conv)
    image = rng.standard_normal((3, 18, 17)) * 50
    taps = ["relu1_1", "conv2_1", "relu3_1", "pool3", "relu4_1", "relu5_1"]
    probes = {}
    out = net.forward(image, taps)
    for t in taps:
        probes[t] = rng.standard_normal(out[t].shape)

    def loss(img):
        o = net.forward(img, taps)
        return sum(float(np.vdot(o[t], probes[t])) for t in taps)

    loss(image)
    grad = net.backward({t: p.copy() for t, p in probes.items()})
    direction = rng.standard_normal(image.shape)
    eps = 1e-4
    numeric = (loss(image + eps * direction) - loss(image - eps * direction)) / (2 * eps)
    analytic = float(np.vdot(grad, direction))
    assert abs(numeric - analytic) < 1e-4 * abs(analytic)
    # and pixel by pixel on a few coordinates
    for idx in [(0, 0, 0), (1, 9, 8), (2, 17, 16), (0, 5, 13)]:
        e = np.zeros_like(image)
        e[idx] = 1
        num = (loss(image + eps * e) - loss(image - eps * e)) / (2 * eps)
        assert num == pytest.approx(grad[idx], rel=1e-4, abs=1e-6 * np.abs(grad).max())


def test_two_networks_in_two_threads_never_touch_each_others_temporaries():
    """Two threads, each with its own layers (one network's worth of every formulation: Winograd,
    im2col, taps, XNOR, max pooling) and its own input, released together by a barrier before each
    of 30 rounds so that their convolutions overlap, must get exactly what each gets alone. With
    buffers shared between networks this failed every run (40-60 of 150 results wrong per thread);
    numba's workqueue pool would abort the process if its kernels were entered from both at once."""
    import threading

    rng = np.random.default_rng(5)
    weight, bias = rng.standard_normal((48, 40, 3, 3), dtype=np.float32), rng.standard_normal(48, dtype=np.float32)
    small = rng.standard_normal((8, 3, 3, 3), dtype=np.float32)
    inputs = [np.maximum(rng.standard_normal((40, 64, 80), dtype=np.float32), 0) for _ in range(2)]

    def network():
        workspace = layers.Workspace()
        return [layers.Conv3x3(weight, bias, workspace), layers.XnorConv3x3(binarize.untrained(weight, bias), workspace),
                layers.MaxPool2(), layers.Conv3x3(small, bias[:8], workspace)]  # im2col forward, taps backward

    def run(net, x, k):
        results = []
        for layer in net:
            y = layer.forward(x[:3] if layer is net[-1] else x)
            results += [y, layer.backward(np.full_like(y, k + 1))]
        return results

    expected = [run(network(), x, k) for k, x in enumerate(inputs)]
    barrier = threading.Barrier(2, timeout=60)
    wrong, rounds, errors = [0, 0], [0, 0], []

    def worker(k):
        try:
            net = network()
            for _ in range(30):
                barrier.wait()
                wrong[k] += sum(not np.array_equal(a, b) for a, b in zip(run(net, inputs[k], k), expected[k]))
                rounds[k] += 1
        except Exception as e:  # reported below: an exception in a thread would otherwise pass unseen
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (errors, rounds, wrong) == ([], [30, 30], [0, 0])


def test_a_child_forked_after_a_pass_runs_its_own_passes(monkeypatch):
    """A process forked from one that had run the network (a service that warms up and then forks
    its workers; multiprocessing's default on Linux) runs it too, and alike. It waited forever in its
    first ReLU, for the threads of a pool that a fork does not copy, every time."""
    import os
    import time

    from artem_cli import backend

    monkeypatch.setattr(backend, "THREADS", 2)  # the pool serves split_channels from two threads on
    x = np.random.default_rng(0).standard_normal((8, 16, 24), dtype=np.float32)
    expected = layers.ReLU().forward(x.copy())  # the parent's pool is made here
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its ReLU's output down the pipe, then out at once (no pytest teardown)
        try:
            os.write(write, layers.ReLU().forward(x.copy()).tobytes())
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:  # still waiting after a minute (it takes milliseconds): the bug
        os.kill(child, 9)
        _, status = os.waitpid(child, 0)
    with os.fdopen(read, "rb") as pipe:
        got = pipe.read()
    assert status == 0, "the forked child never finished its pass"
    np.testing.assert_array_equal(np.frombuffer(got, np.float32).reshape(x.shape), expected)
