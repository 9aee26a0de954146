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
from dataclasses import dataclass

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

TCP_MARKER = 'tcp'
# menu entry id -> (title, action); the node maps the actions to common.teleop interfaces
MENU = {
    1: ('Go home', 'home'),
    2: ('Open gripper', 'gripper_open'),
    3: ('Close gripper', 'gripper_close'),
    4: ('Reset reflex', 'reset_reflex'),
    5: ('Hand back to the cortex', 'release_teleop'),
}


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


@dataclass
class Action:
    """What a feedback message asks for: ``kind`` ``pose`` (the marker is at ``position``,
    ``quat``; ``send``: make it a /teleop/pose goal now), ``menu`` (``name`` of the
    :data:`MENU` action) or ``none``."""
    kind: str
    position: list | None = None
    quat: list | None = None
    name: str = ''
    send: bool = True


class DragSession:
    """Turns client feedback into teleop actions. ROS-free; times in seconds.

    While a client drags (``MOUSE_DOWN`` .. ``MOUSE_UP``, kept alive by its feedback; dropped
    after ``drag_timeout`` without any) the marker is the client's: the server does not move
    it to the measured tool pose. Pose feedback becomes a goal at most every
    ``1 / goal_rate_hz``; the pose at ``MOUSE_UP`` always does. Feedback in another frame than
    the marker's, for another marker, with a non-finite pose or a quaternion far from unit
    norm is refused with the reason (``last_rejection``), counted, and changes nothing.
    """

    def __init__(self, frame: str, goal_rate_hz: float = 20.0, drag_timeout: float = 2.0):
        self.frame = frame
        self.goal_period = 1.0 / goal_rate_hz
        self.drag_timeout = drag_timeout
        self.dragging = False
        self.client_id = ''
        self.t_feedback = -math.inf
        self.t_goal = -math.inf
        self.pending: Action | None = None      # a rate-limited pose not sent yet
        self.received = self.rejected = 0
        self.last_rejection = ''

    def _refuse(self, why: str) -> Action:
        self.rejected += 1
        self.last_rejection = why
        return Action('none')

    def is_dragging(self, now: float) -> bool:
        if self.dragging and now - self.t_feedback > self.drag_timeout:
            self.dragging = False            # the client went away mid-drag
        return self.dragging

    def feedback(self, now: float, fb: InteractiveMarkerFeedback) -> Action:
        self.received += 1
        F = InteractiveMarkerFeedback
        if fb.marker_name != TCP_MARKER:
            return self._refuse(f'feedback for unknown marker {fb.marker_name!r}')
        if self.dragging and fb.client_id != self.client_id and \
                now - self.t_feedback < self.drag_timeout:
            return self._refuse(f'feedback from {fb.client_id!r} while {self.client_id!r} drags')
        if fb.event_type == F.MENU_SELECT:
            entry = MENU.get(fb.menu_entry_id)
            if entry is None:
                return self._refuse(f'unknown menu entry {fb.menu_entry_id}')
            return Action('menu', name=entry[1])
        if fb.event_type in (F.KEEP_ALIVE, F.MOUSE_DOWN, F.POSE_UPDATE, F.MOUSE_UP):
            if fb.event_type == F.MOUSE_DOWN:
                self.dragging, self.client_id = True, fb.client_id
            self.t_feedback = now
        if fb.event_type not in (F.POSE_UPDATE, F.MOUSE_UP):
            return Action('none')
        position, quat = pose_values(fb.pose)
        if fb.header.frame_id not in ('', self.frame):
            return self._refuse(f'pose feedback in frame {fb.header.frame_id!r}, expected '
                                f'{self.frame!r}')
        if not all(math.isfinite(v) for v in position + quat):
            return self._refuse('pose feedback contains NaN or inf')
        norm = math.sqrt(sum(v * v for v in quat))
        if not 0.9 < norm < 1.1:
            return self._refuse(f'pose feedback quaternion norm {norm:.3f} != 1')
        act = Action('pose', position, [v / norm for v in quat])
        if fb.event_type == F.MOUSE_UP:
            self.dragging = False
        if fb.event_type == F.MOUSE_UP or now - self.t_goal >= self.goal_period:
            self.t_goal, self.pending = now, None
            return act
        self.pending = Action('pose', act.position, act.quat)
        act.send = False
        return act

    def due(self, now: float) -> Action | None:
        """A rate-limited pose whose turn has come (call it periodically), else None."""
        if self.pending is not None and now - self.t_goal >= self.goal_period:
            act, self.pending, self.t_goal = self.pending, None, now
            return act
        return None
