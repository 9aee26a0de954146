"""The body's clock: physics steps on absolute deadlines, callbacks served in the time between.

ROS-free (the sim node passes its executor's ``spin_once`` in as ``serve``). In real time the
stamp of step ``k`` is its scheduled wall time on the 1 ms grid, so a late loop shows as age,
not as jitter; in simulated time (``use_sim_time``) steps are paced at ``speed`` sim seconds per
wall second (0 = as fast as possible, callbacks served every few steps) and stamped from sim
time 0.

Behind schedule (after a stall) the loop catches up, but a step waits up to ``catchup_wait_s``
for a controller that commands at the step rate (it answered the state before) to answer the
state just published: the body never runs through a backlog on a stale command, and the
controller is still judged on every step the body takes on time. More than ``max_lateness_s``
behind, the loop skips ahead by whole steps (a resync; stamps stay on the grid).
"""
from __future__ import annotations

import time

import numpy as np

DT_NS = 1_000_000   # one physics step [ns]
WINDOW = 1000       # lateness samples kept for diagnostics
FAST_EVERY = 5      # speed 0: serve callbacks every 5 steps (spin_once costs ~0.1 ms)


class Pacing:
    """Deadlines, stamps and lateness statistics of the physics loop; see the module docstring."""

    def __init__(self, sim_time: bool):
        self.sim_time = bool(sim_time)
        self.epoch_ns = 0          # stamp of sim time 0 (real time: wall clock; sim: 0)
        self.mono_epoch_ns = 0     # the same instant on the monotonic clock; None = re-anchor
        self._wall_minus_mono = time.time_ns() - time.monotonic_ns()
        self.overruns = 0          # steps more than one period late
        self.resyncs = 0
        self.catchup_waits = 0     # late steps that waited for a live controller's answer
        self.catchup_timeouts = 0  # ... and stepped on without it
        self._late = np.zeros(WINDOW)
        self._late_i = 0

    def stamp_ns(self, k: int) -> int:
        """Stamp [ns] of the state after ``k`` steps."""
        return self.epoch_ns + k * DT_NS

    def lateness_s(self) -> np.ndarray:
        """The last (up to ``WINDOW``) step latenesses [s]."""
        return self._late[:min(self._late_i, WINDOW)]

    def reanchor(self) -> None:
        """Tie the next step to the time it is taken (after a speed change)."""
        self.mono_epoch_ns = None

    def anchor(self, k: int, speed: float) -> None:
        """Tie step ``k`` to now (start, after a speed change or a long stall)."""
        scale = DT_NS / speed if self.sim_time and speed > 0 else DT_NS
        self.mono_epoch_ns = time.monotonic_ns() - int(k * scale)
        if not self.sim_time:  # on the 1 ms grid of the wall clock
            self.epoch_ns = (self.mono_epoch_ns + self._wall_minus_mono) // DT_NS * DT_NS

    def _record(self, late_ns: int) -> None:
        self._late[self._late_i % WINDOW] = late_ns * 1e-9
        self._late_i += 1
        if late_ns > DT_NS:
            self.overruns += 1

    def _await_answer(self, serve, commanded_step, k: int, timeout_ns: int) -> None:
        """Serve callbacks until the controller answers state ``k`` or ``timeout_ns`` passes."""
        self.catchup_waits += 1
        end = time.monotonic_ns() + timeout_ns
        while commanded_step() < k:
            rem = end - time.monotonic_ns()
            if rem <= 0:
                self.catchup_timeouts += 1
                return
            serve(rem * 1e-9)

    def run(self, *, step_count, tick, serve, ok, speed, catchup_wait_s, commanded_step, events,
            max_lateness_s, end: float | None = None) -> None:
        """Step until ``ok()`` turns false or the monotonic time ``end`` [s] passes.

        ``step_count()`` steps taken so far; ``tick()`` takes one step and publishes it;
        ``serve(timeout_s)`` serves one callback event; ``speed()``, ``catchup_wait_s()`` and
        ``max_lateness_s()`` are read live (parameters); ``commanded_step()`` is the step count
        when the controller's last command arrived; ``events()`` counts the callbacks served
        (speed 0 serves until no event is left).
        """
        self.anchor(step_count(), speed())
        while ok():
            max_late = int(max_lateness_s() * 1e9)
            if self.mono_epoch_ns is None:
                self.anchor(step_count(), speed())
            k_next = step_count() + 1
            sp = speed()
            paced = not self.sim_time or sp > 0
            if paced:
                scale = DT_NS if not self.sim_time else DT_NS / sp
                due = self.mono_epoch_ns + int(k_next * scale)
                rem = due - time.monotonic_ns()
                while rem > 0:
                    serve(rem * 1e-9)
                    rem = due - time.monotonic_ns()
                if rem < 0 and commanded_step() == k_next - 2 and -rem <= max_late:
                    wait_ns = int(catchup_wait_s() * 1e9)
                    if wait_ns:
                        self._await_answer(serve, commanded_step, k_next - 1, wait_ns)
                        rem = due - time.monotonic_ns()
                if -rem > max_late:  # skip ahead by whole steps (stamps stay on grid)
                    self.resyncs += 1
                    shift = -(rem // DT_NS) * DT_NS
                    self.mono_epoch_ns += shift
                    if not self.sim_time:
                        self.epoch_ns += shift
                    due += shift
            elif k_next % FAST_EVERY == 0:
                for _ in range(50):  # serve what is queued, one event per spin_once
                    before = events()
                    serve(0.0)
                    if events() == before:
                        break
            tick()
            if paced:
                self._record(time.monotonic_ns() - due)
            if end is not None and k_next % 100 == 0 and time.monotonic() > end:
                break
