"""CuPy's arrays as artem's GPU code paths meet them, on NumPy: a stand-in ``cupy`` module, so that
those paths run on a machine without a GPU.

Not a GPU, and not a timing: what it holds the code to is how it treats device arrays, as CuPy does.
Reductions and single elements are 0-d arrays, not Python numbers; a NumPy array is refused as an
operand of a device array and NumPy refuses to turn a device array into one of its own (as CuPy
does: each would be a silent transfer); every read from the device (``get``, ``asnumpy``,
``float``, ``int``, ``bool``, ``item``, ``tolist``) is counted in ``reads``, as on a GPU each is a wait
for it. The default memory pool counts the device arrays' bytes and refuses
those beyond its limit (``set_limit``). Kernels of ``kernels/`` run under the CUDA emulator
(``cuda_emulator``), on a device of compute capability 9.0. CUDA graphs are not emulated: beginning a capture raises.
"""
import contextlib
import types
import weakref

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

reads = 0  # reads from the device so far


def _read():
    global reads
    reads += 1


def _operand(a):
    """A NumPy value for NumPy to compute with: a device array's own, a scalar as it is; a NumPy
    array is refused, as CuPy refuses it."""
    if isinstance(a, ndarray):
        return a._a
    if isinstance(a, np.ndarray):
        raise TypeError(f"Unsupported type {type(a)} (a NumPy array among CuPy's operands)")
    if isinstance(a, (list, tuple)):
        return type(a)(_operand(v) for v in a)
    return a


def _wrap(result):
    if isinstance(result, np.ndarray):
        return ndarray(result)
    if isinstance(result, np.generic):
        return ndarray(np.asarray(result))  # CuPy gives 0-d arrays where NumPy gives scalars
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, list):
        return [_wrap(r) for r in result]
    return result


class _Memory:
    def __init__(self, a):
        self.ptr = a.ctypes.data


class ndarray(NDArrayOperatorsMixin):
    """A device array: a NumPy array inside, reached only through CuPy's interface."""

    def __init__(self, a):
        _pool.made(a)
        self._a = a

    # reads from the device, each counted
    def get(self, stream=None):
        _read()
        return self._a.copy()

    def __float__(self):
        _read()
        return float(self._a)

    def __int__(self):
        _read()
        return int(self._a)

    def __bool__(self):
        _read()
        return bool(self._a)

    def item(self):
        _read()
        return self._a.item()

    def tolist(self):
        _read()
        return self._a.tolist()

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    # computing on the device
    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if out is not None:
            kwargs["out"] = tuple(_operand(o) for o in out)
        result = getattr(ufunc, method)(*(_operand(i) for i in inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_operand(list(args)), **{k: _operand(v) for k, v in kwargs.items()}))

    def __getattr__(self, name):  # shape, dtype, reshape, sum, astype ... of the array inside
        value = getattr(self._a, name)
        if callable(value):
            return lambda *args, **kwargs: _wrap(value(*_operand(list(args)), **{k: _operand(v) for k, v in kwargs.items()}))
        return _wrap(value) if isinstance(value, np.ndarray) else value

    @property
    def data(self):
        return _Memory(self._a)

    def __getitem__(self, index):
        return _wrap(self._a[_operand(index) if isinstance(index, (ndarray, tuple, list)) else index])

    def __setitem__(self, index, value):  # from a NumPy array too refused, as CuPy refuses it
        self._a[_operand(index) if isinstance(index, (ndarray, tuple, list)) else index] = _operand(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        return f"cupy_on_numpy.ndarray({self._a!r})"


ndarray.__module__ = "cupy_on_numpy"  # backend.array_module tells CuPy's arrays by their module


def _host(a, dtype=None):
    """What may be copied to the device: a NumPy array, a scalar, a list (a device array as it is)."""
    return a._a if isinstance(a, ndarray) else np.asarray(a, dtype=dtype)


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return ndarray(np.asarray(a._a, dtype=dtype, order=order))
    return ndarray(np.array(a, dtype=dtype, order=order or "K"))


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    return ndarray(np.array(_host(a), dtype=dtype, copy=copy, order=order, ndmin=ndmin))


def ascontiguousarray(a, dtype=None):
    return ndarray(np.ascontiguousarray(_host(a), dtype=dtype))


def asnumpy(a, stream=None):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


class _Synchronous:
    """What a stream and a device do here: nothing is queued, so there is nothing to wait for."""

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Stream(_Synchronous):
    def __init__(self, non_blocking=False):
        self.ptr = id(self)

    def is_capturing(self):
        return False

    def begin_capture(self, *args):
        raise NotImplementedError("CUDA graphs are not emulated on NumPy")

    def record(self, event=None):
        return object()

    def wait_event(self, event):
        pass


_current = _Stream()


class _Device(_Synchronous):
    compute_capability = "90"
    attributes = {"MultiProcessorCount": 1, "ClockRate": 1_000_000, "MemoryClockRate": 1_000_000}

    def __init__(self, device=0):
        self.id = device


class OutOfMemoryError(MemoryError):
    """CuPy's ``cuda.memory.OutOfMemoryError``, a MemoryError too."""


class _Pool:
    """CuPy's default memory pool: the bytes of the device arrays alive, each counted from when it is
    made until NumPy frees it, and the limit ``set_limit`` puts on them (an array beyond it is
    refused as CuPy refuses it). What NumPy allocates inside an operation and frees before it returns
    is not counted (on a GPU it would be, for that while)."""

    def __init__(self):
        self.limit, self.used, self._alive = 0, 0, set()

    def made(self, a):
        """Count ``a``, a NumPy array just made for a device array, if it owns its memory."""
        if a.base is not None or id(a) in self._alive:
            return
        if self.limit and self.used + a.nbytes > self.limit:
            raise OutOfMemoryError(f"Out of memory allocating {a.nbytes:,} bytes (allocated so far: {self.used:,} "
                                   f"bytes, limit set to: {self.limit:,} bytes).")
        self.used += a.nbytes
        self._alive.add(id(a))
        weakref.finalize(a, self._freed, id(a), a.nbytes)

    def _freed(self, key, nbytes):
        self.used -= nbytes
        self._alive.discard(key)

    def set_limit(self, size=None, fraction=None):
        self.limit = size or 0

    def get_limit(self):
        return self.limit

    def used_bytes(self):
        return self.used

    def free_bytes(self):
        return 0

    def free_all_blocks(self):
        pass

    def malloc(self, size):
        raise NotImplementedError


class CUDARuntimeError(RuntimeError):
    pass


def _properties(device=0):
    return {"name": b"cupy_on_numpy (NumPy, the CUDA emulator)", "major": 9, "minor": 0,
            "totalGlobalMem": 64 * 2**30, "multiProcessorCount": 1}


cuda = types.SimpleNamespace(
    Stream=_Stream, Device=_Device, MemoryPool=_Pool, Event=object,
    memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
    get_current_stream=lambda: _current,
    using_allocator=lambda allocator=None: contextlib.nullcontext(),
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, CUDARuntimeError=CUDARuntimeError,
                                  memGetInfo=lambda: (64 * 2**30, 80 * 2**30), runtimeGetVersion=lambda: 13000,
                                  getDeviceProperties=_properties),
    device=types.SimpleNamespace(get_cublas_handle=lambda: None),
)
_pool = _Pool()
__version__ = "14.0.0+numpy"
emulator = None  # a cuda_emulator.EmulatedRuntime, set by whoever installs this module as cupy


def get_default_memory_pool():
    return _pool


class RawModule:
    """A module of ``kernels/`` (by its kernel's name: ``kernels/NAME.cu``), launched by the emulator."""

    def __init__(self, code=None, options=(), **kwargs):
        pass

    def get_function(self, name):
        def launch(grid, block, args):
            emulator.launch(name, tuple(grid), block[0], [a._a if isinstance(a, ndarray) else a for a in args])

        return launch


def __getattr__(name):
    """NumPy's functions on device arrays (what CuPy spells the same), NumPy's types as they are."""
    value = getattr(np, name)
    if isinstance(value, type) or not callable(value):
        return value  # cupy.float32 is numpy.float32

    def on_device(*args, **kwargs):
        return _wrap(value(*_operand(list(args)), **{k: _operand(v) for k, v in kwargs.items()}))

    return on_device


lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
    as_strided=lambda a, shape=None, strides=None: ndarray(np.lib.stride_tricks.as_strided(a._a, shape, strides))))
