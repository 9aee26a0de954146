"""Cerebellum node ``cerebellum``: goals -> smooth reference, online tremor cancellation.

Interfaces
    /joint_states [sensor_msgs/JointState]           encoders; their stamps drive the ticks
    /imu/data [sensor_msgs/Imu]                      wrist IMU (imu_link), gravity included
    /cortex/goal_pose [geometry_msgs/PoseStamped]    tcp goal in base_link (IK here)
    /cortex/joint_goal [trajectory_msgs/JointTrajectory]  joint goal or action chunk
    /teleop/twist [geometry_msgs/TwistStamped]       tcp velocity, base_link or tcp_link
                                                     (MoveIt Servo style: timeout, halt)
    /teleop/pose [geometry_msgs/PoseStamped]         tcp goal in base_link, reached as given
    ~/release_teleop [std_srvs/Trigger]              hand the arm back to the cortex (teleop
                                                     input pre-empts cortex goals for
                                                     ``teleop_hold_time``: cerebellum.teleop)
    <reflex_topic> [diagnostic_msgs/DiagnosticArray] spinal reflex events: after one, the
                                                     reference adopts the withdrawn pose
    <reference_topic> [sensor_msgs/JointState]       desired position, velocity and
                                                     feed-forward effort for the spinal layer
    estop, spinal/safety [latched]                   stopped (common.rosutil.StopSignal):
                                                     hold the measured pose, refuse goals
    ~/ee_pose, ~/ee_twist, ~/ee_accel                state estimate of the tcp (base_link):
        [geometry_msgs/PoseStamped, TwistStamped, AccelStamped]
    /diagnostics [diagnostic_msgs/DiagnosticArray]   adaptation status (tremor frequency,
                                                     amplitude, weights), estimate, tick cost

Ticks run in the /joint_states callback at ``rate_hz`` (decimated by stamp), so the work per
tick is one core step and one publish; the IMU is not delivered per message: each tick takes
the newest sample (:class:`~neurovla_ros.common.rosutil.LatestSample`). Both 1 kHz streams are
raw bytes and only the needed fields are read (:mod:`neurovla_ros.common.cdr`); the reference is
serialized in place and published raw. Freshness, goal times and the watchdog use ROS time
(``use_sim_time``: the simulation's /clock), else the monotonic clock. A 20 Hz watchdog keeps
publishing the held reference when /joint_states stops. The work is done by the ROS-free
:class:`neurovla_ros.cerebellum.core.Cerebellum`.

Priorities (SCHED_FIFO, when the process may have them): the tick - joint state in, reference
out - runs at ``realtime_priority``, above the sim and spinal loops, so that a 30-50 us tick
every 2 ms is never preempted by them; everything else the node does (goal IK, the work
``Cerebellum.after_tick`` finds due, diagnostics, state output, the watchdog) drops to
``background_priority`` for its duration (:func:`background`), below those loops. A new
callback of this node that is not the tick takes ``@background``.
"""
from __future__ import annotations

import functools
import math
import sys
import time

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import AccelStamped, PoseStamped, TwistStamped
from rclpy._rclpy_pybind11 import RCLError
from rclpy.node import Node
from sensor_msgs.msg import Imu, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from .. import robot
from ..common import realtime
from ..common.cdr import ImuReader, JointStateReader, read_stamp
from ..common.rosutil import (
    COMMAND_QOS,
    LATEST_QOS,
    SENSOR_QOS,
    LatestSample,
    StopSignal,
    Throttled,
    cap_torch_threads,
    declare_params,
    decoder,
    diagnostic_status,
    joint_state_template,
    run,
)
from ..robot.transforms import matrix_to_quat_xyzw
from . import teleop
from .core import Cerebellum
from .params import NODE_NAME, PARAMS, CerebellumConfig

WATCHDOG_PERIOD = 0.05  # [s]
STATS_S = 16.0          # [s] the tick statistics in /diagnostics cover the last this long


def background(method):
    """Run a callback of the node at its ``background_priority`` when the calling thread runs
    above it (the executor's thread at ``realtime_priority``), then back to where it was; a
    thread at or below it (rclpy's timer thread runs under the normal scheduler) is left
    alone."""
    @functools.wraps(method)
    def wrapper(self, *args):
        lo = self._bg
        prev = realtime.current_priority() if lo else 0
        if prev <= lo:
            return method(self, *args)
        realtime.set_thread_priority(lo)
        try:
            return method(self, *args)
        finally:
            realtime.set_thread_priority(prev)
    return wrapper


class CerebellumNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self._log = Throttled(self.get_logger())   # warnings about input, per kind
        self.p = declare_params(self, PARAMS)
        p = self.p
        # one clock for freshness, goals and the watchdog: ROS time (follows /clock with
        # use_sim_time, so a slowed-down simulation stays consistent), else monotonic
        if self.get_parameter('use_sim_time').value:
            clock = self.get_clock()
            self._now = lambda: clock.now().nanoseconds * 1e-9
        else:
            self._now = time.monotonic
        self.model = robot.load()
        self.core = Cerebellum(self.model, CerebellumConfig.from_values(p))
        self.arbiter = teleop.TeleopArbiter(p.teleop_hold_time)
        self.arm = list(self.model.arm_joints)
        self.add_post_set_parameters_callback(self._on_params)
        # outputs (messages reused)
        self.ref_out = joint_state_template(self.arm)     # serialized in place, published raw
        self.ref_pub = self.create_publisher(JointState, p.reference_topic, SENSOR_QOS)
        self._ref_views = self.ref_out.views('position', 'velocity', 'effort')
        self.pose_pub = self.create_publisher(PoseStamped, '~/ee_pose', SENSOR_QOS)
        self.twist_pub = self.create_publisher(TwistStamped, '~/ee_twist', SENSOR_QOS)
        self.accel_pub = self.create_publisher(AccelStamped, '~/ee_accel', SENSOR_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        # inputs
        # 1 kHz streams: raw bytes, only the needed fields read (no Python message objects)
        self._js = JointStateReader(decoder(JointState))
        self._imu = ImuReader(decoder(Imu))
        self.create_subscription(JointState, 'joint_states', self._on_joints_raw, LATEST_QOS,
                                 raw=True)
        self._imu_latest = LatestSample(self, Imu, 'imu/data')   # taken at each tick
        self.create_subscription(PoseStamped, 'cortex/goal_pose',
                                 self._cortex(self._on_goal_pose), COMMAND_QOS)
        self.create_subscription(JointTrajectory, 'cortex/joint_goal',
                                 self._cortex(self._on_joint_goal), COMMAND_QOS)
        self.create_subscription(TwistStamped, 'teleop/twist', self._teleop(self._on_twist),
                                 COMMAND_QOS)
        self.create_subscription(DiagnosticArray, p.reflex_topic, self._on_reflex, COMMAND_QOS)
        self.create_subscription(PoseStamped, 'teleop/pose', self._teleop(self._on_teleop_pose),
                                 COMMAND_QOS)
        self.create_service(Trigger, '~/release_teleop', self._on_release_teleop)
        self._stop = StopSignal(self, self._on_stop)
        self.create_timer(WATCHDOG_PERIOD, self._watchdog)
        self.create_timer(1.0 / p.diagnostics_rate_hz, self._publish_diagnostics)
        if p.state_rate_hz > 0:
            self.create_timer(1.0 / p.state_rate_hz, self._publish_state)
        # joint-state bookkeeping
        self._names = None
        self._idx = None
        self._q = np.zeros(6)
        self._qd = np.zeros(6)
        self._t_stamp = None       # stamp of the last joint sample [s]
        self._t_tick = -math.inf   # stamp of the last tick [s]
        self._period = 1.0 / p.rate_hz
        self._last_tick_wall = -math.inf
        self._stamp_msg = Time()
        # statistics (the last STATS_S seconds of ticks)
        self._tick_us = np.zeros(int(p.rate_hz * STATS_S))
        self._n_ticks = 0
        self._n_ticks_diag = 0
        self._ticks_total = 0
        self._rejected = {'joint_states': 0, 'imu': 0, 'goal': 0}
        self._diag_t = time.monotonic()
        # FIFO priority of everything but the tick (0: no split)
        self._bg = p.background_priority if 0 < p.background_priority < p.realtime_priority \
            else 0
        self._after_us = np.zeros_like(self._tick_us)    # after_tick, the work between ticks
        self.get_logger().info(
            f'cerebellum: reference on {p.reference_topic} at {p.rate_hz:g} Hz, smoothing '
            f'{p.smoothing}{", tremor canceller" if p.tremor_enabled else ""}'
            + (' (C tick)' if self.core.compiled
               else ' (numpy tick: the C extension is not built)'))

    # ---------------------------------------------------------------- parameters
    @background
    def _on_params(self, params) -> None:
        cfg = self.core.cfg
        for prm in params:
            if prm.name == 'teleop_hold_time':
                self.arbiter.hold_time = prm.value
            if hasattr(cfg, prm.name):
                setattr(cfg, prm.name, prm.value)
        self.core.configure()

    # ---------------------------------------------------------------- inputs
    def _warn(self, what: str, msg: str) -> None:
        self._rejected[what] += 1
        self._log.warning(what, msg)

    def _layout(self, names: tuple) -> bool:
        try:
            idx = [names.index(n) for n in self.arm]
        except ValueError:
            missing = [n for n in self.arm if n not in names]
            self._warn('joint_states', f'/joint_states rejected: missing joints {missing}')
            return False
        self._names = names
        self._idx = None if idx == list(range(6)) else np.array(idx)
        return True

    def _on_joints_raw(self, buf: bytes) -> None:
        t0 = time.perf_counter()
        st = read_stamp(buf)
        if st is not None and self.core.initialized:
            t = st[0] + st[1] * 1e-9
            if t > 0.0 and self._t_stamp is not None and \
                    self._t_stamp - 1.0 <= t < self._t_tick + self._period - 2.5e-4:
                self._t_stamp = t
                self.core.t_joints = self._now()  # fresh; no tick due: nothing else
                return
        r = self._js
        if r.read(buf) is None:
            self._warn('joint_states', f'/joint_states rejected: {r.error}')
            return
        self._on_joints(t0, r.sec, r.nanosec, r.names, r.position, r.velocity)

    def _on_joints(self, t0, sec, nanosec, names, pos, vel) -> None:
        now = self._now()
        t = sec + nanosec * 1e-9
        if t <= 0.0:
            t = now
        if self._t_stamp is not None and t < self._t_stamp - 1.0:
            self._t_tick = -math.inf  # the clock went back (sim reset): start over
        self._t_stamp = t
        due = t - self._t_tick >= self._period - 2.5e-4
        core = self.core
        if not due and core.initialized:
            core.t_joints = now  # fresh; the sample itself is only needed at a tick
            return
        names = tuple(names)
        if names != self._names and not self._layout(names):
            return
        n = len(names)
        if len(pos) != n or len(vel) != n:
            self._warn('joint_states', f'/joint_states rejected: {n} names but {len(pos)} '
                       f'positions, {len(vel)} velocities')
            return
        pa, va = np.asarray(pos, float), np.asarray(vel, float)
        if not (math.isfinite(float(pa.sum())) and math.isfinite(float(va.sum()))):
            self._warn('joint_states', '/joint_states rejected: NaN or inf')
            return
        if self._idx is None:
            q, qd = pa[:6], va[:6]
        else:
            q, qd = np.take(pa, self._idx, out=self._q), np.take(va, self._idx, out=self._qd)
        core.set_joints(now, q, qd)
        imu = self._imu_latest.take()      # the newest IMU sample (1 kHz in, 500 Hz used)
        if imu is not None:
            self._read_imu(imu, now)
        dt = t - self._t_tick if math.isfinite(self._t_tick) else self._period
        self._t_tick = t
        st = self._stamp_msg
        st.sec, st.nanosec = sec, nanosec
        self._tick(now, dt, st)
        t1 = time.perf_counter()
        i = self._n_ticks % len(self._tick_us)
        self._tick_us[i] = (t1 - t0) * 1e6
        self._n_ticks += 1
        if core.work_due:          # the work due now and then, once the reference is out
            self._after_tick()
        self._after_us[i] = (time.perf_counter() - t1) * 1e6

    @background
    def _after_tick(self) -> None:
        self.core.after_tick()

    def _read_imu(self, buf: bytes, now: float) -> None:
        r = self._imu
        if r.read(buf) is None:
            self._warn('imu', f'/imu/data rejected: {r.error}')
            return
        g, acc = r.gyro, r.accel
        if not (math.isfinite(g[0] + g[1] + g[2]) and math.isfinite(acc[0] + acc[1] + acc[2])):
            self._warn('imu', '/imu/data rejected: NaN or inf')
            return
        quat = None
        if r.orientation_cov0 != -1.0:
            qq = r.quat
            nrm = qq[0] * qq[0] + qq[1] * qq[1] + qq[2] * qq[2] + qq[3] * qq[3]
            if math.isfinite(nrm) and 0.9 < nrm < 1.1:
                quat = qq
        self.core.set_imu(now, g, acc, quat)

    def _goal_result(self, ok: bool, why: str) -> None:
        if not ok:
            self._warn('goal', why)

    def _on_stop(self, reason: str) -> None:
        """Stopped or resumed: re-seed at the next joint sample (the reference holds the
        measured pose: no jump when the spinal layer engages it on resume)."""
        self.core.initialized = False
        self.get_logger().warning(f'{reason}: holding, no new goals' if reason else
                                  'resumed: holding the measured pose until a new goal')

    def _stopped(self) -> bool:
        """While stopped, a goal is refused (counted, warned)."""
        if self._stop.reason:
            self._warn('goal', f'goal rejected: {self._stop.reason}')
        return bool(self._stop.reason)

    @background
    def _on_goal_pose(self, msg: PoseStamped, exact: bool = False) -> None:
        if self._stopped():
            return
        p, o = msg.pose.position, msg.pose.orientation
        self._goal_result(*self.core.accept_pose_goal(
            self._now(), [p.x, p.y, p.z], [o.x, o.y, o.z, o.w], msg.header.frame_id, exact))

    def _on_teleop_pose(self, msg: PoseStamped) -> None:
        self._on_goal_pose(msg, True)      # @background passes positional arguments only

    @background
    def _on_joint_goal(self, msg: JointTrajectory) -> None:
        if self._stopped():
            return
        names = list(msg.joint_names)
        missing = [n for n in self.arm if n not in names]
        unknown = [n for n in names if n not in self.arm and n not in robot.FINGER_JOINTS]
        if missing or unknown or not msg.points:
            self._goal_result(False, f'joint goal rejected: missing joints {missing}, unknown '
                              f'{unknown}, {len(msg.points)} points')
            return
        idx = [names.index(n) for n in self.arm]
        try:
            pos = [[pt.positions[i] for i in idx] for pt in msg.points]
            vel = None
            if all(len(pt.velocities) == len(names) for pt in msg.points):
                vel = [[pt.velocities[i] for i in idx] for pt in msg.points]
        except IndexError:
            self._goal_result(False, 'joint goal rejected: a point has fewer values than '
                              'joint names')
            return
        times = [pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9
                 for pt in msg.points]
        self._goal_result(*self.core.accept_trajectory(self._now(), times, pos, vel))

    @background
    def _on_reflex(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if any(kv.key == 'event' and kv.value == 'collision' for kv in st.values):
                self.core.note_reflex(self._now())
                self._log('reflex', 'spinal reflex: the reference will follow the withdrawal',
                          'info')

    # teleop and the cortex share the arm (cerebellum.teleop.TeleopArbiter)
    def _cortex(self, callback):
        def gated(msg) -> None:
            why = self.arbiter.cortex_refusal(self._now())
            if why:
                self._log('preempted', why, 'info')
            else:
                callback(msg)
        return gated

    def _teleop(self, callback):
        def taken(msg) -> None:
            accepted = self.core.intake.accepted
            callback(msg)
            if self.core.intake.accepted > accepted:
                self.arbiter.teleop_input(self._now())
        return taken

    @background
    def _on_release_teleop(self, _request, response):
        response.success = self.arbiter.release()
        response.message = ('the cortex has the arm' if response.success
                            else 'teleop did not have the arm')
        return response

    @background
    def _on_twist(self, msg: TwistStamped) -> None:
        if self._stopped():
            return
        v, w = msg.twist.linear, msg.twist.angular
        self._goal_result(*self.core.accept_twist(
            self._now(), [v.x, v.y, v.z], [w.x, w.y, w.z], msg.header.frame_id))

    # ---------------------------------------------------------------- tick and outputs
    def _tick(self, now: float, dt: float, stamp) -> None:
        core = self.core
        if not core.tick(now, dt):
            return
        self._last_tick_wall = now
        self._ticks_total += 1
        out = self.ref_out
        ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        out.set_stamp(ns)
        pos, vel, eff = self._ref_views
        pos[:] = core.ref_pos
        vel[:] = core.ref_vel
        eff[:] = core.ref_eff
        try:
            self.ref_pub.publish(out.tobytes())
        except Exception:  # noqa: BLE001 - at shutdown the context is gone: not an error
            if self.context.ok():
                raise

    @background
    def _watchdog(self) -> None:
        """No /joint_states: keep publishing the held reference (and stop adapting)."""
        now = self._now()
        if self.core.initialized and now - self._last_tick_wall > WATCHDOG_PERIOD:
            stamp = self.get_clock().now().to_msg()
            self._tick(now, WATCHDOG_PERIOD, stamp)
            self.core.after_tick()

    @background
    def _publish_state(self) -> None:
        core = self.core
        if not core.initialized:
            return
        est = core.estimator
        est.derived()
        stamp = (self._stamp_msg if self._t_stamp is not None
                 else self.get_clock().now().to_msg())
        ps = PoseStamped()
        ps.header.stamp, ps.header.frame_id = stamp, 'base_link'
        ps.pose.position.x, ps.pose.position.y, ps.pose.position.z = est.ee_pos.tolist()
        qx, qy, qz, qw = matrix_to_quat_xyzw(est.ee_rot).tolist()
        o = ps.pose.orientation
        o.x, o.y, o.z, o.w = qx, qy, qz, qw
        tw = TwistStamped()
        tw.header = ps.header
        tw.twist.linear.x, tw.twist.linear.y, tw.twist.linear.z = est.ee_twist[:3].tolist()
        tw.twist.angular.x, tw.twist.angular.y, tw.twist.angular.z = est.ee_twist[3:].tolist()
        ac = AccelStamped()
        ac.header = ps.header
        ac.accel.linear.x, ac.accel.linear.y, ac.accel.linear.z = est.ee_acc.tolist()
        try:
            self.pose_pub.publish(ps)
            self.twist_pub.publish(tw)
            self.accel_pub.publish(ac)
        except RCLError:
            pass

    @background
    def _publish_diagnostics(self) -> None:
        core = self.core
        now = time.monotonic()
        n = min(self._n_ticks, len(self._tick_us))
        us = self._tick_us[:n]          # the last (up to) STATS_S seconds of ticks
        rate = (self._n_ticks - self._n_ticks_diag) / max(1e-6, now - self._diag_t)
        self._diag_t, self._n_ticks_diag = now, self._n_ticks
        values = dict(core.status()) if core.initialized else {}
        values.update(tick_rate_hz_wall=rate,
                      tick_us_p50=float(np.percentile(us, 50)) if n else 0.0,
                      tick_us_p99=float(np.percentile(us, 99)) if n else 0.0,
                      tick_us_max=float(us.max()) if n else 0.0,
                      after_tick_us_p99=float(np.percentile(self._after_us[:n], 99)) if n
                      else 0.0,
                      after_tick_us_max=float(self._after_us[:n].max()) if n else 0.0,
                      compiled_tick=core.compiled, ticks_total=self._ticks_total,
                      mode=core.cfg.smoothing)   # cerebellum | linear | ruckig
        values.update({f'rejected_{k}': v for k, v in self._rejected.items()})
        values['stopped'] = bool(self._stop.reason)
        values.update(teleop.status(core.intake, self.arbiter, self._now()))
        if core.intake.last_rejection:
            values['last_rejection'] = core.intake.last_rejection
        level = core.status_level if core.initialized else 1
        message = core.status_message
        if self._stop.reason:
            level, message = max(level, 1), f'{self._stop.reason}; {message}'
        st = diagnostic_status('cerebellum', values, level, message, 'neurovla_arm')
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        try:
            self.diag_pub.publish(arr)
        except RCLError:
            pass

    def close(self) -> None:
        self._imu_latest.destroy()


def main(args=None) -> int:
    if 'torch' in sys.modules:  # the cerebellum needs none; never let it take the cores
        cap_torch_threads()
    return run(CerebellumNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
