"""A pytest plugin (`make gpu-rehearsal`): the GPU tests on a machine without a GPU, before a GPU session.

Loaded with ``-p stand_in_gpu`` (``tests/`` on ``PYTHONPATH``), it installs, as pytest configures the
run (importing the module changes nothing), ``cupy_on_numpy`` as the module ``cupy``, the kernels of
``kernels/`` under the CUDA emulator and the cuBLAS calls of ``gpu_gemm`` on the stand-in's library,
as ``test_gpu_paths``'s fixture does for one test, and hides PyTorch (no CUDA to run it on here).
``tests/test_gpu.py`` then runs as on a GPU,
slowly: what it checks of artem's arithmetic, of the device paths and of CUDA graphs holds or fails
here as there; its rates are the CPU's.
"""
import shutil
import sys
import tempfile
from pathlib import Path

import artem_cli  # noqa: F401  (first, as everywhere: it sets the BLAS threads before NumPy loads)
import cupy_on_numpy
from artem_cli import gpu_gemm
from cuda_emulator import EmulatedRuntime

# what only a GPU runs in minutes: the per-layer ladder times a 16384^3 binary product and the tensor
# cores' peak, hours under the emulator
NEEDS_A_GPU = ["test_benchmark_times_every_rung_of_the_xnor_ladder_on_the_gpu"]


def pytest_configure(config):
    """Before the tests are collected (test_gpu.py imports CuPy as it is collected)."""
    cupy_on_numpy.emulator = EmulatedRuntime(Path(tempfile.mkdtemp(prefix="artem-emulated-")))
    sys.modules["cupy"] = cupy_on_numpy
    sys.modules["torch"] = None  # a PyTorch here (CI's CPU build) has no CUDA to be the baseline on: as absent
    gpu_gemm._loaded_cublas = lambda: cupy_on_numpy.cublas


def pytest_unconfigure(config):
    """The emulator's kernels, built for this run, go with it."""
    if cupy_on_numpy.emulator is not None:  # None where an earlier plugin's configuration failed
        shutil.rmtree(cupy_on_numpy.emulator.folder, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Leave out NEEDS_A_GPU, and say so in the summary (pytest's count of deselected tests)."""
    left_out = [item for item in items if item.originalname in NEEDS_A_GPU]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]
