"""Spinal node ``spinal``: the spiking joint controller at the joint-state rate, plus reflexes.

Interfaces
    /joint_states [sensor_msgs/JointState]            measured state; every sample is one tick
    <reference_topic> [sensor_msgs/JointState]        desired position (+ velocity, + effort)
    <wrench_topic> [geometry_msgs/WrenchStamped]      only when wrench_threshold > 0
    <command_topic> [std_msgs/Float64MultiArray]      arm torques (effort interface) or
                                                      positions (command_interface position)
    ~/reflex [diagnostic_msgs/DiagnosticArray]        one status per reflex event / recovery
    /diagnostics [diagnostic_msgs/DiagnosticArray]    mode, tick timing, firing rates, energy
    ~/reset [std_srvs/Trigger]                        leave the reflex
    estop [std_msgs/Bool, latched]                    true: emergency stop (category 1)
    ~/stop, ~/resume [std_srvs/Trigger]               protective stop (category 2); resume
    ~/safety [diagnostic_msgs/DiagnosticArray, latched]  stop and watchdog state, on change
    ~/rhythm [std_msgs/String]                        a rhythm program (docs/rhythm.md)
    ~/rhythm_events [diagnostic_msgs/DiagnosticArray] one status per program event: started,
                                                      stage_done, finished, aborted, refused
    <rhythm_imu_topic> [sensor_msgs/Imu]              wrist IMU the generator entrains to

Rhythm programs (:mod:`neurovla_ros.spinal.rhythm`): while one runs, each tick's reference is
the generator's offset around the base, the cerebellum reference (the pose at the program
start while the cerebellum holds it, with its tremor correction), or the pose at the start when
no cerebellum reference is fresh. The IMU is taken at ``rhythm_sense_rate_hz`` after the
command is out (``LatestSample``: nothing per message). A stop (estop, ~/stop), a reflex, the
state watchdog or a cerebellum reference ``rhythm_preempt_distance`` away from the start
(a new goal) aborts the program at once (a stop brakes from there; a new goal engages by the
blend from the measured pose); ``stop`` ends it at the end of the current cycle. At the end the
PD servo holds the base pose (not the measured one, which the arm's tracking lag leaves a few
mrad off), and a fresh cerebellum reference engages from there.

Stop functions and the state watchdog (the logic: :mod:`neurovla_ros.spinal.safety`): while
stopped, each tick tracks the brake profile, then the held measured pose (``ctrl.track``); a
resume (``~/resume``; refused while estop is true: estop false alone does not resume) re-seeds
the hold at the measured pose and a fresh reference engages by the blend. A timer checks the
state age: older than ``state_timeout`` -> zero torque is commanded (effort interface: the
body's gravity compensation and the joints' own damping hold the arm; a position hold would
need a position interface) and the status is ERROR; fresh state -> hold there, then engage.

Each /joint_states sample runs one tick in its callback: the collision detector first, then the
network, then the command is published; the withdrawal plan of a collision detected in the tick
(its first command, a brake at the detected pose, does not need it), the reflex event and the
bookkeeping come after the publish. The work is done by
the ROS-free :class:`neurovla_ros.spinal.controller.SpinalController`. Holds (no fresh
reference, or a stop) are the controller's PD servo; /diagnostics reports its share
(``hold_weight``) and how far a hold moved from its pose (``hold_drift_rad``: ERROR beyond
``standstill_tolerance``).
"""
from __future__ import annotations

import math
import time

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import WrenchStamped
from rclpy._rclpy_pybind11 import RCLError
from rclpy.node import Node
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import Trigger

from ..common.cdr import ImuReader, JointStateReader
from ..common.rosutil import (
    COMMAND_QOS,
    LATCHED_QOS,
    LATEST_QOS,
    LatestSample,
    Throttled,
    declare_params,
    decoder,
    diagnostic_status,
    float64_array_template,
    run,
)
from ..robot.model import FINGER_JOINTS
from .controller import COMPLIANT, WITHDRAW, SpinalConfig, SpinalController
from .lif import WEIGHTS_FILE, NetParams
from .params import NODE_NAME, PARAMS, command_topic
from .reflex import DetectorConfig, WithdrawConfig, WrenchDetector
from .rhythm import (
    AxisSensor,
    Limits,
    ProgramError,
    RhythmConfig,
    RhythmGenerator,
    WindowRhythm,
    check_limits,
    joint_direction,
    parse,
)
from .safety import PROTECTIVE, BrakeConfig, StateWatchdog, StopState


def config_from(p) -> SpinalConfig:
    """SpinalConfig from the node's parameter namespace."""
    return SpinalConfig(
        reference_timeout=p.reference_timeout, engage_time=p.engage_time,
        reflex_enabled=p.reflex_enabled, hold_scale=p.hold_scale, quiet_time=p.quiet_time,
        feedforward=p.feedforward, command_interface=p.command_interface,
        detector=DetectorConfig(
            thresholds=(p.reflex_threshold_arm,) * 3 + (p.reflex_threshold_wrist,) * 3,
            dyn_fraction=p.reflex_dynamic_fraction, gain=p.observer_gain,
            env_gain=p.reflex_tremor_gain),
        withdraw=WithdrawConfig(distance=p.withdraw_distance, duration=p.withdraw_time,
                                max_joint=p.withdraw_max_joint,
                                min_height=p.withdraw_min_height))


def rhythm_config(p) -> RhythmConfig:
    return RhythmConfig(k_phase=p.rhythm_k_phase, k_freq=p.rhythm_k_freq,
                        max_correction=p.rhythm_max_correction,
                        sensor_timeout=p.rhythm_sensor_timeout)


def rhythm_generator(p) -> RhythmGenerator:
    """The generator of ``rhythm_mode``: the oscillator or a baseline (``WindowRhythm``)."""
    cfg = rhythm_config(p)
    if p.rhythm_mode == 'oscillator':
        return RhythmGenerator(cfg)
    return WindowRhythm(1 if p.rhythm_mode == 'memoryless' else 16, p.rhythm_baseline_lead,
                        1.0 / p.rhythm_sense_rate_hz, cfg)


class SpinalNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self._log = Throttled(self.get_logger())   # warnings about input, per kind
        self.p = declare_params(self, PARAMS)
        p = self.p
        self.ctrl = SpinalController(NetParams.load(p.weights_file or WEIGHTS_FILE),
                                     config_from(p))
        self.arm = list(self.ctrl.names)
        self.order = self.arm + list(FINGER_JOINTS)
        self._cmd = float64_array_template(6)    # serialized in place, published as bytes
        (self._cmd_data,) = self._cmd.views('data')
        self._reader = JointStateReader(decoder(JointState))
        topic = command_topic(p.command_topic, p.command_interface)
        self.cmd_pub = self.create_publisher(Float64MultiArray, topic, COMMAND_QOS)
        self.reflex_pub = self.create_publisher(DiagnosticArray, '~/reflex', COMMAND_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        self.create_subscription(JointState, 'joint_states', self._on_state, LATEST_QOS,
                                 raw=True)
        self._ref_reader = JointStateReader(decoder(JointState))
        self.create_subscription(JointState, p.reference_topic, self._on_reference, LATEST_QOS,
                                 raw=True)
        self.wrench = None           # the wrench channel: on while wrench_threshold > 0
        self._wrench_sub = None
        self._set_wrench()
        self.create_service(Trigger, '~/reset', self._on_reset)
        # stop functions and the state watchdog
        self.stop = StopState(BrakeConfig(p.stop_deceleration, p.stop_jerk,
                                          p.standstill_velocity, p.standstill_tolerance))
        self.watchdog = StateWatchdog(p.state_timeout)
        self.safety_pub = self.create_publisher(DiagnosticArray, '~/safety', LATCHED_QOS)
        self.create_subscription(Bool, 'estop', self._on_estop, LATCHED_QOS)
        self.create_service(Trigger, '~/stop', self._on_stop)
        self.create_service(Trigger, '~/resume', self._on_resume)
        self._check_timer = self.create_timer(p.state_timeout / 2, self._check_state)
        self._publish_safety()       # latched: the state from the start
        # rhythm generator
        self.rhythm = rhythm_generator(p)
        self._rh_mode, self._rh_next_mode = p.rhythm_mode, False
        self._rh_limits = Limits(tuple(self.arm))
        self._rh_sensor = None
        self._rh_base = np.zeros((3, 6))      # base q, qd, effort (module docstring)
        self._rh_q0 = np.zeros(6)
        self._rh_cmd = np.zeros((2, 6))
        self._rh_every = max(1, round(p.expected_rate / p.rhythm_sense_rate_hz))
        self._rh_k = 0
        self._rh_refused = 0
        self._rh_last = ('', '')              # last refusal or abort: (kind, reason)
        self._imu = LatestSample(self, Imu, p.rhythm_imu_topic)
        self._imu_reader = ImuReader(decoder(Imu))
        self.rhythm_pub = self.create_publisher(DiagnosticArray, '~/rhythm_events', COMMAND_QOS)
        self.create_subscription(String, '~/rhythm', self._on_program, COMMAND_QOS)
        self._diag_timer = self.create_timer(p.diagnostics_period, self._publish_diagnostics)
        self.add_post_set_parameters_callback(self._on_params)
        # joint-state bookkeeping
        self._names = None          # names of the last accepted /joint_states layout
        self._ref_names = ()        # same for the reference
        self._ref_idx = None
        self._warn_lo = self.ctrl.lower - 0.2   # references this far out are worth a warning
        self._warn_hi = self.ctrl.upper + 0.2
        self._idx = None            # None: already in order, else index array
        self._t_prev = None
        self._q = np.zeros(8)
        self._qd = np.zeros(8)
        self._eff = np.zeros(8)
        self._has_state = False
        self._w_prev = None
        # statistics (since the last diagnostics)
        self._tick_us = np.zeros(4096)
        self._n_ticks = 0
        self._rejected = {'joint_states': 0, 'reference': 0, 'wrench': 0}
        self._diag_t = time.monotonic()
        self._last_mode = self.ctrl.mode
        self.get_logger().info(
            f'spinal: {self.ctrl.net.n_neurons} LIF neurons ({self.ctrl.params.n_hidden} per '
            f'joint, {self.ctrl.params.substeps} substeps/tick), commands on '
            f'{topic}, reflex {"on" if p.reflex_enabled else "off"}')

    # ---------------------------------------------------------------- parameters
    def _on_params(self, params) -> None:
        """A parameter set at run time takes effect before the next tick (the executor runs
        this callback between two): the controller's configuration, the wrench channel, the
        watchdog and the timers. energy_per_sop and expected_rate are read when used."""
        names = {prm.name for prm in params}
        p = self.p
        self.ctrl.configure(config_from(p))
        self.rhythm.cfg = rhythm_config(p)
        if 'rhythm_mode' in names or 'rhythm_baseline_lead' in names:
            self._rh_next_mode = True      # a new generator at the next program
        if 'wrench_threshold' in names:
            self._set_wrench()
        if 'state_timeout' in names:
            self.watchdog.timeout = p.state_timeout
            self.destroy_timer(self._check_timer)
            self._check_timer = self.create_timer(p.state_timeout / 2, self._check_state)
        if 'diagnostics_period' in names:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(p.diagnostics_period, self._publish_diagnostics)

    def _set_wrench(self) -> None:
        thr = self.p.wrench_threshold
        if thr <= 0:
            self.wrench = None
        elif self.wrench is None:
            self.wrench = WrenchDetector(thr)
        else:
            self.wrench.threshold = float(thr)
        if self.wrench is not None and self._wrench_sub is None:
            self._wrench_sub = self.create_subscription(WrenchStamped, self.p.wrench_topic,
                                                        self._on_wrench, LATEST_QOS)

    # ---------------------------------------------------------------- inputs
    def _warn(self, what: str, msg: str) -> None:
        self._rejected[what] += 1
        self._log.warning(what, f'{what} rejected: {msg}')

    def _layout(self, names) -> bool:
        """Learn where the 6 arm joints (and fingers) are in a /joint_states message."""
        try:
            idx = [names.index(n) for n in self.arm]
        except ValueError:
            missing = [n for n in self.arm if n not in names]
            self._warn('joint_states', f'missing joints {missing}')
            return False
        idx += [names.index(n) for n in FINGER_JOINTS if n in names]
        self._names = tuple(names)
        self._idx = None if idx == list(range(len(idx))) else np.array(idx)
        return True

    def _decode(self, buf: bytes, reader: JointStateReader, what: str):
        """(names, position, velocity, effort, sec, nanosec) of a serialized JointState, read
        straight from its bytes (another encapsulation goes through the regular decoder), or
        None (warned, counted) when it cannot be decoded, its arrays do not match its names
        (no names: 6 positions) or it holds NaN/inf. Velocity and effort may be empty."""
        if reader.read(buf) is None:
            self._warn(what, reader.error)
            return None
        names, pa, va, ea = reader.names, reader.position, reader.velocity, reader.effort
        sec, nsec = reader.sec, reader.nanosec
        n = len(names) if names else 6
        if len(pa) != n or len(va) not in (0, n) or len(ea) not in (0, n):
            self._warn(what, f'{len(names)} names but {len(pa)} positions, {len(va)} '
                       f'velocities, {len(ea)} efforts')
            return None
        if not math.isfinite(sum(pa.tolist()) + sum(va.tolist()) + sum(ea.tolist())):
            self._warn(what, 'NaN or inf')
            return None
        return names, pa, va, ea, sec, nsec

    def _on_state(self, buf: bytes) -> None:
        """One tick per /joint_states sample."""
        t0 = time.perf_counter()
        sample = self._decode(buf, self._reader, 'joint_states')
        if sample is None:
            self.ctrl.detector.restart()    # the next good sample only primes the observer
            return
        names, pa, va, ea, sec, nsec = sample
        if names != self._names and not self._layout(names):
            return
        if len(va) != len(pa):
            self._warn('joint_states', 'no velocities')
            return
        n = len(names)
        m = min(n, 8) if self._idx is None else len(self._idx)
        q, qd, e = self._q[:m], self._qd[:m], self._eff[:m]
        if self._idx is not None:
            np.take(pa, self._idx, out=q)
            np.take(va, self._idx, out=qd)
            if len(ea):
                np.take(ea, self._idx, out=e)
        else:
            np.copyto(q, pa[:m])
            np.copyto(qd, va[:m])
            if len(ea):
                np.copyto(e, ea[:m])
        ea = e if len(ea) else None
        t = sec + nsec * 1e-9
        now = time.monotonic()
        if t <= 0.0:
            t = now
        dt = t - self._t_prev if self._t_prev is not None else 0.0
        self._t_prev = t
        # ---- the tick: detect, control, publish ----
        ctrl = self.ctrl
        if self.watchdog.feed(now):         # fresh state after a trip: hold here, engage
            self._state_back(q)
        if self.stop.active:
            ref = self.stop.update(q, qd, t)
            if ref is not None:
                ctrl.track(ref[0], ref[1], now)
        rh = self.rhythm
        if rh.active:                          # the generator's reference (module docstring)
            b, c = self._rh_base, self._rh_cmd
            if rh.step(t, dt):
                np.add(b[0], rh.offset, out=c[0])
                np.add(b[1], rh.offset_vel, out=c[1])
                ctrl.set_reference(c[0], c[1], b[2], now)
            else:       # ended: the servo holds the base (the arm's lag would stay in a hold
                ctrl.hold(b[0], drop_reference=True)   # a cerebellum reference engages from it
        self._cmd_data[:] = ctrl.step(q, qd, ea, t, dt, now)
        try:
            self.cmd_pub.publish(self._cmd.tobytes())
        except RCLError:      # shutting down: the context is gone
            return
        # ---- after the command ----
        ev = ctrl.last_event
        wall = time.time() if ev is not None else 0.0      # the command is out
        ctrl.after_tick(q, qd, ea, dt)      # plans a withdrawal begun in this tick
        if ev is not None:
            self._publish_event(ev, Time(sec=sec, nanosec=nsec), wall, dt)
            self.rhythm.abort(t, 'reflex')
        if rh.active:
            self._rh_k += 1
            if self._rh_k >= self._rh_every:
                self._rh_k = 0
                self._rhythm_sense(q)
        if rh.events:
            self._publish_rhythm_events()
        if self.wrench is not None:
            self._has_state = True
        if ctrl.mode != self._last_mode:
            self._mode_changed(ctrl.mode, Time(sec=sec, nanosec=nsec))
        if self.stop.changed:
            self._publish_safety()
        self._tick_us[self._n_ticks % len(self._tick_us)] = (time.perf_counter() - t0) * 1e6
        self._n_ticks += 1

    def _reference_layout(self, names) -> bool:
        """Index of the 6 arm joints in a reference message (cached per name list)."""
        unknown = [x for x in names if x not in self.order]
        missing = [x for x in self.arm if x not in names]
        if unknown or missing:
            self._warn('reference', f'unknown joints {unknown}, missing {missing}')
            return False
        idx = [names.index(x) for x in self.arm]
        self._ref_names = names
        self._ref_idx = None if idx == list(range(6)) else np.array(idx)
        return True

    def _on_reference(self, buf: bytes) -> None:
        sample = self._decode(buf, self._ref_reader, 'reference')
        if sample is None:
            return
        names, pos, vel, eff = sample[:4]
        if not names:
            idx = None                  # no names: the 6 arm joints in order
        elif names == self._ref_names or self._reference_layout(names):
            idx = self._ref_idx
        else:
            return
        q, qd, ff = (None if not len(a) else a if idx is None else a[idx]
                     for a in (pos, vel, eff))
        if np.any(q < self._warn_lo) or np.any(q > self._warn_hi):
            self._log.warning('reference_limits', 'reference beyond the joint limits: clamped')
        if self.rhythm.active:
            if float(np.max(np.abs(q - self._rh_q0))) <= self.p.rhythm_preempt_distance:
                b = self._rh_base        # the program's base (module docstring)
                b[0] = q
                b[1] = 0.0 if qd is None else qd
                b[2] = 0.0 if ff is None else ff
                return
            self._rhythm_abort('preempted: a new cerebellum reference')
            self.ctrl.hold(self._q)      # the new goal engages from the measured pose
        self.ctrl.set_reference(q, qd, ff, time.monotonic())

    def _on_wrench(self, msg: WrenchStamped) -> None:
        if self.wrench is None:         # wrench_threshold set to 0 at run time
            return
        f = msg.wrench.force
        force = (f.x, f.y, f.z)
        if not math.isfinite(sum(force)):
            self._warn('wrench', 'NaN or inf')
            return
        stamp = msg.header.stamp
        t = stamp.sec + stamp.nanosec * 1e-9
        dt = t - self._w_prev if self._w_prev is not None else 0.0
        self._w_prev = t
        if self.wrench.update(force, dt) and self._has_state:
            if self.ctrl.external_trigger(self._q, self._qd, self._t_prev or t, 'wrench'):
                self._publish_event(self.ctrl.last_event, stamp, time.time(), dt)
                self._rhythm_abort('reflex (wrench)')

    def _on_reset(self, request, response):
        response.success = self.ctrl.reset_reflex()
        response.message = ('reflex reset: engaging the reference' if response.success
                            else f'no reflex active (mode {self.ctrl.mode})')
        return response

    # ---------------------------------------------------------------- stop and watchdog
    def _on_estop(self, msg: Bool) -> None:
        was = self.stop.estop
        text = self.stop.set_estop(msg.data)
        if msg.data:
            self._rhythm_abort('estop')
        if msg.data != was:
            self.get_logger().warning(f'estop {"true" if msg.data else "false"}: {text}')
        self._publish_safety()

    def _on_stop(self, request, response):
        response.message = self.stop.request(PROTECTIVE)
        response.success = True
        self._rhythm_abort('protective stop (~/stop)')
        self.get_logger().warning(f'~/stop: {response.message}')
        self._publish_safety()
        return response

    def _on_resume(self, request, response):
        response.success, response.message = self.stop.resume()
        if response.success:
            self.ctrl.hold(self._q)       # re-seeded from the measured state: no jump
        self.get_logger().warning(f'~/resume: {response.message}')
        self._publish_safety()
        return response

    def _check_state(self) -> None:
        """Timer: stale state -> zero added torque (see the module docstring), ERROR."""
        now = time.monotonic()
        if not self.watchdog.check(now):
            return
        self._cmd_data[:] = 0.0
        try:
            self.cmd_pub.publish(self._cmd.tobytes())
        except RCLError:      # shutting down
            return
        self._rhythm_abort('joint state stale (watchdog)')
        self.get_logger().error(f'no joint state for {self.watchdog.age(now) * 1e3:.1f} ms '
                                f'(state_timeout {self.p.state_timeout * 1e3:g} ms): zero '
                                'torque over gravity compensation until fresh state')
        self._publish_safety()

    def _state_back(self, q) -> None:
        self.ctrl.hold(q)
        self.stop.restart()      # a brake interrupted by the trip starts again from here
        self.get_logger().warning('joint state back: holding, engaging the reference')
        self._publish_safety()

    def _safety_status(self):
        stop, wd = self.stop, self.watchdog
        if wd.tripped:
            level, msg = 2, 'watchdog: joint state stale, zero torque hold'
        elif stop.violated:
            level, msg = 2, f'{stop.kind} stop: standstill violated'
        elif stop.active:
            level = 1
            msg = (f'{stop.kind} stop (category {stop.category}): '
                   + ('braking' if stop.state == 'braking' else
                      'holding at standstill, resume on ~/resume'
                      + (' after estop false' if stop.estop else '')))
        else:
            level, msg = 0, 'running'
        values = dict(stop.status())
        values.update(wd.status())
        return diagnostic_status('spinal: safety', values, level, msg, 'neurovla_arm')

    def _publish_safety(self) -> None:
        self.stop.changed = False
        arr = DiagnosticArray(status=[self._safety_status()])
        arr.header.stamp = self.get_clock().now().to_msg()
        try:
            self.safety_pub.publish(arr)
        except RCLError:
            pass

    # ---------------------------------------------------------------- rhythm
    def _on_program(self, msg: String) -> None:
        """A rhythm program (docs/rhythm.md): start it, stop the running one, or refuse it
        (a ``refused`` event with the reason)."""
        rh, ctrl, p = self.rhythm, self.ctrl, self.p
        try:
            prog = parse(msg.data, self._rh_limits, p.rhythm_joint, p.rhythm_amplitude)
            if prog.stop:
                if not rh.active:
                    raise ProgramError('stop: no program is running')
                rh.request_stop()
                return
            if rh.active:
                raise ProgramError('a program is running: send "stop" first')
            if self._t_prev is None:
                raise ProgramError('no joint state yet')
            if self.stop.active or self.watchdog.tripped:
                raise ProgramError(f'stopped ({self.stop.kind or "watchdog"}): resume first')
            if ctrl.mode in (WITHDRAW, COMPLIANT):
                raise ProgramError(f'reflex active ({ctrl.mode})')
            now = time.monotonic()
            if ctrl.reference_fresh(now) and not ctrl.stopped:
                q0 = ctrl.ref_q.copy()                   # the cerebellum's held pose
            else:
                q0 = np.array(ctrl.hold_q if ctrl.hold_q is not None else self._q[:6], float)
            d = joint_direction(ctrl.model, prog, q0)
            check_limits(prog, d, q0, ctrl.lower, ctrl.upper, ctrl.vmax,
                         p.rhythm_velocity_scale)
        except ProgramError as e:
            self._rh_refused += 1
            self._rh_last = ('refused', str(e))
            self.get_logger().warning(f'rhythm program refused: {e}')
            self._publish_rhythm_status('refused', self._t_prev or 0.0,
                                        {'program': msg.data[:200], 'reason': str(e)}, 1)
            return
        if self._rh_next_mode:
            self.rhythm = rh = rhythm_generator(p)
            self._rh_mode, self._rh_next_mode = p.rhythm_mode, False
        self._rh_q0[:] = q0
        self._rh_base[0] = q0
        self._rh_base[1:] = 0.0
        self._rh_sensor = AxisSensor(ctrl.model, d, q0)
        self._rh_k = 0
        self._rh_last = ('', '')
        rh.start(prog, d, self._t_prev)
        how = ('entraining to the IMU' if self._rh_sensor.usable else
               'the axis hardly turns the wrist: free-running')
        self.get_logger().info(f'rhythm program ({self._rh_mode}): {prog} ({how})')

    def _rhythm_sense(self, q) -> None:
        """The newest IMU sample (if one came since the last) as the arm's phase."""
        buf = self._imu.take()
        sensor = self._rh_sensor
        if buf is None or sensor is None or not sensor.usable:
            return
        r = self._imu_reader
        ts = r.read(buf)
        if ts is None or not math.isfinite(float(r.quat.sum() + r.gyro.sum())):
            return
        if sensor.r0 is None:
            sensor.calibrate(r.quat, q[:6])
        x, v = sensor.read(r.quat, r.gyro)
        self.rhythm.sense(ts, x, v)

    def _rhythm_abort(self, why: str) -> None:
        if self.rhythm.active:
            self._rh_last = ('aborted', why)
            self.rhythm.abort(self._t_prev or 0.0, why)
            self._publish_rhythm_events()

    def _publish_rhythm_status(self, kind: str, t: float, values: dict, level: int = 0):
        st = diagnostic_status('spinal: rhythm', {'event': kind, 'time': f'{t:.6f}', **values},
                               level, kind, 'neurovla_arm')
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        try:
            self.rhythm_pub.publish(arr)
        except RCLError:
            pass

    def _publish_rhythm_events(self) -> None:
        events, self.rhythm.events = self.rhythm.events, []
        for kind, t, values in events:
            self._publish_rhythm_status(kind, t, values, 1 if kind == 'aborted' else 0)

    def _rhythm_diagnostics(self):
        rh = self.rhythm
        values = rh.status()
        values.update(rhythm_mode=self._rh_mode,
                      rhythm_refused=self._rh_refused, rhythm_last_kind=self._rh_last[0],
                      rhythm_last_reason=self._rh_last[1])
        kind, why = self._rh_last
        if kind:
            level, msg = 1, f'program {kind}: {why}'
        elif rh.active:
            level, msg = 0, (f'stage {rh.stage + 1}/{len(rh.program.stages)} {rh.state}, '
                             f'{rh.cycles_done} cycles done')
        else:
            level, msg = 0, 'idle'
        return diagnostic_status('spinal: rhythm', values, level, msg, 'neurovla_arm')

    # ---------------------------------------------------------------- outputs
    def _publish_event(self, ev, stamp, wall: float, dt: float) -> None:
        """One DiagnosticStatus: detection time (state stamp and wall clock), joints, the
        estimated external torques, thresholds, the planned withdrawal and the first
        withdrawal command (exact values, so a receiver can find it)."""
        values = {'event': 'collision', 'detection_time': f'{ev.t:.6f}',
                  'detection_wall_time': f'{wall:.6f}', 'sample_dt': dt,
                  'channel': ev.channel, 'joints': ','.join(ev.joints)}
        for what, vals in (('external_torque', ev.torque), ('threshold', ev.threshold),
                           ('withdraw_offset', ev.offset)):
            values.update({f'{what}.{n}': float(v) for n, v in zip(self.arm, vals)})
        if ev.channel == 'joint_torque':   # published in this very tick; exact digits
            values.update({f'command.{n}': repr(float(v))
                           for n, v in zip(self.arm, self.ctrl.command)})
        st = diagnostic_status('spinal: reflex', values, 1, 'collision on '
                               f'{", ".join(ev.joints) or ev.channel}: withdrawing',
                               'neurovla_arm')
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = stamp
        self.reflex_pub.publish(arr)
        self.get_logger().warning(f'reflex at t={ev.t:.4f}: {st.message}; external torque '
                                  f'{np.round(ev.torque, 2).tolist()} N m')

    def _mode_changed(self, mode, stamp) -> None:
        prev, self._last_mode = self._last_mode, mode
        # debug: an rclpy log call costs ~0.4 ms in this 1 kHz thread (the mode is in
        # /diagnostics; the reflex and its recovery are logged and published on ~/reflex)
        self.get_logger().debug(f'mode {prev} -> {mode}')
        if prev in (WITHDRAW, COMPLIANT) and mode not in (WITHDRAW, COMPLIANT):
            self.get_logger().info(f'reflex over: {mode}')
            st = diagnostic_status('spinal: reflex', {'event': 'recovered'}, 0, 'recovered',
                                   'neurovla_arm')
            arr = DiagnosticArray(status=[st])
            arr.header.stamp = stamp
            self.reflex_pub.publish(arr)

    def _publish_diagnostics(self) -> None:
        ctrl, now = self.ctrl, time.monotonic()
        span = max(1e-6, now - self._diag_t)
        n = min(self._n_ticks, len(self._tick_us))
        us = self._tick_us[:n]
        ring = self.rhythm.ring      # the generator's neurons count in the figures
        rest, motion = ctrl.firing_rates(extra_neurons=ring.n, extra_motion_spikes=ring.spikes)
        sops = ctrl.net.sops_per_s() + ring.sops / max(1, ctrl.net.ticks) * 1e3
        mode = ctrl.mode
        level = 1 if mode in (WITHDRAW, COMPLIANT) else 0
        msg = {'follow': 'following the reference', 'engage': 'engaging the reference',
               'hold': 'holding: no fresh reference', 'withdraw': 'reflex: withdrawing',
               'compliant': 'reflex: compliant hold'}[mode]
        tick_hz = self._n_ticks / span
        if self._n_ticks == 0:
            level, msg = 1, 'no joint states'
        elif tick_hz < 0.9 * self.p.expected_rate:
            level = 1
            msg += f'; control rate {tick_hz:.0f} Hz: joint states missed or late'
        if mode == 'hold' and ctrl.hold_drift > self.p.standstill_tolerance:
            level = 2     # the creep monitor of the hold (the PD servo pulls the arm back)
            msg += f'; hold drifted {ctrl.hold_drift:.3f} rad from the held pose'
        values = {'mode': mode, 'tick_hz': tick_hz,
                  'hold_weight': ctrl.hold_weight, 'hold_drift_rad': ctrl.hold_drift,
                  'tick_us_p50': float(np.percentile(us, 50)) if n else 0.0,
                  'tick_us_p99': float(np.percentile(us, 99)) if n else 0.0,
                  'reflex_events': ctrl.events, 'limit_clipped_ticks': ctrl.guard.clipped,
                  'firing_rate_rest': rest, 'firing_rate_motion': motion,
                  'sops_per_s': sops, 'energy_w': sops * self.p.energy_per_sop}
        values.update({f'rejected_{k}': v for k, v in self._rejected.items()})
        st = diagnostic_status('spinal: controller', values, level, msg, 'neurovla_arm')
        arr = DiagnosticArray(status=[st, self._safety_status(), self._rhythm_diagnostics()])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)
        self._n_ticks = 0
        self._diag_t = now
        ctrl.reset_stats()
        ring.reset_counters()

    def close(self) -> None:
        self._imu.destroy()


def main(args=None) -> int:
    return run(SpinalNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
