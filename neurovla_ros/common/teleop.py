"""What every teleop front end sends, and where: ROS-free, shared by the rviz marker server
(``markers``), the browser view (``ui``) and the keyboard tool (``keyboard``).

Interfaces (standard types only)
    /teleop/twist [geometry_msgs/TwistStamped]        tool velocity, base_link or tcp_link
    /teleop/pose [geometry_msgs/PoseStamped]          tool goal in base_link
    /gripper_controller/commands [std_msgs/Float64MultiArray]  finger opening [m]
    /cortex/instruction [std_msgs/String]             a new task for the cortex
    /cerebellum/release_teleop [std_srvs/Trigger]     hand the arm back to the cortex
    /spinal/reset [std_srvs/Trigger]                  leave a reflex
    /estop [std_msgs/Bool, latched]                   emergency stop: true (spinal/safety.py)
    /spinal/resume [std_srvs/Trigger]                 resume after a stop (estop false first)

The front ends' commands (:data:`COMMANDS`: a menu entry, a button) are carried out by
:meth:`neurovla_ros.common.rosutil.TeleopCommands.act`. Emergency stop publishes ``estop``
true; resume publishes ``estop`` false and then asks ``spinal/resume`` (refused while the
spinal layer still brakes; estop false alone does not resume).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..robot.model import RobotModel
from ..robot.transforms import matrix_to_quat_xyzw

# relative names: resolved in the front end's namespace (namespace:= moves the whole stack)
TWIST_TOPIC = 'teleop/twist'
POSE_TOPIC = 'teleop/pose'
GRIPPER_TOPIC = 'gripper_controller/commands'
ESTOP_TOPIC = 'estop'
INSTRUCTION_TOPIC = 'cortex/instruction'
BASE_FRAME, TOOL_FRAME = 'base_link', 'tcp_link'
# name -> service (std_srvs/Trigger)
SERVICES = {
    'release_teleop': 'cerebellum/release_teleop',
    'reset_reflex': 'spinal/reset',
    'resume': 'spinal/resume',
}
# action -> label, as menus and buttons show them
COMMANDS = {
    'home': 'Go home',
    'gripper_open': 'Open gripper',
    'gripper_close': 'Close gripper',
    'reset_reflex': 'Reset reflex',
    'release_teleop': 'Hand back to the cortex',
    'estop': 'Emergency stop',
    'resume': 'Resume',
}


def tcp_pose(model: RobotModel, q) -> tuple[np.ndarray, np.ndarray]:
    """Tool centre point in base_link for arm joints ``q``: position [m], quaternion
    (x, y, z, w)."""
    t = model.fk(q)
    return t[:3, 3].copy(), matrix_to_quat_xyzw(t[:3, :3])


def home_pose(model: RobotModel) -> tuple[np.ndarray, np.ndarray]:
    """The tool pose at the URDF home configuration."""
    return tcp_pose(model, model.home_pose())


def arm_positions(model: RobotModel, names, positions) -> np.ndarray | None:
    """The arm joints (model order) out of a /joint_states sample, None if one is missing
    or not finite."""
    names = list(names)
    try:
        q = np.array([positions[names.index(j)] for j in model.arm_joints], float)
    except (ValueError, IndexError):
        return None
    return q if np.all(np.isfinite(q)) else None


@dataclass
class Action:
    """What a front-end event asks for: ``kind`` ``pose`` (the dragged goal is at ``position``,
    ``quat``; ``send``: make it a /teleop/pose goal now), ``menu`` (``name`` of an action) or
    ``none``."""
    kind: str
    position: list | None = None
    quat: list | None = None
    name: str = ''
    send: bool = True


class PoseDrag:
    """A tool goal dragged by a client (an rviz marker, the browser's gizmo) -> rate-limited
    /teleop/pose goals. ROS-free; times in seconds.

    While a client drags (``start`` .. a ``final`` pose, kept alive by its events; dropped after
    ``drag_timeout`` without any) the goal is that client's: another client's events are refused,
    and the front end does not move its handle to the measured tool pose. Poses become goals at
    most every ``1 / goal_rate_hz``; the final pose always does. A non-finite pose or a
    quaternion far from unit norm is refused with the reason (``last_rejection``), counted, and
    changes nothing.
    """

    def __init__(self, goal_rate_hz: float = 20.0, drag_timeout: float = 2.0):
        self.goal_period = 1.0 / goal_rate_hz
        self.drag_timeout = drag_timeout
        self.dragging = False
        self.client_id = ''
        self.t_event = -math.inf
        self.t_goal = -math.inf
        self.pending: Action | None = None      # a rate-limited pose not sent yet
        self.received = self.rejected = 0
        self.last_rejection = ''

    def refuse(self, why: str) -> Action:
        self.rejected += 1
        self.last_rejection = why
        return Action('none')

    def is_dragging(self, now: float) -> bool:
        if self.dragging and now - self.t_event > self.drag_timeout:
            self.dragging = False            # the client went away mid-drag
        return self.dragging

    def other_client(self, now: float, client: str) -> str | None:
        """Why an event of ``client`` is refused (another one drags), or None."""
        if self.dragging and client != self.client_id and now - self.t_event < self.drag_timeout:
            return f'{client!r} cannot drag while {self.client_id!r} does'
        return None

    def touch(self, now: float, client: str, start: bool = False) -> None:
        """An event of the dragging client (``start``: it grabbed the handle)."""
        if start:
            self.dragging, self.client_id = True, client
        self.t_event = now

    def pose(self, now: float, position, quat, final: bool = False) -> Action:
        """The handle is at ``position`` [m], ``quat`` (x, y, z, w); ``final``: released."""
        position, quat = [float(v) for v in position], [float(v) for v in quat]
        if len(position) != 3 or len(quat) != 4 or \
                not all(math.isfinite(v) for v in position + quat):
            return self.refuse('pose contains NaN or inf' if len(position) + len(quat) == 7
                               else 'pose: expected 3 + 4 values')
        norm = math.sqrt(sum(v * v for v in quat))
        if not 0.9 < norm < 1.1:
            return self.refuse(f'pose quaternion norm {norm:.3f} != 1')
        act = Action('pose', position, [v / norm for v in quat])
        if final:
            self.dragging = False
        if final or now - self.t_goal >= self.goal_period:
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
