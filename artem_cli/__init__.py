"""artem: paint photos in the style of a painting by neural style transfer (Gatys et al.) on VGG16.

The Python API: ``Settings``, ``stylize`` (arrays) and ``stylize_file`` (files), ``Stylizer`` (one
network and one set of style targets for many images), ``score`` (the fp32 losses of an image),
``Result``, ``ArtemError``.
"""
import errno
import importlib
import os
import signal
import sys
import warnings

# Two thread pools take turns on the cores: OpenBLAS's (the GEMMs) and numba's (the Winograd
# transforms, pooling, the binary kernels). By default each spins for about 0.1 s after its work and
# takes the cores from the other (measured at 512 px: 1.18 s against 0.84 s a pass, F(2x2, 3x3);
# 0.82 s against 0.64 s, F(4x4, 3x3)). Both are read when the libraries load, so they are set before
# anything here imports NumPy or numba; a value set by the user wins. numba's "workqueue" pool aborts
# the process if two Python threads enter it at once, so artem's kernels queue behind one lock
# (``backend.one_at_a_time``); other parallel numba code in the same process must not run beside them.
if "numpy" in sys.modules and "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
    warnings.warn(
        "NumPy was imported before artem_cli: OpenBLAS's threads keep spinning after each GEMM and "
        "artem runs about 1.3x slower; import artem_cli first or set OPENBLAS_THREAD_TIMEOUT=4",
        RuntimeWarning,
        stacklevel=2,
    )
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # spin 2^4 cycles, then sleep
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # numba's own pool, no OpenMP spin-wait


def _writable(folder):
    """Whether files can be made in ``folder`` (made if missing), as numba checks its cache folders."""
    import tempfile

    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
        return True
    except OSError:
        return False


def _numba_cache():
    """numba keeps artem's compiled kernels beside their modules, in artem_cli/__pycache__. Where that
    cannot be written (a read-only checkout, another user's) and no NUMBA_CACHE_DIR is set, they go to
    artem's cache folder, or, where that cannot be written either (a service's account without a home),
    to a temporary folder of this process's, compiled again each run: numba's own fallback, its folder
    in the same cache, fails with a traceback as the kernels' modules load."""
    if os.environ.get("NUMBA_CACHE_DIR") or _writable(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                   "__pycache__")):
        return
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, or relative (which XDG says to ignore)
        base = os.path.join(os.path.expanduser("~"), ".cache")  # "~" itself where no home can be found
    folder = os.path.join(base, "artem", "numba")
    if not (os.path.isabs(folder) and _writable(folder)):
        import atexit
        import shutil
        import tempfile

        try:
            folder = tempfile.mkdtemp(prefix="artem-numba-")
        except OSError:  # nowhere to write: numba's error as the kernels load (one line of the command's)
            return
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["NUMBA_CACHE_DIR"] = folder


_numba_cache()

from .errors import ArtemError  # noqa: E402

__all__ = ["ArtemError", "Result", "Settings", "Stylizer", "score", "stylize", "stylize_file"]


def __getattr__(name):
    """``Result``, ``Settings``, ``Stylizer``, ``score``, ``stylize`` and ``stylize_file`` from ``api``, and the
    modules (``artem_cli.api`` ...), when first asked for: so importing the package loads neither
    NumPy nor numba, and ``main`` can import them itself."""
    if name in __all__:
        from . import api

        return getattr(api, name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":  # a module of artem's whose own import failed
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})


class _Stream:
    """A text stream that passes everything on to ``stream``. What it cannot take is dropped
    (``name`` None) or an OSError that names it: "No space left on device: 'standard output'"; its
    descriptor then goes to /dev/null, so that what stays in the buffer leaves quietly at exit (it
    would fail again there, printed as an ignored exception, and Python would exit 120)."""

    def __init__(self, stream, name=None):
        self._stream, self._name = stream, name

    def write(self, text):
        if text == "":  # Click probes a stream with write(""): unbuffered (PYTHONUNBUFFERED), that reaches
            return 0    # the descriptor, fails on a full one, and Click takes the failure for an answer
        self._failing(self._stream.write, text)
        return len(text)

    def flush(self):
        self._failing(self._stream.flush)

    def _failing(self, call, *args):
        try:
            call(*args)
        except OSError as e:  # full, a pipe nobody reads any more (as EPIPE: BrokenPipeError) ...
            if self._name is not None:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self._stream.fileno())
                os.close(null)
                raise OSError(e.errno, e.strerror, self._name) from None
        except ValueError:  # closed
            if self._name is not None:
                raise

    def __getattr__(self, name):  # isatty, fileno, encoding ...
        return getattr(self._stream, name)


class _Closed:
    """What stands for a standard output the caller closed (``>&-``): what is written to it fails, as
    it would on the descriptor (a --json summary is not dropped without a word)."""

    def write(self, text):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    def flush(self):  # nothing is held
        pass

    def fileno(self):
        return 1  # on /dev/null, as _standard_streams left it

    def isatty(self):
        return False


def _standard_streams():
    """Standard streams that serve whatever the caller left. One it closed (``2>&-``) is opened on
    /dev/null: no file artem opens takes its number (where a library's message to standard error would
    land). Standard error drops what it cannot take (``2>/dev/full``, a pipe whose reader has gone):
    the progress bar and the messages are lost then, not the work; standard output's failures name it,
    closed ones too."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    # Python leaves sys.stderr None where it found it closed
    sys.stderr = _Stream(sys.stderr) if sys.stderr is not None else open(os.devnull, "w")
    sys.stdout = _Stream(sys.stdout if sys.stdout is not None else _Closed(), "standard output")


def main():
    """The ``artem`` command. Its imports (NumPy, numba, Pillow, Click: about half a second) are made
    here, so that a Ctrl-C, a SIGTERM or a SIGHUP while they load ends as one line, as it does later, not as a
    traceback or a silent death (a signal the caller ignores stays ignored)."""
    from .signals import stops_as_ctrl_c

    _standard_streams()

    with stops_as_ctrl_c() as received:
        try:
            from .cli import main as command
        except KeyboardInterrupt:
            number = received[0] if received else signal.SIGINT
            sys.stderr.write(f"Interrupted ({signal.Signals(number).name}) while starting: nothing was done\n")
            sys.exit(128 + number)
    command(prog_name="artem")
