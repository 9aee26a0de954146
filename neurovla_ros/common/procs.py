"""Child processes, one way: the runner's nodes, the benchmarks' graphs, the tests' fixtures.
ROS-free (Linux).

:class:`Proc` starts a command in a session (so a process group) of its own, with its output in
a log file, or read by a thread that keeps the last lines and may echo each one with a
``[name]`` prefix. By default the child gets SIGINT from the kernel when the thread that
started it ends (``PR_SET_PDEATHSIG``: start children from a thread that lives as long as they
do, e.g. the main thread): the same signal as a normal stop, which rclpy handles safely (a
Python SIGTERM handler that calls ``rclpy.try_shutdown`` can deadlock on rclpy's context
lock). :func:`stop` ends several together with one shared deadline per step: SIGINT to every
process group, then SIGTERM, then SIGKILL, and at the end SIGKILL to every group for whatever
a child left behind. :func:`cpu_seconds` and :func:`running` read ``/proc``.
"""
from __future__ import annotations

import collections
import ctypes
import os
import signal
import subprocess
import threading
import time
from typing import Callable, Iterable, TextIO

PR_SET_PDEATHSIG = 1
TAIL_LINES = 30
_ECHO_LOCK = threading.Lock()       # one line at a time from every reader of this process

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with(parent_pid: int, sig: int):
    """preexec_fn: the kernel sends ``sig`` when the parent (thread) ends; if the parent is
    already gone, ``sig`` now. Only a prctl and two system calls run in the child."""
    def setup():
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sig)
    return setup


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (default: this one) [s]; NaN once it is gone.
    A process's own time, not its children's."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = _stat(pid)
    if fields is None:
        return float('nan')
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] != 'Z'


class Proc:
    """One command in a process group of its own.

    ``log``: a file path for its stdout and stderr (``log_mode`` 'w' or 'a'); without one, a
    thread reads the output, keeps the last ``tail`` lines and, with ``echo`` (a text stream),
    writes each line there as ``[name] line``. ``death_signal``: what the child gets when the
    starting thread ends (None: nothing).
    """

    def __init__(self, cmd: list[str], name: str | None = None, *, log: str | None = None,
                 log_mode: str = 'w', echo: TextIO | None = None, tail: int = TAIL_LINES,
                 env: dict | None = None, cwd: str | None = None,
                 death_signal: int | None = signal.SIGINT):
        self.cmd = list(cmd)
        self.name = name or os.path.basename(self.cmd[0])
        self.log = log
        self.lines: collections.deque[str] = collections.deque(maxlen=tail)
        self._echo = echo
        self._reader = None
        out = open(log, log_mode) if log else subprocess.PIPE  # noqa: SIM115 - closed below
        try:
            self.popen = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, cwd=cwd, start_new_session=True,
                preexec_fn=None if death_signal is None else _die_with(os.getpid(), death_signal),
                **({} if log else {'text': True, 'errors': 'replace', 'bufsize': 1}))
        finally:
            if log:
                out.close()       # the child has its own descriptor
        if not log:
            self._reader = threading.Thread(target=self._read, name=f'out-{self.name}',
                                            daemon=True)
            self._reader.start()

    def _read(self) -> None:
        prefix = f'[{self.name}] '
        for line in self.popen.stdout:
            line = line.rstrip('\n')
            self.lines.append(line)
            if self._echo is not None:
                with _ECHO_LOCK:
                    self._echo.write(prefix + line + '\n')
                    self._echo.flush()
        self.popen.stdout.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if still running after ``timeout`` [s]."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def signal(self, sig: int) -> None:
        """``sig`` to the whole process group (the child and whatever it started)."""
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def drain(self, timeout: float = 2.0) -> None:
        """Wait (up to ``timeout``) for the reader to take the last output lines."""
        if self._reader is not None:
            self._reader.join(timeout)

    def output(self, lines: int | None = None) -> str:
        """The last output lines (from the log file when there is one)."""
        if self.log:
            try:
                with open(self.log, errors='replace') as f:
                    kept = collections.deque(f, maxlen=lines or self.lines.maxlen)
            except OSError:
                return ''
            return ''.join(kept).rstrip('\n')
        self.drain(0.5 if self.poll() is not None else 0.0)
        kept = list(self.lines)
        return '\n'.join(kept[-lines:] if lines else kept)

    def stop(self, timeout: float = 10.0, term_timeout: float = 3.0) -> int | None:
        """:func:`stop` for this one; its exit code."""
        stop([self], timeout, term_timeout)
        return self.returncode


def stop(procs: Iterable[Proc], timeout: float = 10.0, term_timeout: float = 3.0,
         log: Callable[[str], None] | None = None) -> dict[str, int | None]:
    """Stop ``procs`` together: SIGINT to each process group, wait until one shared deadline
    (``timeout`` s), then SIGTERM (``term_timeout`` s), then SIGKILL (3 s); finally SIGKILL to
    every group (processes a child left behind). ``log`` hears of each escalation. Returns
    ``{name: exit code}`` (negative: the signal that ended it)."""
    procs = list(procs)
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, term_timeout),
                      (signal.SIGKILL, 3.0)):
        live = [p for p in procs if p.poll() is None]
        if not live:
            break
        if sig != signal.SIGINT and log is not None:
            log(f'{", ".join(p.name for p in live)} still running: {sig.name}')
        for p in live:
            p.signal(sig)
        deadline = time.monotonic() + wait
        for p in live:
            p.wait(max(0.01, deadline - time.monotonic()))
    for p in procs:
        p.signal(signal.SIGKILL)
        p.drain()
    return {p.name: p.returncode for p in procs}

