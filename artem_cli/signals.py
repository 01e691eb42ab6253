"""SIGTERM and SIGHUP on the command line, from the first import on: what ``kill`` and service
managers send, and what a terminal or an ssh session that closes sends, end a command as Ctrl-C
(SIGINT) does, in one line with the status 128 + the signal's number, not in a silent death. Handlers can only be installed in the main thread, and a signal the process was
started ignoring (``cmd &`` in a script ignores SIGINT) stays ignored. Light: imported before NumPy."""
import contextlib
import signal
import threading


def ours(number):
    """Whether artem may handle signal ``number`` here (the main thread, and not ignored by its caller)."""
    return threading.current_thread() is threading.main_thread() and signal.getsignal(number) is not signal.SIG_IGN


STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # what stops a command as Ctrl-C does


@contextlib.contextmanager
def stops_as_ctrl_c():
    """Within: a SIGTERM or a SIGHUP raises ``KeyboardInterrupt`` as Ctrl-C does. Yields the list of
    those received (their numbers), to tell them apart; the handlers before are put back after."""
    received = []

    def stop(number, frame):
        received.append(number)
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, stop) for number in STOPS[1:] if ours(number)}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: not Python's


TERMINALS = (signal.SIGINT, signal.SIGHUP)  # what a terminal sends to its whole process group


@contextlib.contextmanager
def terminal_signals_ignored():
    """Within, SIGINT and SIGHUP are ignored in this process (from the main thread; elsewhere nothing
    changes): the processes it starts meanwhile ignore them too, from their start on (an ignored
    signal stays ignored across exec, and Python then installs no handler of its own), and leave a
    terminal's Ctrl-C or hangup, sent to the whole process group, to this one (Python's resource
    tracker, which ignores SIGINT itself, died of the hangup: tracebacks). One meanwhile is lost: keep
    it short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in TERMINALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: a handler not Python's
