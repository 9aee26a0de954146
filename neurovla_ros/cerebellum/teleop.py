"""Teleop in the cerebellum: the twist servo and who moves the arm. ROS-free.

:class:`TeleopServo` - ``/teleop/twist`` in the core (MoveIt Servo conventions). A twist in
``base_link`` or the tool frame becomes a joint velocity (damped least squares on the tool
Jacobian) that the core's tracker follows from where it is: there is no position goal, so
nothing to snap back to. A zero twist, or none for ``twist_timeout``, halts: the tracker brakes
time-optimally within ``halt_acceleration`` / ``halt_jerk`` (:func:`brake`) and holds where the
motion ends. Limits, each counted and the last one named (``last_limit``, in /diagnostics):
tool speed and rotation (scaled down), the workspace floor (the descent slows to the height
above ``workspace_min_z`` / :data:`FLOOR_APPROACH_TIME`), joint limits (a joint at its URDF
limit moving outward halts the twist) and singularities (slowed down along the same direction).

:class:`TeleopArbiter` - the rule between teleop and the cortex: an accepted teleop input (a
``/teleop/twist``, a ``/teleop/pose``) takes the arm; cortex goals (``/cortex/goal_pose``,
``/cortex/joint_goal``) are refused, with the reason, until ``hold_time`` [s] after the last
teleop input, or at once after an explicit hand-back (``release``). ``hold_time`` 0: teleop
keeps the arm until it is handed back. The cortex is not told; it keeps planning, and its next
goal after the hand-back moves the arm again.
"""
from __future__ import annotations

import math

import numpy as np

from ..common.limits import invalid_reason
from ..robot import ik

SERVO = 'servo'                       # the core's goal source while teleop twists drive it
BASE_FRAMES = ('', 'base_link', 'world')
TOOL_FRAMES = ('tcp_link', 'tool0')
JOINT_LIMIT_MARGIN = 0.02  # [rad] a twist driving a joint this close to its limit halts
FLOOR_APPROACH_TIME = 0.5  # [s] near the workspace floor, descent speed = height above it / this
TELEOP, CORTEX = 'teleop', 'cortex'


class TeleopServo:
    """The core's twist input and its per-tick motion (``core``: the
    :class:`~neurovla_ros.cerebellum.core.Cerebellum` it belongs to; its ``cfg`` holds
    ``twist_timeout``, ``max_linear_speed``, ``max_angular_speed``, ``workspace_min_z``,
    ``velocity_scale``, ``halt_acceleration`` and ``halt_jerk``)."""

    def __init__(self, core):
        self.core = core
        n = core.n
        self.qd = np.zeros(n)            # joint velocity of the last twist [rad/s]
        self._qd_l = [0.0] * n
        self.moving = False
        self.t_twist = -math.inf
        self.limited = 0                 # twists cut by a limit
        self.last_limit = ''

    def accept(self, now: float, linear, angular, frame: str = '') -> tuple[bool, str]:
        """A tool twist [m/s], [rad/s] in ``frame`` (base_link or the tool frame)."""
        core = self.core
        why = invalid_reason(linear, 3) or invalid_reason(angular, 3)
        if why:
            return core._refuse(f'twist rejected: {why}')
        v, w = np.asarray(linear, float), np.asarray(angular, float)
        est = core.estimator
        if frame in TOOL_FRAMES:
            v, w = est.ee_rot @ v, est.ee_rot @ w
        elif frame not in BASE_FRAMES:
            return core._refuse(f'twist rejected: frame {frame!r} is not base_link or tcp_link')
        why = core._ready_for_goals()
        if why:
            return core._refuse(f'twist rejected: {why}')
        cfg = core.cfg
        limits = []
        sv, sw = float(np.linalg.norm(v)), float(np.linalg.norm(w))
        if sv > cfg.max_linear_speed:
            v = v * (cfg.max_linear_speed / sv)
            limits.append(f'tool speed {sv:.3f} m/s cut to {cfg.max_linear_speed} m/s')
        if sw > cfg.max_angular_speed:
            w = w * (cfg.max_angular_speed / sw)
            limits.append(f'tool rotation {sw:.3f} rad/s cut to {cfg.max_angular_speed} rad/s')
        room = max(float(est.ee_pos[2]) - cfg.workspace_min_z, 0.0)
        if v[2] < 0.0 and -v[2] * FLOOR_APPROACH_TIME > room:
            v = v.copy()
            v[2] = -room / FLOOR_APPROACH_TIME
            limits.append(f'descent slowed: tcp {room * 1000:.0f} mm above the workspace floor')
        qd = ik.twist_to_joint_velocity(est.kin.ee_jac, np.concatenate([v, w]))
        peak = float(np.max(np.abs(qd) / (core.vmax * cfg.velocity_scale)))
        if peak > 1.0:  # near a singularity: slow down along the same direction
            qd /= peak
            limits.append(f'near a singularity: slowed to {100.0 / peak:.0f} %')
        out = [n for n, xi, d, lo, hi in zip(core.names, core.tracker.x, qd, core.lower,
                                             core.upper)
               if (d > 0.0 and xi >= hi - JOINT_LIMIT_MARGIN)
               or (d < 0.0 and xi <= lo + JOINT_LIMIT_MARGIN)]
        if out:
            qd[:] = 0.0
            limits.append(f'halted: {", ".join(out)} at the URDF limit')
        if limits:
            self.limited += 1
            self.last_limit = '; '.join(limits)
        core.source = SERVO
        self.qd[:] = qd
        self._qd_l = qd.tolist()
        self.moving = bool(np.any(qd != 0.0))
        self.t_twist = now
        core.accepted += 1
        return True, ''

    def step(self, tracker, now: float, dt: float, holding: bool) -> None:
        """One tick of the tracker while the servo is the goal source: follow the twist's
        joint velocity from where the tracker is, or brake (zero twist, timed out)."""
        cfg = self.core.cfg
        if self.moving and now - self.t_twist <= cfg.twist_timeout:
            tracker.step(dt, tracker.x[:], self._qd_l, hold=holding)
        else:
            brake(tracker, dt, cfg.halt_acceleration, cfg.halt_jerk)


def brake(tracker, dt: float, acceleration: float, jerk: float) -> None:
    """Stop ``tracker`` (a :class:`~neurovla_ros.cerebellum.shaping.JerkLimitedTracker`) as fast
    as ``acceleration`` [rad/s^2] and ``jerk`` [rad/s^3] allow and hold where the motion ends
    (a teleop halt: no goal to return to).

    Per joint, in the direction of its motion (speed u >= 0, acceleration b): the fastest stop
    decelerates at the limit and leaves it on the braking curve u = b^2 / (2 J), on which
    ramping the deceleration back to zero at the jerk limit ends exactly at u = 0. Each step
    picks the next acceleration that lands on that curve (the root of
    u + dt (b + b') / 2 = b'^2 / (2 J)), bounded by the acceleration limit and one step of jerk.
    Each joint's limits are scaled by its share of the fastest joint's speed, so the joints run
    scaled copies of one profile: they stop together and the joint-space direction, hence the
    tool's path, is kept.
    """
    x, v, a = tracker.x, tracker.v, tracker.a
    vpeak = max([abs(vi) for vi in v])
    h = 0.5 * dt
    for i in range(tracker.n):
        vi, ai = v[i], a[i]
        r = max(abs(vi) / vpeak, 0.05) if vpeak > 0.0 else 1.0
        am, jm = acceleration * r, jerk * r
        s = 1.0 if vi > 0.0 or (vi == 0.0 and ai < 0.0) else -1.0
        u, b = s * vi, s * ai
        c = jm * dt
        disc = c * c + 4.0 * jm * (2.0 * u + dt * b)
        bn = 0.5 * (c - math.sqrt(disc)) if disc > 0.0 else 0.0
        bn = min(max(bn, b - c, -am), b + c, 0.0)
        un = u + h * (b + bn)
        if un <= 0.0:                       # stopped: never reverse
            un = 0.0
            if bn >= -c:
                bn = 0.0
        xi = x[i] + h * (vi + s * un)
        xi = min(max(xi, tracker.lower[i]), tracker.upper[i])
        x[i], v[i], a[i], tracker.j[i] = xi, s * un, s * bn, s * (bn - b) / dt


class TeleopArbiter:
    """Times are seconds on one clock chosen by the caller."""

    def __init__(self, hold_time: float = 3.0):
        self.hold_time = hold_time
        self.t_teleop = -math.inf
        self.preempted = 0          # cortex goals refused while teleop had the arm
        self.handbacks = 0

    def teleop_input(self, now: float) -> None:
        self.t_teleop = now

    def release(self) -> bool:
        """Explicit hand-back to the cortex; False when teleop did not have the arm."""
        had = math.isfinite(self.t_teleop)
        self.t_teleop = -math.inf
        if had:
            self.handbacks += 1
        return had

    def owner(self, now: float) -> str:
        if not math.isfinite(self.t_teleop):
            return CORTEX
        if self.hold_time <= 0.0 or now - self.t_teleop < self.hold_time:
            return TELEOP
        return CORTEX

    def hold_left(self, now: float) -> float:
        """Seconds until the cortex gets the arm back (inf: until the hand-back; 0: it has it)."""
        if self.owner(now) == CORTEX:
            return 0.0
        return math.inf if self.hold_time <= 0.0 else self.hold_time - (now - self.t_teleop)

    def cortex_refusal(self, now: float) -> str | None:
        """Why a cortex goal arriving at ``now`` is refused, or None when it may go through."""
        if self.owner(now) == CORTEX:
            return None
        self.preempted += 1
        left = self.hold_left(now)
        until = ('until handed back' if math.isinf(left)
                 else f'for {left:.1f} s more unless handed back')
        return f'cortex goal refused: teleop has the arm {until} (~/release_teleop)'


def status(servo: TeleopServo, arbiter: TeleopArbiter, now: float) -> dict:
    """Teleop values for /diagnostics."""
    out = {'control': arbiter.owner(now), 'teleop_hold_left_s': arbiter.hold_left(now),
           'cortex_goals_preempted': arbiter.preempted, 'twists_limited': servo.limited}
    if servo.last_limit:
        out['last_twist_limit'] = servo.last_limit
    return out
