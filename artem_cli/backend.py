"""The array module (numpy or cupy) and host-memory facts.

Every stage takes its array module from the arrays it is given, so the module is chosen once, where
the image is first turned into an array, and the whole hot path stays on that device.
"""
import os

import numpy as np


def array_module(a):
    """``numpy``, or ``cupy`` when ``a`` is a CuPy array (without importing CuPy otherwise)."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_host(a):
    """A NumPy copy of ``a`` (a no-op for NumPy arrays)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def available_memory():
    """Bytes of host memory available now (MemAvailable), or None where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
