"""The robot model (ROS-free): drive properties from the URDF, kinematics, dynamics, IK,
rotation conversions; one model that every layer and the sim share."""
import math
import os

import mujoco
import numpy as np
import pytest
import yaml

from neurovla_ros import robot
from neurovla_ros.robot import ik, transforms
from neurovla_ros.robot.dynamics import ArmDynamics
from neurovla_ros.sim.world import World

MODEL = robot.load()
HOME = MODEL.home_pose()
LIM = MODEL.limits()


# ---------------------------------------------------------------- drive properties
def test_drive_armature_comes_from_drives_yaml_through_the_urdf():
    with open(os.path.join(robot.urdf_dir(), 'drives.yaml')) as f:
        drives = yaml.safe_load(f)
    assert set(drives) == set(MODEL.actuated)
    np.testing.assert_array_equal(MODEL.armature(),
                                  [drives[n]['armature'] for n in MODEL.arm_joints])
    assert MODEL.armature().min() > 0    # geared drives: every arm joint has rotor inertia


def test_sim_and_dynamics_use_the_model_armature():
    """One source: the simulated body and the dynamics every layer uses carry the same drive
    inertia, read from the robot model (no parameter to keep in agreement by hand)."""
    w = World(seed=0, n_objects=0)
    dyn = ArmDynamics()
    for m in (w.model, dyn.model):
        dofs = [m.jnt_dofadr[m.joint(n).id] for n in MODEL.arm_joints]
        np.testing.assert_array_equal(m.dof_armature[dofs], MODEL.armature())
    # the sim's own joint-space inertia (world model, arm part) equals the robot model's
    mujoco.mj_forward(w.model, w.data)
    full = np.zeros((w.model.nv, w.model.nv))
    mujoco.mj_fullM(w.model, w.data, full)
    dofs = [w.model.jnt_dofadr[w.model.joint(n).id] for n in MODEL.arm_joints]
    np.testing.assert_allclose(full[np.ix_(dofs, dofs)], dyn.arm_inertia(HOME), rtol=1e-9,
                               atol=1e-12)


def test_gripper_range_from_the_urdf():
    assert (MODEL.gripper_closed, MODEL.gripper_open) == (0.0, 0.04)
    assert robot.STATE_JOINTS == (*robot.ARM_JOINTS, *robot.FINGER_JOINTS)


# ---------------------------------------------------------------- kinematics
def test_pose_and_jacobian_agree_with_fk_and_jacobian():
    rng = np.random.default_rng(5)
    for tip in ('tcp_link', 'imu_link'):
        q = HOME + rng.uniform(-0.5, 0.5, 6)
        t, jac = MODEL.pose_and_jacobian(q, tip)
        np.testing.assert_array_equal(t, MODEL.fk(q, tip))
        np.testing.assert_array_equal(jac, MODEL.jacobian(q, tip))
        eps = 1e-6
        num = np.stack([(MODEL.fk(q + eps * e, tip)[:3, 3] - MODEL.fk(q - eps * e, tip)[:3, 3])
                        / (2 * eps) for e in np.eye(6)], axis=1)
        np.testing.assert_allclose(jac[:3], num, atol=1e-6)


# ---------------------------------------------------------------- dynamics
def test_dynamics_mass_matrix_and_gravity():
    dyn = ArmDynamics()
    mm = dyn.arm_inertia(HOME)
    assert mm.shape == (6, 6) and np.allclose(mm, mm.T)
    assert np.all(np.linalg.eigvalsh(mm) > 0)
    # arm stretched up: no gravity torque; stretched out horizontally: shoulder carries it all
    def gravity(q):
        dyn.set_state(np.r_[q, MODEL.gripper_open, MODEL.gripper_open])
        return dyn.bias()[:6].copy()
    assert np.abs(gravity(np.zeros(6))).max() < 1e-6
    tau = gravity(np.array([0, -math.pi / 2, 0, 0, 0, 0]))
    masses = sum(MODEL.link_mass[n] for n in MODEL.link_mass
                 if n not in ('base_link', 'shoulder_link'))
    assert abs(tau[1]) > masses * 9.81 * 0.3  # rough lever arm >= 0.3 m


# ---------------------------------------------------------------- IK and rotations
def test_ik_reaches_reachable_poses_within_limits():
    rng = np.random.default_rng(3)
    for _ in range(6):
        q_true = np.clip(HOME + rng.normal(0, 0.25, 6), LIM['lower'], LIM['upper'])
        target = MODEL.fk(q_true)
        res = ik.solve(MODEL, target, HOME, LIM['lower'], LIM['upper'])
        assert res.ok, res.reason
        assert np.all(res.q >= LIM['lower']) and np.all(res.q <= LIM['upper'])
        got = MODEL.fk(res.q)
        assert np.linalg.norm(got[:3, 3] - target[:3, 3]) <= 1e-3
        assert np.linalg.norm(transforms.rotation_error(target[:3, :3], got[:3, :3])) <= 1e-2


def test_ik_refuses_unreachable_pose_quickly():
    target = MODEL.fk(HOME)
    target[:3, 3] = [1.8, 0.0, 0.3]
    res = ik.solve(MODEL, target, HOME, LIM['lower'], LIM['upper'])
    assert not res.ok
    assert 'unreachable' in res.reason
    assert res.iterations < 30


def test_rotation_error_is_the_rotation_vector():
    axis = np.array([0.0, 0.6, 0.8])
    r = transforms.axis_angle_matrix(axis, 0.7)
    np.testing.assert_allclose(transforms.rotation_error(r, np.eye(3)), axis * 0.7, atol=1e-12)
    half = transforms.axis_angle_matrix(np.array([1.0, 0, 0]), math.pi)
    np.testing.assert_allclose(np.abs(transforms.rotation_error(half, np.eye(3))), [math.pi, 0, 0],
                               atol=1e-6)


def test_twist_to_joint_velocity_realises_the_twist():
    jac = MODEL.jacobian(HOME)
    twist = np.array([0.05, -0.02, 0.03, 0.1, 0.0, -0.2])
    qd = ik.twist_to_joint_velocity(jac, twist, damping=1e-4)
    np.testing.assert_allclose(jac @ qd, twist, atol=1e-5)


@pytest.mark.parametrize('v', [[0.3, -0.2, 0.1], [0, 0, 3.1], [1e-9, 0, 0], [np.pi, 0, 0]])
def test_rotation_vector_and_quaternion_round_trip(v):
    r = transforms.rotation_from_vector(v)
    assert np.allclose(transforms.rotation_from_vector(transforms.rotation_vector(r)), r, atol=1e-6)
    x, y, z, w = transforms.matrix_to_quat_xyzw(r)
    rq = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                   [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                   [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    assert np.allclose(rq, r, atol=1e-6)


# ---------------------------------------------------------------- every link, and its shapes
def test_link_poses_agree_with_mujoco_for_the_arm_and_the_fingers():
    """The pose of every link (what a viewer draws) against the simulator's bodies, at a
    random arm configuration with the fingers half open (the mimic finger included)."""
    w = World(seed=0, n_objects=0)
    m, d = w.model, w.data
    rng = np.random.default_rng(3)
    q = rng.uniform(LIM['lower'] * 0.5, LIM['upper'] * 0.5)
    pos = dict(zip(MODEL.arm_joints, q)) | {robot.GRIPPER_JOINT: 0.02}
    for name, v in pos.items():
        d.qpos[m.jnt_qposadr[m.joint(name).id]] = v
    d.qpos[m.jnt_qposadr[m.joint('right_finger_joint').id]] = 0.02
    mujoco.mj_forward(m, d)
    base = np.eye(4)
    base[:3, :3] = d.body('base_link').xmat.reshape(3, 3)
    base[:3, 3] = d.body('base_link').xpos
    poses = MODEL.link_poses(pos)
    checked = 0
    for link, t in poses.items():
        try:
            b = d.body(link)
        except KeyError:
            continue                    # a frame MuJoCo fused into its parent
        want = np.linalg.inv(base) @ np.block([[b.xmat.reshape(3, 3), b.xpos[:, None]],
                                               [np.zeros((1, 3)), np.ones((1, 1))]])
        np.testing.assert_allclose(t, want, atol=1e-9, err_msg=link)
        checked += 1
    assert checked >= 9 and 'right_finger_link' in poses
    np.testing.assert_allclose(poses['tcp_link'], MODEL.fk(q), atol=1e-12)


def test_visuals_are_the_urdf_shapes():
    v = MODEL.visuals
    assert {'base_link', 'shoulder_link', 'left_finger_link', 'right_finger_link'} <= set(v)
    (sh,) = v['shoulder_link']
    assert sh.shape == 'cylinder' and sh.size == (0.06, 0.15) and sh.rgba == (0.25, 0.45, 0.75, 1)
    (grip,) = v['gripper_base_link']
    assert grip.shape == 'box' and grip.size == (0.12, 0.04, 0.05)
    np.testing.assert_allclose(grip.origin[:3, 3], [0, 0, 0.025])
