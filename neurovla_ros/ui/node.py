"""``ui`` node: the robot in a browser (pip mode: no ROS install, no rviz), on viser.

Interfaces
    /joint_states [sensor_msgs/JointState]      the arm drawn (taken at state_rate_hz)
    /sim/objects [visualization_msgs/MarkerArray, transient local]  the objects drawn
    /camera/image_raw [sensor_msgs/Image]       the camera (taken at camera_rate_hz)
    /teleop/pose, /cortex/goal_pose [geometry_msgs/PoseStamped]  the tool goal drawn
    /diagnostics [diagnostic_msgs/DiagnosticArray]  status line and live plots; this node's own
                                                    status carries the page's ``url``
    /spinal/reflex [diagnostic_msgs/DiagnosticArray] reflex events on the plots' time line
    out (common.teleop): the gizmo -> /teleop/pose (goal_rate_hz, the release pose always);
        jog buttons -> /teleop/twist (jog_rate_hz while held, a zero twist on release); the
        instruction box -> /cortex/instruction; go home (/teleop/pose), open/close gripper,
        reset reflex (/spinal/reset), hand back to the cortex (/cerebellum/release_teleop),
        emergency stop (/estop true) and resume (/estop false, /spinal/resume): the
        commands of common.teleop.COMMANDS.

The web server binds to ``host`` (127.0.0.1: this machine only) and ``port``; the URL is logged
at start-up. The node runs under the normal scheduler (no realtime_priority parameter): a page
never competes with the control loops for the CPU ahead of them.
"""
from __future__ import annotations

import logging
import math
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from visualization_msgs.msg import Marker, MarkerArray

from .. import robot
from ..common import teleop as T
from ..common.cdr import ImageReader, JointStateReader, rgb_image
from ..common.rosutil import (
    COMMAND_QOS,
    LATCHED_QOS,
    LatestSample,
    TeleopCommands,
    Throttled,
    declare_params,
    decoder,
    diagnostic_status,
    run,
)
from .params import NODE_NAME, PARAMS
from .view import RobotView

SHAPES = {Marker.CUBE: 'box', Marker.SPHERE: 'sphere', Marker.CYLINDER: 'cylinder'}
ANY_QOS = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST,
                     reliability=ReliabilityPolicy.BEST_EFFORT)   # matches any publisher


class UiNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        import viser
        # a browser's speculative connection, closed before its handshake, would print a
        # traceback ("opening handshake failed") each time
        logging.getLogger('websockets.server').setLevel(logging.CRITICAL)
        self._log = Throttled(self.get_logger())
        self.p = p = declare_params(self, PARAMS)
        self.model = robot.load()
        self.cmd = TeleopCommands(self)
        self.server = viser.ViserServer(host=p.host, port=p.port, label='neurovla',
                                        verbose=False)
        self.url = f'http://{p.host}:{self.server.get_port()}'
        self.view = RobotView(self.server, self.model, self._twist, self._pose, self._act,
                              self._instruct, jog_speed=p.jog_speed, jog_turn=p.jog_turn,
                              jog_rate_hz=p.jog_rate_hz, goal_rate_hz=p.goal_rate_hz,
                              plot_window=p.plot_window, camera=p.camera_rate_hz > 0)
        self.add_post_set_parameters_callback(self._on_params)
        self._js = JointStateReader(decoder(JointState))
        self._joints = LatestSample(self, JointState, 'joint_states')
        self._img = ImageReader(decoder(Image))
        self._camera = (LatestSample(self, Image, 'camera/image_raw')
                        if p.camera_rate_hz > 0 else None)
        self.diag: dict[str, dict] = {}
        self.counts = {'twists': 0, 'poses': 0, 'commands': 0, 'instructions': 0,
                       'images': 0, 'rejected_images': 0}
        self.create_subscription(MarkerArray, 'sim/objects', self._on_objects, LATCHED_QOS)
        for topic in (T.POSE_TOPIC, 'cortex/goal_pose'):
            self.create_subscription(PoseStamped, topic, self._on_goal, COMMAND_QOS)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, ANY_QOS)
        self.create_subscription(DiagnosticArray, 'spinal/reflex', self._on_reflex, COMMAND_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', COMMAND_QOS)
        self.create_timer(1.0 / p.state_rate_hz, self._follow)
        self.create_timer(0.5 / p.goal_rate_hz, self.view.due)
        self.create_timer(1.0 / p.jog_rate_hz, self.view.jog_tick)
        if self._camera is not None:
            self.create_timer(1.0 / p.camera_rate_hz, self._show_camera)
        self.create_timer(1.0, self._draw)
        self.create_timer(1.0 / p.diagnostics_rate_hz, self._diagnostics)
        self.get_logger().info(f'browser view at {self.url}'
                               + ('' if p.host in ('127.0.0.1', 'localhost', '::1') else
                                  ' (open to the network: host parameter)'))

    def _on_params(self, params) -> None:
        for prm in params:
            if prm.name == 'jog_speed':
                self.view.speed.value = prm.value
            elif prm.name == 'jog_turn':
                self.view.turn.value = prm.value

    # ---------------------------------------------------------------- the page's outputs
    def _twist(self, linear, angular, frame) -> None:
        self.cmd.twist(linear, angular, frame)
        self.counts['twists'] += 1

    def _pose(self, position, quat) -> None:
        self.cmd.pose(position, quat, T.BASE_FRAME)
        self.counts['poses'] += 1

    def _instruct(self, text: str) -> None:
        self.cmd.instruction(text)
        self.counts['instructions'] += 1
        self.view.show_result(f'{T.INSTRUCTION_TOPIC}: "{text}" sent')

    def _act(self, name: str) -> None:
        self.view.show_result(self.cmd.act(name, self.model))
        self.counts['commands'] += 1

    # ---------------------------------------------------------------- what the page shows
    def _follow(self) -> None:
        buf = self._joints.take()
        if buf is None or self._js.read(buf) is None:
            return
        names, pos = list(self._js.names), self._js.position
        if len(pos) != len(names) or not all(math.isfinite(v) for v in pos):
            self._log.warning('joints', '/joint_states ignored: names/positions disagree or '
                                        'not finite')
            return
        positions = dict(zip(names, (float(v) for v in pos)))
        shown = self.view.shown
        if shown is None or any(abs(positions.get(k, 0.0) - v) > 1e-4 for k, v in shown.items()):
            self.view.show_joints(positions)

    def _show_camera(self) -> None:
        buf = self._camera.take()
        if buf is None:
            return
        rd = self._img
        img, why = ((None, rd.error) if rd.read(buf) is None else
                    rgb_image(rd.encoding, rd.height, rd.width, rd.step, rd.data))
        if img is None:
            self.counts['rejected_images'] += 1
            self._log.warning('image', f'camera image not shown: {why}')
            return
        self.view.show_image(img.copy())
        self.counts['images'] += 1

    def _on_objects(self, msg: MarkerArray) -> None:
        objs = []
        for m in msg.markers:
            p, o, s, c = m.pose.position, m.pose.orientation, m.scale, m.color
            objs.append({'shape': SHAPES.get(m.type, 'box'), 'position': (p.x, p.y, p.z),
                         'quat': (o.x, o.y, o.z, o.w), 'size': (s.x, s.y, s.z),
                         'rgba': (c.r, c.g, c.b, c.a)})
        self.view.show_objects(objs)

    def _on_goal(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        if all(math.isfinite(v) for v in (p.x, p.y, p.z)):
            self.view.show_goal((p.x, p.y, p.z))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name != f'{NODE_NAME}: browser view':
                self.diag[st.name] = {kv.key: kv.value for kv in st.values} | {
                    '_message': st.message}

    def _on_reflex(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            event = {kv.key: kv.value for kv in st.values}.get('event')
            if event in ('collision', 'recovered'):
                self.view.plots.event(time.time(), event == 'collision')

    def _draw(self) -> None:
        now = time.time()
        plots = self.view.plots
        plots.add(now, self.diag)
        plots.draw(now)
        cb, sp = self.diag.get('cerebellum', {}), self.diag.get('spinal: controller', {})
        lines = [f"**arm:** {cb.get('control', '?')} has it; spinal "
                 f"{sp.get('_message', 'not seen')}"]
        safety = self.diag.get('spinal: safety', {})
        if safety.get('stop', 'run') != 'run':
            lines.append(f"**STOPPED:** {safety.get('_message', '')}")
        if cb.get('last_twist_limit'):
            lines.append(f"**last limit:** {cb['last_twist_limit']}")
        if cb.get('last_rejection'):
            lines.append(f"**last refusal:** {cb['last_rejection']}")
        self.view.show_status('  \n'.join(lines))

    def _diagnostics(self) -> None:
        clients = len(self.server.get_clients())
        values = {'url': self.url, 'namespace': self.get_namespace(),
                  'clients': clients, 'jog_twists': self.view.jogs,
                  'jog_timeouts': self.view.jog_timeouts,
                  'jog_releases': self.view.jog_releases,
                  **self.counts, 'gizmo_rejected': self.view.drag.rejected}
        if self.view.drag.last_rejection:
            values['gizmo_last_rejection'] = self.view.drag.last_rejection
        values.update({f'service_{k}': v for k, v in self.cmd.results.items()})
        st = diagnostic_status(f'{NODE_NAME}: browser view', values, 0, f'serving {self.url}',
                               NODE_NAME)
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)

    def close(self) -> None:
        self._joints.destroy()
        if self._camera is not None:
            self._camera.destroy()
        self.server.stop()


def main(args=None) -> int:
    return run(UiNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
