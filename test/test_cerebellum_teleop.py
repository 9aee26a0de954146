"""Teleop in the cerebellum, ROS-free: halt on timeout / zero twist (MoveIt Servo conventions),
no snap-back, limits with their reasons, the jerk-limited brake, and the teleop/cortex rule."""
import math

import numpy as np
import pytest

from neurovla_ros import robot
from neurovla_ros.cerebellum.core import Cerebellum, CerebellumConfig
from neurovla_ros.cerebellum.estimator import GRAVITY
from neurovla_ros.cerebellum.goals import JOINT_LIMIT_MARGIN, SERVO
from neurovla_ros.cerebellum.shaping import JerkLimitedTracker
from neurovla_ros.cerebellum.teleop import CORTEX, TELEOP, TeleopArbiter
from neurovla_ros.robot.transforms import matrix_to_quat_xyzw

MODEL = robot.load()
HOME = MODEL.home_pose()
LIM = MODEL.limits()
DT = 0.002


class PerfectArm:
    """The core fed with an ideal arm (the measured state is the reference) and a resting IMU."""

    def __init__(self, cfg=None, q=HOME):
        self.cb = Cerebellum(MODEL, cfg or CerebellumConfig(tremor_enabled=False))
        r = MODEL.fk(q, 'imu_link')[:3, :3]
        self.quat, self.f = matrix_to_quat_xyzw(r), r.T @ np.array([0.0, 0.0, GRAVITY])
        self.t = 0.0
        self.cb.set_joints(0.0, q, np.zeros(6))
        self.step()

    def step(self):
        cb = self.cb
        if self.t > 0.0:
            cb.set_joints(self.t, cb.ref_pos.copy(), cb.ref_vel.copy())
        cb.set_imu(self.t, np.zeros(3), self.f, self.quat)
        cb.tick(self.t, DT)
        cb.after_tick()
        self.t += DT

    def tcp(self):
        return MODEL.fk(self.cb.ref_pos)[:3, 3]

    def tcp_speed(self):
        return float(np.linalg.norm(MODEL.jacobian(self.cb.ref_pos)[:3] @ self.cb.ref_vel))

    def jog(self, seconds, linear, angular=(0.0, 0.0, 0.0), frame='base_link', rate=30.0):
        """Twists at ``rate`` for ``seconds``; returns the time of the last one."""
        last, next_t, end = None, self.t, self.t + seconds
        while self.t < end:
            if self.t >= next_t:
                ok, why = self.cb.accept_twist(self.t, linear, angular, frame)
                assert ok, why
                last, next_t = self.t, next_t + 1.0 / rate
            self.step()
        return last


def brake_time(v, a, j):
    """Time-optimal stop from speed v with acceleration limit a and jerk limit j [s]."""
    return v / a + a / j if v > a * a / j else 2.0 * math.sqrt(v / j)


@pytest.mark.parametrize('speed', [0.05, 0.25])
def test_twist_timeout_halts_within_the_brake_limits_without_reversing(speed):
    arm = PerfectArm()
    cfg = arm.cb.cfg
    t_last = arm.jog(0.6, [0.0, speed, 0.0])
    v_joint = float(np.max(np.abs(arm.cb.ref_vel)))
    p_last, halted, track, refs = arm.tcp(), None, [], []
    while arm.t < t_last + 0.6:
        arm.step()
        track.append(arm.tcp())
        refs.append(arm.cb.ref_pos.copy())
        if halted is None and arm.tcp_speed() < 1e-4:
            halted = arm.t - t_last
    bound = cfg.twist_timeout + brake_time(v_joint, cfg.halt_acceleration, cfg.halt_jerk) + 0.01
    assert halted is not None and halted <= bound, (halted, bound)
    assert halted > cfg.twist_timeout          # it did move on until the timeout
    y = np.array(track)[:, 1]
    assert np.all(np.diff(y) >= -1e-7), 'the tool went back after the timeout'
    assert y[-1] > p_last[1]
    # the braking reference stays within the halt limits (finite differences)
    r = np.array(refs)
    acc = np.diff(r, n=2, axis=0) / DT ** 2
    jerk = np.diff(r, n=3, axis=0) / DT ** 3
    assert np.max(np.abs(acc)) <= cfg.halt_acceleration * 1.02
    assert np.max(np.abs(jerk)) <= cfg.halt_jerk * 1.02


def test_zero_twists_stop_where_the_motion_ends_no_snap_back():
    arm = PerfectArm()
    arm.jog(0.5, [0.0, 0.0, 0.1])
    z_at_zero = arm.tcp()[2]
    zs = []
    for _ in range(100):                       # 100 zero twists at 30 Hz
        assert arm.cb.accept_twist(arm.t, [0, 0, 0], [0, 0, 0], 'base_link')[0]
        for _ in range(17):
            arm.step()
            zs.append(arm.tcp()[2])
    assert np.all(np.diff(zs) >= -1e-7), 'snap-back: the tool moved back'
    assert zs[-1] >= z_at_zero                  # it stopped ahead, where the brake ended
    assert zs[-1] - z_at_zero < 0.01
    assert arm.tcp_speed() < 1e-6


def test_a_new_twist_starts_from_where_the_halt_ended():
    arm = PerfectArm()
    arm.jog(0.4, [0.1, 0.0, 0.0])
    for _ in range(300):
        arm.step()
    stopped = arm.tcp()
    arm.jog(0.3, [-0.05, 0.0, 0.0])
    assert arm.tcp()[0] < stopped[0]           # the new direction, no jump back first


def test_a_zero_twist_preempts_and_brakes_a_cortex_motion():
    arm = PerfectArm()
    target = MODEL.fk(HOME)
    target[:3, 3] += [0.0, 0.15, 0.0]
    assert arm.cb.accept_pose_goal(arm.t, target[:3, 3],
                                   matrix_to_quat_xyzw(target[:3, :3]))[0]
    for _ in range(150):
        arm.step()
    assert arm.tcp_speed() > 0.05
    assert arm.cb.accept_twist(arm.t, [0, 0, 0], [0, 0, 0], 'base_link')[0]
    assert arm.cb.intake.source == SERVO
    ys = []
    for _ in range(200):
        arm.step()
        ys.append(arm.tcp()[1])
    assert np.all(np.diff(ys) >= -1e-7)        # braked forward, not pulled back
    assert arm.tcp_speed() < 1e-6
    assert ys[-1] < target[1, 3] - 0.02        # stopped short of the cortex goal


def test_a_dragged_pose_stream_ends_exactly_where_the_goal_filter_stops_short():
    """Teleop poses (exact) along a 1 s drag at 20 Hz end at the last pose as given; the
    same stream through the cortex's goal filter (alpha-beta) ends where its estimate ended."""
    start = MODEL.fk(HOME)
    quat = matrix_to_quat_xyzw(start[:3, :3])
    ends = {}
    for exact in (True, False):
        arm = PerfectArm()
        for k in range(1, 21):
            p = start[:3, 3] + [0.0, 0.004 * k, -0.0025 * k]
            ok, why = arm.cb.accept_pose_goal(arm.t, p, quat, exact=exact)
            assert ok, why
            for _ in range(25):
                arm.step()
        for _ in range(1500):
            arm.step()
        ends[exact] = float(np.linalg.norm(arm.tcp() - p))
    assert ends[True] < arm.cb.cfg.ik_position_tolerance
    assert ends[False] > 2 * arm.cb.cfg.ik_position_tolerance, ends


def test_tool_frame_twist_moves_along_the_tool_axis():
    arm = PerfectArm()
    p0, z_tool = arm.tcp(), MODEL.fk(HOME)[:3, 2]
    arm.jog(0.5, [0.0, 0.0, 0.05], frame='tcp_link')
    d = arm.tcp() - p0
    assert np.dot(d, z_tool) > 0.015
    assert np.linalg.norm(d - np.dot(d, z_tool) * z_tool) < 0.3 * np.linalg.norm(d)


def test_limits_are_applied_and_named():
    arm = PerfectArm()
    cb = arm.cb
    assert cb.accept_twist(arm.t, [2.0, 0, 0], [0, 0, 0])[0]
    assert 'tool speed' in cb.intake.last_twist_limit and cb.intake.twists_limited == 1
    tool_v = MODEL.jacobian(cb.tracker.x)[:3] @ cb.intake.servo_qd
    np.testing.assert_allclose(np.linalg.norm(tool_v), cb.cfg.max_linear_speed, rtol=0.02)
    assert cb.accept_twist(arm.t, [0, 0, 0], [0, 0, 9.0])[0]
    assert 'tool rotation' in cb.intake.last_twist_limit
    # a joint at its limit moving outward halts the twist, named
    arm2 = PerfectArm(q=np.r_[HOME[:5], LIM['upper'][5] - JOINT_LIMIT_MARGIN / 2])
    assert arm2.cb.accept_twist(arm2.t, [0, 0, 0], [0, 0, 0.5], 'tcp_link')[0]
    assert 'wrist_3_joint' in arm2.cb.intake.last_twist_limit
    assert not np.any(arm2.cb.intake.servo_qd)
    assert arm2.cb.accept_twist(arm2.t, [0, 0, 0], [0, 0, -0.5], 'tcp_link')[0]  # inward: ok
    assert np.any(arm2.cb.intake.servo_qd)


def test_the_workspace_floor_is_never_crossed():
    arm = PerfectArm(CerebellumConfig(tremor_enabled=False, workspace_min_z=0.2))
    assert arm.tcp()[2] > 0.22
    arm.jog(3.0, [0.0, 0.0, -0.2])
    assert arm.tcp()[2] >= 0.2 - 1e-3
    assert 'workspace floor' in arm.cb.intake.last_twist_limit
    arm.jog(0.3, [0.0, 0.0, 0.05])           # up again: not limited
    assert arm.tcp()[2] > 0.2 + 0.005


def test_refused_twists_say_why():
    arm = PerfectArm()
    for args, word in (([[0, math.inf, 0], [0, 0, 0]], 'NaN or inf'),
                       ([[0, 0], [0, 0, 0]], 'expected 3'),
                       ([[0, 0, 0], [0, 0, 0], 'map'], "'map'")):
        ok, why = arm.cb.accept_twist(arm.t, *args)
        assert not ok and word in why and arm.cb.intake.last_rejection == why
    fresh = Cerebellum(MODEL)
    ok, why = fresh.accept_twist(0.0, [0.1, 0, 0], [0, 0, 0])
    assert not ok and 'no joint state' in why


def test_brake_keeps_the_direction_and_stops_in_the_optimal_time():
    lo, hi = LIM['lower'], LIM['upper']
    tr = JerkLimitedTracker(lo, hi, LIM['velocity'], 3.0, 100.0)
    tr.reset(HOME)
    d = np.array([0.5, -0.25, 0.1, 0.0, 0.3, -0.05])
    tr.v = d.tolist()
    x0, t = np.array(tr.x), 0.0
    a_lim, j_lim = 10.0, 1000.0
    while max(abs(v) for v in tr.v) > 0.0 and t < 1.0:
        tr.brake(DT, a_lim, j_lim)
        t += DT
        assert max(abs(a) for a in tr.a) <= a_lim + 1e-9
    assert t <= brake_time(0.5, a_lim, j_lim) + 2 * DT
    moved = np.array(tr.x) - x0
    np.testing.assert_allclose(moved / np.linalg.norm(moved), d / np.linalg.norm(d), atol=2e-3)
    for _ in range(50):                        # then it holds
        tr.brake(DT, a_lim, j_lim)
    np.testing.assert_allclose(np.array(tr.x) - x0, moved, atol=1e-12)


def test_arbiter_rule():
    arb = TeleopArbiter(hold_time=2.0)
    assert arb.owner(0.0) == CORTEX and arb.cortex_refusal(0.0) is None
    arb.teleop_input(1.0)
    assert arb.owner(1.5) == TELEOP
    why = arb.cortex_refusal(1.5)
    assert why and 'teleop has the arm' in why and '1.5 s' in why
    assert arb.preempted == 1
    assert arb.owner(3.0) == CORTEX and arb.cortex_refusal(3.0) is None   # timed out
    arb.teleop_input(4.0)
    assert arb.release() and arb.owner(4.1) == CORTEX and arb.handbacks == 1
    assert not arb.release()                  # nothing to hand back
    forever = TeleopArbiter(hold_time=0.0)
    forever.teleop_input(0.0)
    assert forever.owner(1e6) == TELEOP and math.isinf(forever.hold_left(1e6))
    assert 'until handed back' in forever.cortex_refusal(1e6)
    forever.release()
    assert forever.owner(1e6) == CORTEX
