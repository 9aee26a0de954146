"""The spinal layer as one ROS-free object: reference handling, network, limits, reflex arc.

``SpinalController.step(q, qd, effort, t, dt, now)`` is one 1 kHz tick: it runs the collision
detector on the new joint state, picks the reference (live, hold, withdrawal, compliant hold or
the blend back), runs the spiking network and returns the joint torques to command (effort
interface: on top of the body's gravity compensation), inside the URDF limits. With
``command_interface='position'`` (position-only servos) it returns the tick's desired position
instead (inside the soft limits) and the network is not run.

Modes (``MODES``):

* ``hold``      no fresh reference: hold the pose latched when the reference went missing/stale;
* ``follow``    track the live reference;
* ``engage``    blend from the hold pose to the live reference over ``engage_time``;
* ``withdraw``  reflex: minimum-jerk withdrawal after a detected collision;
* ``compliant`` reflex: after the withdrawal, hold with the torque scaled by ``hold_scale``
  until ``reset_reflex()`` or ``quiet_time`` [s] without contact (0 = only on reset), then
  ``engage`` again.

The classical servo (``servo_torque``: PD on the model-derived gains of
:class:`neurovla_ros.common.servo.JointGains`) shares the torque with the network, per joint,
with a weight ``w`` in [0, 1]: ``tau = net + w (pd - net)``. ``w`` is the larger of

* the hold weight: it ramps to 1 over ``servo_blend_time`` while the arm is held (``hold`` mode,
  or tracking a stop's brake and hold through ``track``) and back to 0 over the same time once
  a reference engages: a hold is the classical servo's, with no jump either way;
* the error weight: a smoothstep from 0 to 1 as the position error |q_des - q| goes from
  ``servo_band[0]`` to ``servo_band[1]`` times the network's error unit ``e_ref``. Beyond the
  errors it was trained on the network's torque is not a restoring one (its input channels
  saturate; with the weights of 0d724b0 it even has the wrong sign past ~2 e_ref, so a hold
  pushed past it crept away at a constant speed): there the servo takes over.

The effort interface is on top of the body's gravity compensation, so the servo adds no gravity
term (the position interface does not run either).

Times: ``t`` is the joint-state time (the body's clock, for the reflex motion), ``now`` a
monotonic clock (for the reference timeout). Both in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import robot as robot_mod
from ..common.servo import JointGains
from ..robot.dynamics import ArmDynamics
from .encoding import AccelEstimator, Decoder, Encoder
from .lif import INPUT_EVENT, NetParams, SpinalNet
from .reflex import CollisionDetector, DetectorConfig, Withdrawal, WithdrawConfig, min_jerk

HOLD, FOLLOW, ENGAGE, WITHDRAW, COMPLIANT = 'hold', 'follow', 'engage', 'withdraw', 'compliant'
MODES = (HOLD, FOLLOW, ENGAGE, WITHDRAW, COMPLIANT)


@dataclass
class SpinalConfig:
    reference_timeout: float = 0.1   # a reference older than this is stale -> hold [s]
    engage_time: float = 0.3         # blend from a hold to the live reference [s]
    reflex_enabled: bool = True
    hold_scale: float = 0.3          # torque scale of the compliant hold after a withdrawal
    quiet_time: float = 1.0          # automatic recovery after this long without contact [s]
    velocity_band: float = 0.1       # the velocity guard acts in the top 10 % of the limit
    limit_margin: float = 0.02       # soft position limits this far inside the URDF's [rad]
    rest_velocity: float = 0.05      # slower than this (reference and arm) counts as rest [rad/s]
    feedforward: bool = True         # add the reference's effort field to the torque
    gain_omega_max: float = 40.0     # bandwidth cap of the model-derived gains [rad/s]
    gain_e_sat: float = 0.05         # error that saturates a joint's effort [rad]
    command_interface: str = 'effort'  # or 'position': the tick's desired position is the command
    servo_band: tuple = (1.0, 2.0)   # |position error| / e_ref where the PD servo takes over
    servo_blend_time: float = 0.1    # hold weight ramp to the PD servo and back [s]
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    withdraw: WithdrawConfig = field(default_factory=WithdrawConfig)


@dataclass
class ReflexEvent:
    t: float                  # joint-state time of the detection [s]
    joints: list              # names of the joints over threshold
    torque: np.ndarray        # estimated external torque [N m]
    threshold: np.ndarray     # threshold in force [N m]
    offset: np.ndarray | None  # planned withdrawal joint offset [rad] (None until planned)
    channel: str = 'joint_torque'   # which sensor saw it: joint_torque | wrench


class LimitGuard:
    """Keeps effort commands inside the URDF limits of position, velocity and effort.

    * effort: |tau| <= effort limit;
    * velocity: above ``1 - band`` of the velocity limit the torque that would speed the joint
      up is cut to ``kv (vmax - |qd|)`` (zero at the limit, braking beyond it), with ``kv``
      capped at ``inertia / dt`` for discrete-time stability;
    * position: the torque toward a soft limit (``margin`` inside the URDF range) is at most
      ``kp (limit - q) - kd qd``, the joint's own spring-damper toward that limit.

    Six joints: scalar Python is cheaper than a dozen numpy calls on 6-element arrays.
    """

    def __init__(self, gains: JointGains, model: robot_mod.RobotModel, inertia, dt=1e-3,
                 band=0.1, margin=0.02):
        lim = model.limits()
        self.effort = lim['effort'].tolist()
        self.vmax = lim['velocity'].tolist()
        self.upper = (lim['upper'] - margin).tolist()
        self.lower = (lim['lower'] + margin).tolist()
        kv = np.minimum(lim['effort'] / (band * lim['velocity']), np.asarray(inertia) / dt)
        self.kv = kv.tolist()
        self.vstart = ((1 - band) * lim['velocity']).tolist()
        self.kp, self.kd = gains.kp.tolist(), gains.kd.tolist()
        self._rows = list(zip(self.effort, self.vmax, self.vstart, self.kv, self.kp, self.kd,
                              self.upper, self.lower))
        self.table = np.array(list(zip(*self._rows)))   # the same rows (8, J) for the C core
        self.out = [0.0] * len(self.effort)
        self._clipped = np.zeros(1)

    @property
    def clipped(self) -> int:
        """Ticks where the guard changed the command (since the last reset)."""
        return int(self._clipped[0])

    @clipped.setter
    def clipped(self, n: int) -> None:
        self._clipped[0] = n

    def __call__(self, tau, q, qd) -> list:
        """Limited torques (a list, also kept in ``out``) for ``tau`` at the state q, qd."""
        out = self.out
        changed = False
        for i, (t, qi, vi, row) in enumerate(zip(tau.tolist(), q.tolist(), qd.tolist(),
                                                 self._rows)):
            eff, vmax, vstart, kv, kp, kd, upper, lower = row
            hi, lo = eff, -eff
            if vi > vstart:
                hi = min(hi, kv * (vmax - vi))
            elif vi < -vstart:
                lo = max(lo, -kv * (vmax + vi))
            b = kp * (upper - qi) - kd * vi
            if b < hi:
                hi = b
            b = kp * (lower - qi) - kd * vi
            if b > lo:
                lo = b
            if hi < -eff:
                hi = -eff
            if lo > eff:
                lo = eff
            v = hi if t > hi else (lo if t < lo else t)
            if v != t:
                changed = True
            out[i] = v
        if changed:
            self._clipped[0] += 1.0
        return out


class SpinalController:
    """One object per arm: see the module docstring."""

    def __init__(self, params: NetParams | None = None, cfg: SpinalConfig | None = None,
                 dyn: ArmDynamics | None = None, model: robot_mod.RobotModel | None = None,
                 record: bool = False, compiled: bool = True):
        self.cfg = cfg or SpinalConfig()
        self.model = model or robot_mod.load()
        self.dyn = dyn or ArmDynamics()
        self.params = params or NetParams.load()
        lim = self.model.limits()
        self.names = list(self.model.arm_joints)
        # the input/output unit the network was trained with (weights meta), else the default
        e_ref = float(self.params.meta.get('e_ref', JointGains.e_ref))
        self.gains = JointGains.for_arm(self.model, self.dyn, e_sat=self.cfg.gain_e_sat,
                                        omega_max=self.cfg.gain_omega_max, e_ref=e_ref)
        self.inertia = self.gains.inertia
        self.encoder = Encoder(self.gains, fine_gain=float(self.params.meta.get('fine_gain', 0.0)))
        if self.encoder.x.shape[0] != self.params.n_in:
            raise ValueError(f'weights expect {self.params.n_in} input channels, the encoder '
                             f'gives {self.encoder.x.shape[0]} (fine_gain in the weights meta)')
        self.decoder = Decoder(self.gains)
        self.accel = AccelEstimator(6)
        self.net = SpinalNet(self.params, n_joints=6, record=record)
        self.guard = LimitGuard(self.gains, self.model, self.inertia,
                                band=self.cfg.velocity_band, margin=self.cfg.limit_margin)
        self._compiled = compiled
        self.detector = CollisionDetector(self.dyn, lim['damping'], lim['friction'],
                                          self.cfg.detector, compiled=compiled)
        self.withdrawal = Withdrawal(self.dyn, lim['lower'], lim['upper'], self.cfg.withdraw)
        self.lower = lim['lower'] + self.cfg.limit_margin
        self.upper = lim['upper'] - self.cfg.limit_margin
        self.vmax = lim['velocity'].copy()
        self._neg_vmax = -self.vmax
        # live reference
        self.ref_q = np.zeros(6)
        self.ref_qd = np.zeros(6)
        self.ref_tau = np.zeros(6)     # feed-forward torque given with the reference [N m]
        self.ref_time = -np.inf
        self.has_ref = False
        # working state
        self.mode = HOLD
        self.hold_q = None
        self.engage_t0 = 0.0
        self.last_contact = -np.inf
        self.hold_weight = 0.0         # the PD servo's share while holding (module docstring)
        self.stopped = False           # a stop tracks its brake and hold (``track``)
        self.hold_drift = 0.0          # largest |q - hold_q| in the current hold [rad]
        self._pd = np.zeros(6)
        self._w = np.zeros(6)
        self.q_des = np.zeros(6)
        self.qd_des = np.zeros(6)
        self.tau = np.zeros(6)
        self.command = [0.0] * 6       # the last command (list) actually returned
        self.last_event: ReflexEvent | None = None
        self._plan_from = None         # (q, r, qd) of a detection whose withdrawal is unplanned
        self.events = 0
        self.reset_requested = False
        self.moving = False
        self._spikes_mark = self._sops_mark = 0.0
        self.rest_ticks = self.motion_ticks = 0
        self.rest_spikes = self.motion_spikes = 0.0
        self.rest_sops = self.motion_sops = 0.0
        self._rest_v = float(self.cfg.rest_velocity)
        self._core = self._compiled_core() if compiled else None

    def _compiled_core(self):
        """The C implementation of the numeric tick (``_core.c``) bound to this controller's
        arrays, or None when the extension is not built (the numpy code then runs)."""
        try:
            from ._core import Core
        except ImportError:
            return None
        e, a, n, g = self.encoder, self.accel, self.net, self.guard
        arrays = (e._vel_gain, e._inertia_n, e._damp_n, e._fric_n, a.qdd, a._prev, e.table, e.x,
                  n._wt_t, n._sa, n._out, n._decay, n.v, n._beta, n.tick_spikes, n._counts,
                  self.decoder.unit, self.decoder.tau, g.table, g._clipped)
        lo, inv = self._band()
        scalars = (e._inv_e, e._inv_veps, e.x_max, a.tau, a.max_dt, INPUT_EVENT, n._in_ops,
                   lo, inv)
        return Core(arrays, scalars, 6, e.x.shape[0], self.params.n_hidden,
                    self.params.substeps, int(n.record))

    def _band(self) -> tuple[float, float]:
        """The servo band as (start, 1 / width) in units of e_ref."""
        lo, hi = (float(b) for b in self.cfg.servo_band)
        if not 0.0 <= lo < hi:
            raise ValueError(f'servo_band {self.cfg.servo_band}: need 0 <= start < end')
        return lo, 1.0 / (hi - lo)

    def configure(self, cfg: SpinalConfig) -> None:
        """Take a new configuration between two ticks (the node's parameters set at run time).
        The tick reads ``cfg`` every time; a changed collision detector is rebuilt (its observer
        primes on the next sample, as after a dropped one); a withdrawal under way keeps its
        duration. The gains and the limit guard's settings are not run-time settings."""
        fixed = ('velocity_band', 'limit_margin', 'rest_velocity', 'gain_omega_max', 'gain_e_sat',
                 'servo_band')
        changed = [k for k in fixed if getattr(cfg, k) != getattr(self.cfg, k)]
        if changed:
            raise ValueError(f'{changed} are fixed when the controller is built')
        if cfg.detector != self.cfg.detector:
            lim = self.model.limits()
            self.detector = CollisionDetector(self.dyn, lim['damping'], lim['friction'],
                                              cfg.detector, compiled=self._compiled)
        self.withdrawal.cfg = cfg.withdraw
        self.cfg = cfg

    @property
    def compiled(self) -> bool:
        """Whether the tick runs in C (else numpy)."""
        return self._core is not None

    # ---- inputs ----
    def set_reference(self, q, qd=None, tau_ff=None, now: float = 0.0) -> None:
        """A new desired state (arm order, already validated finite of length 6)."""
        np.minimum(q, self.upper, out=self.ref_q)
        np.maximum(self.ref_q, self.lower, out=self.ref_q)
        if qd is None:
            self.ref_qd.fill(0.0)
        else:
            np.minimum(qd, self.vmax, out=self.ref_qd)
            np.maximum(self.ref_qd, self._neg_vmax, out=self.ref_qd)
        if tau_ff is None or not self.cfg.feedforward:
            self.ref_tau.fill(0.0)
        else:
            np.clip(tau_ff, -self.gains.effort, self.gains.effort, out=self.ref_tau)
        self.ref_time = now
        self.has_ref = True

    def reset_reflex(self) -> bool:
        """Leave the reflex (withdrawal or compliant hold); False when none was active."""
        if self.mode in (WITHDRAW, COMPLIANT):
            self.reset_requested = True
            return True
        return False

    def track(self, q, qd, now: float) -> None:
        """Follow (q, qd) from this tick on, with no engage blend and no feed-forward torque: a
        stop's brake profile or hold (spinal/safety.py), which starts at the measured state.
        Ends a reflex in progress (a stop allows no withdrawal motion). The PD servo holds
        (the hold weight ramps to 1) until ``hold`` re-seeds the hold at the resume."""
        self.set_reference(q, qd, None, now)
        self.mode = FOLLOW
        self.stopped = True

    def hold(self, q, drop_reference: bool = False) -> None:
        """Hold the measured pose ``q`` now; a fresh reference engages from it by the blend.
        ``drop_reference``: the live reference counts as stale from now (until a new one)."""
        self.stopped = False
        if drop_reference:
            self.ref_time = -np.inf
        self._hold_here(q)

    def reference_fresh(self, now: float) -> bool:
        return self.has_ref and now - self.ref_time <= self.cfg.reference_timeout

    # ---- the tick ----
    def step(self, q, qd, effort, t: float, dt: float, now: float) -> list:
        """One tick: joint state (8 or 6 joints, /joint_states order) -> arm torques [N m].

        ``effort`` None: no torque measurement (the detector skips this sample). Returns the
        command as a list of 6 floats (kept in ``command``). A detected collision leaves a
        ``ReflexEvent`` in ``last_event`` (and counts in ``events``) for this tick only; its
        first command brakes at the detected pose (the withdrawal's first sample whatever its
        direction), and ``after_tick`` plans the withdrawal (fills ``last_event.offset``) once
        that command is out. Call ``after_tick`` after every ``step``.
        """
        cfg = self.cfg
        qa, qda = q[:6], qd[:6]
        self.last_event = None
        if effort is not None and self.detector.update(q, qd, effort, dt):
            if cfg.reflex_enabled and self.mode in (HOLD, FOLLOW, ENGAGE):
                self._start_reflex(q, qd, t, defer=True)
            self.last_contact = t
        mode = self.mode
        follow = False
        # ---- the reference of this tick ----
        if mode == FOLLOW:
            if self.reference_fresh(now):
                q_des, qd_des, follow = self.ref_q, self.ref_qd, True
            else:
                q_des, qd_des = self._hold_here(qa), self.qd_des
        elif mode == WITHDRAW:
            q_des, qd_des, done = self.withdrawal.reference(t)
            if done:
                self.mode = COMPLIANT
        elif mode == COMPLIANT:
            q_des, qd_des = self.withdrawal.target_q, self.qd_des
            self.qd_des.fill(0.0)
            quiet = cfg.quiet_time > 0 and t - self.last_contact >= cfg.quiet_time
            if self.reset_requested or quiet:
                self.reset_requested = False
                self._hold_here(self.withdrawal.target_q)
        else:   # HOLD or ENGAGE
            self.reset_requested = False
            q_des, qd_des = self._engage(qa, t, now)
        compliant = self.mode == COMPLIANT
        T = cfg.servo_blend_time
        h = self.hold_weight
        if self.mode == HOLD or self.stopped:
            h = 1.0 if T <= 0 else min(1.0, h + dt / T)
        elif h > 0.0:
            h = 0.0 if T <= 0 else max(0.0, h - dt / T)
        self.hold_weight = h
        if cfg.command_interface == 'position':   # position-only servos close the loop
            self.command = np.clip(q_des, self.lower, self.upper).tolist()
            return self.command
        ff = self.ref_tau if follow and cfg.feedforward and not compliant else None
        if self._core is not None:   # the same as below, in C
            self.command = self._core.step(q_des, qd_des, qa, qda, dt,
                                           cfg.hold_scale if compliant else 1.0, ff,
                                           self.accel.primed, h)
            self.accel.primed = True
            return self.command
        qdd_des = self.accel.update(qd_des, dt)
        # ---- spiking network ----
        x = self.encoder.encode(q_des, qd_des, qa, qda, qdd_des)
        tau = self.decoder(self.net.tick(x))
        w, pd = self._w, self._pd
        lo, inv = self._band()
        np.abs(self.encoder.z[0], out=w)      # |q_des - q| / e_ref
        w -= lo
        w *= inv
        np.clip(w, 0.0, 1.0, out=w)
        np.multiply(w, 3.0 - 2.0 * w, out=pd)
        np.multiply(w, pd, out=w)             # smoothstep
        np.maximum(w, h, out=w)
        pd[:] = self.servo_torque(q_des, qd_des, qa, qda)
        pd -= tau
        pd *= w
        tau += pd
        if compliant:
            tau *= cfg.hold_scale
        elif ff is not None:
            tau += ff
        self.command = self.guard(tau, qa, qda)
        return self.command

    def servo_torque(self, q_des, qd_des, q, qd) -> np.ndarray:
        """The classical PD servo's torque (before the limit guard) [N m]."""
        g = self.gains
        return g.kp * (q_des - q) + g.kd * (qd_des - qd)

    def _engage(self, qa, t, now):
        """HOLD / ENGAGE: hold pose, or the blend from it to a fresh live reference."""
        if not self.reference_fresh(now):
            if self.mode != HOLD or self.hold_q is None:
                self._hold_here(qa)
            self.qd_des.fill(0.0)
            return self.hold_q, self.qd_des
        if self.hold_q is None:
            self.hold_q = np.array(qa, float)
        if self.mode == HOLD:
            self.mode = ENGAGE
            self.engage_t0 = t
        T = self.cfg.engage_time
        s, ds = min_jerk((t - self.engage_t0) / T) if T > 0 else (1.0, 0.0)
        # q = hold + s (ref - hold), qd = s ref_qd + ds / T (ref - hold)
        np.subtract(self.ref_q, self.hold_q, out=self.q_des)
        np.multiply(self.q_des, ds / T if T > 0 else 0.0, out=self.qd_des)
        self.q_des *= s
        self.q_des += self.hold_q
        self.qd_des += s * self.ref_qd
        if s >= 1.0:
            self.mode = FOLLOW
        return self.q_des, self.qd_des

    def after_tick(self, q, qd, effort=None, dt: float = 0.0) -> None:
        """Off the latency path (call after the command went out): the withdrawal plan of a
        collision detected in this tick, the detector's preparation for the next sample,
        statistics."""
        if self._plan_from is not None:     # before prepare(): both pose the arm model
            self.last_event.offset = self.withdrawal.plan(*self._plan_from)
            self._plan_from = None
        self.detector.prepare(q, qd, effort, dt)
        rv = self._rest_v
        v = qd[:6].tolist()      # list ops: ~4x cheaper than numpy reductions on 6 values
        moving = max(v) > rv or -min(v) > rv
        if not moving:
            qd_des = self.ref_qd if self.mode == FOLLOW else self.qd_des
            v = qd_des.tolist()
            moving = max(v) > rv or -min(v) > rv
        self.moving = moving
        if self.mode == HOLD:       # the hold's creep monitor (reported by the node)
            d = max(abs(a - b) for a, b in zip(q[:6].tolist(), self.hold_q.tolist()))
            if d > self.hold_drift:
                self.hold_drift = d
        net = self.net
        d_spk, d_sops = net.spikes - self._spikes_mark, net.sops - self._sops_mark
        self._spikes_mark, self._sops_mark = net.spikes, net.sops
        if moving:
            self.motion_ticks += 1
            self.motion_spikes += d_spk
            self.motion_sops += d_sops
        else:
            self.rest_ticks += 1
            self.rest_spikes += d_spk
            self.rest_sops += d_sops

    def _hold_here(self, q):
        self.hold_q = np.array(q[:6], float)
        self.hold_drift = 0.0
        self.mode = HOLD
        self.qd_des.fill(0.0)
        self.accel.reset()
        return self.hold_q

    def external_trigger(self, q, qd, t: float, channel: str = 'wrench') -> bool:
        """A collision seen by another channel: withdraw (from joint state q, qd at t)."""
        if not (self.cfg.reflex_enabled and self.mode in (HOLD, FOLLOW, ENGAGE)):
            self.last_contact = t
            return False
        self._start_reflex(q, qd, t, channel)
        self.last_contact = t
        return True

    def _start_reflex(self, q, qd, t, channel: str = 'joint_torque', defer=False) -> None:
        """Enter the withdrawal; ``defer``: plan it in ``after_tick`` (the first reference,
        the pose at ``t`` at rest, does not depend on the plan)."""
        det = self.detector
        if defer:
            self.withdrawal.start(q, t)
            self._plan_from = (np.array(q[:8], float), det.r.copy(), np.array(qd[:8], float))
            dq = None
        else:
            dq = self.withdrawal.plan(q, det.r, qd, t)
        self.mode = WITHDRAW
        self.accel.reset()        # the withdrawal profile starts from rest: no stale feed-forward
        self.events += 1
        self.last_event = ReflexEvent(t=t, joints=[n for n, h in zip(self.names, det.hit) if h],
                                      torque=det.r.copy(), threshold=det.level.copy(), offset=dq,
                                      channel=channel)

    # ---- figures ----
    def firing_rates(self, tick_s: float = 1e-3, extra_neurons: int = 0,
                     extra_motion_spikes: float = 0.0) -> tuple[float, float]:
        """Mean hidden firing rate at rest and in motion [spikes / neuron / s]; ``extra_*``:
        another population that fires only in motion (the rhythm generator's ring)."""
        n = self.net.n_neurons + extra_neurons
        rest = self.rest_spikes / max(1, self.rest_ticks) / n / tick_s
        motion = (self.motion_spikes + extra_motion_spikes) / max(1, self.motion_ticks) / n / tick_s
        return rest, motion

    def reset_stats(self) -> None:
        self.rest_ticks = self.motion_ticks = 0
        self.rest_spikes = self.motion_spikes = 0.0
        self.rest_sops = self.motion_sops = 0.0
        self.net.reset_counters()
        self._spikes_mark = self._sops_mark = 0.0
        self.guard.clipped = 0
