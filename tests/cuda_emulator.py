"""``kernels/*.cu`` in CUDA's dialect on the CPU (``cuda_emulator.h``): a runtime with the interface of
``gpu_binary.CudaRuntime`` whose arrays are NumPy arrays, so that ``BinaryKernels`` runs every kernel,
those of the binary tensor cores included, against its twins where no GPU is."""
import ctypes
import subprocess
import threading
from pathlib import Path

import numpy as np

from artem_cli.gpu_binary import KERNELS

HERE = Path(__file__).resolve().parent
RESULTS = {1: "its threads did not all reach the same barriers (a deadlock on a GPU)", 2: "__trap()",
           3: "a block size that is not a multiple of 32 up to 1024", -1: "the wrong number of arguments"}


class EmulatedRuntime:
    """Each kernel built by g++ into ``folder`` on first use; a launch runs its blocks one after
    another, a block's threads as fibers on the calling thread."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._libraries = {}
        self._building = threading.Lock()

    def array(self, a, dtype):
        return np.ascontiguousarray(a, dtype=dtype)

    def empty(self, shape, dtype):
        """Filled with a byte pattern, not zeros, so that a value a kernel fails to write shows."""
        out = np.empty(shape, dtype)
        out.view(np.uint8)[...] = 0xA5
        return out

    def supports(self, name):
        return True

    def _library(self, name):
        with self._building:
            if name not in self._libraries:
                target = self.folder / f"{name}.so"
                subprocess.run(["g++", "-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Werror", "-Wno-unknown-pragmas",
                                f"-I{KERNELS}", f"-I{HERE}", f'-DKERNEL_SOURCE="{name}.cu"', f"-DENTRY={name}",
                                str(HERE / "cuda_emulator.cpp"), "-o", str(target)], check=True, capture_output=True, text=True)
                library = ctypes.CDLL(str(target))
                library.emulate.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_int]
                self._libraries[name] = library
            return self._libraries[name]

    def launch(self, name, groups, block, args):
        """``groups`` blocks (a tuple, x first) of ``block`` threads each; arrays are passed by address."""
        slots = np.array([a.ctypes.data if isinstance(a, np.ndarray) else int(a) for a in args], np.int64)
        grid_x, grid_y = (*groups, 1)[:2]
        result = self._library(name).emulate(grid_x, grid_y, block, slots.ctypes.data, len(slots))
        if result:
            raise RuntimeError(f"{name}: {RESULTS.get(result, result)}")
