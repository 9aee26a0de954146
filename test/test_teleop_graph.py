"""Teleop against a running graph over real DDS: the bringup's MuJoCo body, spinal layer and
cerebellum, each in its own process (started once for this module) in a namespace, and the
teleop front ends: the interactive-marker server driven by a client that plays rviz2's part by
the protocol, the keyboard tool in a real terminal (tmux), the browser view (the ui node) in
headless Chromium."""
import math
import os
import time

import numpy as np
import pytest
from conftest import REPO, spin_executor_until

from neurovla_ros import robot
from neurovla_ros.common import teleop as T

MODEL = robot.load()


NS = 'teleop_test'       # the stack runs in a namespace: every name the front ends use is relative


class Graph:
    """The bringup's graph (``runner.NodeGraph``: sim, spinal, cerebellum, each in its own
    process, real DDS, this test run's domain) in namespace :data:`NS`, a probe node of the
    test in the same namespace, and further front-end processes (``start``)."""

    def __init__(self, overrides):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from sensor_msgs.msg import JointState

        from neurovla_ros.common.rosutil import COMMAND_QOS, LatestSample, TeleopCommands
        from neurovla_ros.runner import NodeGraph
        self.values = {'headless': True, 'namespace': NS}
        self.nodes = NodeGraph(self.values, only=('sim', 'spinal', 'cerebellum'),
                               overrides=overrides)
        self.procs = {}
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = Node('teleop_test_probe', namespace=NS, context=self.ctx)
        self.diag = {}
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag,
                                      COMMAND_QOS)
        self._js = LatestSample(self.node, JointState, 'joint_states')
        self._JointState = JointState
        self.cmd = TeleopCommands(self.node)
        self.js = None
        from geometry_msgs.msg import TwistStamped
        self.twists = []          # (header stamp [s], linear, angular) of every /teleop/twist
        self.node.create_subscription(TwistStamped, T.TWIST_TOPIC, self._on_twist, COMMAND_QOS)
        # one executor for the probe's whole life: with a fresh EventsExecutor per spin, a
        # message that arrived between two spins was never announced, and the subscription
        # stayed one message behind (the last twist, a jog's zero, never came in)
        from rclpy.experimental import EventsExecutor
        self.ex = EventsExecutor(context=self.ctx)
        self.ex.add_node(self.node)

    def _on_twist(self, msg):
        st, v, w = msg.header.stamp, msg.twist.linear, msg.twist.angular
        self.twists.append((st.sec + st.nanosec * 1e-9, (v.x, v.y, v.z), (w.x, w.y, w.z)))

    def start(self, name, overrides=None, cmd=None):
        """Start node ``name`` of the graph (``graph.NODES``) as bringup would, in :data:`NS`
        (or ``cmd``, any command line), as a ``procs.Proc``."""
        from neurovla_ros import graph
        from neurovla_ros.common import procs
        if cmd is None:
            spec = next(sp for sp in graph.NODES if sp.name == name)
            cmd = graph.command(spec, graph.resolve(self.values), overrides=overrides)
        self.procs[name] = procs.Proc(cmd, name, cwd=REPO, env={**os.environ, **self.nodes.ENV},
                                      tail=300)
        return self.procs[name]

    def stop(self, name):
        self.procs.pop(name).stop()

    def log(self, name):
        p = self.procs.get(name) or next((q for q in self.nodes.procs if q.name == name), None)
        return p.output() if p is not None else ''

    def _on_diag(self, msg):
        for s in msg.status:
            self.diag[s.name] = {kv.key: kv.value for kv in s.values} | {'_msg': s.message}

    def spin(self, seconds, until=None):
        return spin_executor_until(self.ex, until or (lambda: False), seconds)

    def joints(self):
        from rclpy.serialization import deserialize_message
        buf = self._js.take()
        if buf is not None:
            self.js = deserialize_message(buf, self._JointState)
        return self.js

    def q(self):
        js = self.joints()
        return None if js is None else T.arm_positions(MODEL, js.name, js.position)

    def tcp(self):
        q = self.q()
        return None if q is None else MODEL.fk(q)

    def finger(self):
        js = self.joints()
        return js.position[list(js.name).index(robot.GRIPPER_JOINT)]

    def go_home(self, timeout=15.0):
        home = MODEL.fk(MODEL.home_pose())
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.cmd.pose(*T.home_pose(MODEL))
            self.spin(0.2)
            t = self.tcp()
            if t is not None and np.linalg.norm(t[:3, 3] - home[:3, 3]) < 0.003:
                return True
        return False

    def close(self):
        import rclpy

        from neurovla_ros.common import procs
        procs.stop(list(self.procs.values()))
        self.procs.clear()
        self.nodes.stop()
        self.ex.remove_node(self.node)
        self._js.destroy()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


@pytest.fixture(scope='module')
def graph():
    g = Graph({'sim': {'camera_enabled': False, 'n_objects': 0},
               'cerebellum': {'teleop_hold_time': 0.0}})
    try:
        g.nodes.start()
        g.nodes.wait_up(g.node, spin=lambda: g.spin(0.05))
        up = g.spin(90.0, lambda: g.tcp() is not None and 'cerebellum' in g.diag
                    and g.diag.get('spinal: controller', {}).get('mode') == 'follow')
        assert up, f'graph not up: {g.diag}\n{g.log("sim")}\n{g.log("cerebellum")}'
        yield g
    finally:
        g.close()


def rotation_angle(a, b):
    c = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    return math.acos(max(-1.0, min(1.0, c)))


# ---------------------------------------------------------------- rviz2's part, by protocol
class RvizClient:
    """What rviz2's InteractiveMarkers display does on a namespace: ask for the markers once
    the service is there, apply updates in sequence (a gap would make it reset), publish
    feedback as its mouse does."""

    def __init__(self, node, spin, ns='teleop_markers'):
        from rclpy.qos import QoSProfile
        from visualization_msgs.msg import InteractiveMarkerFeedback, InteractiveMarkerUpdate
        from visualization_msgs.srv import GetInteractiveMarkers
        self.node, self.spin, self.F = node, spin, InteractiveMarkerFeedback
        self.srv = node.create_client(GetInteractiveMarkers, f'{ns}/get_interactive_markers')
        node.create_subscription(InteractiveMarkerUpdate, f'{ns}/update', self._on_update,
                                 QoSProfile(depth=100))
        self.fb_pub = node.create_publisher(InteractiveMarkerFeedback, f'{ns}/feedback',
                                            QoSProfile(depth=100))
        self.Request = GetInteractiveMarkers.Request
        self.seq, self.queue, self.markers, self.gaps, self.updates = None, [], {}, 0, 0

    def initialize(self, timeout=30.0):
        assert self.srv.wait_for_service(timeout_sec=timeout), 'no get_interactive_markers'
        fut = self.srv.call_async(self.Request())
        assert self.spin(timeout, fut.done)
        resp = fut.result()
        self.markers = {m.name: m for m in resp.markers}
        self.seq = resp.sequence_number
        for up in sorted(self.queue, key=lambda u: u.seq_num):
            if up.seq_num > self.seq:
                self._apply(up)
        self.queue = []
        return resp

    def _on_update(self, up):
        if self.seq is None:
            self.queue.append(up)
        elif up.seq_num > self.seq:
            self._apply(up)

    def _apply(self, up):
        if up.seq_num != self.seq + 1:
            self.gaps += 1
        self.seq, self.updates = up.seq_num, self.updates + 1
        for m in up.markers:
            self.markers[m.name] = m
        for p in up.poses:
            self.markers[p.name].pose = p.pose
        for name in up.erases:
            self.markers.pop(name, None)

    def feedback(self, event, pose=None, entry=0):
        fb = self.F(client_id='/rviz2/InteractiveMarkers', marker_name='tcp',
                    event_type=event, menu_entry_id=entry)
        fb.header.frame_id = 'base_link'
        fb.pose = pose if pose is not None else self.markers['tcp'].pose
        self.fb_pub.publish(fb)


def pose_of(m):
    from neurovla_ros.robot.transforms import quat_xyzw_to_matrix
    p, o = m.position, m.orientation
    t = np.eye(4)
    t[:3, :3] = quat_xyzw_to_matrix(o.x, o.y, o.z, o.w)
    t[:3, 3] = (p.x, p.y, p.z)
    return t


def test_rviz_drag_moves_the_tool_to_the_dragged_pose_and_the_menu_acts(graph):
    from visualization_msgs.msg import InteractiveMarkerControl as C

    from neurovla_ros.markers.protocol import MENU, pose_msg
    from neurovla_ros.robot.transforms import matrix_to_quat_xyzw
    g = graph
    assert g.go_home(), 'the arm did not reach home'
    g.start('teleop_markers')
    early = RvizClient(g.node, g.spin)  # may ask before the first joint state made the marker
    early.initialize()
    assert g.spin(20.0, lambda: 'tcp' in early.markers), g.log('teleop_markers')
    client = RvizClient(g.node, g.spin)  # a client joining later gets it from the service
    resp = client.initialize()
    tcp0 = g.tcp()
    assert resp.markers and resp.markers[0].name == 'tcp', resp
    assert resp.sequence_number >= 1 and early.gaps == 0
    m = resp.markers[0]
    assert {c.interaction_mode for c in m.controls} == {C.MOVE_AXIS, C.ROTATE_AXIS, C.MENU}
    assert np.linalg.norm(pose_of(m.pose)[:3, 3] - tcp0[:3, 3]) < 0.005
    # drag: +6 cm y, -4 cm z, 15 deg about z, 30 pose updates over 1 s, then release
    rz = np.array([[math.cos(0.26), -math.sin(0.26), 0], [math.sin(0.26), math.cos(0.26), 0],
                   [0, 0, 1]])
    target = tcp0.copy()
    target[:3, 3] += [0.0, 0.06, -0.04]
    target[:3, :3] = rz @ tcp0[:3, :3]
    client.feedback(client.F.MOUSE_DOWN)
    for k in range(1, 31):
        s = k / 30
        p = tcp0[:3, 3] + s * (target[:3, 3] - tcp0[:3, 3])
        rot = np.array([[math.cos(0.26 * s), -math.sin(0.26 * s), 0],
                        [math.sin(0.26 * s), math.cos(0.26 * s), 0], [0, 0, 1]]) @ tcp0[:3, :3]
        client.feedback(client.F.POSE_UPDATE, pose_msg(p, matrix_to_quat_xyzw(rot)))
        g.spin(1 / 30)
    final = pose_msg(target[:3, 3], matrix_to_quat_xyzw(target[:3, :3]))
    client.feedback(client.F.MOUSE_UP, final)

    def error():
        t = g.tcp()
        return np.linalg.norm(t[:3, 3] - target[:3, 3]), rotation_angle(t, target)

    def reached():      # the cerebellum's IK tolerances are 2 mm and 0.02 rad
        e = error()
        return e[0] < 0.004 and e[1] < 0.03
    assert g.spin(20.0, reached), (error(), g.diag.get('cerebellum'))
    # the marker follows the measured tool pose again, updates in sequence
    g.spin(1.0)
    shown = pose_of(client.markers['tcp'].pose)
    assert np.linalg.norm(shown[:3, 3] - g.tcp()[:3, 3]) < 0.003
    assert client.gaps == 0 and client.updates > 30
    d = g.diag['teleop_markers: interactive marker']
    assert int(d['goals_sent']) >= 15 and int(d['feedback_rejected']) == 0, d
    # a drag in a frame the server does not know is refused with the reason, nothing moves
    bad = client.F(client_id='/rviz2/InteractiveMarkers', marker_name='tcp',
                   event_type=client.F.POSE_UPDATE)
    bad.header.frame_id = 'map'
    bad.pose = pose_msg(target[:3, 3] + [0.1, 0, 0], [0, 0, 0, 1])
    client.fb_pub.publish(bad)
    assert g.spin(5.0, lambda: "'map'" in g.diag['teleop_markers: interactive marker'].get(
        'last_rejection', ''))
    assert reached(), (error(), g.diag.get("cerebellum"))
    # menu: close then open the gripper, reset reflex (none active: the spinal says so)
    ids = {a: k for k, (_t, a) in MENU.items()}
    client.feedback(client.F.MENU_SELECT, entry=ids['gripper_close'])
    assert g.spin(10.0, lambda: g.finger() < 0.005), g.finger()
    client.feedback(client.F.MENU_SELECT, entry=ids['gripper_open'])
    assert g.spin(10.0, lambda: g.finger() > 0.035), g.finger()
    client.feedback(client.F.MENU_SELECT, entry=ids['reset_reflex'])
    assert g.spin(5.0, lambda: 'no reflex active' in g.diag[
        'teleop_markers: interactive marker'].get('service_reset_reflex', '')), g.diag
    client.feedback(client.F.MENU_SELECT, entry=ids['home'])
    home = MODEL.fk(MODEL.home_pose())
    assert g.spin(15.0, lambda: np.linalg.norm(g.tcp()[:3, 3] - home[:3, 3]) < 0.004)
    assert g.procs['teleop_markers'].poll() is None, g.log('teleop_markers')
    g.stop('teleop_markers')


def test_twists_move_the_arm_after_the_drag_and_the_menu(graph):
    """On the graph the rviz test drove (drag, menu, home): twists take the arm at once."""
    g = graph
    g.spin(1.0)
    p0 = g.tcp()[:3, 3]
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        g.cmd.twist([0.0, 0.0, 0.05], [0.0, 0.0, 0.0])
        g.spin(1 / 30)
    g.spin(0.5)
    d = g.diag.get('cerebellum', {})
    assert g.tcp()[2, 3] - p0[2] > 0.03, (g.tcp()[:3, 3] - p0, d.get('source'),
                                          d.get('last_rejection'), d.get('goals_rejected'))
