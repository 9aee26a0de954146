"""Inverse kinematics for Cartesian goals and teleop twists, ROS-free.

Damped least squares on the URDF kinematics (:mod:`neurovla_ros.common.robot`), seeded with
the current reference so that the solution stays on the same arm configuration branch and
converges in a few iterations for the small steps a 10 Hz goal stream makes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..common.robot import RobotModel
from .estimator import pose_and_jacobian


def rotation_error(r_target: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, base frame) that turns ``r`` into ``r_target``."""
    e = r_target @ r.T
    c = max(-1.0, min(1.0, (e[0, 0] + e[1, 1] + e[2, 2] - 1.0) / 2.0))
    angle = math.acos(c)
    v = np.array([e[2, 1] - e[1, 2], e[0, 2] - e[2, 0], e[1, 0] - e[0, 1]])
    if angle < 1e-9:
        return 0.5 * v
    if math.pi - angle < 1e-6:  # 180 degrees: axis from the symmetric part
        axis = np.sqrt(np.maximum(np.diag(e) + 1.0, 0.0) / 2.0)
        i = int(np.argmax(axis))
        axis = (e[:, i] + np.eye(3)[i]) / math.sqrt(2.0 * (1.0 + e[i, i]))
        return axis * angle
    return v * (angle / (2.0 * math.sin(angle)))


@dataclass
class IkResult:
    q: np.ndarray
    ok: bool
    position_error: float  # [m]
    rotation_error: float  # [rad]
    iterations: int
    reason: str = ''


def solve(model: RobotModel, target: np.ndarray, seed, lower, upper, *,
          position_only: bool = False, max_iterations: int = 60, position_tolerance: float = 1e-3,
          rotation_tolerance: float = 1e-2, damping: float = 0.02, max_step: float = 0.3,
          tip: str = 'tcp_link') -> IkResult:
    """Joint positions putting ``tip`` at the 4x4 ``target`` pose (base_link), within limits.

    ``ok`` is False (with ``reason``) when the pose is not reached within the tolerances
    [m], [rad] (unreachable, or out of the joint limits).
    """
    q = np.clip(np.asarray(seed, float).copy(), lower, upper)
    p_t, r_t = target[:3, 3], target[:3, :3]
    err = np.zeros(6)
    pe = re = math.inf
    best, stalled = math.inf, 0
    for it in range(max_iterations + 1):
        t, jac = pose_and_jacobian(model, q, tip)
        err[:3] = p_t - t[:3, 3]
        err[3:] = 0.0 if position_only else rotation_error(r_t, t[:3, :3])
        pe, re = float(np.linalg.norm(err[:3])), float(np.linalg.norm(err[3:]))
        if pe <= position_tolerance and re <= rotation_tolerance:
            return IkResult(q, True, pe, re, it)
        cost = pe + 0.1 * re
        stalled = stalled + 1 if cost > 0.97 * best else 0
        best = min(best, cost)
        if it == max_iterations or stalled >= 8:  # no progress: unreachable
            break
        j = jac[:3] if position_only else jac
        e = err[:3] if position_only else err
        # adaptive damping: more when far from the target or near a singularity
        lam2 = damping * damping * (1.0 + float(e @ e))
        dq = j.T @ np.linalg.solve(j @ j.T + lam2 * np.eye(j.shape[0]), e)
        n = float(np.max(np.abs(dq)))
        if n > max_step:
            dq *= max_step / n
        q = np.clip(q + dq, lower, upper)
    return IkResult(q, False, pe, re, it,
                    f'IK did not converge: position error {pe * 1000:.1f} mm, '
                    f'rotation error {math.degrees(re):.1f} deg (unreachable or beyond joint limits)')


def twist_to_joint_velocity(jac: np.ndarray, twist, damping: float = 0.02) -> np.ndarray:
    """Joint velocity [rad/s] realising the tcp ``twist`` (linear [m/s]; angular [rad/s])."""
    return jac.T @ np.linalg.solve(jac @ jac.T + damping * damping * np.eye(6), np.asarray(twist))


def pose_matrix(position, quat_xyzw) -> np.ndarray:
    """4x4 pose from a position and a unit quaternion (x, y, z, w)."""
    from .estimator import quat_xyzw_to_matrix
    t = np.eye(4)
    t[:3, :3] = quat_xyzw_to_matrix(*quat_xyzw)
    t[:3, 3] = position
    return t
