"""The cerebellum as one ROS-free object: inputs, one ``tick``, the reference and its status.

Per tick (``rate_hz``, driven by the joint-state stream):

1. state estimate: encoders + wrist IMU through the URDF kinematics (:mod:`.estimator`);
2. goal shaping: the active goal source (sparse goals through an alpha-beta filter, a goal
   trajectory, or a teleop twist) feeds the jerk-limited tracker (:mod:`.shaping`);
3. tremor cancellation: the adaptive canceller learns from the fused joint velocity and adds
   its correction to the reference (:mod:`.adaptive`), phase-correct through the forward
   model of the spinal layer + arm (:mod:`.forward_model`);
4. the forward model predicts the joint state and the periodic disturbance torque.

Safety: stale joints or IMU -> no adaptation, the correction fades, the reference comes to a
smooth stop and holds, goals are refused until the sensors are back. A tracking error beyond
``max_tracking_error`` (spinal reflex, blocked arm) stops adaptation. NaN/inf, wrong sizes,
out-of-limit, unreachable goals are refused with the reason (``accept_*`` return it).
After a spinal reflex (``note_reflex``) a lasting tracking error restarts the reference from
the measured pose: the arm stays where the withdrawal took it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from ..common.limits import invalid_reason
from ..common.servo import JointGains
from ..robot import ik
from ..robot.dynamics import ArmDynamics
from ..robot.model import RobotModel
from ..robot.transforms import pose_matrix
from .adaptive import TremorCanceller
from .estimator import StateEstimator
from .filters import clip
from .forward_model import ServoForwardModel
from .shaping import GoalFilter, GoalTrajectory, JerkLimitedTracker

SPARSE, TRAJECTORY, SERVO = 'goals', 'trajectory', 'servo'
BASE_FRAMES = ('', 'base_link', 'world')


@dataclass
class CerebellumConfig:
    rate_hz: float = 500.0
    adapt_rate_hz: float = 250.0      # estimator + canceller learning rate
    bypass: bool = False              # plain linear interpolation of goals, no cancellation
    # sensors
    joint_timeout: float = 0.05
    imu_timeout: float = 0.05
    crossover_hz: float = 2.0
    kinematics_period: float = 0.05
    # shaping
    velocity_scale: float = 0.5       # of the URDF velocity limit
    max_acceleration: float = 3.0     # [rad/s^2]
    max_jerk: float = 100.0           # [rad/s^3]
    bandwidth_hz: float = 3.5         # tracker triple pole [Hz]
    goal_alpha: float = 0.32
    goal_beta: float = 0.45
    goal_feedforward: float = 0.66    # share of the goal velocity fed forward
    inertia_feedforward: bool = True  # reference effort = (M(q) - spinal's M) * reference acc.
    goal_restart: float = 0.3         # [rad]
    goal_horizon: float = 0.25        # [s]
    goal_timeout: float = 0.5         # [s]
    # Cartesian goals and teleop
    ik_position_tolerance: float = 0.002
    ik_rotation_tolerance: float = 0.02
    ik_max_iterations: int = 50
    workspace_min_z: float = 0.0      # tcp height above the table [m]
    twist_timeout: float = 0.1        # [s]
    max_linear_speed: float = 0.25    # [m/s]
    max_angular_speed: float = 1.0    # [rad/s]
    # tremor canceller
    tremor_enabled: bool = True
    band_low_hz: float = 4.0
    band_high_hz: float = 12.0
    adapt_time: float = 0.25
    leak_time: float = 30.0
    max_correction: float = 0.02      # [rad]
    min_amplitude: float = 0.003      # [rad/s]
    window: float = 0.8               # [s]
    jump_hz: float = 0.6
    highpass_hz: float = 2.0
    # forward model of the spinal servo
    servo_omega_max: float = 40.0     # [rad/s]
    servo_accel_feedforward: bool = True  # the spinal feeds home inertia x r'' forward
    servo_e_sat: float = 0.05         # [rad]
    loop_delay: float = 0.003         # [s]
    model_period: float = 0.2         # forward model refreshed for the configuration [s]
    # health
    max_tracking_error: float = 0.05  # [rad]
    resync_time: float = 0.5          # [s]
    reflex_window: float = 10.0       # [s] after a reflex event a resync is allowed


def config_from(values) -> CerebellumConfig:
    """CerebellumConfig from a namespace or dict of parameters (extra keys ignored)."""
    d = values if isinstance(values, dict) else vars(values)
    names = {f.name for f in fields(CerebellumConfig)}
    return CerebellumConfig(**{k: v for k, v in d.items() if k in names})


def servo_model(model: RobotModel, cfg: CerebellumConfig) -> ServoForwardModel:
    """Forward model of the spinal layer + arm: the spinal servo law with its model-derived
    gains (:meth:`JointGains.for_arm`: the bandwidth that saturates the effort limit at
    ``servo_e_sat`` error, capped at ``servo_omega_max``, on the joint inertias at home, drives
    included) and its feed-forward (URDF damping x desired velocity, home inertia x desired
    acceleration), acting on the arm's joint-space inertia (drives included) at the current
    configuration."""
    dyn = ArmDynamics()
    gains = JointGains.for_arm(model, dyn, e_sat=cfg.servo_e_sat, omega_max=cfg.servo_omega_max)
    return ServoForwardModel(dyn.arm_inertia(model.home_pose()), gains.kp, gains.kd,
                             gains.damping, delay=cfg.loop_delay, damping_feedforward=True,
                             accel_feedforward=gains.inertia if cfg.servo_accel_feedforward
                             else None, inertia_fn=dyn.arm_inertia)


class Cerebellum:
    """See the module docstring. Times are seconds on one clock chosen by the caller."""

    def __init__(self, model: RobotModel, cfg: CerebellumConfig | None = None,
                 forward_model: ServoForwardModel | None = None):
        self.cfg = cfg = cfg or CerebellumConfig()
        self.model = model
        self.names = list(model.arm_joints)
        n = self.n = len(self.names)
        lim = model.limits()
        self.lower, self.upper, self.vmax = lim['lower'], lim['upper'], lim['velocity']
        self._nvmax = -self.vmax
        self._lower_l, self._upper_l = self.lower.tolist(), self.upper.tolist()
        self._vmax_l = self.vmax.tolist()
        self.dt_nominal = 1.0 / cfg.rate_hz
        self.dt_adapt = 1.0 / min(cfg.adapt_rate_hz, cfg.rate_hz)
        self._adapt_acc = 0.0
        self.estimator = StateEstimator(model, cfg.crossover_hz, cfg.kinematics_period)
        self.goals = GoalFilter(n, cfg.goal_alpha, cfg.goal_beta, cfg.goal_restart,
                                cfg.goal_horizon, cfg.goal_timeout)
        self.tracker = JerkLimitedTracker(self.lower, self.upper, self.vmax * cfg.velocity_scale,
                                          cfg.max_acceleration, cfg.max_jerk,
                                          2.0 * math.pi * cfg.bandwidth_hz)
        self.fm = forward_model or servo_model(model, cfg)
        self._since_model = 0.0
        self._m_extra = self.fm.M.copy()
        self._m_extra[np.diag_indices(n)] -= self.fm.m_ff
        self.canceller = TremorCanceller(
            n, 1.0 / self.dt_adapt, self.fm.velocity_response, band=(cfg.band_low_hz, cfg.band_high_hz),
            adapt_time=cfg.adapt_time, leak_time=cfg.leak_time, max_correction=cfg.max_correction,
            window=cfg.window, min_amplitude=cfg.min_amplitude, jump_hz=cfg.jump_hz,
            highpass_hz=cfg.highpass_hz)
        # latest inputs
        self.q = np.zeros(n)
        self.qd = np.zeros(n)
        self.t_joints = -math.inf
        self.gyro = np.zeros(3)
        self.accel = np.zeros(3)
        self.quat = np.array([0.0, 0.0, 0.0, 1.0])
        self.has_quat = False
        self.t_imu = -math.inf
        # goal sources
        self.source = SPARSE
        self.trajectory: GoalTrajectory | None = None
        self.servo_goal = np.zeros(n)
        self.servo_qd = np.zeros(n)
        self._servo_goal_l = [0.0] * n
        self._servo_qd_l = [0.0] * n
        self._ql = [0.0] * n
        self._ref_l = [0.0] * n
        self.t_twist = -math.inf
        self._err = np.zeros(n)
        # bypass: plain interpolation from the reference at a goal's arrival to the goal
        self._lin_from = [0.0] * n
        self._lin_to = [0.0] * n
        self._lin_t0 = -math.inf
        self._lin_T = 0.1
        self._last_goal_t = -math.inf
        # outputs
        self.ref_pos = np.zeros(n)
        self.ref_vel = np.zeros(n)
        self.ref_eff = np.zeros(n)          # feed-forward torque [N m]
        self.tremor_torque = np.zeros(n)   # predicted periodic disturbance torque [N m]
        self._tau_r = np.zeros(n)
        self._tau_i = np.zeros(n)
        self.initialized = False
        self.holding = True
        self.adapting = False
        self.status_level, self.status_message = 1, 'waiting for /joint_states'
        self.t = -math.inf
        self._bad_track = 0.0
        self._reflex_t = -math.inf
        self._since_slow = math.inf
        self.resyncs = 0
        self.accepted = 0
        self.rejected = 0
        self.last_rejection = ''

    # ------------------------------------------------------------------ sensor inputs
    def set_joints(self, now: float, q, qd) -> None:
        """Arm joint positions [rad] and velocities [rad/s] (validated by the caller)."""
        self.q[:] = q
        self.qd[:] = qd
        self._ql = self.q.tolist()
        self.t_joints = now
        if not self.initialized:
            self._start(now)

    def set_imu(self, now: float, gyro, accel, quat_xyzw=None) -> None:
        self.gyro[:] = gyro
        self.accel[:] = accel
        if quat_xyzw is not None:
            self.quat[:] = quat_xyzw
            self.has_quat = True
        else:
            self.has_quat = False
        self.t_imu = now

    def _start(self, now: float) -> None:
        self.estimator.reset(self.q)
        self.tracker.reset(self.q)
        self.goals.reset(self.tracker.x)
        self.fm.reset(self.tracker.x, self.dt_adapt)
        self.ref_pos[:] = self.tracker.x
        self._ref_l = list(self.tracker.x)
        self._lin_from = list(self.tracker.x)   # bypass: hold here until the first goal
        self._lin_to = list(self.tracker.x)
        self.source = SPARSE
        self.initialized = True
        self.t = now

    # ------------------------------------------------------------------ goals
    def _refuse(self, reason: str) -> tuple[bool, str]:
        self.rejected += 1
        self.last_rejection = reason
        return False, reason

    def _ready_for_goals(self) -> str | None:
        if not self.initialized:
            return 'no joint state yet'
        if self.holding:
            return 'holding: sensors stale'
        return None

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
        why = self._ready_for_goals()
        if why:
            return self._refuse(f'joint goal rejected: {why}')
        if self.source != SPARSE:
            self.goals.reset(self.tracker.x)
            self.source = SPARSE
        self.goals.add(now, q)
        # bypass: interpolate linearly to it over one goal period
        self._lin_T = min(max(now - self._last_goal_t, 0.02), 0.5)
        self._last_goal_t = now
        self._lin_from = list(self.tracker.x)
        self._lin_to = q.tolist()
        self._lin_t0 = now
        self.accepted += 1
        return True, ''

    def accept_pose_goal(self, now: float, position, quat_xyzw, frame: str = '') -> tuple[bool, str]:
        """A tcp pose goal in base_link: position [m], orientation quaternion (x, y, z, w)."""
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
        why = self._ready_for_goals()
        if why:
            return self._refuse(f'pose goal rejected: {why}')
        target = pose_matrix(position, np.asarray(quat_xyzw, float) / qn)
        seed = self.goals.p if (self.source == SPARSE and self.goals.active) else self.tracker.x
        res = ik.solve(self.model, target, seed, self.lower, self.upper,
                       max_iterations=self.cfg.ik_max_iterations,
                       position_tolerance=self.cfg.ik_position_tolerance,
                       rotation_tolerance=self.cfg.ik_rotation_tolerance)
        if not res.ok:
            return self._refuse(f'pose goal rejected: {res.reason}')
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
        why = self._ready_for_goals()
        if why:
            return self._refuse(f'trajectory rejected: {why}')
        if len(pos) == 1 and times[0] == 0.0:
            return self.accept_joint_goal(now, pos[0])
        self.trajectory = GoalTrajectory(now, times, pos, vel)
        self.source = TRAJECTORY
        self.accepted += 1
        return True, ''

    def accept_twist(self, now: float, linear, angular, frame: str = '') -> tuple[bool, str]:
        """A teleop tcp twist [m/s], [rad/s] in base_link or the tcp frame (servo mode)."""
        why = invalid_reason(linear, 3) or invalid_reason(angular, 3)
        if why:
            return self._refuse(f'twist rejected: {why}')
        v, w = np.asarray(linear, float), np.asarray(angular, float)
        if frame in ('tcp_link', 'tool0'):
            r = self.estimator.ee_rot
            v, w = r @ v, r @ w
        elif frame not in BASE_FRAMES:
            return self._refuse(f'twist rejected: frame {frame!r} is not base_link or tcp_link')
        why = self._ready_for_goals()
        if why:
            return self._refuse(f'twist rejected: {why}')
        sv, sw = float(np.linalg.norm(v)), float(np.linalg.norm(w))
        if sv > self.cfg.max_linear_speed:
            v = v * (self.cfg.max_linear_speed / sv)
        if sw > self.cfg.max_angular_speed:
            w = w * (self.cfg.max_angular_speed / sw)
        qd = ik.twist_to_joint_velocity(self.estimator.kin.ee_jac, np.concatenate([v, w]))
        peak = float(np.max(np.abs(qd) / (self.vmax * self.cfg.velocity_scale)))
        if peak > 1.0:  # near a singularity: slow down along the same direction
            qd /= peak
        if self.source != SERVO:
            self.servo_goal[:] = self.tracker.x
            self._servo_goal_l = list(self.tracker.x)
            self.source = SERVO
        self.servo_qd[:] = qd
        self._servo_qd_l = self.servo_qd.tolist()
        self.t_twist = now
        self.accepted += 1
        return True, ''

    # ------------------------------------------------------------------ tick
    def tick(self, now: float, dt: float | None = None) -> bool:
        """Compute the reference for time ``now``; ``dt`` [s] since the last tick (default:
        from ``now``). Returns False before the first joint state.

        The per-tick path works on Python lists (six joints: cheaper than numpy calls); the
        estimator, forward model and learning run at ``adapt_rate_hz`` on numpy arrays.
        """
        if not self.initialized:
            return False
        cfg = self.cfg
        if dt is None:
            dt = now - self.t
        dt = min(max(dt, 0.0), 5.0 * self.dt_nominal)
        self.t = now
        fresh_j = now - self.t_joints <= cfg.joint_timeout
        fresh_i = now - self.t_imu <= cfg.imu_timeout
        self.holding = not (fresh_j and fresh_i)
        tr = self.tracker
        # goal source -> tracker (every tick)
        if cfg.bypass:
            self._interpolate(now, dt)
        else:
            if self.source == SPARSE:
                g, gv = self.goals.sample(now)
                ff = cfg.goal_feedforward
                gv = [ff * v for v in gv]
            elif self.source == TRAJECTORY:
                g, gv = self.trajectory.sample(now)
            else:
                if now - self.t_twist <= cfg.twist_timeout:
                    self.servo_goal += self.servo_qd * dt
                    clip(self.servo_goal, self.lower, self.upper, self.servo_goal)
                    gv = self._servo_qd_l
                else:
                    gv = None
                g = self._servo_goal_l = self.servo_goal.tolist() if gv is not None \
                    else self._servo_goal_l
            tr.step(dt, g, gv, hold=self.holding)
        # health: is the arm following?
        if fresh_j:
            q = self._ql
            err = max([abs(r - qi) for r, qi in zip(self._ref_l, q)])
        else:
            err = 0.0
        healthy = err <= cfg.max_tracking_error
        if not healthy:
            self._bad_track += dt
            # after a spinal reflex (withdrawal), adopt the pose the arm was moved to instead
            # of pulling it back; otherwise keep the reference (the spinal layer brings the
            # arm back after a glitch)
            if self._bad_track >= cfg.resync_time and now - self._reflex_t <= cfg.reflex_window:
                self._resync()
        else:
            self._bad_track = 0.0
        # estimation and learning at adapt_rate_hz; in between the correction just runs on
        canc = self.canceller
        self.adapting = cfg.tremor_enabled and not self.holding and healthy and not cfg.bypass
        self._adapt_acc += dt
        if self._adapt_acc >= self.dt_adapt - 1e-4:
            da, self._adapt_acc = self._adapt_acc, 0.0
            self._learn(da, fresh_j, fresh_i)
        elif cfg.bypass:
            canc.fade(dt)
        else:
            canc.advance(dt)
        # reference = shaped motion + correction, inside the URDF limits
        lo, hi, vm = self._lower_l, self._upper_l, self._vmax_l
        u, ud = canc.u, canc.ud
        ref = [min(max(x + c, a), b) for x, c, a, b in zip(tr.x, u, lo, hi)]
        vel = [min(max(v + c, -m), m) for v, c, m in zip(tr.v, ud, vm)]
        self._ref_l = ref
        self.ref_pos[:] = ref
        self.ref_vel[:] = vel
        if cfg.inertia_feedforward and not cfg.bypass:
            # what the spinal's own feed-forward (home inertia diagonal) lacks: coupling and
            # the configuration-dependent part of M(q)
            np.dot(self._m_extra, tr.a, out=self.ref_eff)
        else:
            self.ref_eff[:] = 0.0
        # slow work: model refresh, disturbance torque phasor, status
        self._since_model += dt
        if self._since_model >= cfg.model_period and fresh_j and not cfg.bypass:
            self._since_model = 0.0
            self.fm.set_configuration(self.q)
            self._m_extra[:] = self.fm.M
            self._m_extra[np.diag_indices(self.n)] -= self.fm.m_ff
            canc.refresh_model()
        self._since_slow += dt
        if self._since_slow >= 0.05:
            self._since_slow = 0.0
            self._slow()
            c, s = math.cos(canc.phi), math.sin(canc.phi)
            np.multiply(self._tau_r, c, out=self.tremor_torque)
            self.tremor_torque -= self._tau_i * s
        return True

    def _learn(self, da: float, fresh_j: bool, fresh_i: bool) -> None:
        """Estimator, forward model and canceller, ``da`` [s] after the last call."""
        cfg, canc, est, tr = self.cfg, self.canceller, self.estimator, self.tracker
        if fresh_i:
            qd = est.update(da, self.q, self.qd, self.gyro, self.accel,
                            self.quat if self.has_quat else None)
        else:
            qd = est.update(da, self.q, self.qd)
        if cfg.bypass:
            canc.fade(da)
        elif fresh_j and cfg.tremor_enabled:
            # sensory prediction error: the motion the shaped reference does not explain
            self.fm.step(da, tr.x, tr.v, self.ref_eff)
            np.subtract(qd, self.fm.qd, out=self._err)
            canc.update(da, self._err, adapt=self.adapting)
        else:
            canc.fade(da)

    def _interpolate(self, now: float, dt: float) -> None:
        """Bypass shaping: straight line from the reference at the goal's arrival to the goal
        over one goal period, then hold (velocity-limited only)."""
        tr = self.tracker
        if self.holding:
            tr.v = [0.0] * self.n
            return
        s = min(max((now - self._lin_t0) / self._lin_T, 0.0), 1.0)
        h = max(dt, 1e-6)
        x_new = []
        v_new = []
        for x, a, b, vm in zip(tr.x, self._lin_from, self._lin_to, self._vmax_l):
            xn = a + s * (b - a)
            xn = min(max(xn, x - vm * h), x + vm * h)
            x_new.append(xn)
            v_new.append((xn - x) / h)
        tr.x, tr.v, tr.a = x_new, v_new, [0.0] * self.n

    def note_reflex(self, now: float) -> None:
        """The spinal layer reported a reflex (collision withdrawal) at ``now``."""
        self._reflex_t = now

    def _resync(self) -> None:
        self.tracker.reset(self.q)
        self.goals.reset(self.q)
        self.source = SPARSE
        self.canceller.reset_weights()
        self.fm.reset(self.q, self.dt_adapt)
        self.ref_pos[:] = self.q
        self._ref_l = self.q.tolist()
        self._lin_from = self.q.tolist()
        self._lin_to = self.q.tolist()
        self._bad_track = 0.0
        self.resyncs += 1

    def _slow(self) -> None:
        canc = self.canceller
        f = canc.f_hat
        if canc.locked:
            # torque phasor = P^-1 (disturbance velocity phasor, high-pass undone)
            p = self.fm.disturbance_response(f) * canc.hp.response(f)
            tau = np.linalg.solve(p, canc.disturbance_phasor())
            self._tau_r[:] = tau.real
            self._tau_i[:] = tau.imag
        else:
            self._tau_r[:] = 0.0
            self._tau_i[:] = 0.0
        if not self.initialized:
            self.status_level, self.status_message = 1, 'waiting for /joint_states'
        elif self.now_stale_reason():
            self.status_level, self.status_message = 1, self.now_stale_reason()
        elif self._bad_track > 0:
            self.status_level, self.status_message = 1, 'arm not following the reference'
        elif canc.resets and canc.state == 'backoff':
            self.status_level, self.status_message = 1, 'canceller backed off (diverging)'
        else:
            self.status_level = 0
            self.status_message = (f'tremor {canc.f_hat:.2f} Hz, {canc.state}' if canc.locked
                                   else f'no tremor, {canc.state}')

    def now_stale_reason(self) -> str:
        cfg = self.cfg
        parts = []
        if self.t - self.t_joints > cfg.joint_timeout:
            parts.append('/joint_states')
        if self.t - self.t_imu > cfg.imu_timeout:
            parts.append('/imu/data')
        return ('stale ' + ' and '.join(parts) + ': holding, not adapting') if parts else ''

    def status(self) -> dict:
        """Adaptation and estimation status (diagnostics values)."""
        canc, est = self.canceller, self.estimator
        est.derived()
        return {
            'source': self.source,
            'holding': self.holding,
            'adapting': self.adapting,
            'canceller_state': canc.state,
            'tremor_locked': canc.locked,
            'tremor_frequency_hz': canc.f_hat,
            'tremor_amplitude_rad_s': float(np.linalg.norm(canc.amplitude)),
            'tremor_phasor_rad_s': float(np.linalg.norm(canc.z)),
            'residual_phasor_rad_s': float(np.linalg.norm(canc.r)),
            'tremor_peak_ratio': canc.peak_ratio,
            'disturbance_rms_rad_s': float(np.sqrt(canc.disturbance_ms.sum())),
            'residual_rms_rad_s': float(np.sqrt(canc.residual_ms.sum())),
            'weights_norm_rad': canc.weight_norm,
            'tremor_torque_amplitude_nm': float(np.hypot(self._tau_r, self._tau_i).max()),
            'canceller_resets': canc.resets,
            'frequency_jumps': canc.jumps,
            'ee_position_m': est.ee_pos.tolist(),
            'ee_velocity_m_s': est.ee_twist[:3].tolist(),
            'ee_angular_velocity_rad_s': est.ee_twist[3:].tolist(),
            'ee_acceleration_m_s2': est.ee_acc.tolist(),
            'imu_used': est.imu_used,
            'tracking_error_rad': float(np.max(np.abs(self.ref_pos - self.q))),
            'goals_accepted': self.accepted,
            'goals_rejected': self.rejected,
            'resyncs': self.resyncs,
        }
