"""Rigid-body dynamics of the arm: a private MuJoCo model of the URDF. ROS-free.

MuJoCo is the dynamics library: this module compiles the URDF (``model.urdf_xml()``) into its
own ``MjModel``/``MjData`` (the arm alone: no table, no objects) and evaluates inverse dynamics,
bias forces, the joint-space inertia and Jacobians on it, for every layer that needs them (the
spinal reflex, the cerebellum's forward model, the spinal gains). Joint order = the
/joint_states order (6 arm joints, then left_finger_joint, right_finger_joint); the fingers are
part of the model, so their motion counts in the arm's dynamics (gripper-aware).

The URDF's joints carry no drive inertia; the drives' reflected rotor inertia comes from the
robot model (``RobotModel.armature()``, urdf/drives.yaml) and is added to each arm joint, as the
simulated body does.
"""
from __future__ import annotations

import mujoco
import numpy as np

from . import model as model_mod


class ArmDynamics:
    """Inverse dynamics, inertia and Jacobians of the arm at a given joint state."""

    def __init__(self, xml: str | None = None):
        m = mujoco.MjModel.from_xml_string(xml or model_mod.urdf_xml())
        self.model, self.data = m, mujoco.MjData(m)
        rm = self.robot = model_mod.load()
        self.joint_names = list(model_mod.STATE_JOINTS)
        ids = [m.joint(n).id for n in self.joint_names]
        self.qadr = np.array([m.jnt_qposadr[i] for i in ids])
        self.dadr = np.array([m.jnt_dofadr[i] for i in ids])
        if not (np.array_equal(self.qadr, np.arange(8)) and np.array_equal(self.dadr, np.arange(8))
                and m.nq == 8 and m.nv == 8):
            raise RuntimeError('expected the URDF joints in /joint_states order, 8 dofs')
        self.nv = m.nv
        m.dof_armature[self.dadr[:6]] = rm.armature()
        self._arm_inertia = m.dof_armature.copy()   # mj_rne leaves the armature out
        self._tmp = np.zeros(m.nv)
        self._res = np.zeros(m.nv)
        self._full = np.zeros((m.nv, m.nv))
        self._tcp = m.body('tcp_link').id
        self._jacp = np.zeros((3, m.nv))

    # ---- state ----
    def set_state(self, q, qd=None) -> None:
        """Joint positions (8, or 6 arm joints keeping the fingers) and velocities; runs the
        position and velocity stages (kinematics, composite inertia frame, velocities)."""
        d = self.data
        n = len(q)
        d.qpos[:n] = q
        if qd is None:
            d.qvel[:] = 0.0
        else:
            d.qvel[:len(qd)] = qd
        m = self.model
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_comVel(m, d)

    # ---- quantities at the state last set ----
    def inverse(self, qacc) -> np.ndarray:
        """``M qacc + C qd + g`` [N m] (all dofs) at the state last set. Own buffer."""
        self.data.qacc[:] = qacc
        self.rne()
        np.multiply(self._arm_inertia, qacc, out=self._tmp)
        self._res += self._tmp
        return self._res

    def rne(self) -> np.ndarray:
        """Inverse dynamics at the state and ``data.qacc`` last set, without the drives'
        armature (``mj_rne``), into the own buffer that ``inverse`` returns."""
        mujoco.mj_rne(self.model, self.data, 1, self._res)
        return self._res

    def bias(self) -> np.ndarray:
        """``C qd + g`` at the state last set. Own buffer."""
        mujoco.mj_rne(self.model, self.data, 0, self._res)
        return self._res

    def mass_matrix(self) -> np.ndarray:
        """Joint-space inertia (nv x nv) [kg m^2] at the state last set. Own buffer."""
        mujoco.mj_crb(self.model, self.data)
        mujoco.mj_fullM(self.model, self.data, self._full)
        return self._full

    def tcp_jacobian(self) -> np.ndarray:
        """Linear Jacobian (3 x 6) of the tool centre point w.r.t. the arm joints."""
        mujoco.mj_jacBody(self.model, self.data, self._jacp, None, self._tcp)
        return self._jacp[:, :6].copy()

    def tcp_position(self) -> np.ndarray:
        return self.data.xpos[self._tcp].copy()

    def arm_inertia(self, q) -> np.ndarray:
        """The arm's 6x6 joint-space inertia (drives included) at ``q`` [kg m^2], fingers open.
        A new array."""
        full = np.zeros(self.nv)
        full[:6] = q
        full[6:8] = self.robot.gripper_open
        self.set_state(full)
        return self.mass_matrix()[:6, :6].copy()

    def home_inertia(self, q_home=None) -> np.ndarray:
        """Diagonal of the arm's joint-space inertia at ``q_home`` (default: the URDF home)."""
        q = self.robot.home_pose() if q_home is None else q_home
        return np.diag(self.arm_inertia(q)).copy()
