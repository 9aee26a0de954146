"""The body's drives, like ros2_control controllers of a real arm: position, velocity, effort
(on top of gravity compensation, Franka-style) and joint trajectories, plus the gripper. ROS-free.

* Position mode: a stiff servo whose gains are scaled by the joint-space inertia (computed
  torque: ``tau = M (kp e + kd ed) + coriolis + damping qd_ref + gravity``); its set-point moves
  toward the target at no more than the URDF velocity limit and stays inside the URDF range.
* Velocity mode: the set-point integrates the (clamped) commanded velocity, the same servo
  tracks it. Trajectory mode: cubic Hermite interpolation feeds the position servo, then holds
  the last point. Effort mode: the commanded torque; effort watchdog: no effort command for
  ``effort_timeout`` [s] -> hold position.
* Gravity is compensated through the actuators in every mode (MuJoCo ``gravcomp`` routed
  through the joint actuators, so it counts against the URDF effort limit).
"""
from __future__ import annotations

import math

import mujoco
import numpy as np

from ..robot.model import GRIPPER_JOINT

MODES = ('position', 'velocity', 'effort', 'trajectory')


class ArmDrives:
    """The arm's and the gripper's drives on a compiled world (``model``, ``data``): see the
    module docstring. ``arm_q``/``arm_d`` are the slices of the arm joints in qpos/qvel,
    ``grip_q``/``grip_d`` the commanded finger's addresses."""

    def __init__(self, model, data, robot, arm_q: slice, arm_d: slice, grip_q: int, grip_d: int,
                 *, position_bandwidth_hz: float = 20.0, velocity_bandwidth_hz: float = 10.0,
                 effort_timeout: float = 0.05, max_acceleration: float = 20.0):
        m, d = self.model, self.data = model, data
        arm = robot.arm_joints
        self.dt = float(m.opt.timestep)
        self._grip_q, self._grip_d = grip_q, grip_d
        self._act_arm = slice(m.actuator(arm[0]).id, m.actuator(arm[0]).id + 6)
        self._act_grip = m.actuator(GRIPPER_JOINT).id
        lim = robot.limits(arm)
        self.lower, self.upper = lim['lower'], lim['upper']
        self.vmax, self.effort_limit = lim['velocity'], lim['effort']
        self.damping = m.dof_damping[arm_d].copy()
        g = robot.joints[GRIPPER_JOINT]
        self.gripper_range = (g.lower, g.upper)
        self.gripper_vmax, self.gripper_effort = g.velocity, g.effort
        # preallocated work arrays and views into MjData (its buffers live as long as it does)
        self._vec = np.zeros(m.nv)
        self._res = np.zeros(m.nv)
        self._t1, self._t2 = np.zeros(6), np.zeros(6)
        self._vdt = self.vmax * self.dt
        self._neg_vdt = -self._vdt
        self._inv_dt = 1.0 / self.dt
        self._g_vdt = self.gripper_vmax * self.dt
        self._q, self._qd = d.qpos[arm_q], d.qvel[arm_d]
        self._bias, self._gravcomp = d.qfrc_bias[arm_d], d.qfrc_gravcomp[arm_d]
        self._ctrl = d.ctrl[self._act_arm]
        self._vec_arm, self._res_arm = self._vec[arm_d], self._res[arm_d]
        self.effort_timeout = float(effort_timeout)
        self.max_acceleration = float(max_acceleration)  # set-point profiles [rad/s^2]
        self.set_gains(position_bandwidth_hz, velocity_bandwidth_hz)
        self.watchdog_trips = 0

    def reset(self, q, gripper: float) -> None:
        """Hold the arm at ``q`` [rad] and the gripper at ``gripper`` [m] (position mode)."""
        self._mode = 'position'
        self._target = q.copy()
        self._sp = q.copy()
        self._qd_sp = np.zeros(6)
        self._v_cmd = np.zeros(6)
        self._tau_cmd = np.zeros(6)
        self._effort_time = self.data.time
        self._traj = None
        self._profiling = False
        self._g_target = self._g_sp = gripper

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def setpoint(self) -> np.ndarray:
        """The arm drive's current position set-point [rad] (copy)."""
        return self._sp.copy()

    def set_gains(self, position_bandwidth_hz: float = 20.0,
                  velocity_bandwidth_hz: float = 10.0) -> None:
        """Servo bandwidths [Hz] (critically damped, scaled by the joint-space inertia)."""
        wp = 2 * math.pi * position_bandwidth_hz
        wv = 2 * math.pi * velocity_bandwidth_hz
        self._kp, self._kd = wp * wp, 2.0 * wp
        self._kp_v, self._kd_v = wv * wv, 2.0 * wv
        self._kp_g, self._kd_g = 2000.0, 60.0  # gripper finger [N/m], [N s/m]

    @property
    def max_acceleration(self) -> float:
        """Acceleration limit [rad/s^2] of set-point profiles (position jumps, velocity mode)."""
        return self._amax

    @max_acceleration.setter
    def max_acceleration(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f'max_acceleration: {value!r} must be > 0')
        self._amax = float(value)
        self._adt = np.full(6, self._amax * self.dt)
        self._neg_adt = -self._adt

    def command(self, mode: str, values) -> np.ndarray:
        """Set the arm drive: 'position' [rad], 'velocity' [rad/s] or 'effort' [N m] (6 values).

        Values are clamped to the URDF limits; returns what the drive will use.
        """
        v = np.asarray(values, float)
        if v.shape != (6,) or not np.all(np.isfinite(v)):
            raise ValueError(f'command: need 6 finite values, got {values!r}')
        prev = self._mode
        if prev == 'effort' and mode in ('position', 'velocity'):  # bumpless: from the state
            self._sp[:] = self._q
            self._qd_sp[:] = self._qd
        if mode == 'position':
            self._target = np.clip(v, self.lower, self.upper)
            self._traj = None
            self._mode = 'position'
            return self._target.copy()
        if mode == 'velocity':
            self._v_cmd = np.clip(v, -self.vmax, self.vmax)
            self._traj = None
            self._mode = 'velocity'
            return self._v_cmd.copy()
        if mode == 'effort':
            self._tau_cmd = np.clip(v, -self.effort_limit, self.effort_limit)
            self._effort_time = self.data.time
            self._traj = None
            self._mode = 'effort'
            return self._tau_cmd.copy()
        raise ValueError(f'command: unknown mode {mode!r} (position | velocity | effort)')

    def command_trajectory(self, points) -> None:
        """Follow ``points`` = [(t_from_now [s], q[6], qd[6] or None), ...] (times increasing).

        Cubic Hermite segments from the current set-point; a missing velocity is the mean of the
        neighbouring segment slopes (zero at a turning point and at the last point).
        """
        pts = sorted(((float(t), np.clip(np.asarray(q, float), self.lower, self.upper),
                       None if qd is None else np.asarray(qd, float)) for t, q, qd in points),
                     key=lambda p: p[0])
        if not pts:
            raise ValueError('command_trajectory: no points')
        for t, q, qd in pts:
            if not (math.isfinite(t) and q.shape == (6,) and np.all(np.isfinite(q))
                    and (qd is None or (qd.shape == (6,) and np.all(np.isfinite(qd))))):
                raise ValueError('command_trajectory: need finite times, q[6] and qd[6]/None')
        if self._mode == 'effort':
            self._sp[:] = self._q
            self._qd_sp[:] = self._qd
        now = self.data.time
        pts = [p for p in pts if p[0] > 1e-9] or [(self.dt, pts[-1][1], pts[-1][2])]
        times = np.array([now] + [now + p[0] for p in pts])
        if np.any(np.diff(times) <= 0):
            raise ValueError('command_trajectory: times must increase')
        qs = np.array([self._sp] + [p[1] for p in pts])
        vs = np.zeros_like(qs)
        vs[0] = np.clip(self._qd_sp, -self.vmax, self.vmax)
        slopes = np.diff(qs, axis=0) / np.diff(times)[:, None]
        for k, p in enumerate(pts, start=1):
            if p[2] is not None:
                vs[k] = np.clip(p[2], -self.vmax, self.vmax)
            elif k < len(pts):
                a, b = slopes[k - 1], slopes[k]
                vs[k] = np.where(a * b > 0, 0.5 * (a + b), 0.0)
        self._traj = (times, qs, vs, [0])
        self._target = qs[-1].copy()
        self._mode = 'trajectory'

    def command_gripper(self, opening: float) -> float:
        """Finger opening = left_finger_joint position [m], clamped to the URDF range; returns
        it."""
        o = float(opening)
        if not math.isfinite(o):
            raise ValueError(f'command_gripper: {opening!r} is not finite')
        self._g_target = min(max(o, self.gripper_range[0]), self.gripper_range[1])
        return self._g_target

    def place_gripper(self, opening: float) -> None:
        """Set-point and target of the finger at ``opening`` at once, no profile (the finger
        was put there from outside, e.g. by hand in the servo-bus emulator)."""
        self._g_sp = self.command_gripper(opening)

    def drive(self):
        """Actuator commands of one physics step (between ``mj_step1`` and ``mj_step2``)."""
        # Hot path (every 1 ms): in-place numpy on cached views, no allocations.
        d = self.data
        q, qd, sp, qd_sp = self._q, self._qd, self._sp, self._qd_sp
        t1, t2 = self._t1, self._t2
        mode = self._mode
        if mode == 'effort':
            if d.time - self._effort_time > self.effort_timeout:
                self.watchdog_trips += 1
                self._hold_here()
                mode = 'position'
            else:
                self._ctrl[:] = self._tau_cmd
        if mode == 'position':
            np.subtract(self._target, sp, out=t1)
            np.abs(t1, out=t2)
            if not self._profiling and (t2 <= self._vdt).all():
                # streaming / holding: follow the target directly
                np.multiply(t1, self._inv_dt, out=qd_sp)
                sp += t1
            else:  # a jump: profile there; hand back once the set-point can follow smoothly
                self._profiling = True
                if (t2 <= self._vdt).all() and (np.abs(
                        t1 * self._inv_dt - qd_sp) <= 10.0 * self._adt).all():
                    self._profiling = False
                    np.multiply(t1, self._inv_dt, out=qd_sp)
                    sp += t1
                else:
                    self._profile(t1, t2)
            kp, kd = self._kp, self._kd
        elif mode == 'velocity':
            # ramp toward the commanded velocity at the acceleration limit; stop at the range
            np.subtract(self._v_cmd, qd_sp, out=t1)
            np.minimum(np.maximum(t1, self._neg_adt, out=t1), self._adt, out=t1)
            qd_sp += t1
            np.multiply(qd_sp, self.dt, out=t1)
            sp += t1
            if np.any(sp < self.lower) or np.any(sp > self.upper):
                qd_sp[(sp < self.lower) | (sp > self.upper)] = 0.0
                np.clip(sp, self.lower, self.upper, out=sp)
            kp, kd = self._kp_v, self._kd_v
        elif mode == 'trajectory':
            self._traj_eval(d.time + self.dt)
            kp, kd = self._kp, self._kd
        if mode != 'effort':
            # inertia-scaled servo + coriolis (bias minus gravity, which the actuators already
            # compensate) + the URDF joint damping at the reference velocity. MuJoCo clamps
            # ctrl to the effort range and the total (with gravity) to the URDF effort limit.
            va = self._vec_arm
            np.subtract(sp, q, out=va)
            va *= kp
            np.subtract(qd_sp, qd, out=t2)
            t2 *= kd
            va += t2
            mujoco.mj_mulM(self.model, d, self._res, self._vec)
            ctrl = self._ctrl
            np.add(self._res_arm, self._bias, out=ctrl)
            ctrl -= self._gravcomp
            np.multiply(self.damping, qd_sp, out=t2)
            ctrl += t2
        # gripper: velocity-limited set-point, PD force clamped to the URDF effort
        gstep = self._g_vdt
        delta = min(max(self._g_target - self._g_sp, -gstep), gstep)
        self._g_sp += delta
        d.ctrl[self._act_grip] = (self._kp_g * (self._g_sp - d.qpos[self._grip_q])
                                  + self._kd_g * (delta * self._inv_dt - d.qvel[self._grip_d]))

    def _profile(self, e, abs_e):
        """Set-point move toward a far target: at most the velocity and acceleration limits,
        braking so that it stops at the target."""
        a = self.max_acceleration
        sp, qd_sp = self._sp, self._qd_sp
        v = np.sign(e) * np.minimum(self.vmax, np.sqrt(2.0 * a * abs_e))
        v = np.clip(v, qd_sp - a * self.dt, qd_sp + a * self.dt)
        step = v * self.dt
        over = (np.abs(step) > abs_e) & (step * e > 0)
        step[over] = e[over]
        qd_sp[:] = step * self._inv_dt
        sp += step

    def _hold_here(self):
        self._mode = 'position'
        self._target = self._q.copy()
        self._sp[:] = self._q
        self._qd_sp[:] = 0.0
        self._traj = None

    def _traj_eval(self, t):
        times, qs, vs, seg = self._traj
        i = seg[0]
        last = len(times) - 1
        while i < last - 1 and t > times[i + 1]:
            i += 1
        seg[0] = i
        sp, qd_sp = self._sp, self._qd_sp
        if t >= times[last]:
            q_ref, v_ref = qs[last], vs[last] * 0.0
            if t >= times[last] + self.dt:  # done: hold the last point
                self._mode = 'position'
                self._traj = None
        else:
            h = times[i + 1] - times[i]
            s = (t - times[i]) / h
            s2, s3 = s * s, s * s * s
            q_ref = ((2 * s3 - 3 * s2 + 1) * qs[i] + (s3 - 2 * s2 + s) * h * vs[i]
                     + (3 * s2 - 2 * s3) * qs[i + 1] + (s3 - s2) * h * vs[i + 1])
            v_ref = ((6 * s2 - 6 * s) * qs[i] + (3 * s2 - 4 * s + 1) * h * vs[i]
                     + (6 * s - 6 * s2) * qs[i + 1] + (3 * s2 - 2 * s) * h * vs[i + 1]) / h
        lim = self.vmax * self.dt
        new = np.clip(np.clip(q_ref, sp - lim, sp + lim), self.lower, self.upper)
        np.clip(v_ref, -self.vmax, self.vmax, out=qd_sp)
        sp[:] = new
