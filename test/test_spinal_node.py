"""Spinal node over real DDS: sim and spinal in their own processes, this test as a third.

Holds without a reference, tracks a reference, rejects bad input, withdraws from a wrench
applied in the sim and recovers on ~/reset.
"""
import time

import numpy as np
from conftest import spin_executor_until
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from neurovla_ros import robot
from neurovla_ros.common.rosutil import COMMAND_QOS, LATEST_QOS

ARM = list(robot.ARM_JOINTS)


class Probe:
    def __init__(self, node):
        self.node = node
        self.commands = 0
        self.events = []
        self.status = {}
        node.create_subscription(JointState, '/joint_states', self._js, LATEST_QOS)
        node.create_subscription(Float64MultiArray, '/forward_effort_controller/commands',
                                 self._cmd, LATEST_QOS)
        node.create_subscription(DiagnosticArray, '/spinal/reflex', self.events.append,
                                 COMMAND_QOS)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._diag, COMMAND_QOS)
        self.ref_pub = node.create_publisher(JointState, '/cerebellum/reference', COMMAND_QOS)
        self.push_pub = node.create_publisher(WrenchStamped, '/sim/apply_wrench', COMMAND_QOS)
        self.reset = node.create_client(Trigger, '/spinal/reset')
        self.target = None
        self.bad = None
        node.create_timer(0.005, self._publish_reference)
        from rclpy.experimental import EventsExecutor
        self.executor = EventsExecutor(context=node.context)
        self.executor.add_node(node)

    def _js(self, msg):
        if len(msg.name) == 8:     # the sim's, not this test's bad samples
            self._js_msg = msg

    @property
    def q(self):
        msg = getattr(self, '_js_msg', None)
        return None if msg is None else np.array(msg.position[:6])

    def _cmd(self, msg):
        self.commands += 1
        assert len(msg.data) == 6 and np.all(np.isfinite(msg.data))

    def _diag(self, msg):
        for st in msg.status:
            if st.name == 'spinal: controller':
                self.status = {kv.key: kv.value for kv in st.values}
                self.status['message'] = st.message

    def _publish_reference(self):
        if self.bad is not None:
            self.ref_pub.publish(self.bad)
        if self.target is None:
            return
        msg = JointState(name=ARM, position=[float(v) for v in self.target],
                         velocity=[0.0] * 6)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.ref_pub.publish(msg)

    def spin(self, pred, timeout):
        return spin_executor_until(self.executor, pred, timeout, 0.02)


def test_spinal_node_over_dds(ros_process, rclpy_node):
    # the body at half real-time speed (sim time): the 1 kHz loop closes at 500 Hz wall, so a
    # loaded 2-core VM still leaves the spinal node enough CPU for every sample
    sim = ros_process('neurovla_ros.sim.node', {
        'camera_enabled': False, 'n_objects': 0, 'imu_rate_hz': 10.0, 'wrench_rate_hz': 10.0,
        'use_sim_time': True, 'speed': 0.5})
    spinal = ros_process('neurovla_ros.spinal.node', {
        'quiet_time': 0.0, 'diagnostics_period': 0.2, 'withdraw_distance': 0.08})
    probe = Probe(rclpy_node)
    home = robot.load().home_pose()

    # 1. no reference: commands flow and the arm holds its pose
    assert probe.spin(lambda: probe.commands > 300 and probe.q is not None, 60), (
        _output(sim), _output(spinal))
    assert probe.spin(lambda: probe.status.get('mode') == 'hold', 10)
    time.sleep(0.5)
    probe.spin(lambda: False, 0.5)
    assert np.abs(probe.q - home).max() < 0.02

    # 2. track a reference: +0.25 rad on the shoulder pan, -0.2 on the elbow
    target = home + np.array([0.25, 0, -0.2, 0, 0, 0])
    probe.target = target
    assert probe.spin(lambda: np.abs(probe.q - target).max() < 0.015, 20), (probe.q - target,
                                                                          probe.status)
    assert probe.spin(lambda: probe.status.get('mode') == 'follow', 10), probe.status

    # 3. bad references are rejected (counted), the arm keeps following
    probe.bad = JointState(name=ARM, position=[float('nan')] * 6)
    assert probe.spin(lambda: float(probe.status.get('rejected_reference', 0)) > 0, 5)
    probe.bad = JointState(name=ARM[:5], position=[0.0] * 5)
    probe.spin(lambda: False, 0.3)
    probe.bad = JointState(name=['no_such_joint'] + ARM[1:], position=[0.0] * 6)
    probe.spin(lambda: False, 0.3)
    probe.bad = None
    # ... and so are bad /joint_states samples (NaN, wrong lengths, unknown joints); each kind
    # is sent until the node counts it (a sample can be overtaken by the sim's in the queue)
    js_pub = rclpy_node.create_publisher(JointState, '/joint_states', COMMAND_QOS)

    def rejected():
        return float(probe.status.get('rejected_joint_states', 0))
    for bad in (JointState(name=ARM, position=[float('nan')] * 6, velocity=[0.0] * 6),
                JointState(name=ARM, position=[0.0] * 6, velocity=[0.0] * 5),
                JointState(name=['no_such_joint'], position=[0.0], velocity=[0.0])):
        before = rejected()
        for _ in range(10):
            js_pub.publish(bad)
            if probe.spin(lambda: rejected() > before, 0.5):
                break
        assert rejected() > before, (bad, probe.status)
    probe.spin(lambda: False, 0.3)
    assert np.abs(probe.q - target).max() < 0.015, (probe.status, len(probe.events))
    assert probe.status.get('mode') == 'follow'

    # 4. a push on the forearm: reflex event, the arm withdraws, holds, recovers on reset
    q_before = probe.q.copy()
    push = WrenchStamped()
    push.header.frame_id = 'forearm_link'
    push.wrench.force.z = 60.0
    probe.push_pub.publish(push)
    assert probe.spin(lambda: probe.events, 10), probe.status
    ev = {kv.key: kv.value for kv in probe.events[0].status[0].values}
    assert ev['event'] == 'collision' and ev['joints']
    assert float(ev['external_torque.elbow_joint']) != 0.0
    assert probe.spin(lambda: probe.status.get('mode') == 'compliant', 10), probe.status
    probe.spin(lambda: False, 0.7)                           # the compliant hold settles
    assert np.abs(probe.q - q_before).max() > 0.03           # moved away and stays there
    q_held = probe.q.copy()
    probe.spin(lambda: False, 0.5)
    assert np.abs(probe.q - q_held).max() < 0.02             # compliant hold, no reference
    assert probe.status.get('mode') == 'compliant'
    fut = probe.reset.call_async(Trigger.Request())
    assert probe.spin(lambda: fut.done(), 10) and fut.result().success
    assert probe.spin(lambda: any(s.status[0].message == 'recovered' for s in probe.events),
                      10), [s.status[0].message for s in probe.events]
    assert probe.spin(lambda: np.abs(probe.q - target).max() < 0.015, 20), probe.status

    # 5. reference stops: stale -> hold where it is
    probe.target = None
    assert probe.spin(lambda: probe.status.get('mode') == 'hold', 5)
    assert sim.poll() is None and spinal.poll() is None
    probe.executor.remove_node(rclpy_node)


def _output(proc):
    if proc.poll() is None:
        return f'pid {proc.pid} running'
    return proc.output()[-3000:]
