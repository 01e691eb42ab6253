"""The benchmark suite behind ``artem benchmark``: measured, never asserted.

``network_pass``: seconds for one VGG16 forward to relu5_1 plus the backward to the image (what every
optimizer iteration costs), for our network in each mode and, as the baseline measured in the same
run, on the CPU the fp32 network with the same weights in PyTorch (when installed), on a GPU the
rate of a large cuBLAS SGEMM. ``conv_layers``: each convolution's forward time and MAC rate at the
given size, fp32 against XNOR (CPU). ``popcount_ceiling``: what the bare XNOR-popcount loop reaches on
this CPU, the yardstick of the XNOR kernels' rates.
"""
import os
import platform
import time

import numpy as np

from . import weights
from .api import Settings, network, network_spec
from .backend import array_module, array_module_for
from .vgg import CONV_LAYERS, LAYER_NAMES, VGG16

TAP = "relu5_1"


def _best_of(fn, repeats, xp=np):
    """(best, median) seconds of ``fn`` after a warm-up; on a GPU, until its work is done."""

    def timed():
        start = time.perf_counter()
        fn()
        if xp is not np:
            xp.cuda.Device().synchronize()
        return time.perf_counter() - start

    timed()  # warm-up: first-touch pages, thread pools, caches, compiled kernels
    times = [timed() for _ in range(repeats)]
    return min(times), float(np.median(times))


def machine(device="cpu"):
    gpu = {}
    if device == "cuda":
        xp = array_module_for(device)
        gpu = {"gpu": xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)["name"].decode(), "cupy": xp.__version__}
    return {
        **gpu,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
        "numba_threading_layer": os.environ.get("NUMBA_THREADING_LAYER"),
    }


def artem_pass(net, image, repeats):
    xp = array_module(image)

    def once():
        out = net.forward(image, [TAP])
        net.backward({TAP: xp.ones_like(out[TAP])})

    return _best_of(once, repeats, xp)


def pass_macs(shape):
    """Multiply-accumulates of the pass as direct convolutions: forward to TAP, and as many again
    for the input gradient (conv1_1's, to the 3-channel image, is small but counted alike)."""
    deepest = LAYER_NAMES[LAYER_NAMES.index(TAP) - 1]  # the convolution TAP's ReLU follows
    macs = 0
    for name, cin, cout, h, w in _conv_shapes(shape):
        macs += 9 * cin * cout * h * w
        if name == deepest:
            return 2 * macs
    raise ValueError(f"{TAP} follows no convolution")


def sgemm_rate(xp, n=4096, repeats=5):
    """Multiply-accumulates per second of an (n, n) x (n, n) float32 product on ``xp``'s device."""
    a = xp.ones((n, n), dtype=np.float32)
    best, _ = _best_of(lambda: a @ a, repeats, xp)
    return n**3 / best


def torch_pass(w, shape, repeats, threads):
    """The same pass in PyTorch (CPU), or None when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    layers = []
    for name in LAYER_NAMES[: LAYER_NAMES.index(TAP) + 1]:
        if name.startswith("conv"):
            weight = torch.from_numpy(np.ascontiguousarray(w[f"{name}.weight"]))
            conv = torch.nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
            conv.weight.data, conv.bias.data = weight, torch.from_numpy(w[f"{name}.bias"])
            layers.append(conv)
        elif name.startswith("relu"):
            layers.append(torch.nn.ReLU())
        else:
            layers.append(torch.nn.MaxPool2d(2))
    net = torch.nn.Sequential(*layers)
    for p in net.parameters():
        p.requires_grad_(False)
    image = torch.randn(1, 3, *shape, requires_grad=True)

    def once():
        image.grad = None
        net(image).sum().backward()

    return {"version": torch.__version__, "threads": threads, "seconds": _best_of(once, repeats)}


def network_pass(shape, repeats=5, with_torch=True, modes=("fp32",), weights_path=None, device="cpu"):
    """Seconds (best, median) of one pass for each mode on ``device``, and the baseline of the same
    run: PyTorch's fp32 pass on the CPU, or cuBLAS's SGEMM rate on a GPU."""
    xp = array_module_for(device)
    w = weights.load(weights.locate(weights_path), xp)
    image = xp.asarray(np.random.default_rng(0).standard_normal((3, *shape), dtype=np.float32) * 50)
    result = {"shape": list(shape), "tap": TAP, "device": device, "macs": pass_macs(shape),
              "seconds": {spec: artem_pass(network(Settings(**network_spec(spec)), w), image, repeats) for spec in modes}}
    if device == "cuda":
        result["sgemm_mac_per_s"] = sgemm_rate(xp)
    elif with_torch:
        result["torch"] = torch_pass(w, shape, repeats, threads=os.cpu_count())
    return result


def _conv_shapes(shape):
    """(name, C in, C out, H, W) of every convolution's input at image ``shape``."""
    h, width = shape
    for name, cin, cout in CONV_LAYERS:
        if name.endswith("_1") and name != "conv1_1":  # after each 2x2 pooling
            h, width = h // 2, width // 2
        yield name, cin, cout, h, width


def _layer_inputs(shape, rng):
    """(name, layer input (C, H, W) of post-ReLU-like values) for every convolution at ``shape``."""
    for name, cin, _, h, width in _conv_shapes(shape):
        yield name, np.maximum(rng.standard_normal((cin, h, width), dtype=np.float32), 0)


def conv_layers(shape, repeats=3, weights_path=None):
    """Each convolution's forward time at ``shape``: fp32, and the XNOR layers (packing plus the
    XNOR-popcount convolution with its per-filter scale and bias, and the whole layer with its
    centre, scale map and centre term) in binary MACs per second."""
    from . import binarize, cpu_binary
    from .layers import XnorConv3x3

    w = weights.load(weights.locate(weights_path))
    fp32 = VGG16(w)
    rows = []
    for name, x in _layer_inputs(shape, np.random.default_rng(0)):
        cin, h, width = x.shape
        macs = 9 * cin * w[f"{name}.weight"].shape[0] * h * width
        best, _ = _best_of(lambda: fp32.layer(name).forward(x), repeats)
        row = {"layer": name, "input": [cin, h, width], "fp32_seconds": best, "fp32_gmac_per_s": macs / best / 1e9}
        if name != "conv1_1":
            xnor = XnorConv3x3(binarize.untrained(w[f"{name}.weight"], w[f"{name}.bias"]))
            zero, ones, sums = np.zeros(cin, np.float32), np.ones((h, width), np.float32), np.zeros((len(xnor.alpha), 9))

            def kernel_only():
                packed = cpu_binary.pack_pixels(x, zero)
                return cpu_binary.xnor_layer(packed, xnor.filters, cin, ones, xnor.alpha, sums, xnor.bias)

            time.sleep(0.5)  # OpenBLAS's threads spin for a while after the fp32 GEMMs: let them sleep
            kernel, _ = _best_of(kernel_only, repeats)
            whole, _ = _best_of(lambda: xnor.forward(x), repeats)
            row.update(xnor_kernel_seconds=kernel, xnor_kernel_gmac_per_s=macs / kernel / 1e9,
                       xnor_layer_seconds=whole, xnor_layer_gmac_per_s=macs / whole / 1e9)
        rows.append(row)
    return rows


def popcount_ceiling():
    """Binary MACs per second of the bare XNOR-popcount block on every thread (``cpu_binary``)."""
    from . import cpu_binary

    time.sleep(0.5)  # as before the XNOR kernels: OpenBLAS's threads may still spin
    return cpu_binary.popcount_ceiling()
