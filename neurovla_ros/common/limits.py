"""Input validation and URDF limit enforcement shared by every layer (ROS-free)."""
from __future__ import annotations

import numpy as np

from ..robot.model import RobotModel


def invalid_reason(values, n: int) -> str | None:
    """Why ``values`` is not a usable vector of ``n`` finite numbers, or None if it is."""
    try:
        a = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return 'not numeric'
    if a.ndim != 1 or a.shape[0] != n:
        return f'expected {n} values, got {a.size}'
    if not np.all(np.isfinite(a)):
        return 'contains NaN or inf'
    return None


LIMIT_TOL = 1e-9     # a command exactly at a URDF limit is inside it


def command_reason(mode: str, values, names, lower, upper, velocity, effort) -> str | None:
    """Why a forward command (``mode`` position | velocity | effort, one value per joint of
    ``names``) is not acceptable: not ``len(names)`` finite numbers, or beyond the URDF limits
    (``lower``/``upper`` [rad], ``velocity`` [rad/s], ``effort`` [N m]); None if it is."""
    reason = invalid_reason(values, len(names))
    if reason is not None:
        return reason
    v = np.asarray(values, dtype=float)
    if mode == 'position':
        bad = (v < np.asarray(lower) - LIMIT_TOL) | (v > np.asarray(upper) + LIMIT_TOL)
        what = 'outside the URDF position range'
    elif mode == 'velocity':
        bad = np.abs(v) > np.asarray(velocity) + LIMIT_TOL
        what = 'beyond the URDF velocity limit'
    else:
        bad = np.abs(v) > np.asarray(effort) + LIMIT_TOL
        what = 'beyond the URDF effort limit'
    if bad.any():
        return f'{", ".join(np.array(names)[bad])} {what}'
    return None


class JointLimits:
    """Position, velocity and effort limits of a set of joints, from the URDF."""

    def __init__(self, model: RobotModel, names=None):
        self.names = list(names or model.arm_joints)
        lim = model.limits(self.names)
        self.lower, self.upper = lim['lower'], lim['upper']
        self.velocity, self.effort = lim['velocity'], lim['effort']

    def within_position(self, q) -> bool:
        q = np.asarray(q, float)
        return bool(np.all(q >= self.lower) and np.all(q <= self.upper))

    def clamp_position(self, q) -> np.ndarray:
        return np.clip(q, self.lower, self.upper)

    def clamp_velocity(self, qd, scale: float = 1.0) -> np.ndarray:
        return np.clip(qd, -self.velocity * scale, self.velocity * scale)

    def clamp_effort(self, tau) -> np.ndarray:
        return np.clip(tau, -self.effort, self.effort)

    def clamp_step(self, q_cmd, q_prev, dt: float) -> np.ndarray:
        """A position command limited to the joint range and reachable within ``dt`` [s]."""
        step = self.velocity * dt
        return self.clamp_position(np.clip(q_cmd, q_prev - step, q_prev + step))
