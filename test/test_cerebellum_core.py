"""Cerebellum core, ROS-free: estimator, shaping and jerk limits, bad input, codecs."""
import math

import numpy as np
import pytest

from neurovla_ros import robot
from neurovla_ros.cerebellum.core import Cerebellum
from neurovla_ros.cerebellum.estimator import GRAVITY, StateEstimator
from neurovla_ros.cerebellum.params import NODE_ONLY, PARAMS, CerebellumConfig
from neurovla_ros.cerebellum.shaping import GoalFilter, JerkLimitedTracker
from neurovla_ros.robot.transforms import matrix_to_quat_xyzw, quat_xyzw_to_matrix

MODEL = robot.load()
HOME = MODEL.home_pose()
LIM = MODEL.limits()


def imu_at_rest(q):
    """What a resting IMU reads at q: orientation from the URDF, specific force = R^T (0,0,g)."""
    r = MODEL.fk(q, 'imu_link')[:3, :3]
    return r, r.T @ np.array([0.0, 0.0, GRAVITY])


# ---------------------------------------------------------------- estimator
@pytest.mark.parametrize('q', [HOME, HOME + np.array([0.4, -0.3, 0.2, 0.5, 0.3, -0.7])])
def test_estimator_gravity_at_rest(q):
    est = StateEstimator(MODEL)
    est.reset(q)
    r, f = imu_at_rest(q)
    quat = matrix_to_quat_xyzw(r)
    for _ in range(200):
        est.update(0.004, q, np.zeros(6), np.zeros(3), f, quat)
    est.derived()
    # a resting arm: gravity fully explained, no motion estimated
    np.testing.assert_allclose(est.gravity_imu, f, atol=1e-9)
    assert np.linalg.norm(est.ee_acc) < 1e-6
    assert np.max(np.abs(est.qd_fused)) < 1e-9
    np.testing.assert_allclose(est.ee_pos, MODEL.fk(q)[:3, 3], atol=1e-12)


def test_estimator_gravity_without_orientation_uses_kinematics():
    q = HOME + np.array([0.2, 0.1, -0.2, 0.3, 0.0, 0.4])
    est = StateEstimator(MODEL, kinematics_period=0.0)
    est.reset(q)
    _, f = imu_at_rest(q)
    est.update(0.004, q, np.zeros(6), np.zeros(3), f, None)
    est.derived()
    assert np.linalg.norm(est.ee_acc) < 1e-6


def test_estimator_known_rotation_rate():
    """A constant joint velocity: the gyro the encoders predict equals the true body rate."""
    qd = np.array([0.3, -0.2, 0.25, 0.4, -0.5, 0.6])
    est = StateEstimator(MODEL, kinematics_period=0.0)
    q = HOME.copy()
    est.reset(q)
    dt = 0.002
    def imu_velocity(qq):
        return MODEL.jacobian(qq, 'imu_link')[:3] @ qd

    for _ in range(50):
        q = q + qd * dt
        r = MODEL.fk(q, 'imu_link')[:3, :3]
        w_world = MODEL.jacobian(q, 'imu_link')[3:] @ qd
        gyro = r.T @ w_world
        # true linear acceleration of the IMU point (centripetal included), plus gravity
        acc = (imu_velocity(q + qd * 1e-4) - imu_velocity(q - qd * 1e-4)) / 2e-4
        est.update(dt, q, qd, gyro, r.T @ (acc + np.array([0, 0, GRAVITY])),
                   matrix_to_quat_xyzw(r))
    est.derived()
    np.testing.assert_allclose(est.gyro_pred, gyro, atol=1e-9)
    np.testing.assert_allclose(est.ee_twist, MODEL.jacobian(q) @ qd, atol=1e-3)
    np.testing.assert_allclose(est.qd_fused, qd, atol=5e-3)


def test_estimator_sees_the_oscillation_encoders_miss():
    """Encoders report no motion, the IMU feels a 9 Hz wrist oscillation: the fused joint
    velocity recovers it (above the crossover) on the right joint."""
    est = StateEstimator(MODEL, crossover_hz=2.0, kinematics_period=0.0)
    est.reset(HOME)
    dt, f, amp = 0.002, 9.0, 0.05  # [s], [Hz], [rad/s] on wrist_1
    jac = MODEL.jacobian(HOME, 'imu_link')
    r = MODEL.fk(HOME, 'imu_link')[:3, :3]
    quat = matrix_to_quat_xyzw(r)
    out, truth = [], []
    for k in range(1000):
        t = k * dt
        dq = np.zeros(6)
        dq[3] = amp * math.sin(2 * math.pi * f * t)
        ddq = np.zeros(6)
        ddq[3] = amp * 2 * math.pi * f * math.cos(2 * math.pi * f * t)
        gyro = r.T @ (jac[3:] @ dq)
        acc = r.T @ (jac[:3] @ ddq + np.array([0, 0, GRAVITY]))
        est.update(dt, HOME, np.zeros(6), gyro, acc, quat)
        out.append(est.qd_fused.copy())
        truth.append(dq)
    out, truth = np.array(out[500:]), np.array(truth[500:])
    gain = np.sqrt(np.mean(out[:, 3] ** 2) / np.mean(truth[:, 3] ** 2))
    assert 0.8 < gain < 1.2
    corr = np.corrcoef(out[:, 3], truth[:, 3])[0, 1]
    assert corr > 0.95
    others = np.delete(out, 3, axis=1)
    assert np.sqrt(np.mean(others ** 2)) < 0.2 * amp


def test_estimator_matches_the_simulated_imu():
    """The real MuJoCo body moving in velocity mode: its gyro equals the encoder prediction."""
    from neurovla_ros.sim.world import World
    w = World(seed=0, n_objects=0)
    w.command('velocity', [0.2, -0.3, 0.25, 0.5, -0.4, 0.6])
    w.step(200)
    est = StateEstimator(MODEL, kinematics_period=0.0)
    q, qd, _ = w.joint_state()
    est.reset(q[:6])
    quat, gyro, acc = w.imu()
    est.update(0.001, q[:6], qd[:6], gyro, acc, quat)
    est.derived()
    np.testing.assert_allclose(est.gyro_pred, gyro, atol=0.02)
    np.testing.assert_allclose(quat_xyzw_to_matrix(*quat), est.kin.imu_pose[:3, :3], atol=1e-3)


# ---------------------------------------------------------------- shaping and jerk limits
def run_tracker(tr, goal, steps, dt=0.002):
    xs = []
    for _ in range(steps):
        tr.step(dt, goal, None)
        xs.append(list(tr.x))
    return np.array(xs)


def test_tracker_respects_velocity_acceleration_and_jerk_limits():
    vmax, amax, jmax = 1.0, 2.0, 20.0
    tr = JerkLimitedTracker(LIM['lower'], LIM['upper'], vmax, amax, jmax, bandwidth=30.0)
    tr.reset(HOME)
    goal = (HOME + np.array([1.0, -0.5, 0.3, 0.8, -1.0, 0.2])).tolist()
    dt = 0.002
    xs = run_tracker(tr, goal, 3000, dt)
    v = np.diff(xs, axis=0) / dt
    a = np.diff(v, axis=0) / dt
    j = np.diff(a, axis=0) / dt
    assert np.max(np.abs(v)) <= vmax * 1.001
    assert np.max(np.abs(a)) <= amax * 1.001
    assert np.max(np.abs(j)) <= jmax * 1.001
    np.testing.assert_allclose(xs[-1], goal, atol=1e-3)
    # synchronised limits: every joint arrives along the same straight line in joint space
    path = (xs - HOME) / (np.array(goal) - HOME)
    assert np.max(np.ptp(path[:, [0, 1, 3, 4]], axis=1)) < 0.02


def test_tracker_stays_inside_position_limits():
    tr = JerkLimitedTracker(LIM['lower'], LIM['upper'], 3.0, 30.0, 1000.0, bandwidth=40.0)
    tr.reset(LIM['upper'] - 0.01)
    xs = run_tracker(tr, (LIM['upper'] + 1.0).tolist(), 500)
    assert np.all(xs <= LIM['upper'] + 1e-12)


def test_hold_comes_to_a_smooth_stop():
    tr = JerkLimitedTracker(LIM['lower'], LIM['upper'], 1.0, 2.0, 20.0, bandwidth=20.0)
    tr.reset(HOME)
    run_tracker(tr, (HOME + 1.0).tolist(), 400)
    assert max(abs(v) for v in tr.v) > 0.5
    for _ in range(1000):
        tr.step(0.002, None, None, hold=True)
    assert max(abs(v) for v in tr.v) < 1e-6


def test_goal_filter_smooths_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    gf = GoalFilter(1, alpha=0.32, beta=0.45, restart=0.3, horizon=0.25, timeout=0.5)
    gf.reset([0.0])
    errs, raw = [], []
    for k in range(60):  # 10 Hz goals along a ramp of 0.2 rad/s with 0.01 rad jitter
        t = 0.1 * k
        truth = 0.2 * t
        g = truth + rng.normal(0, 0.01)
        gf.add(t, [g])
        p, v = gf.sample(t + 0.05)
        if k > 20:
            errs.append(p[0] - 0.2 * (t + 0.05))
            raw.append(g - truth)
    assert np.sqrt(np.mean(np.square(errs))) < np.sqrt(np.mean(np.square(raw)))
    assert abs(v[0] - 0.2) < 0.1


def test_goal_filter_restarts_on_a_new_motion():
    gf = GoalFilter(2, restart=0.3)
    gf.reset([0.0, 0.0])
    gf.add(0.0, [0.0, 0.0])
    gf.add(0.1, [1.0, 0.0])  # far from the prediction: a new goal, not jitter
    p, v = gf.sample(0.1)
    assert p.tolist() == [1.0, 0.0] and v.tolist() == [0.0, 0.0]


# ---------------------------------------------------------------- the core: goals and safety
def started(cfg=None, t=0.0):
    cb = Cerebellum(MODEL, cfg or CerebellumConfig())
    r, f = imu_at_rest(HOME)
    cb.set_joints(t, HOME, np.zeros(6))
    cb.set_imu(t, np.zeros(3), f, matrix_to_quat_xyzw(r))
    cb.tick(t, 0.002)
    cb.after_tick()
    return cb, r, f


def feed(cb, t, r, f, q=None, imu=True, qd=None):
    cb.set_joints(t, HOME if q is None else q, np.zeros(6) if qd is None else qd)
    if imu:
        cb.set_imu(t, np.zeros(3), f, matrix_to_quat_xyzw(r))
    cb.tick(t, 0.002)
    cb.after_tick()


def test_bad_goals_are_refused_with_a_reason():
    cb, r, f = started()
    bad = [
        cb.accept_joint_goal(0.0, [0.0] * 5),
        cb.accept_joint_goal(0.0, [float('nan')] * 6),
        cb.accept_joint_goal(0.0, (HOME + np.array([0, 0, 5.0, 0, 0, 0])).tolist()),
        cb.accept_pose_goal(0.0, [0.45, 0.0, 0.25], [0.0, 0.0, 0.0, 0.0]),
        cb.accept_pose_goal(0.0, [0.45, float('inf'), 0.25], [0.0, 0.0, 0.0, 1.0]),
        cb.accept_pose_goal(0.0, [0.45, 0.0, -0.2], [0.0, 1.0, 0.0, 0.0]),
        cb.accept_pose_goal(0.0, [2.5, 0.0, 0.3], [0.0, 1.0, 0.0, 0.0]),
        cb.accept_pose_goal(0.0, [0.45, 0.0, 0.25], [0.0, 1.0, 0.0, 0.0], frame='camera'),
        cb.accept_trajectory(0.0, [0.1, 0.1], [HOME, HOME]),
        cb.accept_trajectory(0.0, [0.1], [HOME[:5]]),
        cb.accept_twist(0.0, [float('nan'), 0, 0], [0, 0, 0]),
        cb.accept_twist(0.0, [0.1, 0, 0], [0, 0, 0], frame='map'),
    ]
    for ok, why in bad:
        assert not ok and why
    assert cb.intake.rejected == len(bad) and cb.intake.rejected_not_ready == 0
    # nothing moved
    feed(cb, 0.002, r, f)
    np.testing.assert_allclose(cb.ref_pos, HOME, atol=1e-9)


def test_pose_goal_moves_the_reference_smoothly_within_limits():
    cb, r, f = started(CerebellumConfig(tremor_enabled=False))  # shaping only
    target = MODEL.fk(HOME)
    target[:3, 3] += [0.05, 0.04, -0.03]
    ok, why = cb.accept_pose_goal(0.0, target[:3, 3], matrix_to_quat_xyzw(target[:3, :3]))
    assert ok, why
    refs = []
    t = 0.0
    for _ in range(1500):
        t += 0.002
        feed(cb, t, r, f, q=cb.ref_pos.copy(), qd=cb.ref_vel.copy())  # a perfect arm
        refs.append(cb.ref_pos.copy())
        assert np.all(cb.ref_pos >= LIM['lower']) and np.all(cb.ref_pos <= LIM['upper'])
        assert np.all(np.abs(cb.ref_vel) <= LIM['velocity'])
    got = MODEL.fk(refs[-1])[:3, 3]
    assert np.linalg.norm(got - target[:3, 3]) < 0.003
    j = np.diff(np.array(refs), n=3, axis=0) / 0.002 ** 3
    assert np.max(np.abs(j)) <= cb.cfg.max_jerk * 1.01


def test_stale_sensors_hold_stop_adapting_and_refuse_goals():
    cb, r, f = started()
    cb.accept_joint_goal(0.0, (HOME + 0.3).tolist())
    t = 0.0
    for _ in range(200):
        t += 0.002
        feed(cb, t, r, f)
    assert max(abs(v) for v in cb.tracker.v) > 0.1
    # the IMU stops: hold, stop, no learning, goals refused
    for _ in range(600):
        t += 0.002
        feed(cb, t, r, f, imu=False)
    assert cb.holding and not cb.adapting
    assert 'stale /imu/data' in cb.now_stale_reason()
    assert np.max(np.abs(cb.ref_vel)) < 1e-6
    ok, why = cb.accept_joint_goal(t, HOME.tolist())
    assert not ok and 'stale' in why
    assert cb.intake.rejected == cb.intake.rejected_not_ready == 1   # valid, but not now
    held = cb.ref_pos.copy()
    for _ in range(50):
        t += 0.002
        cb.tick(t, 0.002)  # joints stale too now
    np.testing.assert_allclose(cb.ref_pos, held, atol=1e-9)
    # sensors back: goals accepted again
    feed(cb, t + 0.002, r, f)
    assert cb.accept_joint_goal(t + 0.002, HOME.tolist())[0]


def test_teleop_twist_moves_the_tcp_and_times_out():
    cb, r, f = started(CerebellumConfig(tremor_enabled=False))  # shaping only
    p0 = MODEL.fk(HOME)[:3, 3]
    t = 0.0
    for _ in range(500):  # 1 s of +x at 5 cm/s, refreshed at 100 Hz
        t += 0.002
        if round(t / 0.002) % 5 == 0:
            assert cb.accept_twist(t, [0.05, 0.0, 0.0], [0.0, 0.0, 0.0], 'base_link')[0]
        feed(cb, t, r, f, q=cb.ref_pos.copy(), qd=cb.ref_vel.copy())
    for _ in range(500):  # no more twists: the servo stops (0.1 s timeout)
        t += 0.002
        feed(cb, t, r, f, q=cb.ref_pos.copy(), qd=cb.ref_vel.copy())
    moved = MODEL.fk(cb.ref_pos)[:3, 3] - p0
    assert 0.03 < moved[0] < 0.07
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01
    assert np.max(np.abs(cb.ref_vel)) < 1e-3


def test_trajectory_goal_is_followed():
    cb, r, f = started(CerebellumConfig(tremor_enabled=False))  # shaping only
    pts = [HOME + d for d in (np.full(6, 0.05), np.full(6, 0.1), np.full(6, 0.12))]
    assert cb.accept_trajectory(0.0, [0.3, 0.6, 0.9], pts)[0]
    t = 0.0
    for _ in range(1500):
        t += 0.002
        feed(cb, t, r, f, q=cb.ref_pos.copy())
    np.testing.assert_allclose(cb.ref_pos, pts[-1], atol=2e-3)


def test_the_config_is_made_from_the_parameter_schema():
    """One source of names and defaults: every parameter but the node-only ones is a field,
    with the parameter's default."""
    cfg = CerebellumConfig()
    fields = set(vars(cfg))
    assert fields == {p.name for p in PARAMS} - set(NODE_ONLY)
    for p in PARAMS:
        if p.name not in NODE_ONLY:
            assert getattr(cfg, p.name) == p.default, p.name
    c = CerebellumConfig.from_values({'rate_hz': 250.0, 'unrelated': 1})
    assert c.rate_hz == 250.0 and c.max_jerk == cfg.max_jerk


def test_linear_baseline_holds_the_measured_pose_until_a_goal_then_interpolates():
    cb, r, f = started(CerebellumConfig(smoothing='linear'))
    t = 0.0
    for _ in range(100):
        t += 0.002
        feed(cb, t, r, f, q=cb.ref_pos.copy())
    np.testing.assert_allclose(cb.ref_pos, HOME, atol=1e-12)
    goal = HOME + 0.02
    cb.accept_joint_goal(t, goal.tolist())   # first goal: straight line over 0.5 s at most
    for _ in range(300):
        t += 0.002
        feed(cb, t, r, f, q=cb.ref_pos.copy())
    np.testing.assert_allclose(cb.ref_pos, goal, atol=1e-9)
    assert cb.canceller.weight_norm == 0.0


def test_ruckig_baseline_follows_the_low_passed_goal_within_the_limits():
    """smoothing ruckig (Butterworth low-pass + Ruckig, re-targeted every tick): it reaches a
    goal step with velocity, acceleration and jerk inside the tracker's limits (finite
    differences of the reference itself), holds when the sensors go stale, never cancels."""
    cb, r, f = started(CerebellumConfig(smoothing='ruckig', ruckig_lowpass_hz=2.0))
    tr = cb.tracker
    t, dt = 0.0, 0.002
    goal = HOME + np.array([0.3, -0.2, 0.2, 0.3, -0.3, 0.25])
    assert cb.accept_joint_goal(t, goal)[0]
    xs = []
    for _ in range(2500):
        t += dt
        feed(cb, t, r, f, q=cb.ref_pos.copy())
        xs.append(cb.ref_pos.copy())
    np.testing.assert_allclose(cb.ref_pos, goal, atol=1e-4)
    x = np.array(xs)
    v = np.diff(x, axis=0) / dt
    a = np.diff(v, axis=0) / dt
    j = np.diff(a, axis=0) / dt
    assert np.all(np.abs(v).max(axis=0) <= tr.vmax * 1.001)
    assert np.all(np.abs(a).max(axis=0) <= tr.amax * 1.01)
    assert np.all(np.abs(j).max(axis=0) <= tr.jmax * 1.01)
    assert np.abs(v).max() > 0.5 * tr.vmax.min()     # it moved at speed, not crawled
    assert cb.follower.errors == 0 and cb.canceller.weight_norm == 0.0
    # a new goal, then the IMU goes stale: Ruckig brakes to a stop at the same limits
    assert cb.accept_joint_goal(t, HOME)[0]
    for _ in range(200):
        t += dt
        feed(cb, t, r, f, q=cb.ref_pos.copy())
    assert np.abs(cb.ref_vel).max() > 0.1
    stopped = []
    for _ in range(1000):
        t += dt
        feed(cb, t, r, f, q=cb.ref_pos.copy(), imu=False)
        stopped.append(cb.ref_pos.copy())
    assert cb.holding and np.abs(cb.ref_vel).max() < 1e-9
    s = np.array(stopped)
    assert np.abs(np.diff(s, 2, axis=0) / dt ** 2).max() <= tr.amax.max() * 1.01
    np.testing.assert_allclose(s[-1], s[-100], atol=1e-12)
