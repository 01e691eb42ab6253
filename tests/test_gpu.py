"""The network on CuPy arrays (an NVIDIA GPU) against the same network on NumPy arrays.

Every stage takes its array module from its input, so the float network, the losses and the
optimizers run on the GPU unchanged. These tests hold that up where a GPU is (`pytest tests/test_gpu.py`
on the device machine) and are skipped where CuPy or a CUDA device is missing, as on CI.

The NumPy side runs the numba kernels of ``cpu_float`` and ``cpu_binary``, which ``test_layers`` and
``test_binary`` hold to their NumPy twins.
"""
import dataclasses

import numpy as np
import pytest

import test_gpu_gemm
import test_gpu_paths
from artem_cli import api, backend, gpu_gemm, io, layers, preprocess, weights
from artem_cli.api import Settings, Targets, build_objective, style_grams, stylize, stylize_file
from artem_cli.errors import ArtemError
from artem_cli.optim import LBFGS, Adam
from artem_cli.vgg import VGG16

cp = pytest.importorskip("cupy")
try:
    _devices = cp.cuda.runtime.getDeviceCount()
except cp.cuda.runtime.CUDARuntimeError:
    _devices = 0
if not _devices:
    pytest.skip("no CUDA device", allow_module_level=True)


def relative_error(gpu, cpu):
    """Largest difference over the largest value (Winograd F(4x4, 3x3) in float32 is within about
    1e-5 of that on each side)."""
    gpu, cpu = cp.asnumpy(gpu).astype(np.float64), np.asarray(cpu, dtype=np.float64)
    return float(np.abs(gpu - cpu).max() / np.abs(cpu).max())


def relative_l2_error(gpu, cpu):
    """For whole-network gradients: a few ReLU and max-pool decisions on values within float32
    rounding of a tie go either way and move a little gradient to a neighbouring pixel (float32
    against float64 on the CPU shows the same), so the norm of the difference is compared."""
    gpu, cpu = cp.asnumpy(gpu).astype(np.float64), np.asarray(cpu, dtype=np.float64)
    return float(np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu))


@pytest.mark.parametrize("in_ch,out_ch,h,w", [(3, 64, 37, 53), (64, 64, 37, 53), (128, 3, 20, 21),
                                              (256, 257, 19, 23), (512, 512, 9, 11), (128, 128, 1, 1)])
def test_convolution_on_gpu_equals_numpy(in_ch, out_ch, h, w):
    rng = np.random.default_rng(in_ch + out_ch + h)
    weight = rng.standard_normal((out_ch, in_ch, 3, 3), dtype=np.float32)
    bias = rng.standard_normal(out_ch, dtype=np.float32)
    x = rng.standard_normal((in_ch, h, w), dtype=np.float32)
    grad = rng.standard_normal((out_ch, h, w), dtype=np.float32)
    cpu, gpu = layers.Conv3x3(weight, bias), layers.Conv3x3(cp.asarray(weight), cp.asarray(bias))
    y = gpu.forward(cp.asarray(x))
    assert isinstance(y, cp.ndarray) and y.shape == (out_ch, h, w)
    assert relative_error(y, cpu.forward(x)) < 1e-4
    assert relative_error(gpu.backward(cp.asarray(grad)), cpu.backward(grad)) < 1e-4


@pytest.fixture(scope="module")
def images():
    from conftest import EXAMPLES

    return io.read_image(EXAMPLES / "chelsea.png")[0], io.read_image(EXAMPLES / "ihc.png")[0]


def _objective_on(xp, mode, images, weights_path, size, xnor_kernels=None, float_conv=None):
    content, style = images
    settings = Settings(size=size, mode=mode)
    net = VGG16(weights.load(weights_path, xp), mode=mode, xnor_kernels=xnor_kernels, float_conv=float_conv)
    content_rgb = xp.asarray(preprocess.resize(content, preprocess.scaled_shape(content.shape, size)))
    return build_objective(net, settings, content_rgb, Targets(style_grams(net, settings, [style]))), preprocess.to_vgg(content_rgb)


def _rung(rung):
    from artem_cli import gpu_binary

    kernels = gpu_binary.cuda_kernels()
    if not kernels.runtime.supports(gpu_binary.RUNGS[rung][0]):
        pytest.skip(f"the {rung} rung does not run on this device")
    return gpu_binary.cuda_kernels(rung)


@pytest.mark.parametrize("mode,rung", [("fp32", None), ("bwn", None), ("xnor", "direct"), ("xnor", "tiled"),
                                       ("xnor", "mma"), ("xnor", "mma_async"), ("random", None)])
def test_loss_and_gradient_on_gpu_equal_numpy(mode, rung, images, weights_path):
    cpu_objective, x = _objective_on(np, mode, images, weights_path, 128)
    gpu_objective, x_gpu = _objective_on(cp, mode, images, weights_path, 128, rung and _rung(rung))
    value, grad = cpu_objective(x)
    value_gpu, grad_gpu = gpu_objective(x_gpu)
    assert isinstance(grad_gpu, cp.ndarray)
    assert value_gpu == pytest.approx(value, rel=1e-4)
    assert relative_l2_error(grad_gpu, grad) < 1e-3


@pytest.mark.parametrize("dtype,tolerance", [(np.float32, 1e-5), (np.float16, 1e-3)])
@pytest.mark.parametrize("name", list(test_gpu_gemm.layouts()))
def test_matrix_products_recorded_in_a_cuda_graph_equal_cupys(name, dtype, tolerance):
    """``backend.matmul`` while a stream is recorded (cuBLAS through ``gpu_gemm``: CuPy refuses it
    there), replayed, against CuPy's matmul, on every operand layout of the objective's products, in
    float32 and in float16 (the backward through binary weights; both sum in float32, the results
    rounded to float16)."""
    a, b = test_gpu_gemm.layouts(cp, dtype)[name]
    expected = cp.matmul(a, b)
    handle, stream = gpu_gemm.Cublas(), cp.cuda.Stream(non_blocking=True)
    pool = cp.cuda.MemoryPool()  # what the recording allocates, as backend.CudaGraph records: kept with the graph
    stream.wait_event(cp.cuda.get_current_stream().record())  # a and b are on the device before the graph reads them
    with stream:
        out = cp.zeros(expected.shape, dtype=dtype)
        with gpu_gemm.products_on(stream, handle), cp.cuda.using_allocator(pool.malloc):
            stream.begin_capture()
            try:
                recorded = backend.matmul(a, b)
                backend.matmul(a, b, out=out)
            finally:
                graph = stream.end_capture()
        graph.launch(stream)
        stream.synchronize()
    for got in (recorded, out):
        assert got.dtype == dtype and relative_l2_error(got, cp.asnumpy(expected)) < tolerance


def test_products_in_tf32_or_float32_whatever_cupy_tf32_says():
    """``gpu_gemm.products_on`` chooses TF32 or float32 for ``backend.matmul``'s products (how
    ``bench.gpu_layers`` times both in one process, where CuPy reads CUPY_TF32 once): TF32 keeps 10
    bits of each operand's mantissa, about 3e-4 of error on a product of random matrices, float32's
    error is below 1e-6."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 512), dtype=np.float32), rng.standard_normal((512, 64), dtype=np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    handle, errors = gpu_gemm.Cublas(), {}
    for tf32 in (False, True):
        with gpu_gemm.products_on(cp.cuda.get_current_stream(), handle, tf32):
            errors[tf32] = relative_l2_error(backend.matmul(cp.asarray(a), cp.asarray(b)), exact)
    assert errors[False] < 1e-6 and 1e-4 < errors[True] < 2e-3  # 3e-4 rounding to nearest, 8e-4 truncating


def test_a_graphs_cublas_handle_goes_to_the_next_graph():
    test_gpu_paths.graphs_share_cublas_handles(cp)


@pytest.mark.parametrize("mode,backward", [("fp32", "fp32"), ("xnor", "fp32"), ("xnor", "fp16")])
def test_an_objective_replayed_as_one_cuda_graph_equals_the_one_run_call_by_call(mode, backward, images, weights_path):
    """``Settings.cuda_graph``: the recorded evaluation, replayed at other points (each replay reads
    the new point), against the same objective evaluated kernel by kernel. The float16 backward
    through binary weights too: its scales stay on the device, its products are recorded in float16."""
    content, style = images
    values = {}
    for graph in (False, True):
        settings = Settings(size=128, mode=mode, device="cuda", cuda_graph=graph, binary_backward=backward)
        net = VGG16(weights.load(weights_path, cp), mode=mode, half_backward=backward == "fp16")
        rgb = cp.asarray(preprocess.resize(content, preprocess.scaled_shape(content.shape, 128)))
        objective = build_objective(net, settings, rgb, Targets(style_grams(net, settings, [style])))
        x = preprocess.to_vgg(rgb)
        points = [x, x + 3, x * 0.9]
        values[graph] = [(value, cp.asnumpy(grad), value.parts) for value, grad in (objective(p) for p in points * 2)]
    # the graph's products are other cuBLAS calls than CuPy's: the last bits may differ, and with them
    # a ReLU or max-pool decision near a tie (as between GPU and CPU: the same tolerances)
    for (value, grad, parts), (value_g, grad_g, parts_g) in zip(values[False], values[True]):
        assert value_g == pytest.approx(value, rel=1e-4)
        assert relative_l2_error(grad_g, grad) < 1e-3
        assert parts_g == pytest.approx(parts, rel=1e-4)
    assert values[True][0][0] != values[True][1][0]  # the replays read their points


@pytest.mark.parametrize("graph", [False, True])
def test_tf32_objective_and_stylization_on_the_gpu(graph, images, weights_path):
    """``Settings.tf32`` (every float convolution one product on the im2col copy, every product in
    TF32), replayed as a CUDA graph or not: the loss near NumPy's float32 loss, the gradient within
    a few percent (TF32 rounds each product's operands to 10 bits: on the stand-in 2e-5 of the loss
    and 6e-3 of the gradient) but not equal to it, and a stylization that lowers the loss."""
    content, style = images
    cpu_objective, x = _objective_on(np, "fp32", images, weights_path, 128)
    value, grad = cpu_objective(x)
    settings = Settings(size=128, device="cuda", tf32=True, cuda_graph=graph)
    net = api.network(settings, weights.load(weights_path, cp))
    rgb = cp.asarray(preprocess.resize(content, preprocess.scaled_shape(content.shape, 128)))
    objective = build_objective(net, settings, rgb, Targets(style_grams(net, settings, [style])))
    for _ in range(2):  # a graph: recorded, then replayed
        value_t, grad_t = objective(preprocess.to_vgg(rgb))
        assert value_t == pytest.approx(value, rel=1e-3)
        assert 1e-3 < relative_l2_error(grad_t, grad) < 5e-2
    result = stylize(content, [style], dataclasses.replace(settings, iterations=20))
    assert result.losses["total"] < result.initial_losses["total"] / 2


def test_a_stylization_with_each_evaluation_one_cuda_graph_lowers_the_loss_as_far_as_one_without(images):
    content, style = images
    plain = stylize(content, [style], Settings(size=96, iterations=20, device="cuda"))
    graphed = stylize(content, [style], Settings(size=96, iterations=20, device="cuda", cuda_graph=True))
    # 20 L-BFGS iterations part ways from differences in the last bits: the first line search grows a
    # tiny step over several trials, each from the last ones' values, and lands elsewhere (on the CPU's
    # stand-in for CuPy, whose recorded products sum in another order: 4.7 % apart after 20, the CPU's
    # run between them; 0.4 % before the Winograd kernels changed the last bits): as test_gpu_paths compares
    assert graphed.losses["total"] == pytest.approx(plain.losses["total"], rel=0.1)
    assert graphed.losses["total"] < graphed.initial_losses["total"] / 2


def test_loss_and_gradient_with_every_float_convolution_as_one_gemm_on_gpu_equal_numpy(images, weights_path):
    """``float_conv="im2col"`` (kernels/im2col.cu and one cuBLAS GEMM a layer) against NumPy's
    default formulations (Winograd)."""
    cpu_objective, x = _objective_on(np, "fp32", images, weights_path, 128)
    gpu_objective, x_gpu = _objective_on(cp, "fp32", images, weights_path, 128, float_conv="im2col")
    value, grad = cpu_objective(x)
    value_gpu, grad_gpu = gpu_objective(x_gpu)
    assert value_gpu == pytest.approx(value, rel=1e-4)
    assert relative_l2_error(grad_gpu, grad) < 1e-3


@pytest.mark.parametrize("in_ch,out_ch,h,w", [(64, 64, 37, 53), (256, 512, 19, 23), (512, 512, 9, 11)])
def test_float16_binary_input_gradient_on_tensor_cores_equals_the_float_one(in_ch, out_ch, h, w):
    """cuBLAS's float16 GEMM (float32 accumulation) against the float64 transposed convolution: the
    same 5e-4 as the NumPy emulation in test_layers."""
    rng = np.random.default_rng(in_ch + h)
    signs = np.where(rng.random((out_ch, in_ch, 3, 3)) < 0.5, -1.0, 1.0).astype(np.float32)
    alpha = rng.random(out_ch).astype(np.float32) * 1e-2 + 1e-3
    grad = rng.standard_normal((out_ch, h, w)).astype(np.float32)
    half = layers.HalfInputGradient(cp.asarray(alpha), cp.asarray(signs), layers.Workspace())(cp.asarray(grad))
    assert isinstance(half, cp.ndarray) and half.dtype == cp.float32
    exact = layers.Conv3x3(alpha[:, None, None, None] * signs.astype(np.float64), np.zeros(out_ch)).backward(grad.astype(np.float64))
    assert relative_l2_error(half, exact) < 5e-4


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_float16_binary_backward_on_gpu_equals_numpy_fp32(mode, images, weights_path):
    """The network of _objective_on (untrained binary layers) with float16 gradients through them."""
    cpu_objective, x = _objective_on(np, mode, images, weights_path, 128)
    content, style = images
    settings = Settings(size=128, mode=mode)
    net = VGG16(weights.load(weights_path, cp), mode=mode, half_backward=True)
    rgb = cp.asarray(preprocess.resize(content, preprocess.scaled_shape(content.shape, 128)))
    gpu_objective = build_objective(net, settings, rgb, Targets(style_grams(net, settings, [style])))
    _, grad = cpu_objective(x)
    _, grad_gpu = gpu_objective(preprocess.to_vgg(rgb))
    assert relative_l2_error(grad_gpu, grad) < 2e-3


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_stylization_on_gpu_lowers_the_loss(optimizer, images, weights_path):
    objective, x0 = _objective_on(cp, "fp32", images, weights_path, 256)
    run = LBFGS(objective.probed, x0.copy()) if optimizer == "lbfgs" else Adam(objective.probed, x0.copy(), lr=2.0)
    for x, value in run.run(30):
        assert isinstance(x, cp.ndarray)
    assert value < 0.5 * objective.initial["total"]


@pytest.mark.parametrize("options,factor", [
    ({}, 0.2),
    ({"mode": "bwn", "init": "random", "optimizer": "adam", "lr": 5.0, "original_colors": True}, 0.5),
    ({"mode": "xnor"}, 0.5),
])
def test_stylize_file_on_the_gpu_lowers_the_loss(options, factor, tmp_path, weights_path):
    from conftest import EXAMPLES

    out = tmp_path / "gpu.png"
    result = stylize_file(EXAMPLES / "chelsea.png", [EXAMPLES / "ihc.png"], out,
                          Settings(size=128, iterations=30, device="cuda", **options), weights_path=weights_path,
                          save_every=10)
    assert out.is_file() and isinstance(result.image, np.ndarray)
    assert sorted(p.name for p in tmp_path.glob("gpu_*.png")) == ["gpu_00010.png", "gpu_00020.png", "gpu_00030.png"]
    assert result.losses["total"] < factor * result.initial_losses["total"]


def test_gpu_out_of_memory_is_one_clear_error(tmp_path, weights_path):
    from conftest import EXAMPLES

    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    pool.set_limit(size=64 * 2**20)  # 64 MiB: the weights alone need more
    try:
        with pytest.raises(ArtemError, match="out of memory on the GPU"):
            stylize_file(EXAMPLES / "chelsea.png", [EXAMPLES / "ihc.png"], tmp_path / "oom.png",
                         Settings(size=256, iterations=5, device="cuda"), weights_path=weights_path)
    finally:
        pool.set_limit(size=0)
    assert not (tmp_path / "oom.png").exists()


def test_benchmark_times_the_pass_on_the_gpu(weights_path):
    import json

    from click.testing import CliRunner

    from artem_cli.cli import main

    from artem_cli.gpu_binary import RUNGS, CudaRuntime

    r = CliRunner().invoke(main, ["benchmark", "--device", "cuda", "--size", "64", "--repeats", "2",
                                  "--modes", "fp32,bwn,xnor", "--json", "-"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["machine"]["gpu"] and report["pass"]["device"] == "cuda"
    runtime = CudaRuntime()
    rungs = {f"xnor/{rung}" for rung, (name, _, _) in RUNGS.items() if runtime.supports(name)}
    names = {"fp32", "fp32/im2col", "bwn"} | rungs
    assert report["pass"].get("graph_errors") is None
    assert set(report["pass"]["seconds"]) == names | {f"{n}+graph" for n in names}  # each also as one CUDA graph
    assert report["pass"]["sgemm_mac_per_s"] > 0  # rates are reported, not asserted (the CPU's stand-in runs this)
    torch = report["pass"]["torch"]
    assert torch is None or (torch["device"] == "cuda" and torch["seconds"][0] > 0)


def test_benchmark_times_every_rung_of_the_xnor_ladder_on_the_gpu(weights_path):
    """Times are reported, not asserted; here: every layer, every rung this device runs, each rung's
    output the direct rung's (to float32 rounding of the epilogue; test_kernels holds P exact), and
    the peaks of the same run."""
    import json

    from click.testing import CliRunner

    from artem_cli.cli import main
    from artem_cli.gpu_binary import RUNGS, CudaRuntime

    r = CliRunner().invoke(main, ["benchmark", "--device", "cuda", "--size", "64", "--repeats", "1", "--layers",
                                  "--json", "-"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)["gpu_layers"]
    runtime = CudaRuntime()
    rungs = {rung for rung, (name, _, _) in RUNGS.items() if runtime.supports(name)}
    assert [row["layer"] for row in report["layers"]][-1] == "conv5_3" and report["gemm_mac_per_s"] > 0
    assert (report["mma_b1_mac_per_s"] or 0) > 0 if "mma" in rungs else report["mma_b1_mac_per_s"] is None
    product = report["binary_gemm"]
    assert product["corner_equals_twin"] and product["seconds"] > 0 if "mma" in rungs else product is None
    assert all(row["fp32_im2col_seconds"] > 0 < row["tf32_im2col_seconds"] for row in report["layers"])
    assert report["tf32_gemm_mac_per_s"] > 0
    transforms = [row["winograd_transforms"] for row in report["layers"][1:]]  # conv1_1 is one im2col GEMM
    assert "winograd_transforms" not in report["layers"][0] and len(transforms) == 12
    assert all(t["equals_cpu"] and t["kernels_seconds"] > 0 < t["twins_seconds"] for t in transforms)
    for row in report["layers"][1:]:
        assert set(row["pack"]) == {"per_pixel", "ballot"} and all(p["equals_per_pixel"] for p in row["pack"].values())
        assert set(row["xnor"]) == rungs
        assert all(r["max_difference_from_direct"] <= 1e-3 and r["seconds"] > 0 for r in row["xnor"].values())


@pytest.mark.parametrize("mode", ["bwn", "xnor"])
def test_distillation_on_gpu_equals_numpy_and_lowers_the_loss(mode, weights_path):
    """`artem distill --device cuda`: the loss and θ-gradient of a batch as on NumPy, and a few steps
    lowering the loss (the examples' images stand in for the training set: the GPU machine has no
    network to fetch it)."""
    from conftest import EXAMPLES

    from artem_cli import distill

    paths = [EXAMPLES / "chelsea.png", EXAMPLES / "coffee.png"]
    options = dict(mode=mode, binary_from="conv4_1", steps=6, lr=0.03, crop=48, batch=2, stylized=0)
    cpu = distill.Trainer(distill.DistillSettings(**options), paths, weights_path)
    gpu = distill.Trainer(distill.DistillSettings(**options, device="cuda"), paths, weights_path)
    value, grad = cpu.loss(cpu.student.theta0, 1)
    value_gpu, grad_gpu = gpu.loss(gpu.student.theta0, 1)
    assert isinstance(grad_gpu, cp.ndarray)
    assert value_gpu == pytest.approx(value, rel=1e-3)
    assert relative_l2_error(grad_gpu, grad) < 1e-2

    def loss_on_fixed_batches(theta):
        return np.mean([gpu.loss(theta, step)[0] for step in (1, 2)])

    before = loss_on_fixed_batches(gpu.student.theta0)
    assert loss_on_fixed_batches(gpu.run()) < 0.95 * before  # on the CPU: 0.81x (bwn), 0.89x (xnor)
