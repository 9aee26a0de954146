"""The cerebellum as one ROS-free object: inputs, one ``tick``, the reference and its status.

Per tick (``rate_hz``, driven by the joint-state stream):

1. goal shaping: the active goal source (:mod:`.goals`: sparse goals through an alpha-beta
   filter, a goal trajectory, or a teleop twist) feeds the jerk-limited tracker
   (:mod:`.shaping`) - or, as baselines (``smoothing``), plain linear interpolation of the
   goals or a Butterworth low-pass + Ruckig (:mod:`.baselines`);
2. at ``adapt_rate_hz``: state estimate (encoders + wrist IMU through the URDF kinematics,
   :mod:`.estimator`), forward model of the spinal layer + arm (:mod:`.forward_model`) and
   the adaptive tremor canceller learning from the fused joint velocity (:mod:`.adaptive`);
   in between the correction just runs on;
3. the reference: shaped motion + correction, inside the URDF limits, with the inertia
   feed-forward torque.

The tick's arithmetic runs in C (``_tick.c``) when the extension is built; the numpy code
(:meth:`Cerebellum._tick_numpy` and the methods it calls) is the reference it is checked
against bit for bit. Work that is due only now and then - the kinematics refresh (20 Hz),
the canceller's spectrum and frequency tracking (10 Hz), the forward model's inertia at the
current pose (5 Hz), the disturbance torque phasor and the status (20 Hz), a resync - is
flagged by the tick and done by :meth:`Cerebellum.after_tick`, which the caller runs once the
reference is out: it acts on the ticks after.

Safety: stale joints or IMU -> no adaptation, the correction fades, the reference comes to a
smooth stop and holds, goals are refused until the sensors are back. A tracking error beyond
``max_tracking_error`` (spinal reflex, blocked arm) stops adaptation. NaN/inf, wrong sizes,
out-of-limit, unreachable goals are refused with the reason (``accept_*`` return it).
After a spinal reflex (``note_reflex``) a lasting tracking error restarts the reference from
the measured pose: the arm stays where the withdrawal took it.
"""
from __future__ import annotations

import math

import numpy as np

from ..robot.model import RobotModel
from .adaptive import TremorCanceller
from .estimator import StateEstimator
from .filters import clip
from .forward_model import ServoForwardModel, spinal_servo_model
from .goals import SPARSE, TRAJECTORY, GoalIntake
from .ops import matvec
from .params import CerebellumConfig
from .shaping import JerkLimitedTracker
from .state import Shared

SMOOTHINGS = ('cerebellum', 'linear', 'ruckig')
CEREBELLUM, LINEAR, RUCKIG = range(3)
# work flagged by the tick for after_tick (bits of ``due``)
DUE_RESYNC, DUE_MODEL, DUE_SLOW = 1, 2, 4
SLOW_PERIOD = 0.05   # [s] disturbance torque phasor and status


class Cerebellum(Shared):
    """See the module docstring. Times are seconds on one clock chosen by the caller.

    compiled: run the tick in C (if the extension is built); False: the numpy reference.
    """

    SLOTS = ('t', 't_joints', 't_imu', 'has_quat:bool', 'initialized:bool', 'holding:bool',
             'adapting:bool', 'smoothing_code:int', 'dt_nominal', 'dt_adapt', 'adapt_acc',
             'bad_track', 'reflex_t', 'since_model', 'since_slow', 'due:int',
             # the configuration the tick reads (written by configure())
             'joint_timeout', 'imu_timeout', 'goal_feedforward', 'twist_timeout',
             'max_tracking_error', 'resync_time', 'reflex_window', 'tremor_enabled:bool',
             'inertia_feedforward:bool', 'model_period', 'halt_acceleration', 'halt_jerk')

    def __init__(self, model: RobotModel, cfg: CerebellumConfig | None = None,
                 forward_model: ServoForwardModel | None = None, compiled: bool = True):
        super().__init__()
        self.cfg = cfg = cfg or CerebellumConfig()
        self.model = model
        self.names = list(model.arm_joints)
        n = self.n = len(self.names)
        lim = model.limits()
        self.lower, self.upper, self.vmax = lim['lower'], lim['upper'], lim['velocity']
        self.dt_nominal = 1.0 / cfg.rate_hz
        self.dt_adapt = 1.0 / min(cfg.adapt_rate_hz, cfg.rate_hz)
        self.estimator = StateEstimator(model, cfg.crossover_hz, cfg.kinematics_period)
        self.tracker = JerkLimitedTracker(self.lower, self.upper, self.vmax * cfg.velocity_scale,
                                          cfg.max_acceleration, cfg.max_jerk,
                                          2.0 * math.pi * cfg.bandwidth_hz)
        self.intake = GoalIntake(model, cfg, self.tracker, self.estimator, self._not_ready)
        self.accept_joint_goal = self.intake.accept_joint_goal
        self.accept_pose_goal = self.intake.accept_pose_goal
        self.accept_trajectory = self.intake.accept_trajectory
        self.accept_twist = self.intake.accept_twist
        self.fm = forward_model or spinal_servo_model(
            model, e_sat=cfg.servo_e_sat,
            omega_max=cfg.servo_omega_max, accel_feedforward=cfg.servo_accel_feedforward,
            delay=cfg.loop_delay)
        self.fm.reset(model.home_pose(), self.dt_adapt)   # fixes the delay line's size
        self._m_extra = np.zeros((n, n))
        self._set_m_extra()
        self.canceller = TremorCanceller(
            n, 1.0 / self.dt_adapt, self.fm.velocity_response,
            band=(cfg.band_low_hz, cfg.band_high_hz), adapt_time=cfg.adapt_time,
            leak_time=cfg.leak_time, max_correction=cfg.max_correction, window=cfg.window,
            min_amplitude=cfg.min_amplitude, jump_hz=cfg.jump_hz, highpass_hz=cfg.highpass_hz)
        self.follower = None          # the Ruckig baseline (smoothing ruckig), made on demand
        # latest inputs
        self.q = np.zeros(n)
        self.qd = np.zeros(n)
        self.t_joints = -math.inf
        self.gyro = np.zeros(3)
        self.accel = np.zeros(3)
        self.quat = np.array([0.0, 0.0, 0.0, 1.0])
        self.t_imu = -math.inf
        # working arrays
        self._goal_p = np.zeros(n)
        self._goal_v = np.zeros(n)
        self._err = np.zeros(n)
        # outputs
        self.ref_pos = np.zeros(n)
        self.ref_vel = np.zeros(n)
        self.ref_eff = np.zeros(n)          # feed-forward torque [N m]
        self.tremor_torque = np.zeros(n)    # predicted periodic disturbance torque [N m]
        self._tau_r = np.zeros(n)
        self._tau_i = np.zeros(n)
        self.status_level, self.status_message = 1, 'waiting for /joint_states'
        self.t = -math.inf
        self.reflex_t = -math.inf
        self.since_slow = math.inf
        self.holding = True
        self.resyncs = 0
        self.configure()
        self._c = self._compiled() if compiled else None

    # ------------------------------------------------------------------ configuration
    def configure(self) -> None:
        """Apply ``cfg`` after a change at run time (the parameters that can change)."""
        cfg, canc = self.cfg, self.canceller
        for name in ('joint_timeout', 'imu_timeout', 'goal_feedforward', 'twist_timeout',
                     'max_tracking_error', 'resync_time', 'reflex_window', 'tremor_enabled',
                     'inertia_feedforward', 'model_period', 'halt_acceleration', 'halt_jerk'):
            setattr(self, name, getattr(cfg, name))
        canc.adapt_time, canc.leak_time = cfg.adapt_time, cfg.leak_time
        canc.min_amplitude = cfg.min_amplitude
        canc.max_correction[:] = cfg.max_correction
        mode = SMOOTHINGS.index(cfg.smoothing)
        if mode == RUCKIG and self.follower is None:
            from .baselines import RuckigFollower
            self.follower = RuckigFollower(self.tracker, self.dt_nominal, cfg.ruckig_lowpass_hz)
            self.intake.on_joint_goal = self.follower.goal
        if mode == RUCKIG and self.smoothing_code != RUCKIG:
            self.follower.reset()        # from the reference's current motion
        self.smoothing_code = mode

    @property
    def smoothing(self) -> str:
        """cerebellum | linear | ruckig"""
        return SMOOTHINGS[self.smoothing_code]

    def _compiled(self):
        """The C tick (``_tick.c``) bound to this object's arrays, or None when the extension
        is not built (the numpy reference then runs)."""
        try:
            from . import _tick
        except ImportError:
            return None
        slots, arrays = self.shared_state()
        self._bound = {k: a.ctypes.data for k, a in arrays.items()}
        self._bound.update({k: o._s.ctypes.data for k, o in slots.items()})
        return _tick.Tick({k: (o.SLOTS, o._s) for k, o in slots.items()}, arrays, self.n)

    def bound_arrays_intact(self) -> bool:
        """Whether the arrays the C tick was bound to are still the objects' own (no Python
        code replaced one instead of writing into it)."""
        slots, arrays = self.shared_state()
        now = {k: a.ctypes.data for k, a in arrays.items()}
        now.update({k: o._s.ctypes.data for k, o in slots.items()})
        return self._c is None or now == self._bound

    def shared_state(self) -> tuple[dict, dict]:
        """What the C tick works on: {name: Shared object} (their slots) and {name: array}
        (the objects' own arrays, complex ones as float64 views)."""
        est, fm, canc, gi, tr = self.estimator, self.fm, self.canceller, self.intake, \
            self.tracker
        kin = est.kin
        slots = {'core': self, 'intake': gi, 'goals': gi.goals, 'tracker': tr,
                 'estimator': est, 'model': fm, 'canceller': canc, 'highpass': canc.hp}
        arrays = {
            'q': self.q, 'qd': self.qd, 'gyro': self.gyro, 'accel': self.accel,
            'quat': self.quat, 'ref_pos': self.ref_pos, 'ref_vel': self.ref_vel,
            'ref_eff': self.ref_eff, 'm_extra': self._m_extra, 'goal_p': self._goal_p,
            'goal_v': self._goal_v, 'err': self._err, 'lower': self.lower,
            'upper': self.upper, 'vmax': self.vmax,
            'servo_goal': gi.servo_goal, 'servo_qd': gi.servo_qd, 'lin_from': gi.lin_from,
            'lin_to': gi.lin_to, 'goal_filter_p': gi.goals.p, 'goal_filter_v': gi.goals.v,
            'tr_x': tr.x, 'tr_v': tr.v, 'tr_a': tr.a, 'tr_j': tr.j, 'tr_lower': tr.lower,
            'tr_upper': tr.upper, 'tr_vmax': tr.vmax, 'tr_amax': tr.amax, 'tr_jmax': tr.jmax,
            'qd_fused': est.qd_fused, 'imu_rot': est.imu_rot, 'twist_enc': est._twist_enc,
            'twist_f': est._twist_f, 'gyro_prev': est._gyro_prev, 'alpha': est._alpha,
            'w_meas': est._w_meas, 'a_imu': est._a_imu, 'dtw': est._dtw,
            'qd_enc': est._qd_enc, 'est_q': est._q, 'imu_jac': kin.imu_jac,
            'imu_jac_pinv': kin.imu_jac_pinv,
            'kp': fm.kp, 'kd': fm.kd, 'b': fm.b, 'b_ff': fm.b_ff, 'm_ff': fm.m_ff, 'm': fm.m,
            'fm_q': fm.q, 'fm_qd': fm.qd, 'fm_qdd': fm.qdd, 'torque': fm.torque,
            'line': fm._line, 'acc': fm._acc, 'rd_prev': fm._rd_prev,
            'w': canc.w.view(np.float64), 'g': canc.g.view(np.float64),
            'g_inv': canc.g_inv.view(np.float64), 'z': canc.z.view(np.float64),
            'r': canc.r.view(np.float64), 'max_correction': canc.max_correction,
            'cap': canc._cap, 'e_hp': canc.e_hp, 'dist': canc.dist, 'buf': canc.buf,
            'tbuf': canc.tbuf, 'residual_ms': canc.residual_ms,
            'disturbance_ms': canc.disturbance_ms, 'u': canc.u, 'ud': canc.ud,
            'hp_x1': canc.hp.x1, 'hp_y1': canc.hp.y1, 'hp_x2': canc.hp.x2, 'hp_y': canc.hp.y,
        }
        return slots, arrays

    @property
    def compiled(self) -> bool:
        """Whether the tick runs in C (else numpy)."""
        return self._c is not None

    # ------------------------------------------------------------------ sensor inputs
    def set_joints(self, now: float, q, qd) -> None:
        """Arm joint positions [rad] and velocities [rad/s] (validated by the caller)."""
        self.q[:] = q
        self.qd[:] = qd
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
        self.intake.reset(self.tracker.x)    # the baseline holds here until the first goal
        self.fm.reset(self.tracker.x, self.dt_adapt)
        self.ref_pos[:] = self.tracker.x
        if self.follower is not None:
            self.follower.reset()
        self.initialized = True
        self.t = now

    def _not_ready(self) -> str | None:
        """Why goals cannot be taken now (None: they can)."""
        if not self.initialized:
            return 'no joint state yet'
        if self.holding:
            return 'holding: sensors stale'
        return None

    def note_reflex(self, now: float) -> None:
        """The spinal layer reported a reflex (collision withdrawal) at ``now``."""
        self.reflex_t = now

    # ------------------------------------------------------------------ tick
    def tick(self, now: float, dt: float | None = None) -> bool:
        """Compute the reference for time ``now``; ``dt`` [s] since the last tick (default:
        from ``now``). Returns False before the first joint state. Run :meth:`after_tick`
        after it (once the reference is out)."""
        if not self.initialized:
            return False
        if dt is None:
            dt = now - self.t
        mode = self.smoothing_code
        if mode == RUCKIG:    # the baseline shapes in Python (Ruckig's bindings)
            self.follower.step(min(max(dt, 0.0), 5.0 * self.dt_nominal), self.holding)
        elif mode == CEREBELLUM and self.intake.source_code == 1:   # TRAJECTORY
            self.intake.trajectory.sample(now, self._goal_p, self._goal_v)
        if self._c is not None:
            self._c.tick(now, dt)        # the same as _tick_numpy, in C
        else:
            self._tick_numpy(now, dt)
        return True

    def _tick_numpy(self, now: float, dt: float) -> None:
        """The tick's arithmetic (the reference of ``_tick.c``)."""
        dt = min(max(dt, 0.0), 5.0 * self.dt_nominal)
        self.t = now
        fresh_j = now - self.t_joints <= self.joint_timeout
        fresh_i = now - self.t_imu <= self.imu_timeout
        holding = not (fresh_j and fresh_i)
        self.holding = holding
        tr, gi = self.tracker, self.intake
        mode = self.smoothing_code
        cereb = mode == CEREBELLUM
        # goal source -> tracker
        if mode == LINEAR:
            self._interpolate(now, dt, holding)
        elif cereb:
            g, gv = self._goal_p, self._goal_v
            source = gi.source_code
            halt = False
            if source == 0:          # SPARSE
                gi.goals.sample(now, g, gv)
                gv *= self.goal_feedforward
            elif source == 2:        # SERVO: integrate the teleop twist
                if np.any(gi.servo_qd != 0.0) and now - gi.t_twist <= self.twist_timeout:
                    gi.servo_goal += gi.servo_qd * dt
                    clip(gi.servo_goal, self.lower, self.upper, gi.servo_goal)
                    gv[:] = gi.servo_qd
                    g[:] = gi.servo_goal
                else:                # zero twist or timed out: halt, no goal to go back to
                    halt = True
            # TRAJECTORY: sampled into g, gv by tick()
            if halt and not holding:     # the next twist starts where the halt ends
                tr.brake(dt, self.halt_acceleration, self.halt_jerk)
                gi.servo_goal[:] = tr.x
            else:
                tr.step(dt, g, gv, hold=holding)
        # health: is the arm following?
        err = float(np.max(np.abs(self.ref_pos - self.q))) if fresh_j else 0.0
        healthy = err <= self.max_tracking_error
        if not healthy:
            self.bad_track += dt
            # after a spinal reflex (withdrawal), adopt the pose the arm was moved to instead
            # of pulling it back; otherwise keep the reference (the spinal layer brings the
            # arm back after a glitch)
            if self.bad_track >= self.resync_time and now - self.reflex_t <= self.reflex_window:
                self.due |= DUE_RESYNC
        else:
            self.bad_track = 0.0
        # estimation and learning at adapt_rate_hz; in between the correction just runs on
        canc = self.canceller
        adapting = self.tremor_enabled and not holding and healthy and cereb
        self.adapting = adapting
        self.adapt_acc += dt
        if self.adapt_acc >= self.dt_adapt - 1e-4:
            da = self.adapt_acc
            self.adapt_acc = 0.0
            self._learn(da, fresh_j, fresh_i, cereb, adapting)
        elif not cereb:
            canc.fade(dt)
        else:
            canc.advance(dt)
        # reference = shaped motion + correction, inside the URDF limits
        np.minimum(np.maximum(tr.x + canc.u, self.lower), self.upper, out=self.ref_pos)
        np.minimum(np.maximum(tr.v + canc.ud, -self.vmax), self.vmax, out=self.ref_vel)
        if self.inertia_feedforward and cereb:
            # what the spinal's own feed-forward (home inertia diagonal) lacks: coupling and
            # the configuration-dependent part of M(q)
            matvec(self._m_extra, tr.a, self.ref_eff)
        else:
            self.ref_eff[:] = 0.0
        # work for after_tick
        self.since_model += dt
        if self.since_model >= self.model_period and fresh_j and cereb:
            self.since_model = 0.0
            self.due |= DUE_MODEL
        self.since_slow += dt
        if self.since_slow >= SLOW_PERIOD:
            self.since_slow = 0.0
            self.due |= DUE_SLOW

    def _learn(self, da: float, fresh_j: bool, fresh_i: bool, cereb: bool,
               adapting: bool) -> None:
        """Estimator, forward model and canceller, ``da`` [s] after the last call."""
        canc, est = self.canceller, self.estimator
        if fresh_i:
            qd = est.update(da, self.q, self.qd, self.gyro, self.accel,
                            self.quat if self.has_quat else None, defer=True)
        else:
            qd = est.update(da, self.q, self.qd, defer=True)
        if not cereb:
            canc.fade(da)
        elif fresh_j and fresh_i and self.tremor_enabled:
            # (either sensor stale: the reference holds, the correction fades below)
            # sensory prediction error: the motion the shaped reference does not explain
            tr = self.tracker
            self.fm.step(da, tr.x, tr.v, self.ref_eff)
            np.subtract(qd, self.fm.qd, out=self._err)
            canc.update(da, self._err, adapt=adapting, defer=True)
        else:
            canc.fade(da)

    def _interpolate(self, now: float, dt: float, holding: bool) -> None:
        """Baseline shaping: straight line from the reference at the goal's arrival to the
        goal over one goal period, then hold (velocity-limited only)."""
        tr, gi = self.tracker, self.intake
        if holding:
            tr.v[:] = 0.0
            return
        s = min(max((now - gi.lin_t0) / gi.lin_T, 0.0), 1.0)
        h = max(dt, 1e-6)
        xn = gi.lin_from + s * (gi.lin_to - gi.lin_from)
        step = self.vmax * h
        xn = np.minimum(np.maximum(xn, tr.x - step), tr.x + step)
        np.divide(xn - tr.x, h, out=tr.v)
        tr.x[:] = xn
        tr.a[:] = 0.0

    # ------------------------------------------------------------------ after the tick
    @property
    def work_due(self) -> bool:
        """Whether :meth:`after_tick` has anything to do."""
        return bool(self.due) or self.estimator.kin_due or self.canceller.track_due

    def after_tick(self) -> None:
        """The work the last tick found due (see the module docstring); cheap when none."""
        est, canc = self.estimator, self.canceller
        if est.kin_due:          # the two costly ones (~0.3 ms each) never in the same call
            est.refresh_kinematics()
        elif canc.track_due:
            canc.track_frequency()
        due = self.due
        if not due:
            return
        self.due = 0
        if due & DUE_RESYNC:
            self._resync()
        if due & DUE_MODEL:
            self.fm.set_configuration(self.q)
            self._set_m_extra()
            canc.refresh_model()
        if due & DUE_SLOW:
            self._slow()
            phi = canc.phi
            np.multiply(self._tau_r, math.cos(phi), out=self.tremor_torque)
            self.tremor_torque -= self._tau_i * math.sin(phi)

    def _set_m_extra(self) -> None:
        self._m_extra[:] = self.fm.M
        self._m_extra[np.diag_indices(self.n)] -= self.fm.m_ff

    def _resync(self) -> None:
        self.tracker.reset(self.q)
        self.intake.reset(self.q)
        self.canceller.reset_weights()
        self.fm.reset(self.q, self.dt_adapt)
        self.ref_pos[:] = self.q
        if self.follower is not None:
            self.follower.reset()
        self.bad_track = 0.0
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
        elif self.bad_track > 0:
            self.status_level, self.status_message = 1, 'arm not following the reference'
        elif canc.resets and canc.state == 'backoff':
            self.status_level, self.status_message = 1, 'canceller backed off (diverging)'
        else:
            self.status_level = 0
            self.status_message = (f'tremor {canc.f_hat:.2f} Hz, {canc.state}' if canc.locked
                                   else f'no tremor, {canc.state}')

    def now_stale_reason(self) -> str:
        parts = []
        if self.t - self.t_joints > self.joint_timeout:
            parts.append('/joint_states')
        if self.t - self.t_imu > self.imu_timeout:
            parts.append('/imu/data')
        return ('stale ' + ' and '.join(parts) + ': holding, not adapting') if parts else ''

    def status(self) -> dict:
        """Adaptation and estimation status (diagnostics values)."""
        canc, est, gi = self.canceller, self.estimator, self.intake
        est.derived()
        streaming = gi.source == SPARSE and gi.goals.active
        goal_age = self.t - gi.goals.t if streaming else math.inf   # inf: no goal stream
        return {
            'source': gi.source,
            'smoothing': self.smoothing,
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
            'goal_age_s': goal_age,           # since the last sparse goal (the cortex's)
            'goals_stale': streaming and goal_age > gi.goals.timeout,
            'goals_accepted': gi.accepted,
            'goals_rejected': gi.rejected,
            'goals_rejected_not_ready': gi.rejected_not_ready,
            'resyncs': self.resyncs,
        }


__all__ = ['Cerebellum', 'CerebellumConfig', 'SMOOTHINGS', 'SPARSE', 'TRAJECTORY']
