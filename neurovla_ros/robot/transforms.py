"""Rotations and poses: the conversions every layer uses, in one place. ROS-free, numpy.

Conventions: quaternions are (x, y, z, w) as in ROS messages (``geometry_msgs/Quaternion``),
unit norm, returned with w >= 0; a rotation vector is axis x angle [rad] with the angle in
[0, pi]; poses are 4x4 homogeneous matrices.
"""
from __future__ import annotations

import math

import numpy as np


def rpy_matrix(rpy) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw to a rotation matrix (R = Rz(y) Ry(p) Rx(r))."""
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def axis_angle_matrix(axis, angle: float) -> np.ndarray:
    """Rodrigues: rotation by ``angle`` [rad] about the unit ``axis``."""
    x, y, z = axis
    c, s = np.cos(angle), np.sin(angle)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def quat_xyzw_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Rotation matrix of a unit quaternion given as x, y, z, w."""
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat_xyzw(r) -> np.ndarray:
    """Unit quaternion (x, y, z, w), w >= 0, of a rotation matrix (Shepperd's method)."""
    r = np.asarray(r, float)
    tr = r[0, 0] + r[1, 1] + r[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(1.0 + tr)
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4, (r[1, 0] - r[0, 1]) / s]
    q = np.array(q)
    return q / np.linalg.norm(q) * (1.0 if q[3] >= 0 else -1.0)


def rotation_vector(r: np.ndarray) -> np.ndarray:
    """Rotation vector (axis x angle [rad], angle in [0, pi]) of a rotation matrix."""
    c = max(-1.0, min(1.0, (r[0, 0] + r[1, 1] + r[2, 2] - 1.0) / 2.0))
    angle = math.acos(c)
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    if angle < 1e-9:
        return 0.5 * v
    if math.pi - angle < 1e-6:  # 180 degrees: axis from the symmetric part
        axis = np.sqrt(np.maximum(np.diag(r) + 1.0, 0.0) / 2.0)
        i = int(np.argmax(axis))
        axis = (r[:, i] + np.eye(3)[i]) / math.sqrt(2.0 * (1.0 + r[i, i]))
        return axis * angle
    return v * (angle / (2.0 * math.sin(angle)))


def rotation_from_vector(v) -> np.ndarray:
    """Rotation matrix of a rotation vector (axis x angle [rad])."""
    v = np.asarray(v, float)
    angle = float(np.linalg.norm(v))
    return np.eye(3) if angle < 1e-12 else axis_angle_matrix(v / angle, angle)


def rotation_error(r_target: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Rotation vector (base frame) that turns ``r`` into ``r_target``."""
    return rotation_vector(r_target @ r.T)


def pose_matrix(position, quat_xyzw) -> np.ndarray:
    """4x4 pose from a position and a unit quaternion (x, y, z, w)."""
    t = np.eye(4)
    t[:3, :3] = quat_xyzw_to_matrix(*quat_xyzw)
    t[:3, 3] = position
    return t
