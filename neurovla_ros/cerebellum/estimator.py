"""State estimation: the wrist IMU fused with the joint encoders through the URDF kinematics.

ROS-free. The kinematics come from the robot model (:mod:`neurovla_ros.robot`: one
``RobotModel.pose_and_jacobian`` per update). They are refreshed at a low rate
(``kinematics_period`` [s]), after a tick rather than in it: the arm moves little in 50 ms,
while the per-tick work stays a handful of 6-vector operations.

Conventions: ``base`` is base_link (= world); the IMU reports its angular rate ``gyro``
[rad/s] and specific force ``accel`` [m/s^2] in imu_link axes, gravity included like a real
accelerometer (at rest ``accel = R^T (0, 0, +g)``), and optionally its orientation.

Fusion (complementary, crossover ``crossover_hz``): below the crossover the encoders are
trusted (no drift, no gyro bias), above it the IMU (it sees oscillation that slow or
compliant encoders miss). The fused twist of the IMU point is mapped back to joint space
with the damped pseudo-inverse of the IMU Jacobian, giving ``qd_fused``.
"""
from __future__ import annotations

import math

import numpy as np

from ..robot.ik import damped_pinv
from ..robot.model import RobotModel
from ..robot.transforms import quat_xyzw_to_matrix
from .ops import matvec
from .state import Shared

GRAVITY = 9.81  # [m/s^2]


class ArmKinematics:
    """Cached pose and Jacobian of the end effector (tcp) and of the IMU at a configuration."""

    def __init__(self, model: RobotModel, ee_link: str = 'tcp_link', imu_link: str = 'imu_link',
                 damping: float = 0.02):
        self.model, self.ee_link, self.imu_link, self.damping = model, ee_link, imu_link, damping
        q0 = model.home_pose()
        # The IMU and the tcp sit on the same rigid body: one constant transform links them.
        t_ee0 = model.fk(q0, ee_link)
        t_imu0 = model.fk(q0, imu_link)
        self.ee_to_imu = np.linalg.inv(t_ee0) @ t_imu0
        self.q = np.full(len(model.arm_joints), np.nan)
        self.ee_pose = np.eye(4)
        self.ee_jac = np.zeros((6, len(model.arm_joints)))
        self.imu_pose = np.eye(4)
        self.imu_jac = np.zeros_like(self.ee_jac)
        self.imu_jac_pinv = np.zeros((len(model.arm_joints), 6))
        self.lever = np.zeros(3)  # tcp - imu position [m], base frame

    def update(self, q) -> None:
        """Poses and Jacobians at ``q`` (the arrays are updated in place)."""
        q = np.asarray(q, float)
        self.q[:] = q
        t, jac = self.model.pose_and_jacobian(q, self.ee_link)
        self.ee_pose[:] = t
        self.ee_jac[:] = jac
        self.imu_pose[:] = self.ee_pose @ self.ee_to_imu
        self.lever[:] = self.ee_pose[:3, 3] - self.imu_pose[:3, 3]
        # v_imu = v_ee + w x (p_imu - p_ee) = v_ee + lever x w = v_ee + [lever]x w
        x, y, z = self.lever
        skew = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
        jac = jac.copy()
        jac[:3] += skew @ jac[3:]
        self.imu_jac[:] = jac
        self.imu_jac_pinv[:] = damped_pinv(jac, self.damping)


class StateEstimator(Shared):
    """End-effector motion from the wrist IMU and the joint encoders.

    Call :meth:`update` every learning step with the newest encoder sample and, when fresh,
    the IMU sample (``None`` when stale: the encoders alone are used). Outputs (arrays
    reused):

    * ``qd_fused`` [rad/s] - joint velocity: encoders below the crossover, IMU above;
    * ``ee_pos`` [m], ``ee_rot`` - tcp pose from the encoders (kinematics update rate);

    and, after :meth:`derived` (kept off the per-tick path):

    * ``ee_twist`` [m/s, rad/s] - tcp linear and angular velocity (base frame, fused);
    * ``ee_acc`` [m/s^2] - tcp linear acceleration, gravity removed (base frame, IMU);
    * ``gyro_pred`` [rad/s] - the gyro reading the encoders predict (imu frame);
    * ``gravity_imu`` [m/s^2] - the specific force a resting IMU should read (imu frame).

    The kinematics (poses, Jacobians) are refreshed every ``kinematics_period`` [s]; the
    cerebellum's tick defers that (``update(..., defer=True)`` works with the cached ones and
    sets ``kin_due``) and runs :meth:`refresh_kinematics` after the tick.
    """

    SLOTS = ('k', 'kinematics_period', 'since_kin', 'kin_due:bool', 'have_imu:bool',
             'imu_used:bool')

    def __init__(self, model: RobotModel, crossover_hz: float = 2.0,
                 kinematics_period: float = 0.02, damping: float = 0.02):
        super().__init__()
        if crossover_hz <= 0:
            raise ValueError(f'crossover_hz must be > 0, got {crossover_hz}')
        self.kin = ArmKinematics(model, damping=damping)
        self.k = 2.0 * math.pi * crossover_hz  # complementary filter gain [1/s]
        self.kinematics_period = kinematics_period
        n = len(model.arm_joints)
        self.n = n
        self.qd_fused = np.zeros(n)
        self.ee_pos = np.zeros(3)
        self.ee_rot = np.eye(3)
        self.ee_twist = np.zeros(6)
        self.ee_acc = np.zeros(3)
        self.gyro_pred = np.zeros(3)
        self.gravity_imu = np.array([0.0, 0.0, GRAVITY])
        self.imu_rot = np.eye(3)
        self._twist_enc = np.zeros(6)   # IMU-point twist from encoders (base frame)
        self._twist_f = np.zeros(6)     # fused IMU-point twist (base frame)
        self._gyro_prev = np.zeros(3)
        self._alpha = np.zeros(3)       # angular acceleration [rad/s^2] (low-passed)
        self._w_meas = np.zeros(3)
        self._a_imu = np.zeros(3)
        self._dtw = np.zeros(6)
        self._qd_enc = np.zeros(n)
        self._q = np.zeros(n)           # the joint positions of the last update
        self.since_kin = math.inf
        self.have_imu = False
        self.imu_used = False

    def reset(self, q) -> None:
        self.kin.update(q)
        self.since_kin = 0.0
        self.kin_due = False
        self._copy_kinematics()
        self.qd_fused[:] = 0.0
        self._twist_f[:] = 0.0
        self.have_imu = False

    def _copy_kinematics(self) -> None:
        self.ee_pos[:] = self.kin.ee_pose[:3, 3]
        self.ee_rot[:] = self.kin.ee_pose[:3, :3]
        self.imu_rot[:] = self.kin.imu_pose[:3, :3]

    def refresh_kinematics(self) -> None:
        """The poses and Jacobians at the joint positions of the last update (when due)."""
        self.kin.update(self._q)
        self.since_kin = 0.0
        self.kin_due = False
        self._copy_kinematics()

    def update(self, dt: float, q, qd, gyro=None, accel=None, quat_xyzw=None,
               defer: bool = False) -> np.ndarray:
        """Advance by ``dt`` [s]; returns ``qd_fused``. Cheap: the tcp acceleration, predicted
        gyro and gravity are computed on demand (:meth:`derived`). Kinematics due: refreshed
        first, or with ``defer`` flagged (``kin_due``) for :meth:`refresh_kinematics`."""
        self._q[:] = q
        self.since_kin += dt
        if self.since_kin >= self.kinematics_period:
            if defer:
                self.kin_due = True
            else:
                self.refresh_kinematics()
        kin = self.kin
        te = self._twist_enc
        matvec(kin.imu_jac, qd, te)
        self._qd_enc[:] = qd
        if gyro is None or accel is None:
            self.have_imu = False
            self.imu_used = False
            self.qd_fused[:] = qd
            self._twist_f[:] = te
            return self.qd_fused
        if quat_xyzw is not None:
            self.imu_rot[:] = quat_xyzw_to_matrix(*quat_xyzw)
        rot = self.imu_rot
        w_meas = self._w_meas
        matvec(rot, gyro, w_meas)                 # base frame
        a_imu = self._a_imu
        matvec(rot, accel, a_imu)                 # specific force, base frame
        a_imu[2] -= GRAVITY                       # + g vector = linear acceleration
        f = self._twist_f
        if not self.have_imu:
            f[:] = te
            self._gyro_prev[:] = w_meas
            self.have_imu = True
        a = min(1.0, self.k * dt)
        d = self._dtw
        # linear: integrate the accelerometer, pull towards the encoders at low frequency;
        # angular: gyro increments above the crossover, encoders below (removes gyro bias)
        np.multiply(a_imu, dt, out=d[:3])
        np.subtract(w_meas, self._gyro_prev, out=d[3:])
        f += d
        np.subtract(te, f, out=d)
        d *= a
        f += d
        if dt > 0:  # angular acceleration, lightly low-passed (for the tcp acceleration)
            self._alpha += 0.2 * ((w_meas - self._gyro_prev) / dt - self._alpha)
        self._gyro_prev[:] = w_meas
        # joint velocity: encoders + the part of the IMU twist they do not explain
        np.subtract(f, te, out=d)
        matvec(kin.imu_jac_pinv, d, self.qd_fused)
        self.qd_fused += qd
        self.imu_used = True
        return self.qd_fused

    def derived(self) -> None:
        """Fill ``ee_twist``, ``ee_acc``, ``gyro_pred`` and ``gravity_imu`` (diagnostics)."""
        kin, rot = self.kin, self.imu_rot
        np.dot(kin.ee_jac, self.qd_fused, out=self.ee_twist)
        np.dot(rot.T, self._twist_enc[3:], out=self.gyro_pred)
        np.dot(rot.T, (0.0, 0.0, GRAVITY), out=self.gravity_imu)
        if self.imu_used:
            w, lever = self._twist_f[3:], kin.lever
            self.ee_acc[:] = (self._a_imu + np.cross(self._alpha, lever)
                              + np.cross(w, np.cross(w, lever)))
        else:
            self.ee_acc[:] = 0.0
