"""The relay node over real DDS (its own process, in a namespace): it forwards, drops and delays
real messages at the set values, and run-time parameter changes (set over DDS from another
node, as `ros2 param set` does) take effect. Loss and delay come from the relay, not netem
(this kernel has no netem qdisc)."""
import math
import time

import numpy as np
from conftest import spin_until
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from std_msgs.msg import Float64MultiArray

from neurovla_ros.common.rosutil import COMMAND_QOS, diagnostic_values

NS = '/arm7'


class Probe:
    """Sends numbered goals into relay_in/..., records what comes out (and when)."""

    def __init__(self, node):
        self.node = node
        self.pub = node.create_publisher(PoseStamped, f'{NS}/relay_in/cortex/goal_pose',
                                         COMMAND_QOS)
        self.pub_grip = node.create_publisher(
            Float64MultiArray, f'{NS}/relay_in/gripper_controller/commands', COMMAND_QOS)
        self.sent, self.got, self.grip = {}, [], []
        node.create_subscription(PoseStamped, f'{NS}/cortex/goal_pose', self._on_goal,
                                 COMMAND_QOS)
        node.create_subscription(Float64MultiArray, f'{NS}/gripper_controller/commands',
                                 lambda m: self.grip.append(list(m.data)), COMMAND_QOS)
        self.diag = None
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, COMMAND_QOS)
        self.params = AsyncParameterClient(node, f'{NS}/relay')
        self.n = 0

    def _on_goal(self, msg):
        self.got.append((int(msg.pose.position.x), time.monotonic()))

    def _on_diag(self, msg):
        for st in msg.status:
            if st.name == 'relay':
                self.diag = diagnostic_values(st)

    def send(self, count, period):
        """``count`` goals ``period`` apart; their numbers."""
        ids = []
        for _ in range(count):
            msg = PoseStamped()
            msg.header.frame_id = 'base_link'
            msg.pose.position.x = float(self.n)
            self.sent[self.n] = time.monotonic()
            self.pub.publish(msg)
            ids.append(self.n)
            self.n += 1
            spin_until(self.node, lambda: False, period)
        return ids

    def received(self, ids):
        want = set(ids)
        return [(i, t) for i, t in self.got if i in want]

    def set(self, **values):
        fut = self.params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        assert spin_until(self.node, fut.done, 10.0)
        return fut.result().results


def test_relay_forwards_drops_and_delays_at_the_values_set_at_run_time(ros_process,
                                                                      rclpy_node):
    proc = ros_process('neurovla_ros.relay.node', {'seed': 5}, ros_args=['-r', f'__ns:={NS}'])
    probe = Probe(rclpy_node)
    assert spin_until(rclpy_node, lambda: probe.params.services_are_ready()
                      and probe.pub.get_subscription_count() > 0
                      and probe.diag is not None, 30.0), proc.output()
    assert probe.diag['loss'] == 0.0 and probe.diag['delay_s'] == 0.0

    # pass-through: everything, in order, at once
    ids = probe.send(100, 0.005)
    assert spin_until(rclpy_node, lambda: len(probe.received(ids)) == len(ids), 10.0)
    assert [i for i, _ in probe.received(ids)] == ids
    lat0 = np.array([t - probe.sent[i] for i, t in probe.received(ids)])
    grip = Float64MultiArray(data=[0.03])
    probe.pub_grip.publish(grip)
    assert spin_until(rclpy_node, lambda: probe.grip == [[0.03]], 5.0)

    # loss 0.3 at run time: the fraction dropped is binomial, what passes keeps its order
    assert all(r.successful for r in probe.set(loss=0.3))
    n = 600
    ids = probe.send(n, 0.002)
    spin_until(rclpy_node, lambda: False, 1.0)
    got = [i for i, _ in probe.received(ids)]
    assert got == sorted(got)
    dropped = n - len(got)
    assert abs(dropped - 0.3 * n) < 5 * math.sqrt(n * 0.3 * 0.7), dropped
    assert spin_until(rclpy_node, lambda: probe.diag['dropped'] == dropped
                      and probe.diag['loss'] == 0.3, 5.0), probe.diag

    # delay 0.2 s, no loss: each message leaves 0.2 s after it arrived
    assert all(r.successful for r in probe.set(loss=0.0, delay_s=0.2))
    ids = probe.send(20, 0.05)
    assert spin_until(rclpy_node, lambda: len(probe.received(ids)) == 20, 5.0)
    lat = np.array([t - probe.sent[i] for i, t in probe.received(ids)])
    assert lat.min() >= 0.2, lat
    assert np.median(lat) - np.median(lat0) < 0.2 + 0.02, (lat, lat0)
    print(f'relay latency pass-through median {np.median(lat0) * 1e3:.2f} ms, '
          f'max {lat0.max() * 1e3:.2f} ms; with delay_s 0.2: median {np.median(lat) * 1e3:.2f} '
          f'ms, max {lat.max() * 1e3:.2f} ms')

    # invalid values are refused with a reason and change nothing
    for name, bad in (('loss', 1.5), ('loss', float('nan')), ('delay_s', -0.1),
                      ('delay_s', 6.0), ('seed', 9)):
        (r,) = probe.set(**{name: bad})
        assert not r.successful and r.reason, (name, bad)
    assert spin_until(rclpy_node, lambda: probe.diag['delay_s'] == 0.2
                      and probe.diag['loss'] == 0.0, 5.0)
    d = probe.diag
    assert d['received'] == d['dropped'] + d['forwarded'] + d['pending']
    assert proc.poll() is None, proc.output()


def test_a_bad_topic_entry_stops_the_relay_with_one_line(ros_process):
    for entry in ('cortex/goal_pose@nope_msgs/msg/Pose', '/cortex/goal_pose@std_msgs/msg/Bool',
                  'cortex/goal_pose'):
        proc = ros_process('neurovla_ros.relay.node', {'topics': [entry]})
        assert proc.wait(30) == 1
        out = proc.output()
        assert '[FATAL] [relay]: cannot start: topics:' in out and 'Traceback' not in out, out
