"""artem: paint photos in the style of a painting by neural style transfer (Gatys et al.) on VGG16.

The Python API: ``Settings``, ``stylize`` (arrays) and ``stylize_file`` (files), ``ArtemError``.
"""
import os

# Two thread pools take turns on the cores: OpenBLAS's (the GEMMs) and numba's (the Winograd
# transforms, the binary kernels). By default each spins for about 0.1 s after its work and takes the
# cores from the other: the fp32 pass at 512 px ran 1.18 s with the defaults, 0.84 s with these two.
# Both are read when the libraries load, so they are set before anything here imports NumPy or numba
# (a program that imported NumPy first keeps OpenBLAS's default); a value set by the user wins.
# numba's "workqueue" pool must not be entered from two Python threads at once.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # spin 2^4 cycles, then sleep
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # numba's own pool, no OpenMP spin-wait

from .api import Result, Settings, stylize, stylize_file  # noqa: E402
from .errors import ArtemError  # noqa: E402

__all__ = ["ArtemError", "Result", "Settings", "stylize", "stylize_file"]
