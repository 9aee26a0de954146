"""``sim`` node: the embedded MuJoCo body at 1 kHz, commanded like ros2_control controllers.

Publishes (topic names relative to the node's namespace; /diagnostics and /clock global)
  joint_states [sensor_msgs/JointState]      6 arm joints, left/right finger; effort = applied
                                              actuator torque (incl. gravity compensation)
  imu/data [sensor_msgs/Imu]                 imu_link, noise/bias per parameters, covariances set
  wrist/wrench [geometry_msgs/WrenchStamped] tool0 frame: what the gripper side exerts on the
                                              wrist (raw: the gripper weight is in it)
  camera/image_raw [sensor_msgs/Image] rgb8 + camera/camera_info [sensor_msgs/CameraInfo]
                                              rendered in a separate process (``camera.py``)
  wrist_camera/image_raw + wrist_camera/camera_info
                                              the same, from the wrist camera, with
                                              wrist_camera_enabled
  /clock [rosgraph_msgs/Clock]                only with use_sim_time
  ~/objects [visualization_msgs/MarkerArray]  transient local, base_link
  ~/disturbance [geometry_msgs/WrenchStamped] every disturbance, header.stamp = start of the
                                              first step where it acts (the first joint_states
                                              showing it is stamped 1 ms later): a push
                                              (frame_id = link, vectors as received), a
                                              tremor change (frame_id
                                              ``tremor:<joint|wrist>``, torque.x = amplitude [N m],
                                              force.x = frequency [Hz]) or a base vibration change
                                              (``base_vibration``, force.x = amplitude [m/s^2],
                                              force.y = frequency [Hz])
  /diagnostics [diagnostic_msgs/DiagnosticArray]  status ``sim: physics``
Subscribes (best effort, so any publisher matches)
  forward_position_controller/commands, forward_velocity_controller/commands,
  forward_effort_controller/commands [std_msgs/Float64MultiArray] 6 arm joints
  joint_trajectory_controller/joint_trajectory [trajectory_msgs/JointTrajectory] any order,
      a subset holds the other joints; an empty trajectory holds the current position
  gripper_controller/commands [std_msgs/Float64MultiArray] [left_finger_joint opening, m]
  ~/apply_wrench [geometry_msgs/WrenchStamped] header.frame_id = link; vectors in the frame of
      parameter ``wrench_frame``; applied at the link's centre of mass for ``wrench_duration_s``
  ~/sensor_dropout [std_msgs/Float64] a sensor dropout: imu/data and the camera(s) publish
      nothing for ``data`` s of sim time from the next step (0 ends one early; negative,
      NaN/inf or over 600 s are rejected); each is echoed on ~/disturbance (frame_id
      ``sensor_dropout``, force.x = duration [s], stamp = its first silent step)
Services
  ~/reset [std_srvs/Trigger]  arm home, gripper open, objects re-placed (sim time keeps running)

A bad command (wrong length, NaN/inf, unknown joint, beyond the URDF limits) is rejected with a
throttled warning and counted; the last valid command is held.

Timing (:mod:`.pacing`): physics and publishing run in one thread on absolute deadlines; the
time left until the next step is spent in ``EventsExecutor.spin_once`` (callbacks); a late
step waits up to ``catchup_wait_s`` for a live controller's answer. The camera renders in its
own process (:mod:`.camera_node`). In-process use (benchmarks):
construct ``SimNode(context=...)``, append to ``command_hooks`` / ``disturbance_hooks``
(``hook(kind, step_index, sim_time, values)``; ``step_index`` = the first step that uses it) and
call ``run(duration=...)``.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import WrenchStamped
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from ..common import cdr
from ..common.limits import LIMIT_TOL, command_reason, invalid_reason
from ..common.rosutil import (
    BODY_COMMAND_QOS,
    COMMAND_QOS,
    LATCHED_QOS,
    SENSOR_QOS,
    Throttled,
    cap_torch_threads,
    declare_params,
    diagnostic_status,
    joint_state_template,
    run,
)
from .pacing import Pacing
from .params import NODE_NAME, PARAMS
from .world import World

CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       history=HistoryPolicy.KEEP_LAST)
FORWARD = {'position': 'forward_position_controller/commands',
           'velocity': 'forward_velocity_controller/commands',
           'effort': 'forward_effort_controller/commands'}
MARKER_SHAPE = {'cube': Marker.CUBE, 'ball': Marker.SPHERE, 'cylinder': Marker.CYLINDER}


def _seconds(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def _stamp(t: Time, ns: int) -> None:
    t.sec, t.nanosec = ns // 1_000_000_000, ns % 1_000_000_000


class SimNode(Node):
    """MuJoCo world + ros2_control-like command topics; see the module docstring."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._log = Throttled(self.get_logger())   # warnings about input, per kind
        if 'torch' in sys.modules:  # in-process use next to a torch model; the sim needs none
            cap_torch_threads()
        self.p = declare_params(self, PARAMS)
        p = self.p
        self.sim_time = bool(self.get_parameter('use_sim_time').value)
        # This node is the clock: it must not follow its own /clock (a 1 kHz+ subscription
        # would flood its executor). Its stamps come from the world, not from the node clock.
        ts = getattr(self, '_time_source', None)
        if ts is not None:
            ts.ros_time_is_active = False
            ts.detach_node()
        self.world = World(seed=p.seed, n_objects=p.n_objects, cameras=False,
                           width=p.camera_width, height=p.camera_height,
                           position_bandwidth_hz=p.position_bandwidth_hz,
                           velocity_bandwidth_hz=p.velocity_bandwidth_hz,
                           effort_timeout=p.effort_timeout_s,
                           max_acceleration=p.max_acceleration,
                           gravity_compensation=not p.servo_bus)
        w = self.world
        self.bus = None             # servo_bus: the emulated servo bus drives the arm
        if p.servo_bus:
            from ..hardware.emulator import sim_bus
            self.bus = sim_bus(w, p, self.sim_time)
        self._arm = list(w.robot.arm_joints)
        self.command_hooks: list = []
        self.disturbance_hooks: list = []
        self.rejected = 0
        self.accepted = 0
        self.callback_errors = 0
        self._cmd_step = -2         # step_count when the last command was accepted
        self.pacing = Pacing(self.sim_time)
        self._stop = False
        self._diag_prev = (time.monotonic(), 0)
        self._events = 0  # callbacks of this node served (fast mode drains until none is left)
        self._apply_rates()

        # ---- publishers and preallocated messages
        self._pub_js = (None if self.bus else
                        self.create_publisher(JointState, 'joint_states', SENSOR_QOS))
        self._pub_imu = self.create_publisher(Imu, 'imu/data', SENSOR_QOS)
        self._pub_wrench = self.create_publisher(WrenchStamped, 'wrist/wrench', SENSOR_QOS)
        self._pub_clock = (self.create_publisher(Clock, '/clock', CLOCK_QOS)
                           if self.sim_time else None)
        self._pub_objects = self.create_publisher(MarkerArray, '~/objects', LATCHED_QOS)
        self._pub_dist = self.create_publisher(WrenchStamped, '~/disturbance', COMMAND_QOS)
        self._pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        # 1 kHz messages: serialized once, then only their stamps and doubles are patched
        self._js_t = joint_state_template(w.joint_names)
        self._js_views = self._js_t.views('position', 'velocity', 'effort')
        self._set_imu_noise()  # builds the Imu template (covariances follow the noise)
        wr = WrenchStamped()
        wr.header.frame_id = 'tool0'
        (wr.wrench.force.x, wr.wrench.force.y, wr.wrench.force.z,
         wr.wrench.torque.x, wr.wrench.torque.y, wr.wrench.torque.z) = cdr.sentinels(6)
        self._wrench_t = cdr.CdrTemplate(serialize_message(wr), {'wrench': (0, 6)})
        self._clock_t = cdr.CdrTemplate(serialize_message(Clock()), {})

        # ---- commands, disturbances, services
        for mode, topic in FORWARD.items() if not self.bus else ():  # the bus commands the arm
            self.create_subscription(Float64MultiArray, topic,
                                     lambda m, mode=mode: self._on_forward(mode, m),
                                     BODY_COMMAND_QOS)
        if not self.bus:
            self.create_subscription(JointTrajectory,
                                     'joint_trajectory_controller/joint_trajectory',
                                     self._on_trajectory, BODY_COMMAND_QOS)
            self.create_subscription(Float64MultiArray, 'gripper_controller/commands',
                                     self._on_gripper, BODY_COMMAND_QOS)
        self.create_subscription(WrenchStamped, '~/apply_wrench', self._on_apply_wrench,
                                 BODY_COMMAND_QOS)
        self._silent_until = -1      # IMU and camera publish nothing before this step
        self.create_subscription(Float64, '~/sensor_dropout', self._on_dropout,
                                 BODY_COMMAND_QOS)
        self.create_service(Trigger, '~/reset', self._on_reset)
        self.add_post_set_parameters_callback(self._on_params)

        w.set_base_vibration(p.base_vibration_amplitude, p.base_vibration_frequency_hz)
        if p.tremor_amplitude:
            self._set_tremor()
        self._camera = None
        if p.camera_enabled:
            self._start_camera()
        self._publish_objects()
        mode = 'sim time (speed %g)' % p.speed if self.sim_time else 'real time'
        self.get_logger().info(
            f'MuJoCo world from the URDF: {len(w.joint_names)} joints, {p.n_objects} objects, '
            f'dt {w.dt * 1e3:g} ms, {mode}, camera {"on" if p.camera_enabled else "off"}')

    # ------------------------------------------------------------------ configuration
    def _apply_rates(self):
        p = self.p

        def every(rate):
            return max(1, int(round(1000.0 / rate))) if rate > 0 else 0
        self._js_every = every(p.joint_states_rate_hz)
        self._imu_every = every(p.imu_rate_hz)
        self._wrench_every = every(p.wrench_rate_hz)
        self._objects_every = every(p.objects_rate_hz)
        self._diag_every = every(p.diagnostics_rate_hz)
        self._cam_every = every(p.camera_rate_hz)

    def _set_imu_noise(self):
        p = self.p
        self.world.set_imu_noise(p.imu_accel_noise_std, p.imu_gyro_noise_std,
                                 list(p.imu_accel_bias), list(p.imu_gyro_bias))
        va, vg = max(p.imu_accel_noise_std, 1e-4) ** 2, max(p.imu_gyro_noise_std, 1e-5) ** 2
        imu = Imu()
        imu.header.frame_id = 'imu_link'
        imu.linear_acceleration_covariance = np.diag([va] * 3).ravel()
        imu.angular_velocity_covariance = np.diag([vg] * 3).ravel()
        imu.orientation_covariance = np.diag([1e-6] * 3).ravel()  # simulated: exact
        o, av, la = imu.orientation, imu.angular_velocity, imu.linear_acceleration
        (o.x, o.y, o.z, o.w, av.x, av.y, av.z, la.x, la.y, la.z) = cdr.sentinels(10)
        self._imu_t = cdr.CdrTemplate(serialize_message(imu), {
            'orientation': (0, 4), 'angular_velocity': (4, 3), 'linear_acceleration': (7, 3)})

    def _set_tremor(self):
        p = self.p
        onset = self.world.set_tremor(p.tremor_amplitude, p.tremor_frequency_hz,
                                      p.tremor_joint or None)
        self._disturbance(f'tremor:{p.tremor_joint or "wrist"}', onset,
                          force=(p.tremor_frequency_hz, 0, 0), torque=(p.tremor_amplitude, 0, 0))

    def _on_params(self, params):
        self._events += 1
        names = {prm.name for prm in params}
        p = self.p
        if names & {'imu_accel_noise_std', 'imu_gyro_noise_std', 'imu_accel_bias',
                    'imu_gyro_bias'}:
            self._set_imu_noise()
        if names & {'position_bandwidth_hz', 'velocity_bandwidth_hz'}:
            self.world.set_gains(p.position_bandwidth_hz, p.velocity_bandwidth_hz)
        if 'max_acceleration' in names:
            self.world.max_acceleration = p.max_acceleration
        if 'effort_timeout_s' in names:
            self.world.effort_timeout = p.effort_timeout_s
        if names & {'tremor_amplitude', 'tremor_frequency_hz', 'tremor_joint'}:
            self._set_tremor()
        if names & {'base_vibration_amplitude', 'base_vibration_frequency_hz'}:
            onset = self.world.set_base_vibration(p.base_vibration_amplitude,
                                                  p.base_vibration_frequency_hz)
            self._disturbance('base_vibration', onset, force=(
                p.base_vibration_amplitude, p.base_vibration_frequency_hz, 0))
        if any(n.endswith('_rate_hz') for n in names):
            self._apply_rates()
        if 'speed' in names and self.sim_time:
            self.pacing.reanchor()

    # ------------------------------------------------------------------ stamps
    def stamp_ns(self, step_index: int | None = None) -> int:
        """Stamp [ns] of the state after ``step_index`` steps (default: now)."""
        return self.pacing.stamp_ns(self.world.step_count if step_index is None else step_index)

    # lateness statistics of the loop (also read by the benchmarks)
    overruns = property(lambda self: self.pacing.overruns)
    resyncs = property(lambda self: self.pacing.resyncs)
    catchup_waits = property(lambda self: self.pacing.catchup_waits)
    catchup_timeouts = property(lambda self: self.pacing.catchup_timeouts)

    def lateness_s(self) -> np.ndarray:
        """The last (up to 1000) step latenesses [s] of the paced loop."""
        return self.pacing.lateness_s()

    # ------------------------------------------------------------------ commands
    def _warn(self, kind: str, msg: str) -> None:
        self.rejected += 1
        self._log.warning(kind, f'{msg}; rejected, holding the last valid command')

    def _accept(self, kind: str, values) -> None:
        self.accepted += 1
        self._cmd_step = self.world.step_count
        if self.command_hooks:
            k, t = self.world.step_count, self.world.time
            for hook in self.command_hooks:
                hook(kind, k, t, values)

    def _on_forward(self, mode: str, msg) -> None:
        self._events += 1
        w = self.world
        reason = command_reason(mode, msg.data, self._arm, w.lower, w.upper, w.vmax,
                                w.effort_limit)
        if reason is not None:
            self._warn(mode, f'{FORWARD[mode]}: {reason}')
            return
        v = np.asarray(msg.data, dtype=float)
        w.command(mode, v)
        self._accept(mode, v)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        self._events += 1
        w = self.world
        topic = 'joint_trajectory_controller/joint_trajectory'
        names = list(msg.joint_names)
        unknown = [n for n in names if n not in self._arm]
        if unknown or len(set(names)) != len(names) or not names:
            self._warn('trajectory', f'{topic}: joint names {names} (unknown: {unknown}, '
                       'duplicates or empty)')
            return
        idx = [self._arm.index(n) for n in names]
        if not msg.points:
            hold = w.joint_state()[0][:6]
            w.command('position', hold)
            self._accept('trajectory', hold)
            return
        base = w.setpoint
        pts, prev = [], -1.0
        for i, pt in enumerate(msg.points):
            t = _seconds(pt.time_from_start)
            reason = invalid_reason(pt.positions, len(names))
            if reason is None and len(pt.velocities):
                reason = invalid_reason(pt.velocities, len(names))
                reason = reason and f'velocities: {reason}'
            if reason is None and t <= prev:
                reason = 'time_from_start must increase'
            if reason is None:
                q = base.copy()
                q[idx] = np.asarray(pt.positions, float)
                if np.any(q < w.lower - LIMIT_TOL) or np.any(q > w.upper + LIMIT_TOL):
                    reason = 'positions outside the URDF range'
                qd = None
                if len(pt.velocities):
                    qd = np.zeros(6)
                    qd[idx] = np.asarray(pt.velocities, float)
                    if np.any(np.abs(qd) > w.vmax + LIMIT_TOL):
                        reason = 'velocities beyond the URDF limit'
            if reason is not None:
                self._warn('trajectory', f'{topic}: point {i}: {reason}')
                return
            pts.append((t, q, qd))
            prev = t
        w.command_trajectory(pts)
        self._accept('trajectory', pts)

    def _on_gripper(self, msg) -> None:
        self._events += 1
        w = self.world
        reason = invalid_reason(msg.data, 1)
        if reason is None and not (w.gripper_range[0] - LIMIT_TOL <= msg.data[0]
                                   <= w.gripper_range[1] + LIMIT_TOL):
            reason = f'opening {msg.data[0]!r} outside {w.gripper_range} m'
        if reason is not None:
            self._warn('gripper', f'/gripper_controller/commands: {reason}')
            return
        self._accept('gripper', w.command_gripper(msg.data[0]))

    def _on_apply_wrench(self, msg: WrenchStamped) -> None:
        self._events += 1
        w = self.world
        link = msg.header.frame_id.lstrip('/')
        f, t = msg.wrench.force, msg.wrench.torque
        vec = [f.x, f.y, f.z, t.x, t.y, t.z]
        reason = invalid_reason(vec, 6)
        if link not in w.links:
            reason = f'unknown link {link!r} (header.frame_id); known: {w.links}'
        if reason is not None:
            self._warn('apply_wrench', f'~/apply_wrench: {reason}')
            return
        onset = w.apply_wrench(link, vec[:3], vec[3:], duration=self.p.wrench_duration_s,
                               frame=self.p.wrench_frame)
        self._disturbance(link, onset, vec[:3], vec[3:])

    def _on_dropout(self, msg: Float64) -> None:
        self._events += 1
        sec = float(msg.data)
        if not (math.isfinite(sec) and 0.0 <= sec <= 600.0):
            self.rejected += 1
            self._log.warning('sensor_dropout', f'~/sensor_dropout: {sec} s is not in 0-600 '
                              's; rejected')
            return
        k = self.world.step_count
        self._silent_until = k + int(round(sec / self.world.dt))
        self._disturbance('sensor_dropout', self.world.time, (sec, 0.0, 0.0))

    def _disturbance(self, frame_id, onset_time, force=(0, 0, 0), torque=(0, 0, 0)):
        k = self.world.step_count  # the onset step (first step where it acts)
        m = WrenchStamped()
        _stamp(m.header.stamp, self.stamp_ns(k))
        m.header.frame_id = frame_id
        (m.wrench.force.x, m.wrench.force.y, m.wrench.force.z) = map(float, force)
        (m.wrench.torque.x, m.wrench.torque.y, m.wrench.torque.z) = map(float, torque)
        self._pub_dist.publish(m)
        for hook in self.disturbance_hooks:
            hook(frame_id, k, onset_time, np.r_[force, torque])

    def _on_reset(self, request, response):
        self._events += 1
        self.world.reset()
        self._publish_objects()
        response.success = True
        response.message = 'arm at home, gripper open, objects re-placed'
        return response

    # ------------------------------------------------------------------ publishing
    def _publish_objects(self):
        arr = MarkerArray()
        _stamp_now = self.stamp_ns()
        for i, o in enumerate(self.world.objects()):
            mk = Marker()
            _stamp(mk.header.stamp, _stamp_now)
            mk.header.frame_id = 'base_link'
            mk.ns, mk.id = 'sim_objects', i
            mk.type, mk.action = MARKER_SHAPE[o['shape']], Marker.ADD
            p, q = o['position'], o['quaternion']
            mk.pose.position.x, mk.pose.position.y, mk.pose.position.z = p
            (mk.pose.orientation.x, mk.pose.orientation.y, mk.pose.orientation.z,
             mk.pose.orientation.w) = q
            mk.scale.x, mk.scale.y, mk.scale.z = o['size']
            mk.color.r, mk.color.g, mk.color.b, mk.color.a = map(float, o['rgba'])
            mk.text = f"{o['colour']} {o['shape']}"
            arr.markers.append(mk)
        self._pub_objects.publish(arr)

    def _publish(self):
        """Publish the state after the step just taken (the hot path: no allocations)."""
        w = self.world
        k = w.step_count
        ns = self.stamp_ns(k)
        if self.p.stamp_source == 'publish' and not self.sim_time:
            ns = time.time_ns()
        if self._pub_clock is not None:
            self._clock_t.set_stamp(ns)
            self._pub_clock.publish(self._clock_t.tobytes())
        if self._pub_js is not None and k % self._js_every == 0:
            w.joint_state_into(*self._js_views)
            self._js_t.set_stamp(ns)
            self._pub_js.publish(self._js_t.tobytes())
        silent = k < self._silent_until      # a sensor dropout (~/sensor_dropout)
        if k % self._imu_every == 0 and not silent:
            quat, gyro, acc = w.imu()
            f = self._imu_t.fields
            f['orientation'][:] = quat
            f['angular_velocity'][:] = gyro
            f['linear_acceleration'][:] = acc
            self._imu_t.set_stamp(ns)
            self._pub_imu.publish(self._imu_t.tobytes())
        if k % self._wrench_every == 0:
            force, torque = w.wrench()
            f = self._wrench_t.fields['wrench']
            f[:3] = force
            f[3:] = torque
            self._wrench_t.set_stamp(ns)
            self._pub_wrench.publish(self._wrench_t.tobytes())
        if self._camera is not None and k % self._cam_every == 0 and not silent:
            if not self._camera.frame(w.data.qpos, ns):
                self.get_logger().error('camera process ended; no more images', once=True)
                self._camera = None
        if self._objects_every and k % self._objects_every == 0:
            self._publish_objects()
        if k % self._diag_every == 0:
            self._publish_diagnostics()

    def _publish_diagnostics(self):
        now = time.monotonic()
        t_prev, k_prev = self._diag_prev
        k = self.world.step_count
        rtf = (k - k_prev) * self.world.dt / max(now - t_prev, 1e-9)
        self._diag_prev = (now, k)
        late = self.pacing.lateness_s()
        late = late if len(late) else np.zeros(1)
        warn = []
        if not self.sim_time and rtf < 0.95:
            warn.append(f'real-time factor {rtf:.2f}')
        if self._camera is None and self.p.camera_enabled:
            warn.append('camera process not running')
        values = {
            'real_time_factor': rtf, 'sim_time': f'{self.world.time:.3f}',
            'steps': k, 'step_overruns': self.overruns, 'resyncs': self.resyncs,
            'catchup_waits': self.catchup_waits, 'catchup_timeouts': self.catchup_timeouts,
            'lateness_p99_ms': float(np.percentile(late, 99)) * 1e3,
            'lateness_max_ms': float(late.max()) * 1e3,
            'rejected_commands': self.rejected, 'accepted_commands': self.accepted,
            'callback_errors': self.callback_errors,
            'effort_watchdog_trips': self.world.watchdog_trips,
            'drive_mode': self.world.mode, 'mujoco_warnings': str(self.world.warnings())}
        if self.bus is not None:
            values.update(self.bus.diagnostics())
        st = diagnostic_status(f'{self.get_name()}: physics', values, 1 if warn else 0,
                               '; '.join(warn) or 'running', self.get_name())
        arr = DiagnosticArray()
        _stamp(arr.header.stamp, self.stamp_ns(k))
        arr.status = [st]
        self._pub_diag.publish(arr)

    # ------------------------------------------------------------------ camera process
    def _start_camera(self):
        from .camera_node import CameraProcess
        p = self.p
        cameras = [(p.camera_name, ('camera/image_raw', 'camera/camera_info'))]
        if p.wrist_camera_enabled:
            cameras.append(('wrist_camera', ('wrist_camera/image_raw',
                                             'wrist_camera/camera_info')))
        self._camera = CameraProcess(
            self.world.model.nq, p.seed, p.n_objects, p.camera_width, p.camera_height,
            [(name, tuple(self.resolve_topic_name(t) for t in topics))
             for name, topics in cameras], f'{self.get_name()}_camera')

    def _stop_camera(self):
        if self._camera is not None:
            camera, self._camera = self._camera, None
            camera.stop()

    # ------------------------------------------------------------------ loop
    def _serve(self, ex, timeout: float) -> None:
        """One executor event; a failing callback is logged and counted, never fatal."""
        try:
            ex.spin_once(timeout_sec=timeout)
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception as e:  # noqa: BLE001 - the body must keep running
            self.callback_errors += 1
            self._log.error('callback', f'callback failed: {e!r}')

    def tick(self) -> None:
        """One physics step and its messages (for a caller that paces the loop itself)."""
        self.world.step(1)
        self._publish()

    def run(self, duration: float | None = None, executor=None) -> None:
        """Step and publish until shutdown, ``stop()`` or ``duration`` [s] of wall time.

        ``executor`` (default: a new EventsExecutor with this node) serves the callbacks in the
        time between steps; pass one holding other nodes of the same process to share it.
        """
        from rclpy.experimental import EventsExecutor
        ex = executor or EventsExecutor(context=self.context)
        if self not in ex.get_nodes():
            ex.add_node(self)
        self._diag_prev = (time.monotonic(), self.world.step_count)
        ctx, p = self.context, self.p
        try:
            self.pacing.run(
                step_count=lambda: self.world.step_count, tick=self.tick,
                serve=lambda timeout: self._serve(ex, timeout),
                ok=lambda: not self._stop and ctx.ok(), speed=lambda: p.speed,
                catchup_wait_s=lambda: p.catchup_wait_s,   # live parameters
                commanded_step=lambda: self._cmd_step, events=lambda: self._events,
                max_lateness_s=lambda: p.max_lateness_s,
                end=None if duration is None else time.monotonic() + duration)
        except Exception:  # noqa: BLE001
            if ctx.ok():
                raise
            # shut down under our feet (Ctrl-C / SIGTERM): handles are gone, just stop
        finally:
            self._stop = False      # consumed: a stop() before run() (a signal) still ends it
            if executor is None:
                ex.remove_node(self)

    def stop(self) -> None:
        """End ``run`` (the one running, or the next one at once)."""
        self._stop = True

    def close(self) -> None:
        self._stop_camera()
        if self.bus is not None:    # the body outlives its driver: it parks, then torque off
            self.bus.linger()
            self.bus.close()
        self.world.close()


def _sim_node() -> SimNode:
    node = SimNode()
    if node.sim_time and node.p.speed == 0:
        node.p.realtime_priority = 0  # a loop that never sleeps must not run at FIFO
    return node


def main(args=None) -> int:
    return run(_sim_node, args)


if __name__ == '__main__':
    raise SystemExit(main())
