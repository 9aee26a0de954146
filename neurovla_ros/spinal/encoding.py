"""Per-joint normalisation around the shared spiking segment: gains, encoder, decoder. ROS-free.

The spinal network has the same weights for every joint, so each joint's signals are brought
to one common scale first. The scale comes from the robot model, not from hand tuning:

* ``kp_j = m_jj * omega_j**2`` and ``kd_j = 2 * zeta * m_jj * omega_j`` with ``m_jj`` the
  joint's own inertia at the home pose (mass-matrix diagonal, drive inertia included) and
  ``omega_j`` the bandwidth that saturates the joint's effort limit at ``e_sat`` of error,
  capped at ``omega_max``.
* Normalised signals (dimensionless, 1 = the torque ``kp_j * e_ref``):
  ``z_pos = e / e_ref``, ``z_vel = kd_j * ed / (kp_j * e_ref)``, ``z_ff = tau_ff / (kp_j * e_ref)``
  with ``e = q_des - q``, ``ed = qd_des - qd`` and ``tau_ff`` the torque the desired motion
  needs by the model: ``m_jj * qdd_des`` (inertia) + ``D qd_des`` + ``F tanh(qd_des / v_eps)``
  (the URDF's viscous and Coulomb friction). ``qdd_des`` is estimated from the stream of
  desired velocities (:class:`AccelEstimator`).
* Each signed signal feeds two non-negative channels, ON = max(z, 0) and OFF = max(-z, 0)
  (clipped to ``x_max``): with zero error and no desired motion every input is zero and the
  network is silent.
* Two sensitivities for the errors (``fine_gain`` > 0, like the primary and secondary endings
  of a muscle spindle): the position and velocity errors also enter ``fine_gain`` times
  amplified, so that the sub-milliradian errors of good tracking reach the neurons' thresholds
  (unamplified they fall into the spiking network's dead zone) while large errors still have
  their unclipped coarse channels. The input signals are then
  ``[z_pos, z_vel, z_ff, g z_pos, g z_vel]`` (``signal_table``).
* The readout ``y`` (same normalised unit) becomes the torque ``kp_j * e_ref * y``.

The gains and the classical controllers on them (``pd_torque``: the PD baseline;
``teacher_torque``: PD + model feed-forward, the controller the network learns to imitate) are
:class:`neurovla_ros.common.servo.JointGains`.
"""
from __future__ import annotations

import numpy as np

from ..common.servo import JointGains

N_SIGNALS = 3            # position error, velocity error, feed-forward


def signal_table(fine_gain: float = 0.0) -> np.ndarray:
    """The network's input signals as rows (source signal, gain): the three signals, then with
    ``fine_gain`` > 0 the position and velocity errors amplified by it."""
    rows = [(0, 1.0), (1, 1.0), (2, 1.0)]
    if fine_gain > 0:
        rows += [(0, float(fine_gain)), (1, float(fine_gain))]
    return np.array(rows, float)


class AccelEstimator:
    """Desired acceleration from successive desired velocities: finite difference, then a
    first-order low-pass (time constant ``tau`` [s]) that smooths references arriving slower
    than the ticks or with jitter."""

    def __init__(self, n: int = 6, tau: float = 0.004, max_dt: float = 0.05):
        self.tau, self.max_dt = float(tau), float(max_dt)
        self.qdd = np.zeros(n)
        self._prev = np.zeros(n)
        self._d = np.zeros(n)
        self.primed = False

    def reset(self) -> None:
        self.qdd.fill(0.0)
        self.primed = False

    def update(self, qd_des, dt: float) -> np.ndarray:
        if self.primed and 0.0 < dt <= self.max_dt:
            d = self._d
            np.subtract(qd_des, self._prev, out=d)
            d *= 1.0 / dt
            d -= self.qdd
            d *= min(1.0, dt / self.tau) if self.tau > 0 else 1.0
            self.qdd += d
        np.copyto(self._prev, qd_des)
        self.primed = True
        return self.qdd


class Encoder:
    """Physical joint signals -> ON/OFF input channels (C, J), into preallocated buffers."""

    def __init__(self, gains: JointGains, x_max: float = 4.0, fine_gain: float = 0.0):
        self.g = gains
        self.x_max = float(x_max)
        self.table = signal_table(fine_gain)             # (S, 2): source signal, gain
        j = len(gains.kp)
        self._inv_e = 1.0 / gains.e_ref
        self._vel_gain = gains.kd / gains.tau_unit
        self._inertia_n = gains.inertia / gains.tau_unit      # normalised feed-forward gains
        self._damp_n = gains.damping / gains.tau_unit
        self._fric_n = gains.friction / gains.tau_unit
        self._inv_veps = 1.0 / gains.v_eps
        self.z = np.zeros((N_SIGNALS, j))
        self.x = np.zeros((2 * len(self.table), j))
        self._rows = [(int(src), float(gain)) for src, gain in self.table]
        self._tmp = np.zeros(j)

    def feedforward(self, qd_des, qdd_des, out=None) -> np.ndarray:
        """Normalised model feed-forward for the desired velocity and acceleration (J,)."""
        out = np.zeros(len(self._tmp)) if out is None else out
        t = self._tmp
        np.multiply(qd_des, self._inv_veps, out=t)
        np.tanh(t, out=t)
        t *= self._fric_n
        np.multiply(qd_des, self._damp_n, out=out)
        out += t
        np.multiply(qdd_des, self._inertia_n, out=t)
        out += t
        return out

    def _signals(self, z, q_des, qd_des, q, qd, qdd_des):
        np.subtract(q_des, q, out=z[0])
        z[0] *= self._inv_e
        np.subtract(qd_des, qd, out=z[1])
        z[1] *= self._vel_gain
        self.feedforward(qd_des, qdd_des, out=z[2])
        return z

    def signals(self, q_des, qd_des, q, qd, qdd_des) -> np.ndarray:
        """Normalised signed signals z (3, J): position error, velocity error, feed-forward."""
        return self._signals(self.z, q_des, qd_des, q, qd, qdd_des)

    def encode(self, q_des, qd_des, q, qd, qdd_des) -> np.ndarray:
        """ON/OFF channels x (2 S, J) >= 0 of the S input signals (``table``): the ON channels
        of all signals, then their OFF channels, e.g. [pos+, vel+, ff+, pos-, vel-, ff-]."""
        x, z = self.x, self.z
        k = len(self._rows)
        self._signals(z, q_des, qd_des, q, qd, qdd_des)
        for i, (src, gain) in enumerate(self._rows):
            np.multiply(z[src], gain, out=x[i])
        np.negative(x[:k], out=x[k:])
        np.maximum(x, 0.0, out=x)
        np.minimum(x, self.x_max, out=x)
        return x


def on_off(z: np.ndarray, out: np.ndarray | None = None, x_max: float = 4.0) -> np.ndarray:
    """Split signed signals z (K, ...) into channels [max(z,0); max(-z,0)] clipped to x_max."""
    k = z.shape[0]
    if out is None:
        out = np.empty((2 * k,) + z.shape[1:])
    np.clip(z, 0.0, x_max, out=out[:k])
    np.negative(z, out=out[k:])
    np.clip(out[k:], 0.0, x_max, out=out[k:])
    return out


class Decoder:
    """Readout (normalised) -> joint torque [N m] (limits are applied by the caller)."""

    def __init__(self, gains: JointGains):
        self.unit = gains.tau_unit.copy()
        self.tau = np.zeros(len(self.unit))

    def __call__(self, y: np.ndarray) -> np.ndarray:
        np.multiply(y, self.unit, out=self.tau)
        return self.tau
