"""What every teleop front end sends, and where: ROS-free, shared by the rviz marker server
(``markers``), the browser view (``ui``) and the keyboard tool (``keyboard``).

Interfaces (standard types only)
    /teleop/twist [geometry_msgs/TwistStamped]        tool velocity, base_link or tcp_link
    /teleop/pose [geometry_msgs/PoseStamped]          tool goal in base_link
    /gripper_controller/commands [std_msgs/Float64MultiArray]  finger opening [m]
    /cortex/instruction [std_msgs/String]             a new task for the cortex
    /cerebellum/release_teleop [std_srvs/Trigger]     hand the arm back to the cortex
    /spinal/reset [std_srvs/Trigger]                  leave a reflex

No emergency stop / resume: no node serves one yet (the spinal layer has ``~/reset`` only), so
the front ends offer none; one entry in :data:`SERVICES` adds it once a node does.
"""
from __future__ import annotations

import numpy as np

from ..robot.model import RobotModel
from ..robot.transforms import matrix_to_quat_xyzw

# relative names: resolved in the front end's namespace (namespace:= moves the whole stack)
TWIST_TOPIC = 'teleop/twist'
POSE_TOPIC = 'teleop/pose'
GRIPPER_TOPIC = 'gripper_controller/commands'
INSTRUCTION_TOPIC = 'cortex/instruction'
BASE_FRAME, TOOL_FRAME = 'base_link', 'tcp_link'
# name -> service (std_srvs/Trigger)
SERVICES = {
    'release_teleop': 'cerebellum/release_teleop',
    'reset_reflex': 'spinal/reset',
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
