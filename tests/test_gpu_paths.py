"""artem's GPU code paths where no GPU is: CuPy's arrays as those paths meet them, on NumPy
(``cupy_on_numpy``), the kernels of ``kernels/`` under the CUDA emulator.

Not a GPU's numbers (``test_gpu.py`` holds those on a GPU): what is checked here is what CuPy would
refuse (NumPy arrays mixed with device arrays, a device array handed to NumPy), what a 0-d device
array breaks where a float is expected, and how often the host waits for the device: an evaluation
of the objective reads from it once, an L-BFGS iteration once more; what a CUDA graph may not do
while it records, and what its replays compute; running out of device memory.
"""
import collections
import dataclasses
import gc
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import count_launches
import cupy_on_numpy
from artem_cli import api, backend, gpu_binary, gpu_float, gpu_gemm, io, preprocess, vgg, weights
from artem_cli.api import Settings
from artem_cli.optim import LBFGS, Adam, plain
from conftest import EXAMPLES, REPO
from cuda_emulator import EmulatedRuntime


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    return EmulatedRuntime(tmp_path_factory.mktemp("emulated"))


@pytest.fixture
def cuda(monkeypatch, emulator):
    """``cupy_on_numpy`` as CuPy, for artem's imports of ``cupy`` during the test."""
    monkeypatch.setattr(cupy_on_numpy, "emulator", emulator)
    monkeypatch.setitem(sys.modules, "cupy", cupy_on_numpy)
    monkeypatch.setattr(gpu_gemm, "_loaded_cublas", lambda: cupy_on_numpy.cublas)
    gpu_binary._runtime.cache_clear()  # the process's CudaRuntime, made with the CuPy of its time
    yield cupy_on_numpy
    gpu_binary._runtime.cache_clear()


def _objective(xp, mode, weights_path, backward="fp32", shape=(32, 48), graph=False, tf32=False):
    content = preprocess.resize(io.read_image(EXAMPLES / "chelsea.png")[0], shape)
    style = io.read_image(EXAMPLES / "ihc.png")[0]
    settings = Settings(size=max(shape), mode=mode, device="cpu" if xp is np else "cuda", binary_backward=backward,
                        cuda_graph=graph, tf32=tf32)
    net = api.network(settings, weights.load(weights_path, xp))
    objective = api.build_objective(net, settings, xp.asarray(content), api.Targets(api.style_grams(net, settings, [style])))
    noise = np.random.default_rng(0).standard_normal(content.shape).astype(np.float32) * 10
    return objective, preprocess.to_vgg(xp.asarray(content)) + xp.asarray(noise)


@pytest.mark.parametrize("mode,backward", [("fp32", "fp32"), ("bwn", "fp32"), ("bwn", "fp16"), ("xnor", "fp32"),
                                           ("xnor", "fp16")])
def test_the_objective_on_the_gpu_path_equals_numpys_and_reads_the_device_once(mode, backward, cuda, weights_path):
    """The value and gradient as on NumPy (the XNOR layers on the mma rung, emulated; the backward
    through binary weights in float16 scaled where the gradient is), the gradient left on the
    device, and one read for the value, its terms and the optimizer's probes."""
    cpu_objective, x = _objective(np, mode, weights_path, backward)
    value, grad = cpu_objective(x)
    objective, x = _objective(cuda, mode, weights_path, backward)
    cuda.reads = 0
    value_gpu, grad_gpu, (l1,) = objective.probed(x, lambda g: [abs(g).sum()])
    assert cuda.reads == 1 and isinstance(grad_gpu, cuda.ndarray) and isinstance(value_gpu, float)
    assert value_gpu == pytest.approx(value, rel=1e-5) and l1 == pytest.approx(float(np.abs(grad).sum()), rel=1e-4)
    grad_gpu = grad_gpu.get()
    assert np.linalg.norm(grad_gpu - grad) < 1e-4 * np.linalg.norm(grad)


def test_every_float_kernel_of_an_evaluation_is_one_launch_of_kernels(cuda, weights_path, monkeypatch):
    """On CuPy the fp32 network's own steps run as the CUDA kernels of ``gpu_float``, one launch each,
    not as their NumPy twins: to relu5_1, 10 Winograd convolutions each way (conv1_2 to conv5_1;
    conv1_1 is one im2col GEMM forward and taps backward: one sum of the taps), 4 max poolings each
    way, 11 ReLUs backward."""
    objective, x = _objective(cuda, "fp32", weights_path)
    objective(x)  # the first evaluation sizes the buffers
    launched = collections.Counter()
    launch = cuda.emulator.launch
    monkeypatch.setattr(cuda.emulator, "launch", lambda name, *args: (launched.update([name]), launch(name, *args))[1])
    objective(x)
    assert launched == {"winograd_input": 20, "winograd_output": 20, "max_pool": 4, "max_pool_backward": 4, "im2col": 1,
                        "taps_sum": 1, "relu_backward": 11}
    counts = count_launches.count("fp32")  # what BENCHMARKS.md §6 reports: those 61 among all the launches
    assert counts["kernels of kernels/"] == 61 and counts["matrix products"] == 32 and counts["other operations"] > 0


def test_lbfgs_and_adam_on_the_gpu_path_wait_for_the_device_once_per_evaluation_and_once_per_iteration(cuda,
                                                                                                        weights_path):
    objective, x0 = _objective(cuda, "fp32", weights_path)
    cuda.reads = 0
    lbfgs = LBFGS(objective.probed, x0, stall_steps=api.STALL_STEPS)
    losses = [loss for _, loss in lbfgs.run(8)]
    assert len(losses) == 8 and cuda.reads == lbfgs.evaluations + len(losses) - 1
    assert losses[-1].parts["style"] < 0.5 * objective.initial["style"]
    cuda.reads = 0
    adam = Adam(objective.probed, x0, lr=2.0)
    assert sum(1 for _ in adam.run(5)) == 5 and cuda.reads == 5
    cuda.reads = 0  # as a stylization runs it: the image reached evaluated too, x0 first
    adam = Adam(objective.probed, x0, lr=2.0, after_step=True)
    assert sum(1 for _ in adam.run(5)) == 5 and cuda.reads == adam.evaluations == 6


def test_a_cuda_kernel_is_chosen_for_cupy_arrays_of_the_dtypes_it_takes(cuda):
    """``gpu_float.for_arrays``: the kernel for CuPy's arrays of its dtypes (im2col float32 and float16,
    the others float32), None elsewhere (the callers then run the twins)."""
    assert gpu_float.for_arrays(cuda, "im2col", np.float16) and gpu_float.for_arrays(cuda, "adam_step", np.float32)
    assert gpu_float.for_arrays(cuda, "relu_backward", np.float16) is None
    assert gpu_float.for_arrays(cuda, "adam_step", np.float64) is None
    assert gpu_float.for_arrays(np, "im2col", np.float32) is None


def test_each_adam_step_on_the_gpu_path_is_one_launch_and_the_cpus_step_to_the_bit(cuda, monkeypatch):
    """On CuPy's float32 each step of Adam is kernels/adam_step.cu (where CuPy ran fourteen operations),
    and the iterates equal NumPy's to the last bit, first steps and later ones."""
    x0 = np.random.default_rng(5).standard_normal((3, 8, 9), dtype=np.float32) * 50
    fun = plain(lambda x: (0.0, (x - 3) * x * 0.01))  # float32 on either device
    launched = collections.Counter()
    launch = cuda.emulator.launch
    monkeypatch.setattr(cuda.emulator, "launch", lambda name, *args: (launched.update([name]), launch(name, *args))[1])
    on_gpu = [x.get() for x, _ in Adam(fun, cuda.asarray(x0), lr=2.0).run(30)]
    assert launched == {"adam_step": 30}
    on_cpu = [x for x, _ in Adam(fun, x0, lr=2.0).run(30)]
    assert on_cpu[-1].dtype == np.float32 and not np.array_equal(on_cpu[-1], on_cpu[-2])
    for gpu, cpu in zip(on_gpu, on_cpu):
        np.testing.assert_array_equal(gpu.view(np.uint32), cpu.view(np.uint32))


@pytest.mark.parametrize("mode,backward", [("fp32", "fp32"), ("xnor", "fp32"), ("bwn", "fp16")])
def test_an_objective_replayed_as_one_cuda_graph_equals_the_one_run_call_by_call(mode, backward, cuda, weights_path):
    """``Settings.cuda_graph``: the evaluation recorded once (nothing read from the device or copied
    to it meanwhile, no cuBLAS call of CuPy's: the stand-in refuses each), then replayed at other
    points, each replay computing from its own point what the objective computes call by call (the
    XNOR layers on the mma rung; the float16 backward through binary weights, its scales on the
    device); one read an evaluation."""
    objective, x = _objective(cuda, mode, weights_path, backward)
    graphed, _ = _objective(cuda, mode, weights_path, backward, graph=True)
    for point in (x, x + 3, x * 0.9):  # recorded at the first, replayed at each
        value, grad, (l1,) = objective.probed(point, lambda g: [abs(g).sum()])
        cuda.reads = 0
        value_g, grad_g, (l1_g,) = graphed.probed(point, lambda g: [abs(g).sum()])
        assert cuda.reads == 1
        # the recorded products are summed in another order (the stand-in's cuBLAS) than the others, so
        # a ReLU or max-pool decision near a tie may go the other way (seen: 8e-4 of the gradient at x + 3);
        # the gradients at these points differ from one another by 9 % (x, x + 3) to 64 %
        assert value_g == pytest.approx(value, rel=1e-5) and l1_g == pytest.approx(l1, rel=1e-3)
        assert value_g.parts == pytest.approx(value.parts, rel=1e-5)
        grad, grad_g = grad.get(), grad_g.get()
        assert np.linalg.norm(grad_g - grad) < 1e-2 * np.linalg.norm(grad)
    assert graphed._graph.graph is not None


@pytest.mark.parametrize("graph", [False, True])
def test_tf32_makes_every_float_convolution_one_product_and_every_product_tf32(graph, cuda, weights_path, monkeypatch):
    """``Settings.tf32``, replayed as a CUDA graph or not: every float convolution one product on the
    im2col copy, every product of an evaluation in TF32 (the stand-in rounds their operands as
    cuBLAS's TF32 does), one read an evaluation. A product of TF32 operands is off by about 3e-4
    (test_gpu): here 2e-5 of the loss and 6e-3 of the image gradient, which float32's products
    (1e-4 through Winograd, the default) do not reach."""
    value, grad = _objective(np, "fp32", weights_path)[0](_objective(np, "fp32", weights_path)[1])
    objective, x = _objective(cuda, "fp32", weights_path, graph=graph, tf32=True)
    assert {objective.net.layer(name).formulation for name in vgg.CONV_NAMES} == {"im2col"}
    computes, gemm = [], cuda.cublas.cublasGemmStridedBatchedEx

    def recorded(*args):  # every product of an evaluation reaches cuBLAS through artem's handle, in TF32
        computes.append(args[-2])
        return gemm(*args)

    monkeypatch.setattr(cuda.cublas, "cublasGemmStridedBatchedEx", recorded)
    monkeypatch.setattr(cuda, "matmul", lambda *args, **kwargs: pytest.fail("a product of CuPy's own, not in TF32"))
    for _ in range(2):  # a graph: recorded, then replayed
        cuda.reads = 0
        value_t, grad_t = objective(x)
        assert cuda.reads == 1
        assert value_t == pytest.approx(value, rel=1e-3)
        assert 1e-3 < np.linalg.norm(grad_t.get() - grad) / np.linalg.norm(grad) < 5e-2
    assert set(computes) == {gpu_gemm.COMPUTE_32F_FAST_TF32} and len(computes) >= 32


def test_a_route_of_products_holds_for_its_own_thread_alone(cuda):
    """``gpu_gemm.products_on`` on the null stream, every thread's: thread A's route (float32),
    then B's (TF32), then A's ends while B's holds. Each thread's products take its own route
    throughout, and B's route ends whole (an overwritten and then deleted route would have sent A's
    products to TF32 and B's back to CuPy's float32, and failed B's end)."""
    import threading

    rng = np.random.default_rng(0)
    a, b = (cuda.asarray(rng.standard_normal(shape, dtype=np.float32)) for shape in ((64, 512), (512, 64)))
    exact = a.get().astype(np.float64) @ b.get().astype(np.float64)
    errors, steps = {}, [threading.Event() for _ in range(3)]

    def error():
        return np.linalg.norm(backend.matmul(a, b).get() - exact) / np.linalg.norm(exact)

    def thread_a():
        with gpu_gemm.products_on(cuda.cuda.get_current_stream(), gpu_gemm.Cublas(), tf32=False):
            steps[0].set()
            steps[1].wait()
            errors["a, both routes held"] = error()
        errors["a, after its route"] = error()
        steps[2].set()

    def thread_b():
        steps[0].wait()
        with gpu_gemm.products_on(cuda.cuda.get_current_stream(), gpu_gemm.Cublas(), tf32=True):
            steps[1].set()
            steps[2].wait()
            errors["b, after a's route ended"] = error()

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors["a, both routes held"] < 1e-6 and errors["a, after its route"] < 1e-6
    assert 1e-4 < errors["b, after a's route ended"] < 2e-3 and not gpu_gemm._routes


def test_a_stylization_with_each_evaluation_one_cuda_graph(cuda, weights_path):
    """Each evaluation a replay, and what the run held on the device freed as it ends (not whenever
    Python's collector runs: an objective and its graph of its own method must not make a cycle)."""
    content, style = (io.read_image(EXAMPLES / name)[0] for name in ("chelsea.png", "ihc.png"))
    settings = Settings(size=48, iterations=6, device="cuda")
    plain = api.stylize(content, [style], settings)
    pool = cuda.get_default_memory_pool()
    gc.collect()
    gc.disable()
    try:
        used, launches = pool.used_bytes(), cuda.launches
        graphed = api.stylize(content, [style], dataclasses.replace(settings, cuda_graph=True))
        assert cuda.launches - launches == graphed.evaluations and pool.used_bytes() == used
    finally:
        gc.enable()
    # the runs part in the last bits at the first products (above), then as L-BFGS runs do: its first line
    # search grows a tiny step from the last trials' values, which these bits steer (test_gpu: 4.7 %)
    assert graphed.losses["total"] == pytest.approx(plain.losses["total"], rel=0.1)
    assert graphed.losses["total"] < graphed.initial_losses["total"] / 2


def graphs_share_cublas_handles(cp):
    """A batch of thousands of frames with --cuda-graph records a graph per frame: each graph's cuBLAS
    handle must serve the next one, not be kept to the end of the process (nor destroyed, which
    would wait for the whole device). On ``cp``: CuPy (``test_gpu.py``) or its stand-in."""
    from artem_cli import backend

    x = cp.arange(64, dtype=np.float32).reshape(8, 8)
    graph = backend.CudaGraph(lambda x: (backend.matmul(x, x.T),))
    graph(x)
    handle = graph.cublas.handle.value
    del graph
    gc.collect()
    gc.disable()  # no other graph's handle comes back while the next graph takes one
    try:
        spare = [h.value for h in gpu_gemm._spare_handles]  # with those of any other graphs gone meanwhile
        assert handle in spare
        again = backend.CudaGraph(lambda x: (backend.matmul(x, x.T),))
        (product,) = again(x)
        assert again.cublas.handle.value in spare and len(gpu_gemm._spare_handles) == len(spare) - 1
    finally:
        gc.enable()
    expected = x.get().astype(np.float64) @ x.get().T
    assert np.linalg.norm(product.get() - expected) < 1e-6 * np.linalg.norm(expected)


def test_a_graphs_cublas_handle_goes_to_the_next_graph(cuda):
    graphs_share_cublas_handles(cuda)


def test_benchmarks_comparison_of_the_winograd_kernels_with_their_twins_on_the_gpu_path(cuda):
    """What `benchmark --device cuda --layers` reports of each Winograd layer's transforms, run where
    it otherwise runs only on a GPU (test_gpu's benchmark test is too slow for the stand-in): both
    ways timed, the kernels' results the CPU's."""
    from artem_cli import bench
    from artem_cli.gpu_binary import CudaRuntime

    rng = np.random.default_rng(3)
    x, bias = (cuda.asarray(rng.standard_normal(shape, dtype=np.float32)) for shape in ((5, 9, 14), (3,)))
    report = bench.winograd_transforms(CudaRuntime(), x, bias, repeats=1)
    assert report["equals_cpu"] and report["kernels_seconds"] > 0 < report["twins_seconds"]


def test_the_per_layer_benchmark_on_the_gpu_path(cuda, monkeypatch, weights_path):
    """`benchmark --device cuda --layers` (``bench.gpu_layers``) where it otherwise runs only on a GPU,
    its peaks on small products (the 16384^3 binary product and the mma peak take hours under the
    emulator): every layer in every formulation and rung, the im2col GEMM in TF32 beside float32 in
    one process, the rungs' results the direct rung's, and the Markdown of it."""
    from artem_cli import bench

    small = bench.sgemm_rate
    monkeypatch.setattr(bench, "sgemm_rate", lambda xp, n=4096, repeats=5: small(xp, 64, 1))
    monkeypatch.setattr(bench, "mma_peak_rate", lambda runtime: 1e15)
    monkeypatch.setattr(bench, "binary_gemm", lambda kernels: None)
    report = bench.gpu_layers((16, 24), repeats=1, weights_path=weights_path)
    rows = report["layers"]
    assert [row["layer"] for row in rows] == [n for n in bench.LAYER_NAMES if n.startswith("conv")]
    assert report["gemm_mac_per_s"] > 0 < report["tf32_gemm_mac_per_s"]
    assert all(row[f"{kind}_seconds"] > 0 for row in rows for kind in ("fp32", "fp32_im2col", "tf32_im2col"))
    assert all(r["max_difference_from_direct"] <= 1e-3 for row in rows[1:] for r in row["xnor"].values())
    assert set(rows[1]["xnor"]) == set(gpu_binary.RUNGS) and all(t["equals_cpu"] for t in
                                                                  (row["winograd_transforms"] for row in rows[1:]))
    assert "im2col in TF32" in bench.gpu_layers_markdown(report)


def test_stylize_and_distill_commands_on_the_gpu_path(cuda, tmp_path, weights_path):
    """The commands whose results come back from the device: a stylized image saved, and a
    distillation's loss, a float however it was summed on the device, in its checkpoint."""
    from artem_cli import distill
    from artem_cli.cli import main

    out = tmp_path / "gpu.png"
    r = CliRunner().invoke(main, ["stylize", str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "ihc.png"), "-o", str(out),
                                  "--size", "48", "--iterations", "4", "--device", "cuda", "--json"])
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (48, 32)
    options = dict(mode="bwn", binary_from="conv4_1", steps=2, lr=0.03, crop=32, batch=1, stylized=0, device="cuda")
    trainer = distill.Trainer(distill.DistillSettings(**options), [EXAMPLES / "chelsea.png"], weights_path)
    trainer.run(checkpoint=tmp_path / "run.npz", checkpoint_every=1)
    assert [step for step, _ in trainer.history] == [1, 2] and all(isinstance(v, float) for _, v in trainer.history)
    assert distill.Trainer(distill.DistillSettings(**options), [EXAMPLES / "chelsea.png"],
                           weights_path).load_checkpoint(tmp_path / "run.npz")[1][2] == 2


def test_out_of_memory_on_the_gpu_path_is_one_clear_error(cuda, tmp_path, weights_path):
    """Out of device memory while the network loads (64 MiB: the weights alone need more), and in a
    run (a megabyte beyond what the network and the style's targets hold): one ArtemError, no output."""
    pool = cuda.get_default_memory_pool()
    settings = Settings(size=96, iterations=2, device="cuda")
    pool.set_limit(size=64 * 2**20)
    try:
        with pytest.raises(api.ArtemError, match="^out of memory on the GPU while loading the network$"):
            api.stylize_file(EXAMPLES / "chelsea.png", [EXAMPLES / "ihc.png"], tmp_path / "oom.png",
                             Settings(size=48, iterations=2, device="cuda"), weights_path=weights_path)
        pool.set_limit(size=0)
        stylizer = api.Stylizer(settings, weights_path=weights_path)
        targets = stylizer.targets([io.read_image(EXAMPLES / "ihc.png")[0]])
        gc.collect()  # what earlier tests left is not what this run may use
        pool.set_limit(size=pool.used_bytes() + 2**20)
        with pytest.raises(api.ArtemError, match="^out of memory on the GPU at 96x64; use a smaller --size$"):
            stylizer.stylize(io.read_image(EXAMPLES / "chelsea.png")[0], targets)
    finally:
        pool.set_limit(size=0)
    assert not (tmp_path / "oom.png").exists()


def test_the_gpu_rehearsal_runs_the_gpu_tests_on_the_stand_in_but_the_one_it_names():
    """`make gpu-rehearsal` (tests/stand_in_gpu.py as a pytest plugin): tests/test_gpu.py is collected,
    not skipped for want of a device, all but NEEDS_A_GPU (pytest's own count); running them all takes
    half an hour, so CI only collects them."""
    import stand_in_gpu

    collected = subprocess.run([sys.executable, "-m", "pytest", "-p", "stand_in_gpu", "-p", "no:cacheprovider",
                                "--collect-only", "-q", "tests/test_gpu.py"], cwd=REPO, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    names = [line for line in collected.stdout.splitlines() if line.startswith("tests/test_gpu.py::")]
    assert collected.returncode == 0 and len(names) > 50, collected.stdout + collected.stderr
    left_out = len(stand_in_gpu.NEEDS_A_GPU)
    assert f"{len(names)}/{len(names) + left_out} tests collected ({left_out} deselected)" in collected.stdout
    assert not any(name in line for name in stand_in_gpu.NEEDS_A_GPU for line in names)
