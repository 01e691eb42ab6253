"""Run the artem command, SIGKILLing the process in the middle of its NTH file write, after BYTES
bytes of that file have been written: a deterministic "killed at the worst moment" for the tests.

    python tests/kill_mid_write.py NTH BYTES stylize content.png style.png -o out.png ...
"""
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's artem_cli
import artem_cli  # noqa: F401  (first, as everywhere)
from artem_cli import cli, io, weights


class _DiesAfter:
    """A file object that writes its first ``limit`` bytes, flushes them to disk, then kills the process."""

    def __init__(self, f, limit):
        self._f, self._left = f, limit

    def write(self, data):
        data = bytes(data)
        if len(data) >= self._left:
            self._f.write(data[: self._left])
            self._f.flush()
            os.fsync(self._f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        self._left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):  # seek, tell, flush, fileno, ...: the real file's
        return getattr(self._f, name)


def main():
    nth, limit, args = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    real = io.atomic_write
    count = [0]

    def dying_write(path, write, *rest, **options):
        count[0] += 1
        if count[0] == nth:
            return real(path, lambda f: write(_DiesAfter(f, limit)), *rest, **options)
        return real(path, write, *rest, **options)

    io.atomic_write = weights.atomic_write = dying_write
    cli.main(args, prog_name="artem")


if __name__ == "__main__":
    main()
