"""The smoothing a MoveIt Servo user would run instead of the cerebellum (``smoothing:
ruckig``): the goals through a Butterworth low-pass, then followed online by Ruckig, the
jerk-limited trajectory generator MoveIt uses (PyPI ``ruckig``). ROS-free.

The joint goals (after IK) are held between arrivals and low-passed at the tick rate (second
order, Butterworth, cut-off ``cutoff_hz``); every tick Ruckig is re-targeted at the filtered
goal (its position and velocity) from the reference's own state, with the cerebellum's limits
(the tracker's velocity, acceleration and jerk limits, the URDF position limits), and one
step of its trajectory is the reference. Holding (stale sensors): Ruckig brakes to a stop
at the same limits. No tremor cancellation, no inertia feed-forward.

The other baseline, plain linear interpolation of the goals (``smoothing: linear``), is part
of the tick itself (:meth:`.core.Cerebellum._interpolate`).
"""
from __future__ import annotations

import numpy as np
from ruckig import ControlInterface, InputParameter, OutputParameter, Ruckig, RuckigError

from .filters import Biquad
from .shaping import JerkLimitedTracker

VELOCITY_FLOOR = 1e-5   # [rad/s] target velocities below this are zero


class RuckigFollower:
    """Butterworth low-pass + Ruckig over the joints of ``tracker`` (whose state it writes).

    dt [s]: the nominal tick; cutoff_hz: the low-pass cut-off [Hz].
    """

    def __init__(self, tracker: JerkLimitedTracker, dt: float, cutoff_hz: float):
        self.tr = tracker
        n = tracker.n
        self.dt = dt
        self.otg = Ruckig(n, dt)
        self.inp = InputParameter(n)
        self.out = OutputParameter(n)
        inp = self.inp
        inp.max_velocity = tracker.vmax.tolist()
        inp.max_acceleration = tracker.amax.tolist()
        inp.max_jerk = tracker.jmax.tolist()
        inp.min_position = tracker.lower.tolist()
        inp.max_position = tracker.upper.tolist()
        self._position, self._velocity = ControlInterface.Position, ControlInterface.Velocity
        self.lowpass = Biquad('lowpass', cutoff_hz, 1.0 / dt, n)
        self.goal_q = np.zeros(n)       # the newest goal, held
        self._prev = np.zeros(n)        # the filter's last output
        self.errors = 0                 # Ruckig calls that failed (the reference then holds)

    def reset(self) -> None:
        """Start from the reference's current state, holding its position as the goal."""
        tr = self.tr
        self.goal_q[:] = tr.x
        self.lowpass.reset(tr.x)
        self._prev[:] = tr.x
        inp = self.inp
        inp.current_position = tr.x.tolist()
        inp.current_velocity = tr.v.tolist()
        inp.current_acceleration = tr.a.tolist()
        inp.target_position = tr.x.tolist()
        inp.target_velocity = [0.0] * tr.n
        inp.target_acceleration = [0.0] * tr.n

    def goal(self, now: float, q) -> None:
        """A new joint goal [rad] (held until the next one)."""
        self.goal_q[:] = q

    def step(self, dt: float, hold: bool) -> None:
        """One tick of ``dt`` [s]: the tracker's x, v, a become Ruckig's next state."""
        tr, inp, out = self.tr, self.inp, self.out
        y = self.lowpass.step(self.goal_q)
        vel = (y - self._prev) / max(dt, 1e-6)
        self._prev[:] = y
        # the filter's tail: velocities far below anything physical (Ruckig's step 2 fails on
        # targets 1e-10 rad away moving at 1e-8 rad/s)
        vel[np.abs(vel) < VELOCITY_FLOOR] = 0.0
        if hold:
            inp.control_interface = self._velocity
            inp.target_velocity = [0.0] * tr.n
        else:
            inp.control_interface = self._position
            inp.target_position = np.minimum(np.maximum(y, tr.lower), tr.upper).tolist()
            inp.target_velocity = np.minimum(np.maximum(vel, -tr.vmax), tr.vmax).tolist()
        inp.target_acceleration = [0.0] * tr.n
        if dt > 0.0:
            self.otg.delta_time = dt
        try:
            self.otg.update(inp, out)
        except RuckigError:
            # numerically degenerate input: try again towards the goal at rest; if Ruckig
            # refuses that too, the reference keeps its last state (counted)
            inp.target_velocity = [0.0] * tr.n
            try:
                self.otg.update(inp, out)
            except RuckigError:
                self.errors += 1
                return
        tr.x[:] = out.new_position
        tr.v[:] = out.new_velocity
        tr.a[:] = out.new_acceleration
        out.pass_to_input(inp)
