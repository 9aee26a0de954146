"""Rigid-body dynamics of the arm for the reflex arc: a private MuJoCo model of the URDF. ROS-free.

The spinal layer only knows the robot's description, not the simulator: this module compiles
the same URDF (``robot.urdf_xml()``) into its own ``MjModel``/``MjData`` and evaluates inverse
dynamics and the joint-space inertia on it. Joint order = the /joint_states order (6 arm joints,
then left_finger_joint, right_finger_joint); the fingers are part of the model, so their motion
counts in the arm's dynamics (gripper-aware).

The URDF has no drive inertia; real drives (and the simulated body: ``World(armature=0.1)``)
add a reflected rotor inertia to each arm joint. ``armature`` [kg m^2] puts it in the model.
"""
from __future__ import annotations

import numpy as np

import mujoco

from ..common import robot as robot_mod


class ArmDynamics:
    """Inverse dynamics, inertia and Jacobians of the arm at a given joint state."""

    def __init__(self, xml: str | None = None, armature: float = 0.0):
        m = mujoco.MjModel.from_xml_string(xml or robot_mod.urdf_xml())
        self.model, self.data = m, mujoco.MjData(m)
        rm = robot_mod.load()
        self.joint_names = [*rm.arm_joints, robot_mod.GRIPPER_JOINT, 'right_finger_joint']
        ids = [m.joint(n).id for n in self.joint_names]
        self.qadr = np.array([m.jnt_qposadr[i] for i in ids])
        self.dadr = np.array([m.jnt_dofadr[i] for i in ids])
        if not (np.array_equal(self.qadr, np.arange(8)) and np.array_equal(self.dadr, np.arange(8))
                and m.nq == 8 and m.nv == 8):
            raise RuntimeError('expected the URDF joints in /joint_states order, 8 dofs')
        self.nv = m.nv
        m.dof_armature[self.dadr[:6]] = armature
        self.armature = float(armature)
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

    def link_positions(self) -> np.ndarray:
        """World positions of every body origin (nbody x 3)."""
        return self.data.xpos.copy()

    def home_inertia(self, q_home) -> np.ndarray:
        """Diagonal of the arm's joint-space inertia at ``q_home`` (fingers open)."""
        q = np.zeros(self.nv)
        q[:6] = q_home
        q[6:8] = 0.04
        self.set_state(q)
        return np.diag(self.mass_matrix())[:6].copy()
