"""Real-time set-up of a control process (ROS-free): SCHED_FIFO for all its threads, a frozen GC.

A 1 kHz loop in a Python process on a shared, small machine misses its deadlines when the
kernel lets a training job or a camera renderer run first. Like ros2_control's controller
manager (FIFO priority 50, a warning where the system refuses), the fast nodes ask for
``SCHED_FIFO`` at their ``realtime_priority`` parameter: every thread the process has at that
moment (the Python loop and the DDS receive threads that feed it) gets the policy. Threads and
children started later begin under the normal scheduler (``SCHED_RESET_ON_FORK`` acts on every
clone, threads included): a worker thread that should run at the process's priority calls
``adopt()`` first (the cortex's inference thread does; under the normal scheduler it waited 2/3
of its time behind the FIFO loops). Linux keeps
5 % of each core for normal tasks (``sched_rt_runtime_us``), so a runaway loop cannot lock the
machine. ``gc.freeze()`` moves everything allocated during start-up out of the collector's
reach, so later collections walk only the young objects of the loop. The interpreter's switch
interval drops from 5 ms to :data:`SWITCH_INTERVAL_S`: a thread that wakes (a bus reply, a
timer) while another holds the GIL gets it within that instead of up to 5 ms later. In the sim
process with the emulated servo bus (the physics loop and the bus thread), the hardware node's
bus cycle went from 269 to 691 Hz (p50 1.79 -> 0.77 ms) with it.

A real-time process also asks for a CPU wake-up latency of 0 through the kernel's PM QoS
interface (``/dev/cpu_dma_latency``, as cyclictest does): while the file stays open an idle
core polls instead of halting, so a thread woken by a timer or a message runs at once. On the
2-core VM a 1 ms FIFO sleep loop in C woke 58 us late at p50 and 229 us at p99 without it, 29
and 98 us with it; it costs an idle core's power (the request ends with the process).
"""
from __future__ import annotations

import gc
import os
import struct
import sys

PRIORITY_MAX = 98   # 99 is left to the kernel's own watchdogs
PM_QOS_DEVICE = '/dev/cpu_dma_latency'
SWITCH_INTERVAL_S = 5e-5    # the GIL's hand-over interval in a real-time process [s]
_pm_qos_fd: int | None = None   # open for the life of the process: the request holds while open
_priority = 0                   # what make_realtime set, for adopt()


def thread_ids() -> list[int]:
    """Kernel ids of this process's threads."""
    try:
        return [int(t) for t in os.listdir('/proc/self/task')]
    except OSError:
        return [0]


def current_priority() -> int:
    """The calling thread's FIFO priority, 0 when it runs under the normal scheduler."""
    pol = os.sched_getscheduler(0) & ~getattr(os, 'SCHED_RESET_ON_FORK', 0)
    return os.sched_getparam(0).sched_priority if pol == os.SCHED_FIFO else 0


def make_realtime(priority: int) -> str | None:
    """SCHED_FIFO at ``priority`` (1..98) for every thread of this process, then a GC freeze.

    ``priority`` 0 leaves the scheduler alone. Returns None on success, otherwise the reason
    (not permitted: run as root, with CAP_SYS_NICE, or with an rtprio limit in
    /etc/security/limits.conf), for the caller to log once; nothing raises.
    """
    gc.freeze()
    if priority <= 0:
        return None
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if not hasattr(os, 'SCHED_FIFO'):
        return 'SCHED_FIFO is not available on this platform'
    global _priority
    priority = min(int(priority), PRIORITY_MAX)
    for tid in thread_ids():
        try:
            _set_fifo(tid, priority)
        except ProcessLookupError:
            continue                      # a thread that just ended
        except OSError as e:
            return (f'SCHED_FIFO priority {priority} refused ({e.strerror}); running under the '
                    'normal scheduler: deadlines may be missed under load (grant CAP_SYS_NICE '
                    'or an rtprio limit, or set realtime_priority to 0 to silence this)')
    _priority = priority
    hold_zero_wakeup_latency()
    return None


def _set_fifo(tid: int, priority: int) -> None:
    flags = os.SCHED_FIFO | getattr(os, 'SCHED_RESET_ON_FORK', 0)
    os.sched_setscheduler(tid, flags, os.sched_param(priority))


def adopt() -> int:
    """Give the calling thread the priority ``make_realtime`` gave this process (a thread
    started after it begins under the normal scheduler). Returns the priority now held (0: the
    process is not real-time, or the system refused)."""
    if _priority > 0:
        try:
            _set_fifo(0, _priority)       # 0: the calling thread
        except OSError:
            return 0
    return current_priority()


def set_thread_priority(priority: int) -> bool:
    """SCHED_FIFO at ``priority`` for the calling thread only (a loop that does its urgent
    part at one priority and the rest at a lower one); False where the system refuses."""
    try:
        _set_fifo(0, min(int(priority), PRIORITY_MAX))
    except OSError:
        return False
    return True


def hold_zero_wakeup_latency() -> bool:
    """Ask the kernel for 0 us CPU wake-up latency until this process ends (PM QoS);
    False where the device is missing or not writable (the request is only an optimisation)."""
    global _pm_qos_fd
    if _pm_qos_fd is None:
        try:
            fd = os.open(PM_QOS_DEVICE, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            os.write(fd, struct.pack('<i', 0))
        except OSError:
            os.close(fd)
            return False
        _pm_qos_fd = fd
    return True
