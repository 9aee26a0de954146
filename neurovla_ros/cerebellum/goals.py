"""The cerebellum's four goal intakes and the goal sources they feed. ROS-free.

* joint goals (arm order) [rad] and tcp pose goals (base_link; damped-least-squares IK seeded
  with the current goal or reference) feed the sparse-goal filter (:class:`.GoalFilter`);
* joint trajectories (action chunks) are sampled (:class:`.GoalTrajectory`);
* teleop twists (base_link or tcp frame) are integrated MoveIt-Servo style (timeout and halt
  without snap-back, speed, workspace-floor and joint limits, slowed down near a singularity;
  :meth:`GoalIntake.accept_twist`); teleop poses are reached as given (``exact``).

Every intake validates first and refuses with the reason (NaN/inf, wrong sizes, unknown
frames, out-of-limit or unreachable goals, below the workspace floor, sensors stale): a
refused goal changes nothing. The active source (``source``) and its state are read by the
tick (:mod:`.core`); for the plain-interpolation baseline each joint goal also sets the
straight line from the reference at its arrival (``lin_*``).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..common.limits import invalid_reason
from ..robot import ik
from ..robot.model import RobotModel
from ..robot.transforms import pose_matrix
from .shaping import GoalFilter, GoalTrajectory, JerkLimitedTracker
from .state import Shared

SPARSE, TRAJECTORY, SERVO = 'goals', 'trajectory', 'servo'
SOURCES = (SPARSE, TRAJECTORY, SERVO)
BASE_FRAMES = ('', 'base_link', 'world')
TOOL_FRAMES = ('tcp_link', 'tool0')
JOINT_LIMIT_MARGIN = 0.02  # [rad] a twist driving a joint this close to its limit halts
FLOOR_APPROACH_TIME = 0.5  # [s] near the workspace floor, descent speed = height above it / this


class GoalIntake(Shared):
    """Goal intakes over ``model``'s arm joints (see the module docstring).

    tracker: the shaping tracker (its state seeds new sources); estimator: the state estimate
    (tcp rotation and Jacobian for twists); ready: ``() -> reason or None``, why goals cannot
    be taken now; on_joint_goal: ``(now, q)`` called for every accepted joint goal.
    """

    SLOTS = ('source_code:int', 't_twist', 'lin_t0', 'lin_T', 'last_goal_t')

    def __init__(self, model: RobotModel, cfg, tracker: JerkLimitedTracker, estimator,
                 ready: Callable[[], str | None]):
        super().__init__()
        self.cfg, self.model, self.tracker, self.estimator = cfg, model, tracker, estimator
        self.names = list(model.arm_joints)
        n = self.n = len(self.names)
        lim = model.limits()
        self.lower, self.upper, self.vmax = lim['lower'], lim['upper'], lim['velocity']
        self._ready = ready
        self.on_joint_goal: Callable[[float, np.ndarray], None] | None = None
        self.goals = GoalFilter(n, cfg.goal_alpha, cfg.goal_beta, cfg.goal_restart,
                                cfg.goal_horizon, cfg.goal_timeout)
        self.trajectory: GoalTrajectory | None = None
        self.servo_goal = np.zeros(n)
        self.servo_qd = np.zeros(n)
        self.t_twist = -math.inf
        # plain interpolation (baseline): from the reference at a goal's arrival to the goal
        self.lin_from = np.zeros(n)
        self.lin_to = np.zeros(n)
        self.lin_t0 = -math.inf
        self.lin_T = 0.1
        self.last_goal_t = -math.inf
        self.accepted = 0
        self.rejected = 0
        self.rejected_not_ready = 0     # of those: valid, but the cerebellum could not take it
        self.last_rejection = ''
        self.twists_limited = 0          # twists cut by a limit (accept_twist)
        self.last_twist_limit = ''

    @property
    def source(self) -> str:
        """goals | trajectory | servo"""
        return SOURCES[self.source_code]

    @source.setter
    def source(self, name: str) -> None:
        self.source_code = SOURCES.index(name)

    def reset(self, q) -> None:
        """Sparse goals, holding ``q``; the baseline's line ends there too."""
        self.goals.reset(q)
        self.source = SPARSE
        self.lin_from[:] = q
        self.lin_to[:] = q

    def _refuse(self, reason: str, not_ready: bool = False) -> tuple[bool, str]:
        self.rejected += 1
        self.rejected_not_ready += not_ready
        self.last_rejection = reason
        return False, reason

    # ------------------------------------------------------------------ the intakes
    def accept_joint_goal(self, now: float, q) -> tuple[bool, str]:
        """A joint goal (arm order) [rad]."""
        why = invalid_reason(q, self.n)
        if why:
            return self._refuse(f'joint goal rejected: {why}')
        q = np.asarray(q, float)
        if np.any(q < self.lower) or np.any(q > self.upper):
            bad = [n for n, v, lo, hi in zip(self.names, q, self.lower, self.upper)
                   if not lo <= v <= hi]
            return self._refuse(f'joint goal rejected: outside the URDF limits at {bad}')
        why = self._ready()
        if why:
            return self._refuse(f'joint goal rejected: {why}', not_ready=True)
        if self.source != SPARSE:
            self.goals.reset(self.tracker.x)
            self.source = SPARSE
        self.goals.add(now, q)
        # baseline: interpolate linearly to it over one goal period
        self.lin_T = min(max(now - self.last_goal_t, 0.02), 0.5)
        self.last_goal_t = now
        self.lin_from[:] = self.tracker.x
        self.lin_to[:] = q
        self.lin_t0 = now
        if self.on_joint_goal is not None:
            self.on_joint_goal(now, q)
        self.accepted += 1
        return True, ''

    def accept_pose_goal(self, now: float, position, quat_xyzw, frame: str = '',
                         exact: bool = False) -> tuple[bool, str]:
        """A tcp pose goal in base_link: position [m], orientation quaternion (x, y, z, w).

        exact: a goal to reach as given (a teleop pose, not a noisy stream): a one-point
        trajectory for the tracker instead of the goal filter, whose estimate and
        extrapolation took a dragged pose stream 23 mm beyond its last pose.
        """
        if frame not in BASE_FRAMES:
            return self._refuse(f'pose goal rejected: frame {frame!r} is not base_link')
        why = invalid_reason(position, 3) or invalid_reason(quat_xyzw, 4)
        if why:
            return self._refuse(f'pose goal rejected: {why}')
        qn = float(np.linalg.norm(quat_xyzw))
        if not 0.9 < qn < 1.1:
            return self._refuse(f'pose goal rejected: orientation quaternion norm {qn:.3f} != 1')
        if position[2] < self.cfg.workspace_min_z:
            return self._refuse(f'pose goal rejected: z = {position[2]:.3f} m is below the '
                                f'workspace floor {self.cfg.workspace_min_z} m')
        why = self._ready()
        if why:
            return self._refuse(f'pose goal rejected: {why}', not_ready=True)
        target = pose_matrix(position, np.asarray(quat_xyzw, float) / qn)
        seed = self.goals.p if (self.source == SPARSE and self.goals.active) else self.tracker.x
        res = ik.solve(self.model, target, seed, self.lower, self.upper,
                       max_iterations=self.cfg.ik_max_iterations,
                       position_tolerance=self.cfg.ik_position_tolerance,
                       rotation_tolerance=self.cfg.ik_rotation_tolerance)
        if not res.ok:
            return self._refuse(f'pose goal rejected: {res.reason}')
        if exact:
            return self.accept_trajectory(now, [1.0 / self.cfg.rate_hz], [res.q])
        return self.accept_joint_goal(now, res.q)

    def accept_trajectory(self, now: float, times, positions, velocities=None) -> tuple[bool, str]:
        """A joint trajectory: times from now [s] (increasing), positions (K x 6) [rad]."""
        times = np.asarray(times, float)
        try:
            pos = np.asarray(positions, float)
        except (TypeError, ValueError):
            return self._refuse('trajectory rejected: positions not numeric')
        if pos.ndim != 2 or pos.shape[1] != self.n or len(times) != len(pos) or len(pos) == 0:
            return self._refuse(f'trajectory rejected: expected K x {self.n} positions and K '
                                f'times, got {pos.shape} and {times.shape}')
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(times))):
            return self._refuse('trajectory rejected: contains NaN or inf')
        if np.any(times < 0) or np.any(np.diff(times) <= 0):
            return self._refuse('trajectory rejected: times must be >= 0 and increasing')
        if np.any(pos < self.lower) or np.any(pos > self.upper):
            return self._refuse('trajectory rejected: a point is outside the URDF limits')
        vel = None
        if velocities is not None:
            vel = np.asarray(velocities, float)
            if vel.shape != pos.shape or not np.all(np.isfinite(vel)):
                return self._refuse('trajectory rejected: velocities malformed')
            vel = np.clip(vel, -self.vmax, self.vmax)
        why = self._ready()
        if why:
            return self._refuse(f'trajectory rejected: {why}', not_ready=True)
        if len(pos) == 1 and times[0] == 0.0:
            return self.accept_joint_goal(now, pos[0])
        self.trajectory = GoalTrajectory(now, times, pos, vel)
        self.source = TRAJECTORY
        self.accepted += 1
        return True, ''

    def accept_twist(self, now: float, linear, angular, frame: str = '') -> tuple[bool, str]:
        """A teleop tcp twist [m/s], [rad/s] in base_link or the tcp frame (servo mode).

        MoveIt Servo conventions: the tick integrates the twist's joint velocity from where the
        tracker is; a zero twist, or none for ``twist_timeout``, halts: the tracker comes to a
        jerk-limited stop where the motion ends (no goal to snap back to). Limits, each counted
        (``twists_limited``) and the last one named (``last_twist_limit``): tool speed and
        rotation (scaled down), the workspace floor (the descent slows to the height above
        ``workspace_min_z`` / :data:`FLOOR_APPROACH_TIME`), joint limits (a joint at its URDF
        limit moving outward halts the twist) and singularities (slowed down along the same
        direction).
        """
        why = invalid_reason(linear, 3) or invalid_reason(angular, 3)
        if why:
            return self._refuse(f'twist rejected: {why}')
        v, w = np.asarray(linear, float), np.asarray(angular, float)
        est = self.estimator
        if frame in TOOL_FRAMES:
            v, w = est.ee_rot @ v, est.ee_rot @ w
        elif frame not in BASE_FRAMES:
            return self._refuse(f'twist rejected: frame {frame!r} is not base_link or tcp_link')
        why = self._ready()
        if why:
            return self._refuse(f'twist rejected: {why}', not_ready=True)
        cfg = self.cfg
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
        peak = float(np.max(np.abs(qd) / (self.vmax * cfg.velocity_scale)))
        if peak > 1.0:  # near a singularity: slow down along the same direction
            qd /= peak
            limits.append(f'near a singularity: slowed to {100.0 / peak:.0f} %')
        x = self.tracker.x
        out = [nm for nm, xi, d, lo, hi in zip(self.names, x, qd, self.lower, self.upper)
               if (d > 0.0 and xi >= hi - JOINT_LIMIT_MARGIN)
               or (d < 0.0 and xi <= lo + JOINT_LIMIT_MARGIN)]
        if out:
            qd[:] = 0.0
            limits.append(f'halted: {", ".join(out)} at the URDF limit')
        if limits:
            self.twists_limited += 1
            self.last_twist_limit = '; '.join(limits)
        if self.source != SERVO:
            self.servo_goal[:] = x
            self.source = SERVO
        self.servo_qd[:] = qd
        self.t_twist = now
        self.accepted += 1
        return True, ''
