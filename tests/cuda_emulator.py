"""``kernels/*.cu`` in CUDA's dialect on the CPU (``cuda_emulator.h``): a runtime with the interface of
``gpu_binary.CudaRuntime`` whose arrays are NumPy arrays, so that ``BinaryKernels`` and ``gpu_float``
run every kernel, those of the binary tensor cores included, against its twins where no GPU is. A
kernel whose threads never wait for each other runs them as plain calls (``_independent_threads``),
the others as fibers."""
import ctypes
import re
import subprocess
import threading
from pathlib import Path

import numpy as np

from artem_cli.gpu_binary import KERNELS

HERE = Path(__file__).resolve().parent
RESULTS = {1: "its threads did not all reach the same barriers (a deadlock on a GPU)", 2: "__trap()",
           3: "a block size that is not a multiple of 32 up to 1024", 4: "an asynchronous copy not aligned to its size",
           -1: "the wrong number of arguments"}


# what makes a kernel's threads wait for each other, or share memory (cuda_emulator.h runs them as fibers)
COOPERATIVE = ("BARRIER", "__syncthreads", "LOCAL", "__shared__", "mma_and_popc", "__ballot_sync", "__shfl_xor_sync",
               "copy_async", "__trap")


def _independent_threads(name):
    """Whether ``kernels/NAME.cu`` (with the headers it includes, but the prelude) has none of
    ``COOPERATIVE``: its threads then run as plain calls (``ARTEM_INDEPENDENT_THREADS``; one that does
    not would fail to compile there)."""
    source = (KERNELS / f"{name}.cu").read_text(encoding="utf-8")
    headers = re.findall(r'#include "([^"]+)"', source)
    texts = [source, *((KERNELS / h).read_text(encoding="utf-8") for h in headers if h != "prelude.h")]
    return not any(marker in text for text in texts for marker in COOPERATIVE)


class EmulatedRuntime:
    """Each kernel built by g++ into ``folder`` on first use; a launch runs its blocks one after
    another, a block's threads as fibers on the calling thread (as plain calls, one after another,
    where they never wait for each other)."""

    xp = np

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
                independent = ["-DARTEM_INDEPENDENT_THREADS"] if _independent_threads(name) else []
                subprocess.run(["g++", *independent, "-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Werror", "-Wno-unknown-pragmas", "-ffp-contract=off",
                                f"-I{KERNELS}", f"-I{HERE}", f'-DKERNEL_SOURCE="{name}.cu"', f"-DENTRY={name}",
                                str(HERE / "cuda_emulator.cpp"), "-o", str(target)], check=True, capture_output=True, text=True)
                library = ctypes.CDLL(str(target))
                library.emulate.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
                self._libraries[name] = library
            return self._libraries[name]

    def launch(self, name, groups, block, args):
        """``groups`` blocks (a tuple, x first) of ``block`` threads each; arrays are passed by address.
        The launch runs twice from the same arrays: its asynchronous copies landing as early as a GPU
        may land them and its first warp running ahead, then the copies landing as late as they may
        and the last warp ahead (a kernel of independent threads: first to last, then last to first);
        results that differ are a race, and an error here."""
        library = self._library(name)
        slots = np.array([a.ctypes.data if isinstance(a, np.ndarray) else int(a.view(np.uint32)) if isinstance(a, np.float32)
                          else int(a) for a in args], np.int64)
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        grid_x, grid_y = (*groups, 1)[:2]
        before = [a.copy() for a in arrays]
        results = []
        for early in (1, 0):
            for a, saved in zip(arrays, before):
                a[...] = saved
            result = library.emulate(grid_x, grid_y, block, slots.ctypes.data, len(slots), early)
            if result:
                raise RuntimeError(f"{name}: {RESULTS.get(result, result)}")
            results.append([a.tobytes() for a in arrays])
        if results[0] != results[1]:
            raise RuntimeError(f"{name}: a race: its results depend on the order of its threads or on when its copies land")
