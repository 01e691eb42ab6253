"""CuPy's arrays as artem's GPU code paths meet them, on NumPy: a stand-in ``cupy`` module, so that
those paths run on a machine without a GPU.

Not a GPU, and not a timing: what it holds the code to is how it treats device arrays, as CuPy does.
Reductions and single elements are 0-d arrays, not Python numbers; a NumPy array is refused as an
operand of a device array and NumPy refuses to turn a device array into one of its own (as CuPy
does: each would be a silent transfer); every read from the device (``get``, ``asnumpy``,
``float``, ``int``, ``bool``, ``item``, ``tolist``) is counted in ``reads``, as on a GPU each is a wait
for it. The default memory pool counts the device arrays' bytes and refuses those beyond its limit
(``set_limit``). Kernels of ``kernels/`` run under the CUDA emulator (``cuda_emulator``), on a device
of compute capability 9.0; ``cublas`` stands in for the cuBLAS library that ``gpu_gemm`` calls.

CUDA graphs: while a stream records (``begin_capture`` to ``end_capture``), each operation is carried
out and also recorded, with its arguments as they were (device arrays as themselves, Python numbers
as their values then); when the recording ends, every array made during it is overwritten with 0xFF
bytes (NaN in a float array, -1 in an integer one), and ``launch`` carries out the recorded
operations again, into the same arrays: so a replay computes only what was recorded, from what the
inputs hold at replay, with the numbers of the recording. What CuPy refuses while a stream records
is refused here: reads from the device, copies from the host (lists as indices too), cuBLAS calls of
its own (matrix products), concatenating more than 8 small arrays (CuPy copies a table of their
addresses to the device), boolean masks and the functions whose results' sizes are read from the
device (``nonzero`` ...). Refused as well, though CuPy allows it: an array made from the default
memory pool while recording (the pool would give it to others once freed, while the graph still
writes there; ``backend.CudaGraph`` gives its graph a pool of its own).

Streams: everything here runs at once, in program order, but the order a GPU would keep is checked
(``_ordered``): an operation on one stream that uses an array another stream wrote, without an
event or a synchronization in between, is an error, as it would be a race on a GPU.
"""
import contextlib
import ctypes
import gc
import threading
import types
import weakref

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

reads = 0  # reads from the device so far
launches = 0  # graphs launched so far


def _read(a):
    global reads
    _refused_while_recording("D2H transfers")
    _ordered(_current_stream(), [a], [])
    reads += 1


_by_pointer = weakref.WeakValueDictionary()  # the streams alive, by their pointers
_streams = threading.local()  # the current stream of each thread (CuPy's is per thread)


def _current_stream():
    stack = getattr(_streams, "stack", None)
    return stack[-1] if stack else _null


def _tape():
    """The operations of the graph the current stream records, None when it records none."""
    return _current_stream().tape


def _refused_while_recording(what):
    if _tape() is not None:
        raise RuntimeError(f"the current stream is capturing, so {what} are disallowed")


def _run(fn, args=(), kwargs=None, record=True, writes=()):
    """``fn`` on the NumPy arrays inside ``args`` and ``kwargs``, its result as device arrays, on the
    current stream (``writes``: the arguments it writes, besides an ``out``); while that stream
    records a graph, recorded as well (``_Graph.launch`` carries it out again)."""
    kwargs = kwargs or {}
    stream = _current_stream()
    inputs = _arrays(args, kwargs)
    _ordered(stream, inputs, [])
    result = _wrap(fn(*_operand(list(args)), **{k: _operand(v) for k, v in kwargs.items()}))
    if record:
        _ordered(stream, [], _written_by(result, inputs, kwargs, writes))
    tape = stream.tape
    if tape is not None and record:  # the arguments as they are now: a list changed later changes no replay
        tape.append((fn, _snapshot(args), _snapshot(kwargs), result, writes))
    return result


def _arrays(*values):
    return [a for v in values for a in _leaves(list(v.values()) if isinstance(v, dict) else v) if isinstance(a, ndarray)]


def _written_by(result, inputs, kwargs, writes):
    """The arrays an operation writes: the new ones it gives (not views of its inputs), its ``out``,
    and ``writes``."""
    roots = {id(_root(a._a)) for a in inputs}
    made = [a for a in _arrays(result if isinstance(result, (tuple, list)) else [result]) if id(_root(a._a)) not in roots]
    return [*made, *_arrays([kwargs.get("out")]), *writes]


# The order of streams. Each stream counts the operations queued on it that write (its clock); an
# array remembers the stream and the count of its last write; a stream sees another's writes up to
# the count of an event it has waited for (``wait_event``; an event passes on what its own stream
# had seen), and every stream sees all of a stream the host has waited for (``synchronize``). An
# operation that reads or writes an array whose last write its stream does not see is a race on a
# GPU, and an error here. Every stream is taken as non-blocking (none waits for the null stream).
_last_write = {}  # id of an array's memory (its root NumPy array): (stream, count)
_host_saw = weakref.WeakKeyDictionary()  # stream: the count up to which the host has waited for it


def _ordered(stream, reads, writes):
    for a in [*reads, *writes]:
        writer, count = _last_write.get(id(_root(a._a)), (stream, 0))
        if writer is not stream and max(stream.seen.get(writer, 0), _host_saw.get(writer, 0)) < count:
            raise RuntimeError("a stream uses an array another stream wrote without waiting for it (an event recorded "
                               "after the write, waited for on this stream, or a synchronize)")
    if writes:
        stream.clock += 1
        for a in writes:
            root = _root(a._a)
            if id(root) not in _last_write:
                weakref.finalize(root, _last_write.pop, id(root), None)
            _last_write[id(root)] = (stream, stream.clock)


def _snapshot(value):
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    return value


def _root(a):
    while isinstance(a, np.ndarray) and isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _leaves(value):
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


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
        _made(a)
        self._a = a

    # reads from the device, each counted
    def get(self, stream=None):
        _read(self)
        return self._a.copy()

    def __float__(self):
        _read(self)
        return float(self._a)

    def __int__(self):
        _read(self)
        return int(self._a)

    def __bool__(self):
        _read(self)
        return bool(self._a)

    def item(self):
        _read(self)
        return self._a.item()

    def tolist(self):
        _read(self)
        return self._a.tolist()

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    # computing on the device
    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if ufunc is np.matmul:
            _refused_while_recording_by_cublas(*inputs)
        if out is not None:
            kwargs["out"] = out
        result = _run(getattr(ufunc, method), inputs, kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return result

    def __array_function__(self, func, types, args, kwargs):
        return _function(func, args, kwargs)

    def __getattr__(self, name):  # shape, dtype, reshape, sum, astype ... of the array inside
        value = getattr(self._a, name)
        if callable(value):
            if name == "dot":
                return lambda other, out=None: _function(np.dot, (self, other), {"out": out})
            return lambda *args, **kwargs: _run(value, args, kwargs)
        return _wrap(value) if isinstance(value, np.ndarray) else value

    @property
    def data(self):
        return _Memory(self._a)

    def __getitem__(self, index):
        _check_index(index)
        return _run(_getitem, (self, index))

    def __setitem__(self, index, value):  # from a NumPy array too refused, as CuPy refuses it
        _check_index(index)
        _run(_setitem, (self, index, value), writes=(self,))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self):  # CuPy copies the array to the host to show it
        _read(self)
        return f"cupy_on_numpy.ndarray({self._a!r})"


def _check_index(index):
    """While a graph records: CuPy counts a boolean mask's elements on the host, and copies a list to
    the device."""
    if isinstance(index, list) or isinstance(index, tuple) and any(isinstance(i, list) for i in index):
        _refused_while_recording("H2D transfers")
    if any(isinstance(i, ndarray) and i.dtype == np.bool_ for i in _leaves(index)):
        _refused_while_recording("synchronous API calls")


def _getitem(a, index):
    return a[index]


def _setitem(a, index, value):
    a[index] = value


ndarray.__module__ = "cupy_on_numpy"  # backend.array_module tells CuPy's arrays by their module


def _from_host(a, dtype=None, order="K"):
    """A copy of host data (a NumPy array, a scalar, a list) made on the device."""
    _refused_while_recording("H2D transfers")
    copy = ndarray(np.array(a, dtype=dtype, order=order))
    _ordered(_current_stream(), [], [copy])
    return copy


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return _run(np.asarray, (a,), {"dtype": dtype, "order": order})
    return _from_host(a, dtype, order or "K")


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, ndarray):
        return _run(np.array, (a,), {"dtype": dtype, "copy": copy, "order": order, "ndmin": ndmin})
    return _from_host(np.array(a, ndmin=ndmin), dtype, order)


def ascontiguousarray(a, dtype=None):
    if isinstance(a, ndarray):
        return _run(np.ascontiguousarray, (a,), {"dtype": dtype})
    return _from_host(a, dtype, "C")


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
    """A stream: current in a ``with`` block (its thread's), recording a graph between
    ``begin_capture`` and ``end_capture``."""

    def __init__(self, non_blocking=False, null=False):
        self.ptr = 0 if null else id(self)
        _by_pointer[self.ptr] = self
        self.tape = None  # the operations recorded, while recording
        self.made = None  # the arrays made meanwhile
        self.pools = None  # and the pools they came from (weakly: CuPy's arrays do not keep their pool)
        self.clock, self.seen = 0, weakref.WeakKeyDictionary()  # the order of streams (see _ordered)

    def synchronize(self):
        _host_saw[self] = self.clock

    def __enter__(self):
        _streams.stack = [*getattr(_streams, "stack", []), self]
        return self

    def __exit__(self, *exc):
        _streams.stack.pop()
        return False

    def is_capturing(self):
        return self.tape is not None

    def begin_capture(self, mode=None):
        if self.ptr == 0:
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if self.tape is not None:
            raise RuntimeError("the stream is capturing already")
        self.tape, self.made, self.pools = [], [], {}

    def end_capture(self):
        graph = _Graph(self.tape, self.made, list(self.pools.values()))
        self.tape = self.made = self.pools = None
        for a in graph.made:  # what only a replay writes
            ctypes.memset(a.ctypes.data, 0xFF, a.nbytes)
        return graph

    def record(self, event=None):
        """An event: this stream's count now, and what it has seen."""
        return {**self.seen, self: self.clock}

    def wait_event(self, event):
        for stream, count in event.items():
            if stream is not self:
                self.seen[stream] = max(self.seen.get(stream, 0), count)


class _Graph:
    """A recorded graph: its operations, and the arrays made while it recorded (its memory), from
    pools that must outlive it: when a CuPy pool goes, it frees its free blocks, and with them the
    graph's temporaries, which each replay writes and reads again."""

    def __init__(self, tape, made, pools):
        self.tape, self.made, self.pools = tape, made, pools

    def launch(self, stream=None):
        global launches
        if any(pool() is None for pool in self.pools):
            raise RuntimeError("the memory pool this graph recorded its temporaries in is gone, and with it their "
                               "memory: keep the pool as long as the graph")
        launches += 1
        stream = stream or _current_stream()
        for fn, args, kwargs, result, writes in self.tape:
            inputs = _arrays(args, kwargs)
            _ordered(stream, inputs, _written_by(result, inputs, kwargs, writes))
            again = fn(*_operand(list(args)), **{k: _operand(v) for k, v in kwargs.items()})
            for old, new in zip(_leaves(result), _leaves(again)):
                # into the arrays the recording wrote (an operation that gives a view wrote none)
                if isinstance(old, ndarray) and _root(new) is not _root(old._a):
                    np.copyto(old._a, new)


_null = _Stream(null=True)


class _Device(_Synchronous):
    compute_capability = "90"

    def synchronize(self):
        for stream in list(_by_pointer.values()):
            stream.synchronize()

    attributes = {"MultiProcessorCount": 1, "ClockRate": 1_000_000, "MemoryClockRate": 1_000_000}

    def __init__(self, device=0):
        self.id = device


class OutOfMemoryError(MemoryError):
    """CuPy's ``cuda.memory.OutOfMemoryError``, a MemoryError too."""


class _Pool:
    """A CuPy memory pool (the default one, or a graph's own): the bytes of the device arrays made
    from it still alive, each counted from when it is made until NumPy frees it, and the limit
    ``set_limit`` puts on them (beyond it, after a collection of Python's garbage as CuPy makes one,
    an array is refused as CuPy refuses it). What NumPy allocates inside an operation and frees
    before it returns is not counted (on a GPU it would be, for that while)."""

    def __init__(self):
        self.limit, self.used = 0, 0

    def set_limit(self, size=None, fraction=None):
        self.limit = size if size is not None else int((fraction or 0) * 80 * 2**30)

    def get_limit(self):
        return self.limit

    def used_bytes(self):
        return self.used

    def free_bytes(self):
        return 0

    def free_all_blocks(self):
        pass

    def malloc(self, size):  # what using_allocator takes; the arrays here are NumPy's
        raise NotImplementedError


_alive = set()  # the NumPy arrays behind device arrays (by id), counted in a pool


def _freed(pool, key, nbytes):
    """When NumPy frees the array ``key``: its bytes back to its pool (a weak reference), if that is
    still there."""
    _alive.discard(key)
    pool = pool()
    if pool is not None:
        pool.used -= nbytes


_allocators = threading.local()  # the pools of each thread's using_allocator blocks


def _allocating_pool():
    stack = getattr(_allocators, "stack", None)
    return stack[-1] if stack else _pool


@contextlib.contextmanager
def _using_allocator(allocator=None):
    """CuPy's ``cuda.using_allocator``, for a pool's ``malloc``: the arrays this thread makes meanwhile
    are that pool's."""
    pool = _pool if allocator is None else getattr(allocator, "__self__", None)
    if not isinstance(pool, _Pool):
        raise NotImplementedError("the stand-in takes a memory pool's malloc as an allocator")
    _allocators.stack = [*getattr(_allocators, "stack", []), pool]
    try:
        yield
    finally:
        _allocators.stack.pop()


def _made(a):
    """Count ``a``, a NumPy array just made for a device array, if it owns its memory, in the pool
    that allocates now. While a graph records, that may not be the default pool: it would give the
    memory to other arrays when these are freed, while the graph still writes there (a graph's
    memory is a pool of its own, as ``backend.CudaGraph`` has it)."""
    if a.base is not None or id(a) in _alive:
        return
    pool, stream = _allocating_pool(), _current_stream()
    if stream.made is not None and pool is _pool:
        raise RuntimeError("an array made from the default memory pool while a graph records: give the graph a "
                           "pool of its own (cupy.cuda.using_allocator)")
    if pool.limit and pool.used + a.nbytes > pool.limit:
        gc.collect()
        if pool.used + a.nbytes > pool.limit:
            raise OutOfMemoryError(f"Out of memory allocating {a.nbytes:,} bytes (allocated so far: {pool.used:,} "
                                   f"bytes, limit set to: {pool.limit:,} bytes).")
    pool.used += a.nbytes
    _alive.add(id(a))
    if stream.made is not None:
        stream.made.append(a)
        stream.pools[id(pool)] = weakref.ref(pool)
    weakref.finalize(a, _freed, weakref.ref(pool), id(a), a.nbytes)


class CUDARuntimeError(RuntimeError):
    pass


def _properties(device=0):
    return {"name": b"cupy_on_numpy (NumPy, the CUDA emulator)", "major": 9, "minor": 0,
            "totalGlobalMem": 64 * 2**30, "multiProcessorCount": 1}


cuda = types.SimpleNamespace(
    Stream=_Stream, Device=_Device, MemoryPool=_Pool, Event=object,
    memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
    get_current_stream=_current_stream,
    using_allocator=_using_allocator,
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
        def launch(grid, block, args):  # which arrays a kernel writes is not known here: any of them
            _run(lambda *arrays: emulator.launch(name, tuple(grid), block[0], list(arrays)), args,
                 writes=tuple(a for a in args if isinstance(a, ndarray)))

        return launch


_BY_CUBLAS = {"matmul", "dot", "inner", "tensordot", "einsum"}  # CuPy's that call cuBLAS (vdot does not)
_JOINING = {"concatenate", "stack", "hstack", "vstack"}  # CuPy's that concatenate
_SIZED_ON_THE_HOST = {"nonzero", "flatnonzero", "argwhere", "unique"}  # their results' sizes read from the device
_TESTS = {"allclose", "array_equal", "array_equiv"}  # a 0-d array in CuPy, a bool in NumPy
_UNRECORDED = {"empty", "empty_like"}  # allocations alone: nothing for a graph to do


def _refused_while_recording_by_cublas(*operands):
    """A product of ``operands`` by cuBLAS, which CuPy calls for all but one vector times another."""
    if all(getattr(a, "ndim", 0) <= 1 for a in operands[:2]) and len(operands) >= 2:
        return
    if _tape() is not None:  # CuPy's cublasSetStream refuses a stream that records
        raise NotImplementedError("calling cuBLAS API during stream capture is currently unsupported")


def _function(func, args, kwargs):
    """NumPy's ``func`` on device arrays, refused while recording where CuPy's would be."""
    name = func.__name__
    if name in _BY_CUBLAS:
        _refused_while_recording_by_cublas(*(args if name != "einsum" else ()))
    if name in _SIZED_ON_THE_HOST or name == "where" and len(args) == 1:
        _refused_while_recording("synchronous API calls")
    if name in _JOINING and len(args[0]) > 8:
        arrays = [a for a in args[0] if isinstance(a, ndarray)]
        if len({a.dtype for a in arrays}) == 1 and sum(a.nbytes for a in arrays) < 2 * 2**20 * len(arrays):
            _refused_while_recording("H2D transfers")  # one kernel, given a table of the arrays' addresses
    result = _run(func, args, kwargs, record=name not in _UNRECORDED)
    if name in _TESTS:
        return ndarray(np.asarray(result))
    out = kwargs.get("out")
    return out if isinstance(out, ndarray) else result


def __getattr__(name):
    """NumPy's functions on device arrays (what CuPy spells the same), NumPy's types as they are."""
    value = getattr(np, name)
    if isinstance(value, type) or not callable(value):
        return value  # cupy.float32 is numpy.float32
    return lambda *args, **kwargs: _function(value, args, kwargs)


lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(
    as_strided=lambda a, shape=None, strides=None: _run(np.lib.stride_tricks.as_strided, (a, shape, strides))))


def cublas_gemm(call, a_memory, b_memory, c_memory, tf32=False):
    """cublasGemmStridedBatchedEx as its documentation defines it, on flat memory starting at each
    operand's pointer: C[p] = op(A[p]) op(B[p]), column-major, A[p] at p·stride_a with leading
    dimension lda, and so on; summed in float32 (cuBLAS's CUBLAS_COMPUTE_32F), with the operands
    rounded to TF32 where ``tf32`` (CUBLAS_COMPUTE_32F_FAST_TF32)."""
    m, n, k, batch = call["m"], call["n"], call["k"], call["batch"]

    def matrices(memory, rows, cols, ld, stride, transposed):
        """The matrices at ``memory`` (batch, rows, cols): column by column, or row by row when transposed."""
        step = memory.itemsize
        strides = (stride * step, ld * step, step) if transposed else (stride * step, step, ld * step)
        return np.lib.stride_tricks.as_strided(memory, (batch, rows, cols), strides)

    a = matrices(a_memory, m, k, call["lda"], call["stride_a"], call["transa"] != 0).astype(np.float32)
    b = matrices(b_memory, k, n, call["ldb"], call["stride_b"], call["transb"] != 0).astype(np.float32)
    if tf32:
        a, b = _tf32(a), _tf32(b)
    matrices(c_memory, m, n, call["ldc"], call["stride_c"], False)[...] = np.matmul(a, b)


def _tf32(a):
    """float32 ``a`` rounded to TF32's 10 bits of mantissa, to nearest, ties away from zero (as
    cuBLAS's CUBLAS_COMPUTE_32F_FAST_TF32 takes its operands)."""
    bits = a.view(np.uint32)
    return ((bits + np.uint32(1 << 12)) & np.uint32(0xFFFFE000)).view(np.float32)


_cublas_streams = {}  # a cuBLAS handle of the stand-in: the stream set on it
_CUDA_TYPES = {0: np.float32, 2: np.float16}  # cudaDataType: CUDA_R_32F, CUDA_R_16F


def _cublas_create(handle):
    handle._obj.value = len(_cublas_streams) + 1
    _cublas_streams[handle._obj.value] = 0
    return 0


def _cublas_set_stream(handle, stream):
    _cublas_streams[handle.value] = stream
    return 0


def _cublas_gemm_strided_batched(handle, transa, transb, m, n, k, alpha, a, a_type, lda, stride_a, b, b_type, ldb,
                                 stride_b, beta, c, c_type, ldc, stride_c, batch, compute, algo):
    """``cublas_gemm`` on the memory at the pointers given, recorded where the handle's stream records."""
    if (alpha._obj.value, beta._obj.value) != (1, 0) or not a_type == b_type == c_type:
        raise NotImplementedError("the stand-in computes alpha 1, beta 0, one data type")
    call = dict(transa=transa, transb=transb, m=m, n=n, k=k, lda=lda, stride_a=stride_a, ldb=ldb, stride_b=stride_b,
                ldc=ldc, stride_c=stride_c, batch=batch)
    rows_a, cols_a = (m, k) if transa == 0 else (k, m)
    rows_b, cols_b = (k, n) if transb == 0 else (n, k)
    memory = [_at(pointer, _CUDA_TYPES[a_type], (batch - 1) * stride + (rows - 1) + (cols - 1) * ld + 1)
              for pointer, stride, rows, cols, ld in ((a, stride_a, rows_a, cols_a, lda),
                                                      (b, stride_b, rows_b, cols_b, ldb), (c, stride_c, m, n, ldc))]

    def gemm():
        cublas_gemm(call, *memory, tf32=compute == 77 and a_type == 0)  # CUBLAS_COMPUTE_32F_FAST_TF32, float32

    gemm()
    stream = _by_pointer.get(_cublas_streams[handle.value])
    if stream is not None and stream.tape is not None:
        stream.tape.append((gemm, (), {}, None, ()))
    return 0


def _at(pointer, dtype, length):
    """The ``length`` elements of ``dtype`` at ``pointer``, as a NumPy array (no copy)."""
    size = length * np.dtype(dtype).itemsize
    return np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(pointer)).view(dtype)


# the functions of the cuBLAS library that ``gpu_gemm.Cublas`` calls through ctypes
cublas = types.SimpleNamespace(cublasCreate_v2=_cublas_create, cublasSetStream_v2=_cublas_set_stream,
                               cublasSetWorkspace_v2=lambda handle, workspace, size: 0,
                               cublasGemmStridedBatchedEx=_cublas_gemm_strided_batched)
