"""The benchmark suite behind ``artem benchmark``: measured, never asserted.

``network_pass``: seconds for one VGG16 forward to relu5_1 plus the backward to the image (what every
optimizer iteration costs), for our network in each mode and, as the baseline measured in the same
run, on the CPU the fp32 network with the same weights in PyTorch (when installed), on a GPU the
rate of a large cuBLAS SGEMM. ``conv_layers``: each convolution's forward time and MAC rate at the
given size, fp32 against XNOR (CPU). ``popcount_ceiling``: what the bare XNOR-popcount loop reaches on
this CPU, the yardstick of the XNOR kernels' rates.
"""
import contextlib
import ctypes
import dataclasses
import importlib.util
import multiprocessing
import os
import pickle
import platform
import signal
import time
from pathlib import Path

import numpy as np

from . import weights
from .api import Interruptible, check_distinct, check_teacher, network, network_spec, spec_settings
from .backend import THREADS, CudaGraph, array_module, array_module_for, matmul, to_host
from .errors import ArtemError
from .signals import terminal_signals_ignored
from .vgg import CONV_LAYERS, LAYER_NAMES, VGG16

TAP = "relu5_1"


def _best_of(fn, repeats, xp=np, interruptible=None):
    """(best, median) seconds of ``fn`` after a warm-up; on a GPU, until its work is done. A signal
    recorded in ``interruptible`` stops it (``KeyboardInterrupt``) before the next call."""
    fn = fn if interruptible is None else interruptible.before(fn)

    def timed():
        start = time.perf_counter()
        fn()
        if xp is not np:
            xp.cuda.Device().synchronize()
        return time.perf_counter() - start

    timed()  # warm-up: first-touch pages, thread pools, caches, compiled kernels
    times = [timed() for _ in range(repeats)]
    return min(times), float(np.median(times))


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device="cpu", with_torch=False):
    """What the figures were measured on: processor, cores, BLAS, GPU and clocks, versions."""
    import numba

    from importlib.metadata import PackageNotFoundError, version

    try:
        artem = version("artem")
    except PackageNotFoundError:  # run from a checkout, not installed
        artem = "not installed"
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    facts = {"cpu": _cpu_model(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
             "blas": f"{blas.get('name')} {blas.get('version')}", "artem": artem, "numpy": np.__version__,
             "numba": numba.__version__, "python": platform.python_version(),
             "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
             "numba_threading_layer": os.environ.get("NUMBA_THREADING_LAYER")}
    if device == "cuda":
        xp = array_module_for(device)
        gpu = xp.cuda.Device()
        props, attributes = xp.cuda.runtime.getDeviceProperties(gpu.id), gpu.attributes
        mhz = lambda key: (props.get(key[0].lower() + key[1:]) or attributes.get(key) or 0) // 1000  # noqa: E731  (CUDA 13: attributes only)
        facts.update(gpu=props["name"].decode(), gpu_clock_mhz=mhz("ClockRate"),
                     gpu_memory_clock_mhz=mhz("MemoryClockRate"), cupy=xp.__version__,
                     cuda_runtime=xp.cuda.runtime.runtimeGetVersion())
    if with_torch:  # its version only: an install that fails to import fails its own side, not the report
        try:
            facts["torch"] = version("torch")
        except PackageNotFoundError:  # a torch without its package's metadata
            facts["torch"] = "unknown"
    return facts


def artem_pass(net, image, repeats, graph=False, interruptible=None):
    """(best, median) seconds of ``net``'s pass on ``image``; with ``graph`` (CuPy), the pass
    recorded once as a CUDA graph and replayed (``backend.CudaGraph``): no launches from Python.
    ``interruptible`` as for ``_best_of``."""
    xp = array_module(image)

    def once(x):
        out = net.forward(x, [TAP])
        return (net.backward({TAP: xp.ones_like(out[TAP])}),)

    run = CudaGraph(once) if graph else once
    return _best_of(lambda: run(image), repeats, xp, interruptible)


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
    """Multiply-accumulates per second of an (n, n) x (n, n) float32 product on ``xp``'s device (by
    ``backend.matmul``: in TF32 within ``gpu_gemm.products_on(..., tf32=True)``)."""
    a = xp.ones((n, n), dtype=np.float32)
    best, _ = _best_of(lambda: matmul(a, a), repeats, xp)
    return n**3 / best


def _tf32():
    """Whether CuPy's float32 products run as TF32 in this process (``CUPY_TF32=1``)."""
    return os.environ.get("CUPY_TF32", "0") != "0"


def _torch_on(device):
    """PyTorch's device for ``device``, its convolutions and products in TF32 on a GPU exactly when
    CuPy's are (PyTorch's own default is TF32 convolutions): both sides of a run compute alike."""
    import torch

    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = _tf32()
    torch.set_num_threads(THREADS)  # the cores artem may use, as artem's side
    return torch.device(device)


def _torch_vgg(w, deepest, device):
    """VGG16's layers up to ``deepest`` in PyTorch on ``device``, (name, module) each, with the
    weights ``w`` (frozen: only the image's gradient is computed)."""
    import torch

    layers = []
    for name in LAYER_NAMES[: LAYER_NAMES.index(deepest) + 1]:
        if name.startswith("conv"):
            weight = torch.from_numpy(np.ascontiguousarray(w[f"{name}.weight"]))
            conv = torch.nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
            conv.weight.data, conv.bias.data = weight, torch.from_numpy(w[f"{name}.bias"])
            layers.append((name, conv.to(device).requires_grad_(False)))
        elif name.startswith("relu"):
            layers.append((name, torch.nn.ReLU()))
        else:
            layers.append((name, torch.nn.MaxPool2d(2)))
    return layers


def torch_pass(w, shape, repeats, device="cpu", interruptible=None):
    """The same pass in PyTorch on ``device``, or None when PyTorch is not installed (one installed
    that fails to import raises). ``interruptible`` as for ``_best_of``."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    where = _torch_on(device)
    net = torch.nn.Sequential(*(layer for _, layer in _torch_vgg(w, TAP, where)))
    image = torch.randn(1, 3, *shape, device=where, requires_grad=True)

    def once():
        image.grad = None
        net(image).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()

    return {"version": torch.__version__, "device": device, "threads": torch.get_num_threads(),
            "tf32": device == "cuda" and torch.backends.cudnn.allow_tf32,
            "seconds": _best_of(once, repeats, interruptible=interruptible)}


def network_pass(shape, repeats=5, with_torch=True, modes=("fp32",), weights_path=None, device="cpu",
                 binary_backward="fp32", interruptible=None):
    """Seconds (best, median) of one pass for each mode on ``device`` (the binary modes with their
    backward through the ±1 weights in ``binary_backward``; on a GPU the xnor modes once with each
    rung of the XNOR kernel ladder that runs there, as ``MODE/RUNG``, fp32 also with every float
    convolution as one GEMM, ``fp32/im2col``, and each of these also replayed as one CUDA graph,
    ``NAME+graph``), and the baselines of the same
    run: PyTorch's fp32 pass on the same device (when installed) and, on a GPU, cuBLAS's SGEMM rate.
    A signal recorded in ``interruptible`` stops it (``KeyboardInterrupt``) before the next pass."""
    xp = array_module_for(device)
    vgg_path = weights.locate(weights_path)
    w = weights.load(vgg_path, xp)
    image = xp.asarray(np.random.default_rng(0).standard_normal((3, *shape), dtype=np.float32) * 50)
    nets = {}
    # a binary layer past the layers a pass taps would time an fp32 pass under its name
    named = {spec: spec_settings(spec, vgg_path, binary_backward=binary_backward
                                 if network_spec(spec)["mode"] in ("bwn", "xnor") else "fp32") for spec in modes}
    check_distinct(named)
    for spec, settings in named.items():
        if device == "cuda" and settings.mode == "xnor":
            from . import gpu_binary

            for rung in gpu_binary.runnable_rungs(gpu_binary.cuda_kernels().runtime):
                nets[f"{spec}/{rung}"] = lambda s=settings, k=gpu_binary.cuda_kernels(rung): network(s, w, xnor_kernels=k)
        else:
            nets[spec] = lambda s=settings: network(s, w)
        if device == "cuda" and settings.mode == "fp32":
            nets[f"{spec}/im2col"] = lambda s=settings: network(s, w, float_conv="im2col")
    seconds, graph_errors = {}, {}
    for name, make in nets.items():
        seconds[name] = artem_pass(make(), image, repeats, interruptible=interruptible)
        if device == "cuda":
            try:
                seconds[f"{name}+graph"] = artem_pass(make(), image, repeats, graph=True, interruptible=interruptible)
            except Exception as e:  # reported; the plain passes' figures stand (KeyboardInterrupt is no Exception)
                graph_errors[f"{name}+graph"] = f"{type(e).__name__}: {e}"
    result = {"shape": list(shape), "tap": TAP, "device": device, "macs": pass_macs(shape),
              "binary_backward": binary_backward, "tf32": device == "cuda" and _tf32(), "seconds": seconds,
              **({"graph_errors": graph_errors} if graph_errors else {})}
    if device == "cuda":
        result["sgemm_mac_per_s"] = sgemm_rate(xp)
    if with_torch:
        try:
            result["torch"] = torch_pass(w if xp is np else weights.load(weights.locate(weights_path)), shape, repeats,
                                         device, interruptible)
        except Exception as e:  # PyTorch without CUDA, out of memory ...: reported; artem's figures stand
            result["torch"] = {"error": f"{type(e).__name__}: {e}"}
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


def conv_layers(shape, repeats=3, weights_path=None, interruptible=None):
    """Each convolution's forward time at ``shape``: fp32, and the XNOR layers (packing plus the
    XNOR-popcount convolution with its per-filter scale and bias, and the whole layer with its
    centre, scale map and centre term) in binary MACs per second. ``interruptible`` as for
    ``_best_of``."""
    from . import binarize, cpu_binary
    from .layers import XnorConv3x3

    w = weights.load(weights.locate(weights_path))
    fp32 = VGG16(w)
    rows = []
    for name, x in _layer_inputs(shape, np.random.default_rng(0)):
        cin, h, width = x.shape
        macs = 9 * cin * w[f"{name}.weight"].shape[0] * h * width
        best, _ = _best_of(lambda: fp32.layer(name).forward(x), repeats, interruptible=interruptible)
        row = {"layer": name, "input": [cin, h, width], "fp32_seconds": best, "fp32_gmac_per_s": macs / best / 1e9}
        if name != "conv1_1":
            xnor = XnorConv3x3(binarize.untrained(w[f"{name}.weight"], w[f"{name}.bias"]))
            zero, ones, sums = np.zeros(cin, np.float32), np.ones((h, width), np.float32), np.zeros((len(xnor.alpha), 9))

            def kernel_only():
                packed = cpu_binary.pack_pixels(x, zero)
                return cpu_binary.xnor_layer(packed, xnor.filters, cin, ones, xnor.alpha, sums, xnor.bias)

            time.sleep(0.5)  # OpenBLAS's threads spin for a while after the fp32 GEMMs: let them sleep
            kernel, _ = _best_of(kernel_only, repeats, interruptible=interruptible)
            whole, _ = _best_of(lambda: xnor.forward(x), repeats, interruptible=interruptible)
            row.update(xnor_kernel_seconds=kernel, xnor_kernel_gmac_per_s=macs / kernel / 1e9,
                       xnor_layer_seconds=whole, xnor_layer_gmac_per_s=macs / whole / 1e9)
        rows.append(row)
    return rows


def mma_peak_rate(runtime, iterations=4096, repeats=5):
    """Binary multiply-accumulates per second of the bare mma.m16n8k256 .and.popc loop
    (``kernels/mma_peak.cu``) on every multiprocessor of the current CUDA device."""
    xp = runtime.xp
    blocks, warps = 8 * xp.cuda.Device().attributes["MultiProcessorCount"], 8
    out = xp.empty(blocks * warps * 32, dtype=np.int32)
    best, _ = _best_of(lambda: runtime.launch("mma_peak", (blocks,), warps * 32, (out, np.int32(iterations))),
                       repeats, xp)
    return blocks * warps * iterations * 4 * (16 * 8 * 256) / best


def gpu_layers(shape, repeats=10, weights_path=None, interruptible=None):
    """Each convolution's forward on the GPU at ``shape``: fp32 (TF32 when CuPy runs with
    CUPY_TF32=1) in its default formulation and as one GEMM (im2col), that GEMM in TF32 too
    (``gpu_gemm.products_on``), and from conv1_2 on the XNOR convolution with its fused epilogue on the packed
    input, in every rung of ``gpu_binary.RUNGS`` that runs on this device, with the packing timed
    apart (each of ``gpu_binary.PACKERS`` that runs here); and the peaks of the same run: cuBLAS's GEMM
    (SGEMM, or TF32 under CUPY_TF32=1), its TF32 GEMM and the binary tensor cores' (``mma_peak_rate``). Each rung's
    output is compared with the direct rung's, each packer's with the per-pixel one's. A signal
    recorded in ``interruptible`` stops it (``KeyboardInterrupt``) before the next layer."""
    import cupy

    from . import binarize, gpu_gemm
    from .gpu_binary import PACKERS, BinaryKernels, CudaRuntime, runnable_rungs

    cublas = gpu_gemm.Cublas()

    def in_tf32(fn):  # fn's products in TF32
        def tf32():
            with gpu_gemm.tf32_products(cublas):
                return fn()
        return tf32

    runtime = CudaRuntime()
    ladder = {rung: BinaryKernels(runtime, rung) for rung in reversed(runnable_rungs(runtime))}  # direct first
    packers = {p: BinaryKernels(runtime, "direct", p) for p, (name, _, _) in PACKERS.items() if runtime.supports(name)}
    w = weights.load(weights.locate(weights_path), cupy)
    fp32, fp32_im2col = VGG16(w), VGG16(w, float_conv="im2col")
    rows = []
    for name, x in _layer_inputs(shape, np.random.default_rng(0)):
        if interruptible is not None:
            interruptible.check()
        x = cupy.asarray(x)
        cin, h, width = x.shape
        macs = 9 * cin * w[f"{name}.weight"].shape[0] * h * width
        best, _ = _best_of(lambda: fp32.layer(name).forward(x), repeats, cupy)
        im2col, _ = _best_of(lambda: fp32_im2col.layer(name).forward(x), repeats, cupy)
        tf32, _ = _best_of(in_tf32(lambda: fp32_im2col.layer(name).forward(x)), repeats, cupy)
        row = {"layer": name, "input": [cin, h, width], "macs": macs, "fp32_seconds": best, "fp32_im2col_seconds": im2col,
               "tf32_im2col_seconds": tf32}
        if fp32.layer(name).formulation == "winograd":
            row["winograd_transforms"] = winograd_transforms(runtime, x, w[f"{name}.bias"], repeats)
        if name != "conv1_1":
            layer = binarize.untrained(w[f"{name}.weight"], w[f"{name}.bias"], cupy)
            direct = ladder["direct"]
            ones, sums = cupy.ones((h, width), np.float32), cupy.zeros((len(layer.alpha), 9), np.float32)
            packed = packers["per_pixel"].pack_pixels(x, cupy.zeros(cin, np.float32))
            row["pack"] = {}
            for packer, kernels in packers.items():
                pack = lambda k=kernels: k.pack_pixels(x, cupy.zeros(cin, np.float32))  # noqa: E731
                seconds, _ = _best_of(pack, repeats, cupy)
                row["pack"][packer] = {"seconds": seconds, "equals_per_pixel": bool((pack() == packed).all())}
            reference = direct.xnor_layer(packed, direct.filters_for_kernel(layer.signs), cin, ones, layer.alpha, sums,
                                          layer.bias)
            row["xnor"] = {}
            for rung, kernels in ladder.items():
                filters = kernels.filters_for_kernel(layer.signs)
                conv = lambda k=kernels, f=filters: k.xnor_layer(packed, f, cin, ones, layer.alpha, sums, layer.bias)  # noqa: E731
                seconds, _ = _best_of(conv, repeats, cupy)
                row["xnor"][rung] = {"seconds": seconds, "max_difference_from_direct": float(abs(conv() - reference).max())}
        rows.append(row)
    return {"tf32": _tf32(), "gemm_mac_per_s": sgemm_rate(cupy, 8192),
            "tf32_gemm_mac_per_s": in_tf32(lambda: sgemm_rate(cupy, 8192))(),
            "mma_b1_mac_per_s": mma_peak_rate(runtime) if runtime.supports("mma_peak") else None,
            "binary_gemm": binary_gemm(BinaryKernels(runtime)) if runtime.supports("xnor_gemm_mma") else None,
            "layers": rows}


def winograd_transforms(runtime, x, bias, repeats=10):
    """A Winograd layer's two transforms (of its input x, and of random GEMM products into its output
    with ``bias``): best seconds as the CUDA kernels of ``gpu_float`` and as their NumPy twins on CuPy
    (``layers.winograd_input``, ``winograd_output`` with their matrices made once: the path before
    the kernels), and whether the kernels' results equal the CPU's numba kernels' (``cpu_float``) bit
    for bit."""
    import cupy

    from . import cpu_float, gpu_float, layers

    c, h, w = x.shape
    th, tw = (h + 3) // 4, (w + 3) // 4
    m = np.random.default_rng(0).standard_normal((36, len(bias), th, tw), dtype=np.float32)
    m_gpu = cupy.asarray(m)
    v, y = cupy.empty((36, c, th, tw), np.float32), cupy.empty((len(bias), h, w), np.float32)
    t_in, t_out = (layers.winograd_transform(name, cupy, np.float32) for name in ("input", "output"))

    def by_kernels():
        gpu_float.winograd_input(runtime, x, v)
        gpu_float.winograd_output(runtime, m_gpu, bias, y)

    def by_twins():
        layers.winograd_input(x, v, t_in)
        layers.winograd_output(m_gpu, bias, y, t_out)

    report = {"kernels_seconds": _best_of(by_kernels, repeats, cupy)[0],
              "twins_seconds": _best_of(by_twins, repeats, cupy)[0]}
    by_kernels()
    v_cpu, y_cpu = np.empty(v.shape, np.float32), np.empty(y.shape, np.float32)
    cpu_float.winograd_input(to_host(x), v_cpu)
    cpu_float.winograd_output(m, to_host(bias).astype(np.float32), y_cpu)
    report["equals_cpu"] = bool(np.array_equal(to_host(v), v_cpu) and np.array_equal(to_host(y), y_cpu))
    return report


def binary_gemm(kernels, n=16384, repeats=5):
    """The ±1 product of two n x n bit matrices (n^3 binary MACs) on binary tensor cores
    (``BinaryKernels.xnor_gemm``, the row popcounts included): best time, rate, and whether a 64 x 64
    corner of it equals ``binarize.xnor_gemm``'s."""
    from . import binarize

    xp = kernels.runtime.xp
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 2**32, (n, n // 32), dtype=np.uint32) for _ in range(2))
    a_dev, b_dev = xp.asarray(a), xp.asarray(b)
    best, _ = _best_of(lambda: kernels.xnor_gemm(a_dev, b_dev, n), repeats, xp)
    corner = kernels.xnor_gemm(a_dev, b_dev, n)[:64, :64]
    return {"n": n, "seconds": best, "mac_per_s": n**3 / best,
            "corner_equals_twin": bool((to_host(corner) == binarize.xnor_gemm(a[:64], b[:64], n)).all())}


def gpu_layers_markdown(report):
    """``gpu_layers``' report as a Markdown table: each layer's time and rate, each rate as a share of
    the same run's peak (fp32 of the GEMM's, TF32 of the TF32 GEMM's, XNOR of the binary tensor
    cores'), each rung against fp32 and against the layer as one GEMM in TF32."""
    gemm, tf32_gemm, peak = report["gemm_mac_per_s"], report["tf32_gemm_mac_per_s"], report["mma_b1_mac_per_s"]
    rungs = list(dict.fromkeys(r for row in report["layers"] for r in row.get("xnor", {})))
    packers = list(dict.fromkeys(p for row in report["layers"] for p in row.get("pack", {})))
    fp = "TF32" if report["tf32"] else "fp32"
    product = report.get("binary_gemm")
    lines = [f"Peaks in this run: cuBLAS {fp} GEMM 8192^3 {gemm / 1e12:.1f} T MAC/s, TF32 {tf32_gemm / 1e12:.1f} T MAC/s; "
             + (f"mma .b1 .and.popc {peak / 1e12:.0f} T binary MAC/s." if peak else "no binary tensor cores."),
             *([f"Binary GEMM {product['n']}^3 (xnor_gemm_mma): {1e3 * product['seconds']:.3f} ms, "
                f"{product['mac_per_s'] / 1e12:.0f} T binary MAC/s = {product['mac_per_s'] / peak:.2f} of the mma peak"
                + ("" if product["corner_equals_twin"] else "; WRONG: differs from its twin") + "."] if product else []),
             ""]
    header = ["layer", "input", f"{fp} ms (share of GEMM)", f"{fp} im2col ms (share)", "im2col in TF32 ms (share of TF32 GEMM)",
              "Winograd transforms ms, kernels / CuPy ops", *(f"pack {p} ms" for p in packers),
              *(f"xnor {r} ms (share of mma; x {fp}, x im2col in TF32)" for r in rungs)]
    lines += ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * (len(header) - 2)]
    for row in report["layers"]:
        t = row.get("winograd_transforms")
        cells = [row["layer"], "x".join(map(str, row["input"])),
                 f"{1e3 * row['fp32_seconds']:.3f} ({row['macs'] / row['fp32_seconds'] / gemm:.2f})",
                 f"{1e3 * row['fp32_im2col_seconds']:.3f} ({row['macs'] / row['fp32_im2col_seconds'] / gemm:.2f})",
                 f"{1e3 * row['tf32_im2col_seconds']:.3f} ({row['macs'] / row['tf32_im2col_seconds'] / tf32_gemm:.2f})",
                 f"{1e3 * t['kernels_seconds']:.3f} / {1e3 * t['twins_seconds']:.3f}"
                 + ("" if t["equals_cpu"] else " WRONG: not the CPU's") if t else ""]
        for packer in packers:
            p = row.get("pack", {}).get(packer)
            cells.append(f"{1e3 * p['seconds']:.3f}" + ("" if p["equals_per_pixel"] else " WRONG") if p else "")
        for rung in rungs:
            r = row.get("xnor", {}).get(rung)
            share = f"{row['macs'] / r['seconds'] / peak:.2f}; " if r and peak else ""
            cells.append(f"{1e3 * r['seconds']:.3f} ({share}{row['fp32_seconds'] / r['seconds']:.1f}x, "
                         f"{row['tf32_im2col_seconds'] / r['seconds']:.1f}x)"
                         + ("" if r["max_difference_from_direct"] == 0 else f" differs by {r['max_difference_from_direct']:.3g}")
                         if r else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def popcount_ceiling():
    """Binary MACs per second of the bare XNOR-popcount block on every thread (``cpu_binary``)."""
    from . import cpu_binary

    time.sleep(0.5)  # as before the XNOR kernels: OpenBLAS's threads may still spin
    return cpu_binary.popcount_ceiling()


# --- end to end: a whole stylization, against the same objective in PyTorch -------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
END_TO_END = {"content": "coffee.png", "style": "ihc.png"}  # from examples/, shipped with artem


# artem's runs on a GPU beside its default one in ``end_to_end``: (what the report calls it, its Settings)
GPU_VARIANTS = {"artem_graph": ("each evaluation one CUDA graph", {"cuda_graph": True}),
                "artem_tf32": ("every float convolution one TF32 GEMM", {"tf32": True}),
                "artem_tf32_graph": ("TF32 GEMMs and each evaluation one CUDA graph", {"tf32": True, "cuda_graph": True})}


def end_to_end(size=512, iterations=500, device="cpu", with_torch=True, weights_path=None, optimizer="lbfgs",
               interruptible=None):
    """The peers' protocol: ``iterations`` of L-BFGS (or of Adam, ``optimizer="adam"``, at artem's
    default learning rate) at ``size`` px on a fixed content and style from examples/, with artem and,
    when PyTorch is importable, the same objective and optimizer in PyTorch on the same device. Each
    side runs in a process of its own (so that its peak memory is its own); all saved 8-bit results
    are scored by artem's fp32 network. On a GPU artem also runs as each of ``GPU_VARIANTS`` asks (a
    graph's memory is not measured: the graph keeps its own pool). Returns the report (``machine``
    included). A signal recorded in ``interruptible`` stops it (``KeyboardInterrupt``) before the next
    side, or at once while a side runs (its process is ended; the side's process ignores SIGINT,
    which a terminal's Ctrl-C sends to the whole process group)."""
    from . import api, io

    content, _ = io.read_image(EXAMPLES / END_TO_END["content"], "content image")
    style, _ = io.read_image(EXAMPLES / END_TO_END["style"], "style image")
    settings = api.Settings(size=size, iterations=iterations, device=device, optimizer=optimizer)
    settings.validate(1)
    path = str(weights.locate(weights_path))
    context = multiprocessing.get_context("spawn")
    sides = {"artem": (_artem_side, settings)}
    if device == "cuda":
        for name, (_, changes) in GPU_VARIANTS.items():
            sides[name] = (_artem_side, dataclasses.replace(settings, **changes))
    if with_torch and importlib.util.find_spec("torch") is not None:
        sides["torch"] = (_torch_side, settings)
    report = {"machine": machine(device, with_torch="torch" in sides),
              "protocol": {"content": f"examples/{END_TO_END['content']}", "style": f"examples/{END_TO_END['style']}",
                           "size": size, "iterations": iterations, "optimizer": optimizer,
                           **({"history": settings.history} if optimizer == "lbfgs" else {"lr": settings.lr}),
                           "device": device, "with_torch": with_torch}}
    interruptible = interruptible or Interruptible()
    for name, (side, side_settings) in sides.items():
        try:
            run = _in_own_process(context, side, (content, style, side_settings, path), interruptible,
                                  f"the {name} side")
        except Exception as e:  # a side compared with artem's that fails is reported; the others still run
            if name == "artem":
                raise
            report[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        image = run.pop("image")
        run["losses"] = api.score(io.quantize(image), content, [style], api.Settings(size=size), weights_path=path)
        run["seconds_per_iteration"] = run["seconds"] / max(run["iterations"], 1)
        report[name] = run
    for name in ("torch", *GPU_VARIANTS):
        report.setdefault(name, None)
    if report["torch"] and "error" not in report["torch"]:
        report["ratios"] = {"time_per_iteration": report["artem"]["seconds_per_iteration"] / report["torch"]["seconds_per_iteration"],
                            "total_loss": report["artem"]["losses"]["total"] / report["torch"]["losses"]["total"]}
    return report


def _in_own_process(context, function, args, interruptible, what):
    """``function(*args)`` in a process of its own, started (from ``context``) ignoring SIGINT: a
    terminal's Ctrl-C reaches the whole process group, and this process, not the child, takes it. An
    exception there is raised here; a child that dies (the kernel's out-of-memory killer, a crash in
    a library) is an ``ArtemError`` that names it ``what``. A signal recorded in ``interruptible``, or one that comes while
    the child works, ends the child (``KeyboardInterrupt`` here)."""
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_reply, args=(send, function, args), daemon=True)
    with terminal_signals_ignored():  # the child's start: milliseconds
        child.start()
    send.close()  # the child's end only: the pipe reports its end when the child dies
    try:
        interruptible.now = True  # this process only waits: the handler may raise
        try:
            interruptible.check()  # a signal before ``now``
            outcome = receive.recv()
        except (EOFError, OSError, pickle.UnpicklingError):  # no reply, or half of one: the child died
            child.join()
            interruptible.check()  # of a signal to the whole process group, which ended it too
            code = child.exitcode
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            raise ArtemError(f"{what}'s process ended without a result ({how}"
                             f"{'; out of memory?' if code == -signal.SIGKILL else ''})") from None
        finally:
            interruptible.now = False
    finally:
        receive.close()
        if child.is_alive():
            child.terminate()
        child.join()
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _reply(send, function, args):
    """In the child: ``function(*args)``'s result, or the exception it raised, sent back. The child
    ends with the benchmark (it ignores Ctrl-C: orphaned, nothing else would stop it)."""
    with contextlib.suppress(OSError, AttributeError):  # Linux: SIGTERM when the parent dies
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    try:
        outcome = function(*args)
    except Exception as e:
        try:
            pickle.loads(pickle.dumps(e))  # some pickle but do not unpickle (CuPy's OutOfMemoryError)
        except Exception:  # what cannot travel travels as its text, an out-of-memory error as one
            e = MemoryError(str(e)) if isinstance(e, MemoryError) else RuntimeError(f"{type(e).__name__}: {e}")
        outcome = e
    with contextlib.suppress(OSError):  # the benchmark stopped waiting (a signal): nothing to say
        send.send(outcome)
        send.close()


def _peak_host_memory():
    """This process's peak resident set, in bytes: Linux's VmHWM, which starts afresh at exec
    (``ru_maxrss`` does not: a spawned side would report the benchmark's own peak, when higher)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def _artem_side(content, style, settings, weights_path):
    from . import api

    stylizer = api.Stylizer(settings, weights_path=weights_path)
    xp = stylizer.xp
    targets = stylizer.targets([style])
    stylizer.stylize(content, targets, iterations=1)  # warm-up: compiled kernels loaded, pages touched
    start = time.perf_counter()
    result = stylizer.stylize(content, targets)
    seconds = time.perf_counter() - start
    # CuPy's pool keeps every block it reserved (it gives its free ones back only to retry an
    # allocation that failed): at the end it holds its peak, as PyTorch's max_memory_reserved is its
    # caching allocator's, but for a run that came that close to running out
    memory = None if settings.cuda_graph else xp.get_default_memory_pool().total_bytes() if xp is not np \
        else _peak_host_memory()
    return {"seconds": seconds, "iterations": result.iterations, "evaluations": result.evaluations,
            "peak_memory_bytes": memory, "memory_measured": "not measured: the CUDA graph's pool is its own"
            if settings.cuda_graph else "GPU memory CuPy's pool reserved at the end (its peak unless it freed "
            "its cache to retry an allocation)" if xp is not np
            else "peak resident set of the process", "image": result.image}


def _torch_side(content, style, settings, weights_path):
    """The same objective as ``api.Objective`` (content, Gram style and TV terms as means, evaluated
    on the clipped image plus the out-of-range penalty) with PyTorch's L-BFGS (strong Wolfe, same
    history; its own stopping rules at artem's tolerances' numbers, PyTorch's change absolute where
    artem's is relative: the report gives each side's iterations) or Adam
    (same learning rate; PyTorch's betas and epsilon are artem's), on the same device."""
    import torch

    from . import api, preprocess

    device = _torch_on(settings.device)
    taps = settings.taps()
    layers = _torch_vgg(weights.load(weights_path), max(taps, key=LAYER_NAMES.index), device)

    def features(x):
        out = {}
        for name, layer in layers:
            x = layer(x)
            if name in taps:
                out[name] = x[0]
        return out

    def gram(f):
        f = f.reshape(f.shape[0], -1)
        return f @ f.T / f.numel()

    shape = preprocess.scaled_shape(content.shape, settings.size)
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(preprocess.to_vgg(a)))[None].to(device)  # noqa: E731
    x0 = tensor(preprocess.resize(content, shape))
    style_x = tensor(preprocess.resize(style, api._style_shape(style, settings.size, settings.style_scale)))
    with torch.no_grad():
        content_targets = {n: f for n, f in features(x0).items() if n in dict(settings.content_layers)}
        style_targets = {n: gram(f) for n, f in features(style_x).items() if n in dict(settings.style_layers)}
    low, high = (torch.from_numpy(np.asarray(b)).to(device)[None] for b in preprocess.valid_range())
    x = x0.clone().requires_grad_(True)
    if settings.optimizer == "adam":
        optimizer = torch.optim.Adam([x], lr=settings.lr)
    else:
        optimizer = torch.optim.LBFGS([x], lr=1, max_iter=settings.iterations, max_eval=25 * settings.iterations,
                                      history_size=settings.history, line_search_fn="strong_wolfe",
                                      tolerance_grad=1e-7, tolerance_change=1e-9)

    def closure():
        optimizer.zero_grad()
        clipped = torch.clamp(x, low, high)
        f = features(clipped)
        loss = sum(settings.content_weight * weight * ((f[n] - content_targets[n]) ** 2).mean()
                   for n, weight in settings.content_layers)
        loss = loss + sum(settings.style_weight * weight * ((gram(f[n]) - style_targets[n]) ** 2).mean()
                          for n, weight in settings.style_layers)
        dy, dx = clipped[..., 1:, :] - clipped[..., :-1, :], clipped[..., :, 1:] - clipped[..., :, :-1]
        loss = loss + settings.tv_weight * ((dy**2).sum() + (dx**2).sum()) / x.numel()
        loss = loss + 1e4 * ((x - clipped) ** 2).mean()
        loss.backward()
        return loss

    closure()  # warm-up, as for artem
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if settings.optimizer == "adam":  # a step evaluates the objective once, then moves x
        for _ in range(settings.iterations):
            optimizer.step(closure)
    else:  # one step runs every iteration
        optimizer.step(closure)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    state = optimizer.state[x]
    iterations = int(state["step"]) if settings.optimizer == "adam" else int(state["n_iter"])
    image = np.clip(preprocess.from_vgg(torch.clamp(x, low, high).detach().cpu().numpy()[0]), 0, 1).astype(np.float32)
    memory = torch.cuda.max_memory_reserved() if device.type == "cuda" else _peak_host_memory()
    return {"seconds": seconds, "iterations": iterations,
            "evaluations": iterations if settings.optimizer == "adam" else int(state["func_evals"]),
            "peak_memory_bytes": memory, "memory_measured": "torch.cuda.max_memory_reserved" if device.type == "cuda"
            else "peak resident set of the process", "version": torch.__version__, "threads": torch.get_num_threads(),
            "tf32": bool(device.type == "cuda" and torch.backends.cudnn.allow_tf32), "image": image}


def torch_label(t, device):
    """Where and how PyTorch ran: threads on a CPU, fp32 or TF32 on a GPU."""
    return f"GPU, {'TF32' if t['tf32'] else 'fp32'}" if device == "cuda" else f"{t['threads']} threads"


def end_to_end_markdown(report):
    """The end-to-end report as Markdown: the machine, the protocol, and artem beside PyTorch."""
    p, a, t = report["protocol"], report["artem"], report.get("torch")
    failed = {"PyTorch": t} if t and "error" in t else {}
    t, absent = (None, ["failed (below)"]) if failed else (t, ["not installed" if p.get("with_torch", True) else "not run"])
    m = report["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {m['blas']}"
             + (f", {m['gpu']} ({m['gpu_clock_mhz']} MHz), CuPy {m['cupy']}" if "gpu" in m else "")
             + f"; artem {m['artem']}, NumPy {m['numpy']}, numba {m['numba']}, Python {m['python']}"
             + (f", PyTorch {m['torch']}" if "torch" in m else ""),
             f"protocol: {p['content']} after {p['style']}, {p['size']} px, {p['iterations']} "
             + (f"Adam iterations (learning rate {p['lr']:g})" if p.get("optimizer") == "adam"
                else f"L-BFGS iterations (history {p['history']})")
             + f", on {p['device']}; losses are the fp32 network's, of each saved 8-bit image",
             "",
             "| | artem | " + (f"PyTorch {t['version']} ({torch_label(t, p['device'])}) | artem / PyTorch |" if t else "PyTorch |"),
             "| --- | ---: | ---: |" + (" ---: |" if t else "")]

    def row(name, key, fmt, ratio=False):
        cells = [fmt(a[key])] + ([fmt(t[key])] if t else absent)
        if t:
            cells.append(f"{a[key] / t[key]:.2f}" if ratio else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    row("iterations", "iterations", str)
    row("evaluations", "evaluations", str)
    row("seconds", "seconds", lambda v: f"{v:.1f}", ratio=True)
    row("seconds per iteration", "seconds_per_iteration", lambda v: f"{v:.4f}", ratio=True)
    row("peak memory", "peak_memory_bytes", lambda v: f"{v / 2**30:.2f} GiB", ratio=True)
    for term in ("total", "style", "content", "tv"):
        cells = [f"{a['losses'][term]:.4g}"] + ([f"{t['losses'][term]:.4g}", f"{a['losses'][term] / t['losses'][term]:.2f}"]
                                              if t else absent)
        lines.append(f"| fp32 {term} loss | " + " | ".join(cells) + " |")
    for name, (label, changes) in GPU_VARIANTS.items():
        g = report.get(name)
        if g and "error" in g:
            failed[f"artem with {label}"] = g
        elif g:
            spelled = ", ".join(f"{k}={v}" for k, v in changes.items())
            lines += ["", f"artem with {label} (`Settings({spelled})`): {g['seconds']:.1f} s, "
                      f"{g['seconds_per_iteration']:.4f} s an iteration ({g['seconds'] / a['seconds']:.2f}x the default run"
                      + (f", {g['seconds'] / t['seconds']:.2f}x PyTorch's" if t else "")
                      + f"), {g['iterations']} iterations, fp32 total loss {g['losses']['total']:.4g}"
                      + (f" ({g['losses']['total'] / a['losses']['total']:.2f}x the default run's)" if a['losses']['total'] else "") + "."]
    lines += ["", *(f"{name}: failed ({side['error']})" for name, side in failed.items())] if failed else []
    return "\n".join(lines)


class Predictor:
    """What runs of ``settings`` will take here, without running them: the memory and the seconds.
    Time: one evaluation of the objective (forward, losses with their Gram matrices, backward) and,
    for L-BFGS, a pair added to a full history and the two-loop recursion over it (over at most
    ``PROBE_PAIRS`` pairs, scaled to as many as the run keeps: one pass over each; its host arithmetic
    grows with their square, which this leaves out: 4x low at 1,000 pairs), each the best of 5
    on this device at three small square sizes, each a broken line in pixels through them: straight
    between two probes, the smallest probe's time below it (a tiny image costs a pass's fixed
    overhead), and beyond the largest the line through the last two (its slope at least 0: a line
    through noisy timings may fall). An L-BFGS run evaluates the objective once an iteration, then
    ``FIRST_LINE_SEARCH`` times more (its first line search) and once more every
    ``LATER_LINE_SEARCHES`` iterations; an Adam run once more in all (the image it starts from).
    Memory: on the CPU, what this process holds now (Python, the libraries, the network), plus what
    ``api.estimate_memory`` says a run adds to it; on a GPU, that estimate. Either against what is
    free now."""

    # measured (BENCHMARKS.md §3d): 5-7 evaluations more than iterations from the first iteration on, at 32-128 px;
    # 8 more in 100-500 iterations at 32-256 px, 13 in 500 at 512 px
    FIRST_LINE_SEARCH, LATER_LINE_SEARCHES = 6, 100
    PROBE_PAIRS = 100  # the default history; one of 10^4 pairs took minutes to fill, and memory a run is refused

    def __init__(self, settings, weights_path=None, probes=(32, 64, 160)):
        from . import api, optim

        self.settings = settings
        self.xp = xp = array_module_for(settings.device)
        vgg_path = weights.locate(weights_path)
        check_teacher(settings, vgg_path)
        net = api.network(settings, weights.load(vgg_path, xp))
        rng = np.random.default_rng(0)
        evaluations, adds, recursions = [], [], []
        for side in sorted(set(probes)):  # ascending, as the broken line takes them
            # the style image at the probe's size too, whatever --style-scale: its pass is not timed
            probe = dataclasses.replace(settings, size=side, style_scale=1.0)
            targets = api.Targets(api.style_grams(net, probe, [rng.random((3, side, side), dtype=np.float32)]))
            objective = api.build_objective(net, probe, xp.asarray(rng.random((3, side, side), dtype=np.float32)), targets)
            image = xp.asarray(rng.standard_normal((3, side, side), dtype=np.float32) * 50)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # absurd weights are timed as any
                evaluations.append((side * side, _best_of(lambda: objective(image), 5, xp)[0]))
            if settings.optimizer == "lbfgs":
                s = xp.asarray(rng.standard_normal(image.shape, dtype=np.float32))
                y = s + 0.1 * xp.asarray(rng.standard_normal(image.shape, dtype=np.float32))
                history = optim.CurvatureHistory(image, self._probe_pairs(settings))

                def iteration(h=history, s=s, y=y):  # the new pair in, the direction out
                    h.add(s, y)
                    return h.direction(s, 1.0)

                for _ in range(history.size):  # a full history's
                    iteration()
                adds.append((side * side, _best_of(lambda h=history, s=s, y=y: h.add(s, y), 5, xp)[0]))
                recursions.append((side * side, _best_of(iteration, 5, xp)[0]))
        self.evaluation, self.add, self.recursion = evaluations, adds or [(0, 0.0)], recursions or [(0, 0.0)]
        self.baseline = _resident_memory() if xp is np else 0

    def predict(self, shape, iterations=None, style_shapes=()):
        """The run of an image of ``shape`` (H, W) for ``iterations`` (default: the settings') after
        style images of ``style_shapes`` (their memory); the recursion's time grows with the pairs
        that run keeps, as it does (one pass over each)."""
        from . import api

        settings = dataclasses.replace(self.settings, iterations=iterations or self.settings.iterations)
        pixels, n = shape[0] * shape[1], settings.iterations
        evaluating, adding, recursing = (_broken_line(points, pixels) for points in (self.evaluation, self.add,
                                                                                      self.recursion))
        extra = self.FIRST_LINE_SEARCH + n / self.LATER_LINE_SEARCHES if settings.optimizer == "lbfgs" else 1
        scale = max(1, min(settings.history, n)) / self._probe_pairs(self.settings)  # the pairs the run keeps
        seconds = (n + extra) * evaluating + n * (adding + max(recursing - adding, 0.0) * scale)
        added = api.estimate_memory(shape, settings, style_shapes) - (api.WEIGHTS_MEMORY if self.baseline else 0)
        return {"shape": list(shape), "memory_bytes": self.baseline + added,
                "available_bytes": api.available_memory(self.xp), "seconds_per_iteration": seconds / n,
                "iterations": n, "seconds": seconds}

    @classmethod
    def _probe_pairs(cls, settings):
        return min(cls.PROBE_PAIRS, max(1, min(settings.history, settings.iterations)))


def _broken_line(points, x):
    """y at ``x`` on the broken line through ``points`` ((x, y) pairs, x ascending): straight between
    two points, the first point's y below it, and beyond the last the line through the last two, its
    slope at least 0."""
    (x0, y0), *rest = points
    if x <= x0 or not rest:
        return y0
    for (xa, ya), (xb, yb) in zip(points, rest):
        if x <= xb:
            return ya + (yb - ya) * (x - xa) / (xb - xa)
    return yb + max(yb - ya, 0.0) * (x - xb) / (xb - xa)


def _resident_memory():
    """Bytes of this process in memory now (its resident set), or 0 where /proc cannot tell."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
