"""Inverse kinematics for Cartesian goals and teleop twists, ROS-free.

Damped least squares on the URDF kinematics (:mod:`.model`), seeded with the current reference
so that the solution stays on the same arm configuration branch and converges in a few
iterations for the small steps a 10 Hz goal stream makes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .model import RobotModel
from .transforms import rotation_error


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
        t, jac = model.pose_and_jacobian(q, tip)
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
                    f'rotation error {math.degrees(re):.1f} deg '
                    '(unreachable or beyond joint limits)')


def damped_pinv(jac: np.ndarray, damping: float) -> np.ndarray:
    """J^T (J J^T + damping^2 I)^-1: the damped least-squares pseudo-inverse."""
    return jac.T @ np.linalg.inv(jac @ jac.T + damping * damping * np.eye(jac.shape[0]))


def twist_to_joint_velocity(jac: np.ndarray, twist, damping: float = 0.02) -> np.ndarray:
    """Joint velocity [rad/s] realising the tcp ``twist`` (linear [m/s]; angular [rad/s])."""
    return damped_pinv(jac, damping) @ np.asarray(twist)

