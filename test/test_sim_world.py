"""The MuJoCo body (ROS-free): built from the URDF, drives, sensors, disturbances, camera."""

import mujoco
import numpy as np
import pytest

from neurovla_ros import robot
from neurovla_ros.robot.dynamics import ArmDynamics
from neurovla_ros.sim.world import PALETTE, World

G = 9.81


@pytest.fixture(scope='module')
def model():
    return robot.load()


def quat_xyzw_to_mat(q):
    x, y, z, w = q
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, np.array([w, x, y, z]))
    return m.reshape(3, 3)


def test_built_from_the_urdf_and_steps_under_random_commands_without_warnings(model):
    w = World(seed=0)
    m = w.model
    assert w.dt == pytest.approx(0.001)
    assert w.joint_names == [*model.arm_joints, 'left_finger_joint', 'right_finger_joint']
    # the arm in MuJoCo is the URDF's: same joints, ranges, damping, effort limits
    for name in w.joint_names:
        j = model.joints[name]
        jid = m.joint(name).id
        assert m.jnt_range[jid] == pytest.approx([j.lower, j.upper])
        assert m.dof_damping[m.jnt_dofadr[jid]] == pytest.approx(j.damping)
    for name in model.arm_joints:
        eff = model.joints[name].effort
        assert m.actuator_ctrlrange[m.actuator(name).id] == pytest.approx([-eff, eff])
    for link in ('base_link', 'tool0', 'tcp_link', 'imu_link', 'scene_camera_optical_frame'):
        m.body(link)  # KeyError if the importer dropped a frame
    # the home pose is the URDF's, and MuJoCo's tcp agrees with the ROS-free kinematics
    q, _, _ = w.joint_state()
    assert q[:6] == pytest.approx(model.home_pose())
    tcp = w.data.site_xpos[m.site('tcp').id]
    assert tcp == pytest.approx(model.fk(model.home_pose())[:3, 3], abs=1e-6)
    rng = np.random.default_rng(1)
    lo, hi = w.lower, w.upper
    home = model.home_pose()
    for i in range(10):  # 1 s, a new random command every 100 ms in every mode
        mode = ('position', 'velocity', 'effort')[i % 3]
        if mode == 'position':
            w.command(mode, np.clip(home + rng.uniform(-0.4, 0.4, 6), lo, hi))
        elif mode == 'velocity':
            w.command(mode, rng.uniform(-1, 1, 6))
        else:
            w.command(mode, rng.uniform(-5, 5, 6))
        w.command_gripper(rng.uniform(0, 0.04))
        w.step(100)
    assert w.time == pytest.approx(1.0, abs=1e-6)
    assert w.warnings() == {}
    assert np.all(np.isfinite(w.data.qpos)) and np.all(np.isfinite(w.data.qvel))


def test_arm_links_do_not_collide_with_each_other_but_with_table_and_objects():
    w = World(seed=0)
    m = w.model
    arm_geoms = [g for g in range(m.ngeom) if m.body_weldid[m.geom_bodyid[g]] != 0
                 and not m.body(m.geom_bodyid[g]).name.startswith('object_')]
    table = m.geom('table').id
    obj = m.geom('object_0').id

    def collide(a, b):
        return bool(m.geom_contype[a] & m.geom_conaffinity[b]
                    or m.geom_contype[b] & m.geom_conaffinity[a])
    assert arm_geoms
    assert not any(collide(a, b) for a in arm_geoms for b in arm_geoms)
    assert all(collide(a, table) and collide(a, obj) for a in arm_geoms)
    # physically: pushing the tcp 5 cm into the table, the table stops it and the wrist feels it
    start = w.data.site_xpos[m.site('tcp').id].copy()
    q = w.joint_state()[0][:6]
    jac = robot.load().jacobian(q)[:3]
    down = q + np.linalg.lstsq(jac, [0, 0, -(start[2] + 0.05)], rcond=None)[0]
    w.command('position', down)
    w.step(1500)
    tcp_z = w.data.site_xpos[m.site('tcp').id][2]
    assert tcp_z > -0.01, f'tcp went {tcp_z:.3f} m into the table'
    force, _ = w.wrench()
    rest = 0.6 * G  # gripper weight
    # contact pushes the gripper up: the load on the wrist (tool z points down) drops
    assert force[2] < rest - 5.0, force


def test_holds_a_commanded_pose():
    w = World(seed=0)
    goal = robot.load().home_pose() + np.array([0.3, -0.2, 0.25, 0.3, -0.4, 0.6])
    applied = w.command('position', goal)
    assert applied == pytest.approx(goal)
    w.step(2000)
    q, qd, eff = w.joint_state()
    assert np.abs(q[:6] - goal).max() < 1e-3
    assert np.abs(qd[:6]).max() < 1e-3
    # holding takes gravity torque only, and that is what the robot model's dynamics says
    dyn = ArmDynamics()
    dyn.set_state(q)
    assert eff[:6] == pytest.approx(dyn.bias()[:6], abs=0.05)


def test_position_targets_are_clamped_velocity_and_acceleration_limited(model):
    w = World(seed=0)
    lim = model.limits()
    assert w.command('position', lim['upper'] + 1.0) == pytest.approx(lim['upper'])
    goal = model.home_pose() - 0.8  # a jump of 0.8 rad on every joint
    w.command('position', goal)
    peak = np.zeros(6)
    prev_sp = w.setpoint
    for _ in range(1500):
        w.step(1)
        peak = np.maximum(peak, np.abs(w.joint_state()[1][:6]))
        sp = w.setpoint
        assert np.all(np.abs(sp - prev_sp) <= lim['velocity'] * w.dt + 1e-12)  # the command
        prev_sp = sp
    assert np.all(peak <= lim['velocity'] * 1.05), peak  # and the joints
    assert np.all(peak > 0.9 * lim['velocity'])  # it does move at about the limit
    assert np.abs(w.joint_state()[0][:6] - goal).max() < 1e-3


def test_streamed_position_commands_are_followed_without_lag(model):
    w = World(seed=0)
    q0 = model.home_pose()
    errs = []
    for k in range(1, 801):  # 1 kHz stream: 0.5 rad/s sine sweep on every joint
        ref = q0 + 0.1 * np.sin(2 * np.pi * 0.8 * k * w.dt)
        w.command('position', ref)
        w.step(1)
        errs.append(np.abs(w.joint_state()[0][:6] - ref).max())
    assert max(errs[100:]) < 2e-3


def test_imu_reads_gravity_at_rest_consistent_with_its_orientation():
    w = World(seed=0)
    w.step(200)
    quat, gyro, acc = w.imu()
    assert np.linalg.norm(quat) == pytest.approx(1.0, abs=1e-9)
    assert np.linalg.norm(acc) == pytest.approx(G, abs=0.02)
    up_in_imu = quat_xyzw_to_mat(quat).T @ np.array([0, 0, 1.0])
    assert np.dot(acc / np.linalg.norm(acc), up_in_imu) > 0.9999
    assert np.abs(gyro).max() < 1e-3
    # noise and bias: mean shifts by the bias, spread matches the std
    w.set_imu_noise(accel_std=0.05, gyro_std=0.01, accel_bias=(0.2, 0, 0), gyro_bias=(0, 0, 0.02))
    samples = []
    for _ in range(400):
        w.step(1)
        samples.append(np.concatenate(w.imu()[1:]))
    s = np.array(samples)
    assert s[:, 2].mean() == pytest.approx(gyro[2] + 0.02, abs=0.003)
    assert s[:, 3].mean() == pytest.approx(acc[0] + 0.2, abs=0.015)
    assert s[:, 3].std() == pytest.approx(0.05, rel=0.2)
    assert s[:, 0].std() == pytest.approx(0.01, rel=0.2)


def test_wrench_pushes_the_arm_and_shows_at_the_wrist():
    w = World(seed=0)
    w.step(50)
    f0, _ = w.wrench()
    assert np.linalg.norm(f0) == pytest.approx(0.6 * G, rel=0.01)  # gripper weight
    tcp = w.model.site('tcp').id
    p0 = w.data.site_xpos[tcp].copy()
    t_before, k_before = w.time, w.step_count
    onset = w.apply_wrench('gripper_base_link', [0, 60.0, 0], duration=0.1)
    assert onset == pytest.approx(t_before) and w.step_count == k_before
    w.step(1)
    assert w.data.xfrc_applied[w.model.body('gripper_base_link').id, 1] == 60.0
    w.step(60)
    moved = np.linalg.norm(w.data.site_xpos[tcp] - p0)
    assert moved > 0.001, f'a 60 N push moved the tcp only {moved * 1e3:.2f} mm'
    force, _ = w.wrench()
    _, rot = w.body_pose('tool0')
    # the push reaches the wrist sensor: ~60 N along world y on top of the weight
    assert (rot @ force)[1] == pytest.approx(60.0, abs=8.0)
    w.step(1500)  # the push ended after 100 ms: the servo brings the arm back
    assert np.linalg.norm(w.data.site_xpos[tcp] - p0) < 0.001
    assert not w.data.xfrc_applied.any()
    with pytest.raises(KeyError):
        w.apply_wrench('no_such_link', [1, 0, 0])


def test_effort_commands_never_exceed_the_urdf_limits(model):
    w = World(seed=0)
    lim = model.limits()['effort']
    rng = np.random.default_rng(2)
    peak = np.zeros(6)
    for i in range(400):
        if i % 20 == 0:
            w.command('effort', rng.uniform(-1.0, 1.0, 6) * lim * 3)  # clamped inside
        w.step(1)
        peak = np.maximum(peak, np.abs(w.joint_state()[2][:6]))
    assert np.all(peak <= lim + 1e-9), peak
    assert np.all(peak > 0.5 * lim)  # the big commands did reach the saturation region
    # position servo against an unreachable target: also within the limits
    w.command('position', model.limits()['lower'])
    for _ in range(200):
        w.step(1)
        assert np.all(np.abs(w.joint_state()[2][:6]) <= lim + 1e-9)


def test_effort_is_on_top_of_gravity_compensation_and_the_watchdog_holds():
    w = World(seed=0, effort_timeout=0.05)
    q0 = w.joint_state()[0][:6]
    w.command('effort', np.zeros(6))
    for _ in range(40):  # zero extra torque: gravity-compensated, the arm stays (friction)
        w.step(1)
    assert np.abs(w.joint_state()[0][:6] - q0).max() < 0.01
    assert w.mode == 'effort'
    w.command('effort', [0, 0, 0, 0, 0, 2.0])
    w.step(40)
    assert w.joint_state()[1][5] > 0.5  # the wrist spins up under +2 N m
    w.step(30)  # > 50 ms without a new effort command
    assert w.mode == 'position' and w.watchdog_trips == 1
    w.step(500)
    assert np.abs(w.joint_state()[1][:6]).max() < 0.01  # held


def test_velocity_mode_tracks_the_commanded_velocity():
    w = World(seed=0)
    v = np.array([0.3, -0.2, 0.2, 0.4, -0.5, 1.0])
    w.command('velocity', v)
    w.step(300)
    assert w.joint_state()[1][:6] == pytest.approx(v, abs=0.01)


def test_trajectory_reaches_its_goal(model):
    w = World(seed=0)
    q0 = model.home_pose()
    goal = q0 + np.array([0.4, 0.2, -0.3, 0.3, -0.5, 1.0])
    mid = q0 + 0.5 * (goal - q0)
    w.command_trajectory([(0.6, mid, None), (1.2, goal, np.zeros(6))])
    assert w.mode == 'trajectory'
    w.step(600)
    assert np.abs(w.joint_state()[0][:6] - mid).max() < 0.02  # on the way, on time
    w.step(900)
    assert w.mode == 'position'
    assert np.abs(w.joint_state()[0][:6] - goal).max() < 1e-3


def test_tremor_shakes_the_wrist_at_its_frequency():
    w = World(seed=0)
    w.step(100)
    onset = w.set_tremor(3.0, 8.0)
    assert onset == pytest.approx(w.time)
    gyro = []
    for _ in range(2000):
        w.step(1)
        gyro.append(w.imu()[1])
    g = np.array(gyro)[500:]
    spec = np.abs(np.fft.rfft(g - g.mean(0), axis=0)).sum(1)
    freqs = np.fft.rfftfreq(len(g), w.dt)
    assert freqs[np.argmax(spec)] == pytest.approx(8.0, abs=1.0)
    assert np.abs(g).max() > 0.04
    w.set_tremor(0.0, 8.0)
    w.step(1500)
    assert np.abs(w.imu()[1]).max() < 0.01


def test_objects_are_placed_in_reach_apart_and_reproducible():
    w = World(seed=5, n_objects=6)
    objs = w.objects()
    assert len(objs) == 6
    assert len({o['colour'] for o in objs}) == 6
    assert {o['colour'] for o in objs} <= {name for name, _ in PALETTE}
    w.step(500)  # they rest on the table
    pos = np.array([o['position'] for o in w.objects()])
    assert np.all((pos[:, 0] > 0.28) & (pos[:, 0] < 0.72) & (np.abs(pos[:, 1]) < 0.32))
    for o, p in zip(objs, pos):
        assert p[2] == pytest.approx(o['size'][2] / 2, abs=0.003)
    d = np.linalg.norm(pos[:, None, :2] - pos[None, :, :2], axis=-1) + np.eye(6)
    assert d.min() > 0.08
    w.reset()
    assert not np.allclose(np.array([o['position'] for o in w.objects()]), pos, atol=0.01)
    w.reset(seed=5)
    again = np.array([o['position'] for o in w.objects()])
    assert again == pytest.approx(np.array([o['position'] for o in objs]))
    assert w.time == pytest.approx(0.5)  # sim time keeps running across a reset


def test_resting_objects_sleep_and_wake_when_pushed():
    w = World(seed=0)
    m, d = w.model, w.data
    tree = m.body_treeid[m.body('object_0').id]
    w.step(1000)
    assert d.tree_awake[tree] == 0  # at rest: asleep (cheap)
    assert d.tree_awake[m.body_treeid[m.body('wrist_3_link').id]] == 1  # the arm never sleeps
    p0 = np.array(w.objects()[0]['position'])
    w.apply_wrench('object_0', [0, 3.0, 0], duration=0.05)
    w.step(300)
    assert np.linalg.norm(np.array(w.objects()[0]['position']) - p0) > 0.05


def test_render_shows_the_objects_where_camera_info_projects_them():
    w = World(seed=3, n_objects=4, cameras=True, width=320, height=240)
    try:
        img = w.render()
        assert img.shape == (240, 320, 3) and img.dtype == np.uint8
        assert img.mean() > 30
        info = w.camera_info()
        k = np.array(info['k']).reshape(3, 3)
        pos, rot = w.body_pose('scene_camera_optical_frame')
        for o in w.objects():
            pc = rot.T @ (np.array(o['position']) - pos)
            u, v, s = k @ pc
            u, v = int(round(u / s)), int(round(v / s))
            assert 2 <= u < 318 and 2 <= v < 238, (o['name'], u, v)
            patch = img[v - 1:v + 2, u - 1:u + 2].reshape(-1, 3).mean(0)
            want = np.array(o['rgba'][:3]) * 255
            # the pixel's colour is the object's (shading changes brightness, not hue)
            cos = patch @ want / (np.linalg.norm(patch) * np.linalg.norm(want) + 1e-9)
            assert cos > 0.95, (o['colour'], patch, want)
        wrist = w.render('wrist_camera')
        assert wrist.shape == (240, 320, 3)
    finally:
        w.close()
