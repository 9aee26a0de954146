"""Real-time set-up of a control process (ROS-free): SCHED_FIFO for all its threads, a frozen GC.

A 1 kHz loop in a Python process on a shared, small machine misses its deadlines when the
kernel lets a training job or a camera renderer run first. Like ros2_control's controller
manager (FIFO priority 50, a warning where the system refuses), the fast nodes ask for
``SCHED_FIFO`` at their ``realtime_priority`` parameter: every thread the process has at that
moment (the Python loop and the DDS receive threads that feed it) gets the policy, threads
created later inherit it, children started later do not (``SCHED_RESET_ON_FORK``). Linux keeps
5 % of each core for normal tasks (``sched_rt_runtime_us``), so a runaway loop cannot lock the
machine. ``gc.freeze()`` moves everything allocated during start-up out of the collector's
reach, so later collections walk only the young objects of the loop.
"""
from __future__ import annotations

import gc
import os

PRIORITY_MAX = 98   # 99 is left to the kernel's own watchdogs


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
    if not hasattr(os, 'SCHED_FIFO'):
        return 'SCHED_FIFO is not available on this platform'
    priority = min(int(priority), PRIORITY_MAX)
    flags = os.SCHED_FIFO | getattr(os, 'SCHED_RESET_ON_FORK', 0)
    param = os.sched_param(priority)
    for tid in thread_ids():
        try:
            os.sched_setscheduler(tid, flags, param)
        except ProcessLookupError:
            continue                      # a thread that just ended
        except OSError as e:
            return (f'SCHED_FIFO priority {priority} refused ({e.strerror}); running under the '
                    'normal scheduler: deadlines may be missed under load (grant CAP_SYS_NICE '
                    'or an rtprio limit, or set realtime_priority to 0 to silence this)')
    return None
