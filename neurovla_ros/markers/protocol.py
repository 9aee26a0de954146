"""The server side of the ROS 2 interactive-markers protocol, and the tool marker. ROS-free
(message types only).

The protocol, as rviz2's InteractiveMarkers display (interactive_markers'
``InteractiveMarkerClient``) speaks it on a namespace ``<ns>``:

* ``<ns>/get_interactive_markers`` [visualization_msgs/srv/GetInteractiveMarkers]: the client
  asks for the full state once it sees the service; the response carries every marker and the
  server's current ``sequence_number``;
* ``<ns>/update`` [visualization_msgs/InteractiveMarkerUpdate]: every change (full markers,
  pose-only updates, erases) is one ``UPDATE`` with ``seq_num`` exactly one above the last; the
  client drops updates up to the response's number, and resets (asks again) on a gap.
  ``KEEP_ALIVE`` messages are legacy (ROS 1) and ignored by ROS 2 clients, so none are sent;
* ``<ns>/feedback`` [visualization_msgs/InteractiveMarkerFeedback]: the client's
  ``MOUSE_DOWN``, ``POSE_UPDATE`` (while dragging, pose in the marker's header frame),
  ``MOUSE_UP``, ``MENU_SELECT`` (``menu_entry_id``) and ``KEEP_ALIVE`` (while a drag is held).
  A server applies a pose feedback to its own state and publishes it as an update, so that
  every client shows the same pose.

Stamps are left zero: the client then transforms with the newest TF (``base_link`` into the
fixed frame), with no extrapolation errors.
"""
from __future__ import annotations

import math

from geometry_msgs.msg import Pose
from visualization_msgs.msg import (
    InteractiveMarker,
    InteractiveMarkerControl,
    InteractiveMarkerFeedback,
    InteractiveMarkerPose,
    InteractiveMarkerUpdate,
    Marker,
    MenuEntry,
)

from ..common.teleop import COMMANDS, Action, PoseDrag

TCP_MARKER = 'tcp'
# menu entry id -> (title, action): the front ends' commands (common.teleop.COMMANDS)
MENU = {k: (title, action) for k, (action, title) in enumerate(COMMANDS.items(), 1)}


def pose_msg(position, quat_xyzw) -> Pose:
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in position)
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (
        float(v) for v in quat_xyzw)
    return p


def pose_values(p: Pose) -> tuple[list, list]:
    o = p.orientation
    return [p.position.x, p.position.y, p.position.z], [o.x, o.y, o.z, o.w]


def _axis_control(name: str, mode: int, w: float, x: float, y: float, z: float):
    c = InteractiveMarkerControl()
    c.name = name
    n = math.sqrt(w * w + x * x + y * y + z * z)
    c.orientation.w, c.orientation.x, c.orientation.y, c.orientation.z = w / n, x / n, y / n, z / n
    c.orientation_mode = InteractiveMarkerControl.INHERIT
    c.interaction_mode = mode
    return c


def tcp_marker(frame: str, position, quat_xyzw, scale: float = 0.2) -> InteractiveMarker:
    """The tool marker: move and rotate about the three axes of the tool (6 DoF), and a
    sphere at the tool centre whose click opens the menu (:data:`MENU`)."""
    im = InteractiveMarker()
    im.header.frame_id = frame
    im.name = TCP_MARKER
    im.description = 'neurovla tool: drag to move, click the ball for the menu'
    im.scale = float(scale)
    im.pose = pose_msg(position, quat_xyzw)
    move, rot = InteractiveMarkerControl.MOVE_AXIS, InteractiveMarkerControl.ROTATE_AXIS
    # a control acts along / about its own x axis: these orientations put it on x, y and z
    for axis, q in (('x', (1, 1, 0, 0)), ('y', (1, 0, 0, 1)), ('z', (1, 0, 1, 0))):
        im.controls.append(_axis_control(f'move_{axis}', move, *q))
        im.controls.append(_axis_control(f'rotate_{axis}', rot, *q))
    ball = Marker()
    ball.type = Marker.SPHERE
    ball.scale.x = ball.scale.y = ball.scale.z = 0.25 * scale
    ball.color.r, ball.color.g, ball.color.b, ball.color.a = 0.95, 0.6, 0.1, 0.9
    menu = InteractiveMarkerControl()
    menu.name = 'menu'
    menu.interaction_mode = InteractiveMarkerControl.MENU
    menu.always_visible = True
    menu.markers.append(ball)
    im.controls.append(menu)
    for eid, (title, _action) in MENU.items():
        im.menu_entries.append(MenuEntry(id=eid, parent_id=0, title=title,
                                         command_type=MenuEntry.FEEDBACK))
    return im


class MarkerServer:
    """Server state of the protocol: the markers and the sequence number. Each change returns
    the ``InteractiveMarkerUpdate`` to publish (already numbered)."""

    def __init__(self, server_id: str):
        self.server_id = server_id
        self.seq_num = 0
        self.markers: dict[str, InteractiveMarker] = {}

    def _update(self) -> InteractiveMarkerUpdate:
        self.seq_num += 1
        return InteractiveMarkerUpdate(server_id=self.server_id, seq_num=self.seq_num,
                                       type=InteractiveMarkerUpdate.UPDATE)

    def insert(self, marker: InteractiveMarker) -> InteractiveMarkerUpdate:
        self.markers[marker.name] = marker
        up = self._update()
        up.markers = [marker]
        return up

    def set_pose(self, name: str, pose: Pose) -> InteractiveMarkerUpdate:
        m = self.markers[name]
        m.pose = pose
        up = self._update()
        up.poses = [InteractiveMarkerPose(header=m.header, pose=pose, name=name)]
        return up

    def erase(self, name: str) -> InteractiveMarkerUpdate:
        del self.markers[name]
        up = self._update()
        up.erases = [name]
        return up

    def fill_response(self, response):
        """``GetInteractiveMarkers`` response: the full state at the current sequence number."""
        response.sequence_number = self.seq_num
        response.markers = list(self.markers.values())
        return response


class DragSession(PoseDrag):
    """Turns client feedback into teleop actions (:class:`~neurovla_ros.common.teleop.PoseDrag`:
    ``MOUSE_DOWN`` starts a drag, ``POSE_UPDATE`` moves it, ``MOUSE_UP`` ends it, ``KEEP_ALIVE``
    keeps it). ROS-free; times in seconds. Feedback for another marker, in another frame than
    the marker's, or with an unknown menu entry is refused with the reason as well.
    """

    def __init__(self, frame: str, goal_rate_hz: float = 20.0, drag_timeout: float = 2.0):
        super().__init__(goal_rate_hz, drag_timeout)
        self.frame = frame

    def feedback(self, now: float, fb: InteractiveMarkerFeedback) -> Action:
        self.received += 1
        F = InteractiveMarkerFeedback
        if fb.marker_name != TCP_MARKER:
            return self.refuse(f'feedback for unknown marker {fb.marker_name!r}')
        why = self.other_client(now, fb.client_id)
        if why:
            return self.refuse(why)
        if fb.event_type == F.MENU_SELECT:
            entry = MENU.get(fb.menu_entry_id)
            if entry is None:
                return self.refuse(f'unknown menu entry {fb.menu_entry_id}')
            return Action('menu', name=entry[1])
        if fb.event_type in (F.KEEP_ALIVE, F.MOUSE_DOWN, F.POSE_UPDATE, F.MOUSE_UP):
            self.touch(now, fb.client_id, start=fb.event_type == F.MOUSE_DOWN)
        if fb.event_type not in (F.POSE_UPDATE, F.MOUSE_UP):
            return Action('none')
        if fb.header.frame_id not in ('', self.frame):
            return self.refuse(f'pose feedback in frame {fb.header.frame_id!r}, expected '
                               f'{self.frame!r}')
        return self.pose(now, *pose_values(fb.pose), final=fb.event_type == F.MOUSE_UP)
