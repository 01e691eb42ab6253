"""The GPU kernels of ``kernels/`` against their NumPy twins, bit for bit.

The same sources run through OpenCL on the CPU (PoCL, installed with the dev extra), in their CUDA
spelling on the CPU under ``cuda_emulator.h`` (every kernel, the binary tensor cores' included: g++
builds them), which is how CI checks them with no GPU, and through CuPy where a CUDA device is
(skipped elsewhere). Every kernel must also compile with nvcc for sm_80 and sm_90: CI requires nvcc
(ARTEM_REQUIRE_NVCC=1 in .ci/run).
"""
import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from artem_cli import binarize, cpu_binary, cpu_float, gpu_binary, gpu_float, layers, optim
from artem_cli.errors import ArtemError
from artem_cli.gpu_binary import (CUDA_ONLY, FASTEST_FIRST, KERNELS, PACKERS, RUNGS, SOURCES, BinaryKernels, CudaRuntime,
                                  OpenCLRuntime)
from cuda_emulator import EmulatedRuntime


def _cuda_runtime():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount():
            return CudaRuntime()
    except Exception:  # no CuPy, or no driver or device
        pass
    pytest.skip("no CUDA device")


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    if shutil.which("g++") is None:
        _missing("g++")
    return EmulatedRuntime(tmp_path_factory.mktemp("emulated"))


RUNTIMES = ("opencl", "emulated", "cuda")


def _runs_on(runtime, kernels):
    """Whether ``kernels`` can run on the runtime named ``runtime``: OpenCL runs none of ``CUDA_ONLY``,
    the emulator all, a CUDA device what its compute capability allows (asked of it when the test
    runs: the others are skipped there)."""
    return runtime != "opencl" or not set(kernels) & set(CUDA_ONLY)


def pytest_generate_tests(metafunc):
    """Each test on every runtime that can run its kernels (``@pytest.mark.kernel(NAME)``), and each
    rung or packer only there."""
    if "runtime" not in metafunc.fixturenames:
        return
    needs = [mark.args[0] for mark in metafunc.definition.iter_markers("kernel")]
    assert not {"rung", "packer"} <= set(metafunc.fixturenames), "a test takes a rung or a packer, not both"
    for name, table in (("rung", RUNGS), ("packer", PACKERS)):
        if name in metafunc.fixturenames:
            pairs = [(r, k) for r in RUNTIMES for k, (kernel, _, _) in table.items() if _runs_on(r, [kernel, *needs])]
            metafunc.parametrize(("runtime", name), pairs, indirect=True, scope="module")
            return
    metafunc.parametrize("runtime", [r for r in RUNTIMES if _runs_on(r, needs)], indirect=True, scope="module")


@pytest.fixture(scope="module")
def runtime(request):
    if request.param == "emulated":
        return request.getfixturevalue("emulated")
    return OpenCLRuntime() if request.param == "opencl" else _cuda_runtime()


@pytest.fixture(scope="module")
def kernels(runtime):
    return BinaryKernels(runtime)


@pytest.fixture(scope="module")
def packer(request, runtime):
    """Each way of bit-packing (``pytest_generate_tests`` names it) on ``runtime``."""
    if not runtime.supports(PACKERS[request.param][0]):
        pytest.skip(f"the {request.param} packer does not run on this CUDA device")
    return BinaryKernels(runtime, packer=request.param)


@pytest.fixture(scope="module")
def rung(request, runtime):
    """Each rung of the XNOR convolution's ladder (``pytest_generate_tests`` names it) on ``runtime``."""
    if not runtime.supports(RUNGS[request.param][0]):
        pytest.skip(f"the {request.param} rung does not run on this CUDA device")
    return BinaryKernels(runtime, request.param)


def _missing(compiler):
    """CI (ARTEM_REQUIRE_NVCC=1) has nvcc, its host compiler g++ and NVRTC (the dev extra's
    nvidia-cuda-nvrtc); elsewhere their tests are skipped."""
    if os.environ.get("ARTEM_REQUIRE_NVCC"):
        pytest.fail(f"{compiler} is missing, and ARTEM_REQUIRE_NVCC is set")
    pytest.skip(f"{compiler} is missing")


def host(a):
    return a if isinstance(a, np.ndarray) else a.get()


@pytest.mark.parametrize("channels", [1, 3, 33, 64, 100, 512])
@pytest.mark.parametrize("h,w", [(1, 1), (2, 5), (7, 3), (9, 12), (5, 13)])
def test_packing_kernel_equals_its_twin(packer, channels, h, w):
    """Each packer; 65 pixels: a ballot block's 32 and one more."""
    kernels = packer
    rng = np.random.default_rng(channels + h * w)
    x = rng.standard_normal((channels, h, w)).astype(np.float32)
    centre = rng.standard_normal(channels).astype(np.float32) * 0.5
    x[:, 0, 0] = centre  # exactly at the centre: +1
    spread = kernels.runtime.empty((h, w), np.float32)
    packed = kernels.pack_pixels(x, centre, spread)
    np.testing.assert_array_equal(host(packed), binarize.pack_pixels(x - centre[:, None, None]))
    np.testing.assert_allclose(host(spread), np.abs(x - centre[:, None, None]).mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize("h,w", [(1, 1), (2, 5), (7, 3), (17, 300)])
def test_scale_map_kernel_equals_its_twin(kernels, h, w):
    a = np.random.default_rng(h * w).random((h, w)).astype(np.float32)
    np.testing.assert_array_equal(host(kernels.scale_map(a)), binarize.scale_map(a))


@pytest.mark.parametrize("channels,h,w", [(1, 1, 1), (3, 7, 300), (64, 13, 6)])
def test_straight_through_kernel_equals_its_twin(kernels, channels, h, w):
    """Inside and outside |x − centre| <= A, on its edge, and where A is 0."""
    rng = np.random.default_rng(channels + h)
    x = rng.standard_normal((channels, h, w)).astype(np.float32)
    centre = rng.standard_normal(channels).astype(np.float32) * 0.3
    a = rng.random((h, w)).astype(np.float32)
    a[0, 0] = 0
    x[0, -1, -1] = centre[0] + a[-1, -1]  # exactly on the edge
    ds = rng.standard_normal((channels, h, w)).astype(np.float32)
    got, twin = host(kernels.straight_through(ds, x, centre, a)), binarize.straight_through(ds, x, centre, a)
    np.testing.assert_array_equal(got, twin)
    assert twin.size == 1 or 0 < np.count_nonzero(twin) < twin.size  # both cases met


@pytest.mark.parametrize("channels,outs", [(1, 3), (33, 5), (64, 64), (128, 24), (256, 8), (512, 17), (600, 130)])
@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (4, 4), (5, 9), (13, 6), (11, 17)])
def test_xnor_kernel_equals_its_twin_exactly(rung, channels, outs, h, w):
    """Each rung: tiles that overhang the image and the channels (130 outputs, 187 pixels: three
    tiles of 64 each way), reductions longer than one staged chunk (600 channels: 19 words)."""
    kernels = rung
    rng = np.random.default_rng(channels * outs + h + w)
    x = rng.standard_normal((channels, h, w)).astype(np.float32)
    wt = rng.standard_normal((outs, channels, 3, 3)).astype(np.float32)
    packed = kernels.pack_pixels(x, np.zeros(channels, np.float32))
    got = kernels.xnor_conv(packed, kernels.filters_for_kernel(binarize.pack_filters(wt)), channels)
    twin = binarize.xnor_conv(binarize.pack_pixels(x), binarize.pack_filters(wt), channels)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(host(got), twin)


@pytest.mark.parametrize("channels,outs,h,w", [(100, 21, 3, 70), (64, 16, 1, 130), (512, 35, 5, 4), (256, 64, 17, 23)])
def test_fused_xnor_layer_equals_the_cpu_kernel(rung, channels, outs, h, w):
    """alpha (scale P + M) + bias, M over in-image taps only: the CPU kernel's values to float32
    rounding (each compiler may fuse the epilogue's multiply-adds differently)."""
    kernels = rung
    rng = np.random.default_rng(channels + outs)
    x = rng.standard_normal((channels, h, w)).astype(np.float32)
    wt = rng.standard_normal((outs, channels, 3, 3)).astype(np.float32)
    scale = rng.random((h, w)).astype(np.float32)
    alpha = rng.random(outs).astype(np.float32)
    tap_sums = rng.standard_normal((outs, 9)).astype(np.float32)
    bias = rng.standard_normal(outs).astype(np.float32)
    wp = binarize.pack_filters(wt)
    got = kernels.xnor_layer(kernels.pack_pixels(x, np.zeros(channels, np.float32)), kernels.filters_for_kernel(wp),
                             channels, scale, alpha, tap_sums, bias)
    cpu = cpu_binary.xnor_layer(cpu_binary.pack_pixels(x, np.zeros(channels, np.float32)),
                                cpu_binary.filters_for_kernel(wp), channels, scale, alpha, tap_sums, bias)
    np.testing.assert_allclose(host(got), cpu, rtol=1e-6, atol=1e-6 * np.abs(cpu).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("channels,h,w", [(1, 1, 1), (3, 7, 300), (64, 13, 6), (130, 5, 9)])
def test_im2col_kernel_equals_its_twin(runtime, channels, h, w, dtype):
    """The float kernels, im2col.cu and im2col_16.cu: exact copies, to the bit (-0.0 and NaN among
    them), and zeros outside the image (300 pixels a row: more than one block of 256)."""
    x = np.random.default_rng(channels + h).standard_normal((channels, h, w)).astype(dtype)
    x.flat[::7], x.flat[3::11] = -0.0, np.nan
    cols = runtime.empty((9 * channels, h * w), dtype)
    twin = layers._im2col(x, layers.Workspace())
    np.testing.assert_array_equal(host(gpu_float.im2col(runtime, x, cols)).view(f"u{x.itemsize}"), twin.view(f"u{x.itemsize}"))


@pytest.mark.parametrize("c,o,h,w", [(1, 1, 1, 1), (3, 2, 2, 3), (5, 4, 7, 5), (64, 3, 9, 12), (17, 33, 8, 8), (2, 3, 13, 14),
                                     (2, 5, 6, 1030)])
def test_winograd_kernels_equal_the_numba_ones_exactly_and_the_numpy_twins_to_rounding(runtime, c, o, h, w):
    """Tiles overhanging the image both ways, and 1030 px a row: 258 tiles, more than one block."""
    rng = np.random.default_rng(c + 10 * h + 100 * w)
    th, tw = (h + 3) // 4, (w + 3) // 4
    x = (rng.standard_normal((c, h, w)) * 10).astype(np.float32)
    v, v_twin = (np.full((36, c, th, tw), np.nan, dtype=np.float32) for _ in range(2))
    got = host(gpu_float.winograd_input(runtime, x, runtime.empty(v.shape, np.float32)))
    cpu_float.winograd_input(x, v)
    layers.winograd_input(x, v_twin)
    np.testing.assert_array_equal(got, v)
    np.testing.assert_allclose(got, v_twin, rtol=1e-6, atol=1e-6 * np.abs(v_twin).max())
    m = (rng.standard_normal((36, o, th, tw)) * 10).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    y, y_twin = (np.full((o, h, w), np.nan, dtype=np.float32) for _ in range(2))
    got = host(gpu_float.winograd_output(runtime, m, bias, runtime.empty(y.shape, np.float32)))
    cpu_float.winograd_output(m, bias, y)
    layers.winograd_output(m, bias, y_twin)
    np.testing.assert_array_equal(got, y)
    np.testing.assert_allclose(got, y_twin, rtol=1e-6, atol=1e-6 * np.abs(y_twin).max())


@pytest.mark.parametrize("shape", [(1, 2, 2), (3, 7, 9), (64, 10, 13), (5, 1, 5), (2, 4, 1030)])
def test_max_pool_kernels_equal_their_twins_exactly(runtime, shape):
    """Windows of tied zeros (a ReLU's output), odd trailing rows and columns, a row of 515 windows."""
    rng = np.random.default_rng(sum(shape))
    x = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0)
    out_shape = (shape[0], shape[1] // 2, shape[2] // 2)
    out, which = runtime.empty(out_shape, np.float32), runtime.empty(out_shape, np.uint8)
    gpu_float.max_pool(runtime, x, out, which)
    out_cpu, which_cpu = np.full(out_shape, np.nan, dtype=np.float32), np.full(out_shape, 9, dtype=np.uint8)
    out_twin, which_twin = out_cpu.copy(), which_cpu.copy()
    cpu_float.max_pool(x, out_cpu, which_cpu)
    layers.max_pool(x, out_twin, which_twin)
    for cpu in (out_cpu, out_twin):
        np.testing.assert_array_equal(host(out), cpu)
    for cpu in (which_cpu, which_twin):
        np.testing.assert_array_equal(host(which), cpu)
    grad = rng.standard_normal(out_shape, dtype=np.float32)
    back = host(gpu_float.max_pool_backward(runtime, grad, which_cpu, runtime.empty(shape, np.float32)))
    back_cpu, back_twin = (np.full(shape, np.nan, dtype=np.float32) for _ in range(2))
    cpu_float.max_pool_backward(grad, which_cpu, back_cpu)
    layers.max_pool_backward(grad, which_cpu, back_twin)
    np.testing.assert_array_equal(back, back_cpu)
    np.testing.assert_array_equal(back, back_twin)


def _assert_same_floats(a, b):
    """Equal to the bit, -0.0 told apart from 0.0 (assert_array_equal does not), NaN where NaN: its bits
    are the hardware's (x86 and CUDA make different ones)."""
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    np.testing.assert_array_equal(a[~nan].view(np.uint32), b[~nan].view(np.uint32))


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 9), (2, 4, 1030)])
def test_relu_backward_kernels_equal_their_twins_exactly(runtime, shape):
    """Positive, zero (a ReLU's) and negative outputs; negative, zero, infinite and NaN gradients: the
    product keeps -0 and turns inf·0 into NaN, as NumPy's does. 1030 pixels a row: more than a block."""
    rng = np.random.default_rng(sum(shape))
    out = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0)
    out.flat[::5] = -1.0  # not a ReLU's output, but the kernels must not take it for positive
    grad = rng.standard_normal(shape, dtype=np.float32)
    grad.flat[1::7], grad.flat[2::11], grad.flat[3::13], grad.flat[4::17] = -0.0, np.inf, np.nan, -np.inf
    cpu, twin = grad.copy(), grad.copy()  # first: the emulator's device arrays are the host's
    got = host(gpu_float.relu_backward(runtime, runtime.array(grad.copy(), np.float32), out))
    cpu_float.relu_backward(cpu, out)
    with np.errstate(invalid="ignore"):
        layers.relu_backward(twin, out)
    _assert_same_floats(got, cpu)
    _assert_same_floats(got, twin)
    assert np.signbit(twin[(out <= 0) & (grad < 0)]).all()  # the -0s are there to be told apart


@pytest.mark.parametrize("o,h,w", [(1, 1, 1), (3, 2, 3), (3, 7, 9), (5, 1, 6), (2, 3, 1030)])
def test_taps_sum_kernels_equal_their_twins_exactly(runtime, o, h, w):
    """Images of one row or column (each tap outside on some side), a row longer than a block."""
    y = np.random.default_rng(o + h + w).standard_normal((3, 3, o, h, w), dtype=np.float32) * 100
    got = host(gpu_float.taps_sum(runtime, y, runtime.empty((o, h, w), np.float32)))
    cpu, twin = (np.full((o, h, w), np.nan, dtype=np.float32) for _ in range(2))
    cpu_float.taps_sum(y, cpu)
    layers.taps_sum(y, twin)
    _assert_same_floats(got, cpu)
    _assert_same_floats(got, twin)


@pytest.mark.parametrize("size,k,lr", [(1, 1, 10.0), (1030, 7, 0.01), (300, 1000, 2.5)])
def test_adam_kernel_equals_its_twin_exactly(runtime, size, k, lr):
    """Adam's step: moments, bias corrections, square root and division as optim.adam_step makes them
    (a first step, a late one; zeros in the gradient and the moments; 1030: more than one block)."""
    rng = np.random.default_rng(size + k)
    x, g, m = (rng.standard_normal(size, dtype=np.float32) * s for s in (100, 1e-3, 1e-3))
    v = rng.random(size, dtype=np.float32) * 1e-6
    g[::5], m[::7], v[::7] = 0, 0, 0
    got = gpu_float.adam_step(runtime, x, g, m, v, k, lr, 0.9, 0.999, 1e-8)
    twin = optim.adam_step(x, g, m, v, k, lr, 0.9, 0.999, 1e-8)
    for a, b in zip(got, twin):
        assert b.dtype == np.float32
        _assert_same_floats(host(a), b)


@pytest.mark.kernel("xnor_gemm_mma")
@pytest.mark.parametrize("m,n,bits", [(1, 1, 1), (16, 8, 256), (130, 70, 64), (200, 129, 600), (257, 65, 2048)])
def test_binary_gemm_equals_its_twin_exactly(runtime, m, n, bits):
    """Blocks that overhang both ways (257 x 65: 3 x 2 blocks of 128 x 64), reductions of one word,
    of an odd number of words (600 bits: 19, padded to 20) and longer than one staged chunk."""
    if not runtime.supports("xnor_gemm_mma"):
        pytest.skip("this CUDA device has no binary tensor cores")
    rng = np.random.default_rng(m + n + bits)
    width = -(-bits // 32) * 32
    a, b = (np.where(np.arange(width) < bits, rng.integers(0, 2, (rows, width)), 0).astype(np.uint8) for rows in (m, n))
    a, b = (np.packbits(v, axis=-1, bitorder="little").view("<u4") for v in (a, b))
    got = BinaryKernels(runtime).xnor_gemm(a, b, bits)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(host(got), binarize.xnor_gemm(a, b, bits))


@pytest.mark.parametrize("rung", list(RUNGS))
def test_an_xnor_layer_on_each_rung_equals_the_cpu_layer(rung, emulated):
    """The whole layer (``layers.XnorConv3x3`` given a rung's kernels, which make its filters) in
    CUDA's spelling, emulated on host arrays, against the layer on the CPU kernels: forward to float32
    rounding, backward (the straight-through kernel) bit for bit."""
    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal((96, 9, 13)), 0).astype(np.float32)
    binary = binarize.untrained(rng.standard_normal((70, 96, 3, 3)).astype(np.float32),
                                rng.standard_normal(70).astype(np.float32))
    emulated_layer, cpu_layer = layers.XnorConv3x3(binary, kernels=BinaryKernels(emulated, rung)), layers.XnorConv3x3(binary)
    got, cpu = emulated_layer.forward(x), cpu_layer.forward(x)
    np.testing.assert_allclose(got, cpu, rtol=1e-6, atol=1e-6 * np.abs(cpu).max())
    grad = rng.standard_normal(cpu.shape).astype(np.float32)
    np.testing.assert_array_equal(emulated_layer.backward(grad), cpu_layer.backward(grad))


def test_a_layer_too_large_for_32_bit_indices_is_refused_before_any_launch(emulated):
    """6000 x 6000 px binary from conv1_2 would index 2.3 G values; memory-free stand-ins (zero strides)."""
    kernels = BinaryKernels(emulated)
    big = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (64, 6000, 6000), (0, 0, 0))
    with pytest.raises(ArtemError, match="too large for the GPU's XNOR kernels"):
        kernels.pack_pixels(big, np.zeros(64, np.float32))
    packed = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint32), (6000, 6000, 2), (0, 0, 0))
    filters = np.zeros((64, 9 * 2), np.uint32)
    with pytest.raises(ArtemError, match="too large"):
        kernels.xnor_layer(packed, filters, 64, np.broadcast_to(np.float32(1), (6000, 6000)), np.ones(64), np.zeros((64, 9)),
                           np.zeros(64))


def test_kernels_take_device_arrays_and_leave_them_on_the_device(kernels):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 6, 7)).astype(np.float32)
    on_device = kernels.runtime.array(x, np.float32)
    packed = kernels.pack_pixels(on_device, np.zeros(40, np.float32))
    assert type(packed) is type(on_device)
    np.testing.assert_array_equal(host(packed), binarize.pack_pixels(x))


def test_opencl_refuses_the_tensor_core_rungs_and_the_ballot_packer():
    assert [r for r, (name, _, _) in RUNGS.items() if name in CUDA_ONLY] == ["mma", "mma_async"]
    with pytest.raises(ValueError, match="the mma rung does not run on this device"):
        BinaryKernels(OpenCLRuntime(), "mma")
    with pytest.raises(ValueError, match="the ballot packer does not run on this device"):
        BinaryKernels(OpenCLRuntime(), packer="ballot")
    assert BinaryKernels(OpenCLRuntime()).packer == "per_pixel"


def test_the_default_rung_is_the_fastest_the_runtime_runs(runtime):
    assert sorted(FASTEST_FIRST) == sorted(RUNGS)
    expected = "mma" if runtime.supports("xnor_conv_mma") else "tiled"
    assert BinaryKernels(runtime).rung == expected


def test_a_kernels_source_has_its_includes_written_in():
    """CuPy caches each compiled kernel under its source text: a header's text must be part of it, or
    an edited header would leave kernels built before it in use."""
    for name in SOURCES:
        source = gpu_binary._source(name)
        assert '#include "' not in source and "KERNEL void" in source
    assert "#define KERNEL" in gpu_binary._source("im2col_16") and "(ELEMENT)0" in gpu_binary._source("im2col_16")
    assert "mma_and_popc" in gpu_binary._source("xnor_gemm_mma")  # prelude.h's, and mma_tile.h's use of it


# kernels whose arithmetic must be their twins' operation for operation: no multiply fused into an add
UNFUSED = ("winograd_input", "winograd_output", "adam_step")


def _check_ptx(name, ptx):
    assert f".entry {name}(" in ptx
    if name in UNFUSED:
        assert "fma." not in ptx, f"{name}: a multiply fused into an add (FMA), which its twin rounds twice"


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", SOURCES)
def test_kernel_compiles_with_nvcc(name, arch, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        _missing("nvcc")
    result = subprocess.run([nvcc, "--ptx", f"-arch={arch}", "-o", str(tmp_path / f"{name}.ptx"), str(KERNELS / f"{name}.cu")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    _check_ptx(name, (tmp_path / f"{name}.ptx").read_text())


@pytest.fixture(scope="module")
def nvrtc():
    """NVRTC, which CuPy compiles the kernels with on a GPU machine (pip nvidia-cuda-nvrtc)."""
    try:
        import nvidia

        found = [path for root in nvidia.__path__ for path in Path(root).glob("**/libnvrtc.so*")]
    except ImportError:
        found = []
    if not found:
        _missing("NVRTC (pip install nvidia-cuda-nvrtc)")
    return ctypes.CDLL(str(sorted(found)[0]))


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", SOURCES)
def test_kernel_compiles_with_nvrtc_as_cupy_compiles_it(nvrtc, name, arch):
    """What nvcc accepts NVRTC may not (no host headers): the kernels as CuPy's RawModule compiles them,
    the source as ``CudaRuntime`` gives it (its includes written in: no include path), for the GPU's own
    architecture (a cubin: ptxas runs too) with the option CuPy appends to every kernel's."""
    program = ctypes.c_void_p()
    source = gpu_binary._source(name).encode()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, name.encode(), 0, None, None) == 0
    options = [f"-arch={arch}".encode(), b"-ftz=true"]
    result = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    ptx = b""
    if result == 0:
        nvrtc.nvrtcGetPTXSize(program, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetPTX(program, ptx)
        assert nvrtc.nvrtcGetCUBINSize(program, ctypes.byref(size)) == 0 and size.value > 0
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    assert result == 0, log.value.decode()
    _check_ptx(name, ptx.value.decode())
