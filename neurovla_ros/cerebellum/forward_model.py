"""Forward model: the predicted response of the spinal layer + arm to the reference. ROS-free.

The cerebellum predicts the sensory consequences of the commands it sends. The arm is the
URDF's rigid-body inertia ``M(q)`` (with the coupling between joints) under the spinal servo
law, with a loop delay ``delay`` [s]:

    M q'' = Kp (r - q) + Kd (r' - q') + Bff r' + tau_ff - B q' + tau_ext,    r delayed

``Kp``, ``Kd`` the servo gains (diagonal), ``B`` the URDF viscous damping and ``Bff`` the
damping feed-forward the spinal layer adds for the desired velocity (``B`` or zero). With
``A(s) = M s^2 + (Kd + B) s + Kp``, in the Laplace domain

    q  / r       = T(s) = A(s)^-1 ((Kd + Bff) s + Kp) exp(-s delay)
    q' / tau_ext = P(s) = s A(s)^-1

``s T`` tells the tremor canceller how a correction of the reference shows up in the joint
velocity (phase-correct cancellation, coupling included); ``P`` turns the estimated
oscillation back into the periodic disturbance torque that causes it, which the spinal reflex
can discount as expected rather than a collision. :meth:`step` runs the model in time (per
joint, with the diagonal of ``M``) and predicts the joint state and the servo torque for the
reference actually sent.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .state import Shared


class ServoForwardModel(Shared):
    """Servo + inertia model over the arm joints.

    kp [N m/rad], kd [N m s/rad], damping (URDF viscous) [N m s/rad]: arrays per joint;
    inertia: joint-space inertia [kg m^2], (n, n) or its diagonal (n,);
    damping_feedforward: the servo feeds ``damping * r'`` forward (the spinal layer does);
    inertia_fn: ``q -> (n, n)`` for :meth:`set_configuration` (None: fixed inertia).
    The time-domain state (arrays, and the slots ``i``, ``nsub``) is shared with the C tick.
    """

    SLOTS = ('i:int', 'nsub:int', 'lines:int', 'accel_lowpass')

    def __init__(self, inertia, kp, kd, damping, delay: float = 0.003,
                 damping_feedforward: bool = True, accel_feedforward=None,
                 accel_lowpass: float = 0.004,
                 inertia_fn: Callable[[np.ndarray], np.ndarray] | None = None):
        super().__init__()
        self.kp = np.asarray(kp, float).copy()
        self.kd = np.asarray(kd, float).copy()
        n = len(self.kp)
        self.b = np.broadcast_to(np.asarray(damping, float), (n,)).copy()
        self.b_ff = self.b.copy() if damping_feedforward else np.zeros(n)
        # the servo's own acceleration feed-forward: inertia [kg m^2] x d/dt r' (low-passed)
        self.m_ff = (np.zeros(n) if accel_feedforward is None
                     else np.broadcast_to(np.asarray(accel_feedforward, float), (n,)).copy())
        self.accel_lowpass = float(accel_lowpass)
        if np.any(self.kp <= 0) or np.any(self.kd < 0):
            raise ValueError('forward model: kp must be > 0, kd >= 0')
        self.delay = float(delay)
        self.inertia_fn = inertia_fn
        self.M = np.zeros((n, n))
        self.m = np.zeros(n)
        self.set_inertia(inertia)
        self.q = np.zeros(n)       # predicted joint state
        self.qd = np.zeros(n)
        self.qdd = np.zeros(n)
        self.torque = np.zeros(n)  # predicted servo torque (on top of gravity compensation)
        self.reset(np.zeros(n))

    def set_inertia(self, inertia) -> None:
        m = np.asarray(inertia, float)
        m = np.diag(m) if m.ndim == 1 else m
        if m.shape != self.M.shape or np.any(np.diag(m) <= 0):
            raise ValueError(f'forward model: inertia must be {self.M.shape} with a positive '
                             f'diagonal')
        self.M[:] = m
        self.m[:] = np.diag(self.M)

    def set_configuration(self, q) -> None:
        """Inertia at the joint positions ``q`` (needs ``inertia_fn``)."""
        if self.inertia_fn is not None:
            self.set_inertia(self.inertia_fn(np.asarray(q, float)))

    @property
    def natural_frequency_hz(self) -> np.ndarray:
        """Per-joint closed-loop natural frequency (own inertia) [Hz]."""
        return np.sqrt(self.kp / self.m) / (2.0 * math.pi)

    # ---------------------------------------------------------------- frequency domain
    def _a(self, s: complex) -> np.ndarray:
        return self.M * (s * s) + np.diag((self.kd + self.b) * s + self.kp)

    def reference_response(self, f_hz: float) -> np.ndarray:
        """q / r at ``f_hz`` [Hz] (complex n x n)."""
        s = 2j * math.pi * f_hz
        ff = self.m_ff * (s * s) / (1.0 + self.accel_lowpass * s)
        num = np.diag(ff + (self.kd + self.b_ff) * s + self.kp) * np.exp(-s * self.delay)
        return np.linalg.solve(self._a(s), num)

    def velocity_response(self, f_hz: float) -> np.ndarray:
        """q' / r at ``f_hz`` [Hz]: what the tremor canceller needs (n x n)."""
        return 2j * math.pi * f_hz * self.reference_response(f_hz)

    def disturbance_response(self, f_hz: float) -> np.ndarray:
        """q' / tau_ext at ``f_hz`` [Hz] [rad/s per N m] (n x n)."""
        s = 2j * math.pi * f_hz
        return s * np.linalg.inv(self._a(s))

    # ---------------------------------------------------------------- time domain
    def reset(self, q, dt: float = 0.002) -> None:
        """Start the prediction at rest at ``q``; ``dt`` [s] is the nominal step (delay line)."""
        n = len(self.kp)
        self.q[:] = q
        self.qd[:] = 0.0
        self.qdd[:] = 0.0
        self.torque[:] = 0.0
        lines = max(0, int(round(self.delay / dt))) + 1
        if getattr(self, '_line', None) is None or len(self._line) != lines:
            self._line = np.zeros((lines, 3, n))   # reference, its velocity, feed-forward
            self._acc = np.zeros(n)      # the servo's estimate of r'' (low-passed difference)
            self._rd_prev = np.zeros(n)
        self.lines = lines
        self._line[:] = 0.0
        self._line[:, 0] = q
        self.i = 0
        self._acc[:] = 0.0
        self._rd_prev[:] = 0.0
        w = float(np.max(np.sqrt(self.kp / self.m)))
        self.nsub = max(1, int(math.ceil(dt * w / 0.2)))

    def step(self, dt: float, r, rd, tau_ff=None) -> None:
        """Advance the prediction by ``dt`` [s] for the reference ``r``, ``rd`` (and the
        feed-forward torque ``tau_ff``) just sent."""
        line = self._line
        i = self.i
        line[i, 0] = r
        line[i, 1] = rd
        line[i, 2] = 0.0 if tau_ff is None else tau_ff
        i = (i + 1) % self.lines
        self.i = i
        rl, rdl, ffl = line[i]   # the oldest: sent ``delay`` ago
        if dt > 0:
            lp = self.accel_lowpass
            k = min(1.0, dt / lp) if lp > 0 else 1.0
            self._acc += k * ((rdl - self._rd_prev) / dt - self._acc)
        self._rd_prev[:] = rdl
        ffl = ffl + self.m_ff * self._acc
        nsub = self.nsub
        h = dt / nsub
        for _ in range(nsub):  # semi-implicit Euler
            tau = (self.kp * (rl - self.q) + self.kd * (rdl - self.qd) + self.b_ff * rdl
                   + ffl)
            self.qdd[:] = (tau - self.b * self.qd) / self.m
            self.qd += h * self.qdd
            self.q += h * self.qd
        self.torque[:] = tau


def spinal_servo_model(model, e_sat: float = 0.05, omega_max: float = 40.0,
                       accel_feedforward: bool = True, delay: float = 0.003) -> ServoForwardModel:
    """Forward model of the spinal layer + arm: the spinal servo law with its model-derived
    gains (:meth:`~neurovla_ros.common.servo.JointGains.for_arm`: the bandwidth that saturates
    the effort limit at ``e_sat`` [rad] error, capped at ``omega_max`` [rad/s], on the joint
    inertias at home, drives included) and its feed-forward (URDF damping x desired velocity,
    home inertia x desired acceleration), acting on the arm's joint-space inertia (drives
    included) at the current configuration, with the loop ``delay`` [s]. ``model``: a
    :class:`~neurovla_ros.robot.model.RobotModel`."""
    from ..common.servo import JointGains
    from ..robot.dynamics import ArmDynamics
    dyn = ArmDynamics()
    gains = JointGains.for_arm(model, dyn, e_sat=e_sat, omega_max=omega_max)
    return ServoForwardModel(dyn.arm_inertia(model.home_pose()), gains.kp, gains.kd,
                             gains.damping, delay=delay, damping_feedforward=True,
                             accel_feedforward=gains.inertia if accel_feedforward else None,
                             inertia_fn=dyn.arm_inertia)
