"""The array module (numpy, or cupy for ``--device cuda``), matrix products and CUDA graphs on it,
free memory, and the lock around the compiled CPU kernels.

Every stage takes its array module from the arrays it is given, so the module is chosen once
(``array_module_for``, where the image is first turned into an array), and the whole hot path stays
on that device.
"""
import contextvars
import functools
import inspect
import os
import re
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import ArtemError

# NumPy's element-wise operations use one core; OpenBLAS's GEMMs use them all. Element-wise work on
# large arrays is split by channel over this many threads (NumPy releases the GIL inside its loops).
THREADS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


DEVICES = ("cpu", "cuda")


def array_module_for(device):
    """``numpy`` for "cpu"; ``cupy`` for "cuda" (an NVIDIA GPU), or an ``ArtemError`` saying what is
    missing."""
    if device == "cpu":
        return np
    try:
        import cupy
    except ImportError:
        raise ArtemError("--device cuda needs CuPy: pip install -e '.[cuda]' in artem's checkout (CUDA 13; cupy-cuda12x "
                         "for CUDA 12)") from None
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        devices = 0
    if not devices:
        raise ArtemError("--device cuda: CuPy finds no CUDA device (no GPU, or no driver)")
    return cupy


def array_module(a):
    """``numpy``, or ``cupy`` when ``a`` is a CuPy array (without importing CuPy otherwise)."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


_workers = []  # the one ThreadPoolExecutor, made on first use
_workers_made = threading.Lock()


def _worker_threads():
    """The process's pool for ``split_channels``: threads that keep no state between tasks, so callers
    in several threads may share it (each waits only for its own tasks); made once, under a lock."""
    with _workers_made:
        if not _workers:
            _workers.append(ThreadPoolExecutor(THREADS, thread_name_prefix="artem"))
        return _workers[0]


def split_channels(xp, channels, work):
    """Run ``work(slice)`` over slices covering ``range(channels)``: on NumPy, one slice per thread
    (sequential phases only, so the threads never meet OpenBLAS's); elsewhere, one call."""
    if xp is not np or THREADS < 2 or channels < 2:
        work(slice(0, channels))
        return
    n = min(THREADS, channels)
    bounds = [channels * i // n for i in range(n + 1)]
    # each slice in a copy of the caller's context (NumPy's errstate is a context variable)
    contexts = [contextvars.copy_context() for _ in range(n)]
    list(_worker_threads().map(lambda c, s: c.run(work, s), contexts, [slice(a, b) for a, b in zip(bounds, bounds[1:])]))


_compiled_kernels = threading.Lock()


def one_at_a_time(kernel):
    """``kernel`` (a numba ``parallel=True`` function) behind one process-wide lock. numba's workqueue
    pool (see ``artem_cli/__init__.py``) aborts the whole process when two Python threads enter it at
    once; each kernel uses every core anyway, so queueing them costs nothing."""

    @functools.wraps(kernel)
    def serialized(*args):
        with _compiled_kernels:
            return kernel(*args)

    return serialized


def _after_fork_in_child():
    """A forked child has only the thread that forked: the pool's threads are not copied, and would
    never take a task given to them (the child waited forever in its first layer), and a lock that
    another thread held at the fork stays held. The child makes its own pool, and takes new locks."""
    global _workers_made, _compiled_kernels
    _workers.clear()
    _workers_made = threading.Lock()
    _compiled_kernels = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def matmul(a, b, out=None):
    """a @ b (into ``out`` when given), by the array module's matmul; on a CUDA stream that a
    ``CudaGraph`` is recording (CuPy refuses to call cuBLAS there), or whose products
    ``gpu_gemm.products_on`` takes, by ``gpu_gemm``. Every matrix product of an evaluation of the
    objective goes through here."""
    xp = array_module(a)
    if xp is not np:
        from . import gpu_gemm

        stream = xp.cuda.get_current_stream()
        if stream.is_capturing() or gpu_gemm.routed(stream):
            return gpu_gemm.matmul(a, b, out)
    return xp.matmul(a, b, out=out)


class CudaGraph:
    """``fn`` (CuPy arrays of fixed shapes in, a tuple of CuPy arrays out, no host synchronization in
    between) recorded once as a CUDA graph and replayed: one launch for all of its kernels instead of
    one Python call each. The first call runs ``fn`` once to compile its kernels and size its buffers,
    then records it on a stream of its own, its temporaries in a memory pool of its own that nothing
    else allocates from (a replay writes where the recording did), its matrix products through
    ``matmul`` (cuBLAS called directly: CuPy's own calls are refused there); each call copies its arguments into
    the recorded inputs and replays. Returns the recorded outputs, which the next call overwrites:
    copy what must outlive it. CuPy only; the graph and its pool live as long as this object.

    A bound method ``fn`` is held weakly: an object's graph of its own method would otherwise make a
    cycle that only Python's collector frees, keeping the object (a network's weights) and the
    graph's memory on the GPU until it runs. ``tf32``: its float32 products in TF32 (None: where
    CuPy's would be), as ``gpu_gemm.products_on`` takes it."""

    def __init__(self, fn, tf32=None):
        self.fn = weakref.WeakMethod(fn) if inspect.ismethod(fn) else lambda: fn
        self.graph, self.tf32 = None, tf32

    def __call__(self, *args):
        import cupy

        caller = cupy.cuda.get_current_stream()
        if self.graph is None:
            from . import gpu_gemm

            self.cublas = gpu_gemm.Cublas()  # the recorded products' handle and workspace, for the graph's life
            self.stream, self.pool = cupy.cuda.Stream(non_blocking=True), cupy.cuda.MemoryPool()
            self.inputs = [cupy.empty_like(a) for a in args]
        self.stream.wait_event(caller.record())  # the arguments are ready
        with self.stream:
            for recorded, a in zip(self.inputs, args):
                recorded[...] = a
            if self.graph is None:
                fn = self.fn()
                with cupy.cuda.using_allocator(self.pool.malloc), gpu_gemm.products_on(self.stream, self.cublas, self.tf32):
                    fn(*self.inputs)  # as it will be recorded, products included
                    self.stream.synchronize()
                    self.stream.begin_capture()
                    try:
                        self.outputs = fn(*self.inputs)
                    finally:
                        graph = self.stream.end_capture()
                self.graph = graph
            self.graph.launch(self.stream)
        caller.wait_event(self.stream.record())  # the caller's next work sees the outputs
        return self.outputs


def to_host(a):
    """A NumPy copy of ``a`` (a no-op for NumPy arrays)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def device_vector(xp, values):
    """float64 vector on xp's device of ``values`` (floats, and arrays there, each flattened in
    turn), with no transfer to the device (none may happen while a CUDA graph is recorded), for at
    most 8 values: CuPy joins more with a table of their addresses that it copies to the device."""
    return xp.concatenate([v.astype(xp.float64, copy=False).ravel() if hasattr(v, "astype")
                           else xp.full(1, v, dtype=xp.float64) for v in values])


def read(values):
    """The floats of ``values`` (floats, and arrays of one device, each flattened in turn): from a
    GPU in one transfer, so one wait for the device however many values are read."""
    on_device = [v for v in values if hasattr(v, "get")]
    if not on_device:
        return [float(x) for v in values for x in np.ravel(v)]
    return to_host(device_vector(array_module(on_device[0]), values)).tolist()


def available_memory(xp=np):
    """Bytes of memory available now where ``xp`` keeps its arrays: the GPU's free memory plus what
    CuPy's pool holds unused; on the host the least of MemAvailable, what the address-space limit
    (``ulimit -v``) leaves this process and what the memory limits of its control groups (a
    container's, cgroup v1 or v2) leave them, since past a control group's limit the kernel kills
    the process where it stands. None where none of these can be read."""
    if xp is not np:
        free, _ = xp.cuda.runtime.memGetInfo()
        return free + xp.get_default_memory_pool().free_bytes()
    least = host_memory()
    return None if least is None else least[1]


def host_memory(shared=False):
    """(what bounds it, bytes) of the least of the host's limits that ``available_memory`` takes, or
    None where none is known. ``shared``: only those that other processes share with this one (not
    ``ulimit -v``, which each process has to itself)."""
    limits = {"free": _host_available(), "left under the control group's memory limit": cgroup_memory_left(),
              **({} if shared else {"left under ulimit -v": _address_space_left()})}
    known = [(what, v) for what, v in limits.items() if v is not None]
    return min(known, key=lambda item: item[1]) if known else None


def _host_available():
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


def _address_space_left():
    """RLIMIT_AS less this process's virtual size, or None where either is unlimited or unknown."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration, ValueError):
        return None
    return max(limit - size, 0)


_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a number near 2^63


def _read_number(path, key=None):
    """The integer in the file ``path``, or that of the line ``key N`` in it; None where it is absent
    or not a number ("max")."""
    try:
        with open(path) as f:
            if key is None:
                return int(f.read().strip())
            return next(int(line.split()[1]) for line in f if line.split()[:1] == [key])
    except (OSError, ValueError, StopIteration, IndexError):
        return None


def _cgroup_mounts(mountinfo):
    """[(mount point, the folder of the hierarchy mounted there, its v1 controllers or None for
    cgroup v2)] of the control-group file systems in ``mountinfo`` (/proc/PID/mountinfo's format)."""
    mounts = []
    try:
        with open(mountinfo, errors="surrogateescape") as f:  # paths are bytes, not always UTF-8
            for line in f:
                fields = line.split()
                dash = fields.index("-") if "-" in fields else len(fields)
                if dash < 5 or len(fields) < dash + 4:
                    continue
                root, point = (re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f) for f in fields[3:5])
                if fields[dash + 1] == "cgroup2":
                    mounts.append((point, root, None))
                elif fields[dash + 1] == "cgroup":
                    mounts.append((point, root, set(fields[dash + 3].split(","))))
    except OSError:
        pass
    return mounts


def _group_folders(mounts, path):
    """(mount point, [folder, ...] from it down to the group ``path``) in the mount of ``mounts``
    (point, the hierarchy's folder mounted there) that shows the group with the most of its
    ancestors (a hierarchy may be mounted whole and in part); where none shows it (out of a
    namespace's sight: "/.." in the path), the root of the mount of the most of the hierarchy, as
    near as can be seen. None where there is no mount."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    shown = []
    for point, root in mounts:
        top = [p for p in root.split("/") if p not in ("", ".")]
        if ".." not in parts and parts[: len(top)] == top and os.path.isdir(os.path.join(point, *parts[len(top):])):
            shown.append((point, parts[len(top):]))
    if shown:
        return max(shown, key=lambda found: len(found[1]))
    return (min(mounts, key=lambda mount: len([p for p in mount[1].split("/") if p]))[0], []) if mounts else None


def cgroup_memory_left(mountinfo="/proc/self/mountinfo", membership="/proc/self/cgroup"):
    """Bytes this process's control groups may still take before their memory limits (the least over
    the group and its ancestors that have one), counting their file cache but shared memory as free,
    as the kernel reclaims it before it kills (MemAvailable counts it so too); None where no group
    has a limit. The groups are those ``membership`` names, found where ``mountinfo`` says their
    hierarchies are mounted (cgroup v2, and v1's memory controller, alone or with others)."""
    try:
        with open(membership, errors="surrogateescape") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    mounts = _cgroup_mounts(mountinfo)
    groups = []  # (mount point, folders below it, limit file, usage file, memory.stat's keys of file cache and shared memory)
    for fields in lines:
        if len(fields) != 3:
            continue
        number, controllers, path = fields
        if number == "0" and controllers == "":
            found = _group_folders([(point, root) for point, root, kind in mounts if kind is None], path)
            files = ("memory.max", "memory.current", ("file", "shmem"))
        elif "memory" in controllers.split(","):
            found = _group_folders([(point, root) for point, root, kind in mounts if kind and "memory" in kind], path)
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", ("total_cache", "total_shmem"))
        else:
            continue
        if found is not None:
            groups.append((*found, *files))
    left = []
    for mount, parts, limit_file, usage_file, (cache_key, shared_key) in groups:
        for depth in range(len(parts), -1, -1):  # the group, then each ancestor up to the mount
            folder = os.path.join(mount, *parts[:depth])
            limit = _read_number(os.path.join(folder, limit_file))
            usage = _read_number(os.path.join(folder, usage_file))
            if limit is not None and limit < _UNLIMITED and usage is not None:
                stat = os.path.join(folder, "memory.stat")
                cache = max((_read_number(stat, cache_key) or 0) - (_read_number(stat, shared_key) or 0), 0)
                left.append(max(limit - max(usage - cache, 0), 0))
    return min(left) if left else None
