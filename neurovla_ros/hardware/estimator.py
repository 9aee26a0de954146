"""Joint velocity from a servo bus's quantised registers: a model-based Kalman filter. ROS-free.

A servo reports position in encoder ticks and velocity in coarse steps (Dynamixel X: 0.229 rpm
= 0.024 rad/s; Feetech STS: 0.732 rpm). A momentum observer differentiates velocity
(``M (qd_k - qd_{k-1}) / dt``): one velocity step at a 2 ms cycle is 12 rad/s^2, tens of N m
on a big arm's shoulder, so the raw register makes the reflex trip on slow free motion and
lifts its thresholds until real contacts are missed.

Per arm joint, state ``(q, qd)``, predicted with the acceleration the robot model gives for the
torque the servo reports (Present Current x torque constant, which is what acted over the cycle)

    qdd = M(q)^-1 (tau - C(q, qd) qd - g(q) - D qd - F tanh(qd / v_eps))

and corrected with both measurements: the encoder position (noise = one tick / sqrt 12) and
Present Velocity (one velocity step / sqrt 12). The unexplained acceleration (contacts, model
error) is white noise of density ``accel_noise`` [rad/s^2/sqrt(Hz)]: it sets how fast the
estimate follows what the model does not explain. The joints share the model prediction and
keep their own 2x2 covariance. Free motion, which the model explains, passes without lag; an
external torque reaches the estimate through the corrections, within a few cycles.
"""
from __future__ import annotations

import numpy as np

from ..robot.dynamics import ArmDynamics


class VelocityEstimator:
    """``update(q8, qd_meas8, tau8, t)`` -> estimated velocity of the 6 arm joints (own buffer).

    ``q_step`` / ``v_step`` are the position / velocity quanta per joint [rad, rad/s]. A first
    sample, or one after a gap longer than ``max_gap`` [s], starts the filter at the
    measurement."""

    def __init__(self, dyn: ArmDynamics, q_step, v_step, accel_noise: float, damping=(),
                 friction=(), v_eps: float = 0.05, max_gap: float = 0.05):
        self.dyn = dyn
        self.r_q = (np.asarray(q_step, float) ** 2) / 12.0
        self.r_v = (np.asarray(v_step, float) ** 2) / 12.0
        if self.r_q.shape != (6,) or self.r_v.shape != (6,) or np.any(self.r_v <= 0):
            raise ValueError('q_step, v_step: need 6 positive quanta')
        if not accel_noise > 0:
            raise ValueError(f'accel_noise must be > 0, got {accel_noise!r}')
        self.qa = float(accel_noise) ** 2
        self.damping = np.zeros(6)
        self.friction = np.zeros(6)
        self.damping[:len(damping)] = np.asarray(damping, float)[:6]
        self.friction[:len(friction)] = np.asarray(friction, float)[:6]
        self.v_eps, self.max_gap = v_eps, max_gap
        self.q = np.zeros(6)
        self.qd = np.zeros(6)
        # covariance per joint: [[pqq, pqv], [pqv, pvv]]
        self.pqq, self.pqv, self.pvv = np.zeros(6), np.zeros(6), np.zeros(6)
        self._tau = np.zeros(6)
        self._x8 = np.zeros(8)
        self._v8 = np.zeros(8)
        self._t = None

    def reset(self) -> None:
        self._t = None

    def acceleration(self, q8, qd6, tau6) -> np.ndarray:
        """The model's joint acceleration of the arm at (q, qd) under the joint torques tau."""
        self._v8[:6] = qd6
        self._v8[6:] = 0.0
        self.dyn.set_state(q8, self._v8)
        rhs = tau6 - self.dyn.bias()[:6]
        rhs -= self.damping * qd6 + self.friction * np.tanh(qd6 / self.v_eps)
        return np.linalg.solve(self.dyn.mass_matrix()[:6, :6], rhs)

    def update(self, q8, qd_meas, tau, t: float) -> np.ndarray:
        zq, zv = np.asarray(q8[:6], float), np.asarray(qd_meas[:6], float)
        if self._t is None or not 0.0 < t - self._t <= self.max_gap:
            self.q[:], self.qd[:] = zq, zv
            self.pqq[:], self.pqv[:], self.pvv[:] = self.r_q, 0.0, self.r_v
            self._t = t
            self._tau[:] = tau[:6]
            return self.qd
        dt = t - self._t
        self._t = t
        # predict over the cycle with the torque that acted over it (measured at its end) and
        # the state at its start
        self._x8[:6] = self.q
        self._x8[6:] = q8[6:8]
        a = self.acceleration(self._x8, self.qd, np.asarray(tau[:6], float))
        self.q += dt * self.qd + 0.5 * dt * dt * a
        self.qd += dt * a
        pqq, pqv, pvv = self.pqq, self.pqv, self.pvv
        qa = self.qa
        pqq += dt * (2.0 * pqv + dt * pvv) + qa * dt ** 3 / 3.0
        pqv += dt * pvv + qa * dt * dt / 2.0
        pvv += qa * dt
        # correct with z = (position, velocity): K = P (P + R)^-1
        s11, s12, s22 = pqq + self.r_q, pqv, pvv + self.r_v
        det = s11 * s22 - s12 * s12
        i11, i12, i22 = s22 / det, -s12 / det, s11 / det
        k11 = pqq * i11 + pqv * i12
        k12 = pqq * i12 + pqv * i22
        k21 = pqv * i11 + pvv * i12
        k22 = pqv * i12 + pvv * i22
        eq, ev = zq - self.q, zv - self.qd
        self.q += k11 * eq + k12 * ev
        self.qd += k21 * eq + k22 * ev
        # P = (I - K) P
        n11 = (1.0 - k11) * pqq - k12 * pqv
        n12 = (1.0 - k11) * pqv - k12 * pvv
        n22 = -k21 * pqv + (1.0 - k22) * pvv
        pqq[:], pqv[:], pvv[:] = n11, n12, n22
        return self.qd
