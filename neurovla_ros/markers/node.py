"""``teleop_markers`` node: an interactive marker at the tool for rviz2 (ROS 2 install).

Interfaces
    ~/update [visualization_msgs/InteractiveMarkerUpdate]        the interactive-markers
    ~/feedback [visualization_msgs/InteractiveMarkerFeedback]    protocol on namespace
    ~/get_interactive_markers [visualization_msgs/srv/GetInteractiveMarkers]  /teleop_markers
                                                                 (see markers.protocol)
    /joint_states [sensor_msgs/JointState]    the marker follows the measured tool pose
                                              (taken at follow_rate_hz, not per message)
    /teleop/pose [geometry_msgs/PoseStamped]  dragging the marker: tool goals (goal_rate_hz)
    menu -> common.teleop.COMMANDS: go home (/teleop/pose), open/close gripper
        (/gripper_controller/commands), reset reflex (/spinal/reset), hand back to the cortex
        (/cerebellum/release_teleop), emergency stop (/estop true), resume (/estop false,
        /spinal/resume)
    /diagnostics [diagnostic_msgs/DiagnosticArray]  feedback counts, refusals with the reason,
                                                    the outcome of the last menu command

The ``interactive_markers`` Python package (not on PyPI) is used when importable; otherwise
the same protocol is served by :mod:`neurovla_ros.markers.protocol`. Both speak it the way
rviz2's InteractiveMarkers display expects (namespace ``/teleop_markers``).
"""
from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import JointState
from visualization_msgs.msg import InteractiveMarkerFeedback, InteractiveMarkerUpdate
from visualization_msgs.srv import GetInteractiveMarkers

from .. import robot
from ..common import teleop as T
from ..common.cdr import JointStateReader
from ..common.rosutil import (
    COMMAND_QOS,
    LatestSample,
    TeleopCommands,
    Throttled,
    declare_params,
    decoder,
    diagnostic_status,
    run,
)
from .params import NODE_NAME, PARAMS
from .protocol import TCP_MARKER, DragSession, MarkerServer, pose_msg, tcp_marker

UPDATE_QOS = QoSProfile(depth=100)   # as interactive_markers' server (reliable, volatile)


class OwnServer:
    """The protocol from :mod:`.protocol` on ``node``'s namespace (``~/update`` ...)."""

    def __init__(self, node, on_feedback):
        self.state = MarkerServer(node.get_fully_qualified_name())
        self.pub = node.create_publisher(InteractiveMarkerUpdate, '~/update', UPDATE_QOS)
        node.create_subscription(InteractiveMarkerFeedback, '~/feedback', on_feedback,
                                 COMMAND_QOS)
        node.create_service(GetInteractiveMarkers, '~/get_interactive_markers',
                            lambda _req, resp: self.state.fill_response(resp))

    def has(self, name: str) -> bool:
        return name in self.state.markers

    def insert(self, marker) -> None:
        self.pub.publish(self.state.insert(marker))

    def set_pose(self, name: str, pose) -> None:
        self.pub.publish(self.state.set_pose(name, pose))

    echo = set_pose          # a client's pose is published to every client

    @property
    def seq_num(self) -> int:
        return self.state.seq_num


class PackageServer:
    """interactive_markers' own InteractiveMarkerServer (a ROS 2 install), same namespace."""

    def __init__(self, node, on_feedback):
        from interactive_markers import InteractiveMarkerServer
        self.server = InteractiveMarkerServer(node, node.get_fully_qualified_name())
        self.on_feedback = on_feedback

    def has(self, name: str) -> bool:
        return self.server.get(name) is not None

    def insert(self, marker) -> None:
        self.server.insert(marker, feedback_callback=self.on_feedback)
        self.server.applyChanges()

    def set_pose(self, name: str, pose) -> None:
        self.server.setPose(name, pose)
        self.server.applyChanges()

    def echo(self, name: str, pose) -> None:
        pass                 # the package applies pose feedback itself

    @property
    def seq_num(self) -> int:
        return self.server.seq_num


def marker_server(node, on_feedback):
    try:
        import interactive_markers  # noqa: F401 - only on a ROS 2 install
    except ImportError:
        return OwnServer(node, on_feedback)
    return PackageServer(node, on_feedback)


class TeleopMarkersNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self._log = Throttled(self.get_logger())
        self.p = p = declare_params(self, PARAMS)
        self.model = robot.load()
        self.cmd = TeleopCommands(self)
        self.drag = DragSession(p.frame, p.goal_rate_hz, p.drag_timeout)
        self.add_post_set_parameters_callback(self._on_params)
        self._js = JointStateReader(decoder(JointState))
        self._joints = LatestSample(self, JointState, 'joint_states')
        self._shown = None              # (position, quat) the marker shows
        self._menu_result = ''
        self._goals = 0
        self.server = marker_server(self, self._on_feedback)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        self.create_timer(1.0 / p.follow_rate_hz, self._follow)
        self.create_timer(0.5 / p.goal_rate_hz, self._send_due)
        self.create_timer(1.0 / p.diagnostics_rate_hz, self._diagnostics)
        self.get_logger().info(f'interactive marker {TCP_MARKER!r} on namespace '
                               f'{self.get_fully_qualified_name()} (rviz2: InteractiveMarkers)')

    def _on_params(self, params) -> None:
        for prm in params:
            if prm.name == 'drag_timeout':
                self.drag.drag_timeout = prm.value

    # ---------------------------------------------------------------- the measured pose
    def _measured(self):
        buf = self._joints.take()
        if buf is None or self._js.read(buf) is None:
            return None
        q = T.arm_positions(self.model, self._js.names, self._js.position)
        return None if q is None else T.tcp_pose(self.model, q)

    def _follow(self) -> None:
        pose = self._measured()
        if pose is None:
            return
        if not self.server.has(TCP_MARKER):             # the first state: create the marker
            self._shown = pose
            self.server.insert(tcp_marker(self.p.frame, *pose, scale=self.p.marker_scale))
            return
        if self.drag.is_dragging(time.monotonic()):
            return
        (p0, q0), (p1, q1) = self._shown, pose
        tol = self.p.follow_tolerance
        moved = math.dist(p0, p1) > tol or 1.0 - abs(float(q0 @ q1)) > (10.0 * tol) ** 2 / 2.0
        if moved:
            self._shown = pose
            self.server.set_pose(TCP_MARKER, pose_msg(*pose))

    # ---------------------------------------------------------------- the client
    def _on_feedback(self, fb: InteractiveMarkerFeedback) -> None:
        act = self.drag.feedback(time.monotonic(), fb)
        if act.kind == 'pose':
            self.server.echo(TCP_MARKER, pose_msg(act.position, act.quat))
            if act.send:
                self._goal(act)
        elif act.kind == 'menu':
            self._menu(act.name)

    def _send_due(self) -> None:
        act = self.drag.due(time.monotonic())
        if act is not None:
            self._goal(act)

    def _goal(self, act) -> None:
        self.cmd.pose(act.position, act.quat, self.p.frame)
        self._goals += 1

    def _menu(self, action: str) -> None:
        self._menu_result = f'{action}: {self.cmd.act(action, self.model)}'
        self._log('menu', f'menu {self._menu_result}', 'info')

    # ---------------------------------------------------------------- diagnostics
    def _diagnostics(self) -> None:
        d = self.drag
        ready = self.server.has(TCP_MARKER)
        message = ('dragging' if d.is_dragging(time.monotonic()) else
                   'following the tool' if ready else 'waiting for joint_states')
        values = {'seq_num': self.server.seq_num, 'feedback_received': d.received,
                  'feedback_rejected': d.rejected, 'goals_sent': self._goals}
        if d.last_rejection:
            values['last_rejection'] = d.last_rejection
        if self._menu_result:
            values['last_menu_command'] = self._menu_result
        for name, res in self.cmd.results.items():
            values[f'service_{name}'] = res
        st = diagnostic_status(f'{NODE_NAME}: interactive marker', values, 0 if ready else 1,
                               message, NODE_NAME)
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)

    def close(self) -> None:
        self._joints.destroy()


def main(args=None) -> int:
    return run(TeleopMarkersNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
