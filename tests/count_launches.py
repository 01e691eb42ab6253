"""How many kernels one evaluation of the objective launches on a GPU, counted on the stand-in for CuPy
(``cupy_on_numpy``), where no GPU is: at 512 px a pass is bound by launching them from Python
(BENCHMARKS.md §6), so the count is what a change to the GPU path can be judged by before a GPU times it.

    python tests/count_launches.py [MODE [BINARY_BACKWARD]]     (fp32 fp32 by default)

Counted: each launch of a kernel of ``kernels/``, each matrix product, and each other operation that
writes device memory (an element-wise operation, a reduction, a copy). Not counted: what CuPy does
without a kernel (views: reshape, transpose, slicing, which is all the objective indexes with; astype
to the same dtype with copy=False). The counts do not depend on the image's size (32 x 48 here).
"""
import collections
import sys
import tempfile
from pathlib import Path

import artem_cli  # noqa: F401  (first: it sets the BLAS threads before NumPy loads)
import cupy_on_numpy
import numpy as np
from cuda_emulator import EmulatedRuntime

from artem_cli import api, gpu_gemm, io, preprocess, weights
from artem_cli.api import Settings

VIEWS = {"reshape", "ravel", "transpose", "_getitem", "view", "swapaxes", "broadcast_to", "as_strided"}
CONVERSIONS = {"astype", "asarray", "ascontiguousarray"}  # a kernel only for another dtype or a strided input
PRODUCTS = {"matmul", "dot", "tensordot", "einsum", "inner"}


def kind(fn, args, kwargs, result):
    """What a GPU launches for the stand-in's operation ``fn``: "kernels of kernels/", "matrix
    products", "other operations", or None (no launch)."""
    name, called = getattr(fn, "__name__", ""), getattr(getattr(fn, "__code__", None), "co_names", ())
    if isinstance(getattr(fn, "__self__", None), np.ufunc):  # an operator: the ufunc's method
        name = fn.__self__.__name__
    if "emulator" in called:  # cupy_on_numpy.RawModule's launch
        return "kernels of kernels/"
    if name in PRODUCTS or "cublas_gemm" in called:
        return "matrix products"
    if name in VIEWS:
        return None
    if name in CONVERSIONS:
        inputs = cupy_on_numpy._arrays(args, kwargs)
        owner = getattr(fn, "__self__", None)  # a.astype(...): the array is the method's
        source = owner if isinstance(owner, np.ndarray) else inputs[0]._a if inputs else None
        copies = name == "astype" and kwargs.get("copy", True)  # astype copies unless told not to
        if source is None or (result.dtype == source.dtype and source.flags.c_contiguous and not copies):
            return None
    return "other operations"


def count(mode="fp32", backward="fp32"):
    """The launches of one evaluation (after a first), by ``kind``; with ``cupy_on_numpy`` installed as
    CuPy (as ``__main__`` does, and the tests' ``cuda`` fixture)."""
    cupy = cupy_on_numpy
    examples = Path(__file__).resolve().parent.parent / "examples"
    content = preprocess.resize(io.read_image(examples / "chelsea.png")[0], (32, 48))
    settings = Settings(size=48, mode=mode, device="cuda", binary_backward=backward)
    net = api.network(settings, weights.load(weights.locate(None), cupy))
    targets = api.Targets(api.style_grams(net, settings, [io.read_image(examples / "ihc.png")[0]]))
    objective = api.build_objective(net, settings, cupy.asarray(content), targets)
    noise = np.random.default_rng(0).standard_normal(content.shape).astype(np.float32)
    x = preprocess.to_vgg(cupy.asarray(content)) + cupy.asarray(noise)
    objective(x)  # the first evaluation makes the buffers
    counts, run = collections.Counter(), cupy_on_numpy._run

    def counting(fn, args=(), kwargs=None, record=True, writes=()):
        result = run(fn, args, kwargs, record, writes)
        if record and (what := kind(fn, args, kwargs or {}, result)):
            counts[what] += 1
        return result

    cupy_on_numpy._run = counting
    try:
        objective(x)
    finally:
        cupy_on_numpy._run = run
    return counts


if __name__ == "__main__":
    cupy_on_numpy.emulator = EmulatedRuntime(Path(tempfile.mkdtemp(prefix="artem-count-")))
    sys.modules["cupy"] = cupy_on_numpy
    gpu_gemm._loaded_cublas = lambda: cupy_on_numpy.cublas
    mode, backward = (sys.argv[1:] + ["fp32", "fp32"])[:2]
    counts = count(mode, backward)
    print(f"{mode}, backward through binary weights in {backward}: {sum(counts.values())} launches an evaluation "
          f"({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})")
