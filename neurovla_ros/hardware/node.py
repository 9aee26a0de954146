"""``hardware`` node: a serial-bus servo arm as a body, through the servos' official SDKs.

Publishes (topic names relative to the node's namespace; /diagnostics and /clock global)
  joint_states [sensor_msgs/JointState]      6 arm joints, left/right finger, at the bus rate;
                                              effort = Present Current x torque constant
  ~/commanded [sensor_msgs/JointState]        what went on the wire each cycle (position goals
                                              [rad], effort commands [N m], stamp = write time);
                                              only while someone subscribes
  /diagnostics [diagnostic_msgs/DiagnosticArray]  status ``hardware: bus`` (state, stop
                                              category, cycle rate, failures, hardware errors)
Subscribes (best effort, as the sim)
  forward_effort_controller/commands [std_msgs/Float64MultiArray]    current interface only
  forward_position_controller/commands [std_msgs/Float64MultiArray]
  gripper_controller/commands [std_msgs/Float64MultiArray]  [opening of left_finger_joint, m]
Services
  ~/resume [std_srvs/Trigger]   leave a protective stop / torque-off (the only way out)

A command that is not 6 finite values, or beyond the URDF limits, is rejected with a throttled
warning and counted; commands are refused outside ``running``. The work is in
:class:`~neurovla_ros.hardware.bridge.Bridge`; this node paces the loop: read, publish, wait
briefly for the controller's answer, write, then serve callbacks until the next cycle. Shutdown
(SIGINT/SIGTERM): the park move, then torque off.
"""
from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from ..common.limits import LIMIT_TOL, command_reason, invalid_reason
from ..common.rosutil import (
    BODY_COMMAND_QOS,
    COMMAND_QOS,
    SENSOR_QOS,
    Throttled,
    declare_params,
    joint_state_template,
    run,
)
from . import bridge as br
from . import config
from .emulator import default_link
from .params import NODE_NAME, PARAMS

LEVEL = {br.RUNNING: DiagnosticStatus.OK, br.PARKING: DiagnosticStatus.OK,
         br.OFF: DiagnosticStatus.OK}


def _opts(p) -> br.BridgeOptions:
    return br.BridgeOptions(
        command_timeout=p.command_timeout_s, fail_stop_reads=p.fail_stop_reads,
        torque_off_after=p.torque_off_after_s, reconnect_s=p.reconnect_s,
        park_time=p.park_time_s, set_return_delay=p.set_return_delay,
        latency_ms=p.latency_timer_ms or None, reply_margin_ms=p.reply_margin_ms,
        velocity_accel_noise=p.velocity_accel_noise)


class HardwareNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._log = Throttled(self.get_logger())
        self.p = declare_params(self, PARAMS)
        p = self.p
        self.cfg = config.load(p.config_file or None, p.protocol)
        port = p.port or self.cfg.port
        if port == 'emulator':
            port = default_link()
        self.bridge = br.Bridge(self.cfg, port, _opts(p))
        names = [*self.bridge.model.arm_joints, 'left_finger_joint', 'right_finger_joint']
        self._js = joint_state_template(names)
        self._js_q, self._js_qd, self._js_e = self._js.views('position', 'velocity', 'effort')
        self._cmd_msg = joint_state_template(names[:6])
        self._c_q, self._c_qd, self._c_e = self._cmd_msg.views('position', 'velocity', 'effort')
        self._c_qd[:] = 0.0
        self.pub_js = self.create_publisher(JointState, 'joint_states', SENSOR_QOS)
        self.pub_cmd = self.create_publisher(JointState, '~/commanded', SENSOR_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        self.rejected = {'effort': 0, 'position': 0, 'gripper': 0, 'refused': 0}
        self._arm = names[:6]
        lim = self.bridge.model.limits()
        self._lo, self._hi, self._eff = lim['lower'], lim['upper'], lim['effort']
        for kind in ('effort', 'position'):
            self.create_subscription(Float64MultiArray, f'forward_{kind}_controller/commands',
                                     lambda m, k=kind: self._on_command(k, m), BODY_COMMAND_QOS)
        self.create_subscription(Float64MultiArray, 'gripper_controller/commands',
                                 self._on_gripper, BODY_COMMAND_QOS)
        self.create_service(Trigger, '~/resume', self._on_resume)
        self.add_post_set_parameters_callback(self._on_params)
        self._answering = False
        self._diag_t = time.monotonic()
        self._cycles = 0
        self.get_logger().info(
            f'{self.cfg.protocol} bus on {port} at {self.cfg.baud} baud, {len(self.cfg.drives)} '
            f'servos (IDs {self.cfg.ids}), arm interface {self.cfg.interface}, file '
            f'{self.cfg.source}')

    # ---------------------------------------------------------------- inputs
    def _on_params(self, params) -> None:
        self.bridge.opts = _opts(self.p)

    def _reject(self, kind: str, msg: str) -> None:
        self.rejected[kind] += 1
        self._log.warning(kind, f'{msg}; rejected')

    def _on_command(self, kind: str, msg) -> None:
        reason = command_reason(kind, msg.data, self._arm, self._lo, self._hi, None, self._eff)
        if reason is None and kind == 'effort' and not self.bridge.current_mode:
            reason = 'the arm is on the position interface (no current control)'
        if reason is not None:
            self._reject(kind, f'forward_{kind}_controller/commands: {reason}')
            return
        if not self.bridge.accepting():
            self.rejected['refused'] += 1
            self._log.warning('refused', f'command refused: {self.bridge.state} '
                              f'({self.bridge.reason})')
            return
        now = time.monotonic()
        v = np.asarray(msg.data, float)
        if kind == 'effort':
            self.bridge.command_effort(v, now)
        else:
            self.bridge.command_position(v, now)

    def _on_gripper(self, msg) -> None:
        reason = invalid_reason(msg.data, 1)
        lo, hi = self.bridge.grip_range
        if reason is None and not lo - LIMIT_TOL <= msg.data[0] <= hi + LIMIT_TOL:
            reason = f'opening {msg.data[0]!r} outside ({lo}, {hi}) m'
        if reason is not None:
            self._reject('gripper', f'gripper_controller/commands: {reason}')
            return
        self.bridge.command_gripper(msg.data[0], time.monotonic())

    def _on_resume(self, request, response):
        response.success, response.message = self.bridge.resume(time.monotonic())
        self._flush_events()
        return response

    # ---------------------------------------------------------------- outputs
    def _flush_events(self) -> None:
        b, log = self.bridge, self.get_logger()
        for level, msg in b.events:     # one call site per severity (rclpy requires it)
            if level == 'error':
                log.error(msg)
            elif level == 'warning':
                log.warning(msg)
            else:
                log.info(msg)
        b.events.clear()

    def _publish_state(self) -> None:
        b = self.bridge
        self._js_q[:] = b.q
        self._js_qd[:] = b.qd
        self._js_e[:] = b.effort
        self._js.set_stamp(b.stamp_ns)
        self.pub_js.publish(self._js.tobytes())

    def _publish_commanded(self) -> None:
        b = self.bridge
        if b._last_goal is not None:
            self._c_q[:] = b._last_goal
        else:
            self._c_q[:] = b.hold_q if b.hold_q is not None else b.q[:6]
        self._c_e[:] = b.cmd if b.cmd_kind == 'effort' and not b.holding else 0.0
        self._cmd_msg.set_stamp(time.time_ns())
        self.pub_cmd.publish(self._cmd_msg.tobytes())

    def _publish_diagnostics(self, now: float) -> None:
        b = self.bridge
        span = max(1e-6, now - self._diag_t)
        cyc = b.take_cycle_times() * 1e3
        rate = self._cycles / span
        self._diag_t, self._cycles = now, 0
        st = DiagnosticStatus(name='hardware: bus', hardware_id='hardware')
        st.level = LEVEL.get(b.state, DiagnosticStatus.ERROR)
        msg = f'{b.state}: {b.reason}'
        if b.state == br.RUNNING and b.holding:
            msg = 'running: holding (no fresh commands)'
        if b.state == br.RUNNING and (b.warnings or b.errors):
            st.level = DiagnosticStatus.WARN
            msg += '; ' + '; '.join(b.warnings)
        st.message = msg
        values = {
            'state': b.state, 'stop_category': str(b.stop_category or ''),
            'port': b.port, 'protocol': self.cfg.protocol, 'baud': str(self.cfg.baud),
            'cycle_hz': f'{rate:.1f}',
            'cycle_ms_p50': f'{np.percentile(cyc, 50):.4f}' if len(cyc) else '',
            'cycle_ms_p99': f'{np.percentile(cyc, 99):.4f}' if len(cyc) else '',
            'reads': str(b.reads), 'read_failures': str(b.read_failures),
            'corrupt_replies': str(b.corrupt), 'timeouts': str(b.timeouts),
            'reconnects': str(b.reconnects), 'limit_clipped_cycles': str(b.clipped),
            'watchdog_rearms': str(b.watchdog_rearms),
            'commands': str(b.commands),
            **{f'rejected_{k}': str(v) for k, v in self.rejected.items()},
            **{f'hardware_error.{j}': e for j, e in b.errors.items()}}
        st.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    # ---------------------------------------------------------------- the loop
    def run(self) -> None:
        """Read, publish, wait briefly for the controller, write; until shutdown."""
        from rclpy.experimental import EventsExecutor
        ex = EventsExecutor(context=self.context)
        ex.add_node(self)
        ctx = self.context
        b = self.bridge
        try:
            while ctx.ok():
                p = self.p
                t0 = time.monotonic()
                fresh = b.read(t0)
                if b.events:
                    self._flush_events()
                if fresh:
                    self._publish_state()
                    self._cycles += 1
                    n0 = b.commands
                    wait = p.command_wait_s if self._answering else 0.0
                    deadline = time.monotonic() + wait
                    ex.spin_once(timeout_sec=0.0)
                    while b.commands == n0 and time.monotonic() < deadline:
                        ex.spin_once(timeout_sec=max(0.0, deadline - time.monotonic()))
                    self._answering = b.commands > n0
                else:
                    ex.spin_once(timeout_sec=0.0 if b.state not in (br.CONNECTING,
                                                                     br.CONFIG_ERROR) else 0.02)
                now = time.monotonic()
                b.write(now)
                if self.pub_cmd.get_subscription_count():
                    self._publish_commanded()
                if now - self._diag_t >= 1.0 / p.diagnostics_rate_hz:
                    self._publish_diagnostics(now)
                if p.rate_hz > 0:
                    due = t0 + 1.0 / p.rate_hz
                    rem = due - time.monotonic()
                    while rem > 0:
                        ex.spin_once(timeout_sec=rem)
                        rem = due - time.monotonic()
        except Exception:  # noqa: BLE001
            if ctx.ok():
                raise
        finally:
            ex.remove_node(self)

    def close(self) -> None:
        """Shutdown: park, then torque off (bus only, no ROS)."""
        b = self.bridge
        t_end = time.monotonic() + 2.9
        b.park(time.monotonic())
        while b.state == br.PARKING and time.monotonic() < t_end:
            now = time.monotonic()
            b.read(now)
            b.write(now)
            time.sleep(0.002)
        if b.torque_on:
            b._disable_all()
        self._flush_events()
        b.close()


def main(args=None) -> int:
    return run(HardwareNode, args)


if __name__ == '__main__':
    main()
