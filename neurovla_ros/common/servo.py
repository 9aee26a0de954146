"""The joint servo law of the spinal layer: model-derived gains and the classical controllers.

ROS-free. The spinal layer builds its encoder, decoder and limit guard on these gains; the
cerebellum's forward model of the spinal layer uses the same law (:meth:`JointGains.for_arm`),
so the two cannot disagree. Derivation (``kp = m w^2``, ``kd = 2 zeta m w``, the bandwidth that
saturates the effort limit at ``e_sat`` of error, capped at ``omega_max``): see
:mod:`neurovla_ros.spinal.encoding`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointGains:
    """Model-derived per-joint constants (arrays over the arm joints)."""
    kp: np.ndarray        # [N m / rad]
    kd: np.ndarray        # [N m s / rad]
    inertia: np.ndarray   # joint inertia at home [kg m^2]
    damping: np.ndarray   # URDF viscous damping [N m s / rad]
    friction: np.ndarray  # URDF Coulomb friction [N m]
    effort: np.ndarray    # URDF effort limit [N m]
    e_ref: float = 0.05   # position error of one normalised unit [rad]
    v_eps: float = 0.05   # velocity where the Coulomb feed-forward reaches 76 % [rad/s]

    @property
    def tau_unit(self) -> np.ndarray:
        """Torque of one normalised unit per joint [N m]."""
        return self.kp * self.e_ref

    @classmethod
    def for_arm(cls, model, dyn, e_sat: float = 0.05, omega_max: float = 100.0,
                e_ref: float = 0.05) -> 'JointGains':
        """The spinal layer's gains for the arm of ``model`` (a RobotModel): URDF limits and
        friction, joint inertias at home from ``dyn`` (an ArmDynamics: drives included)."""
        lim = model.limits()
        return cls.from_model(dyn.home_inertia(model.home_pose()), lim['effort'],
                              lim['damping'], lim['friction'], e_sat=e_sat,
                              omega_max=omega_max, e_ref=e_ref)

    @classmethod
    def from_model(cls, inertia_diag, effort, damping, friction, e_sat: float = 0.05,
                   omega_max: float = 100.0, zeta: float = 1.0, e_ref: float = 0.05,
                   v_eps: float = 0.05) -> 'JointGains':
        """Gains from the joint inertias [kg m^2] at home and the URDF limits."""
        m = np.asarray(inertia_diag, float)
        effort = np.asarray(effort, float)
        omega = np.minimum(omega_max, np.sqrt(effort / e_sat / m))
        return cls(kp=m * omega ** 2, kd=2 * zeta * m * omega, inertia=m,
                   damping=np.asarray(damping, float), friction=np.asarray(friction, float),
                   effort=effort, e_ref=e_ref, v_eps=v_eps)

    def feedforward(self, qd_des, qdd_des=0.0) -> np.ndarray:
        """Torque the model needs for the desired velocity and acceleration [N m]."""
        qd_des = np.asarray(qd_des, float)
        return (self.inertia * qdd_des + self.damping * qd_des
                + self.friction * np.tanh(qd_des / self.v_eps))

    def pd_torque(self, q_des, qd_des, q, qd) -> np.ndarray:
        """Classical PD (the baseline), clamped to the effort limit [N m]."""
        tau = self.kp * (np.asarray(q_des) - q) + self.kd * (np.asarray(qd_des) - qd)
        return np.clip(tau, -self.effort, self.effort)

    def teacher_torque(self, q_des, qd_des, q, qd, qdd_des=0.0) -> np.ndarray:
        """PD + model feed-forward: what the network is trained to reproduce [N m]."""
        tau = (self.kp * (np.asarray(q_des) - q) + self.kd * (np.asarray(qd_des) - qd)
               + self.feedforward(qd_des, qdd_des))
        return np.clip(tau, -self.effort, self.effort)

    def normalised_teacher(self, z: np.ndarray) -> np.ndarray:
        """The teacher in normalised units from the signals ``z`` (..., 3, J)."""
        u = z[..., 0, :] + z[..., 1, :] + z[..., 2, :]
        lim = self.effort / self.tau_unit
        return np.clip(u, -lim, lim)
