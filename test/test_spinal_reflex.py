"""Reflex arc (no ROS) on signals recorded from the real MuJoCo body: momentum observer,
contact vs. fast free motion vs. tremor, dropped samples, withdrawal planning, the full arc."""
import numpy as np
import pytest

from neurovla_ros import robot
from neurovla_ros.common.servo import JointGains
from neurovla_ros.robot.dynamics import ArmDynamics
from neurovla_ros.sim.world import World
from neurovla_ros.spinal.controller import COMPLIANT, HOLD, WITHDRAW, SpinalConfig, SpinalController
from neurovla_ros.spinal.motion import random_motion
from neurovla_ros.spinal.reflex import (
    CollisionDetector,
    DetectorConfig,
    Withdrawal,
    WithdrawConfig,
    WrenchDetector,
    min_jerk,
)


@pytest.fixture(scope='module')
def model():
    return robot.load()


@pytest.fixture(scope='module')
def dyn():
    return ArmDynamics()


@pytest.fixture(scope='module')
def gains(model, dyn):
    return JointGains.for_arm(model, dyn)


def drive(world, gains, q_ref, qd_ref, on_step=None, every=1):
    """Track the reference with the PD controller; yield (k, q, qd, effort) samples
    (every ``every``-th step, to emulate dropped messages)."""
    world.reset(q=q_ref[0])
    for k in range(len(q_ref)):
        q, qd, eff = world.joint_state()
        world.command('effort', gains.pd_torque(q_ref[k], qd_ref[k], q[:6], qd[:6]))
        if on_step is not None:
            on_step(k)
        world.step()
        if k % every == 0:
            yield k, *world.joint_state()


def run_detector(det, samples, dt):
    hits, rmax = [], np.zeros(6)
    for k, q, qd, eff in samples:
        if det.update(q, qd, eff, dt):
            hits.append(k)
        det.prepare(q, qd, eff, dt)
        rmax = np.maximum(rmax, np.abs(det.r))
    return hits, rmax


def make_detector(dyn, model, **kw):
    lim = model.limits()
    return CollisionDetector(dyn, lim['damping'], lim['friction'], DetectorConfig(**kw))


@pytest.fixture(scope='module')
def fast_motion(model):
    # peak joint speeds up to 90 % of the URDF limits, short moves: strong self-generated torques
    q, qd = random_motion(np.random.default_rng(7), 4.0, speed=0.9, move_time=(0.3, 0.6),
                          rest_prob=0.1)
    assert np.max(np.abs(qd)) > 2.0
    return q, qd


def test_fast_free_motion_does_not_trigger(dyn, model, gains, fast_motion):
    world = World(seed=0, n_objects=0)
    det = make_detector(dyn, model)
    hits, rmax = run_detector(det, drive(world, gains, *fast_motion), 1e-3)
    assert hits == []
    # the model explains the arm's own motion: residual well under the thresholds
    assert np.all(rmax < 0.6 * np.asarray(det.cfg.thresholds)), rmax


def test_free_motion_with_dropped_samples_does_not_trigger(dyn, model, gains, fast_motion):
    world = World(seed=0, n_objects=0)
    det = make_detector(dyn, model)
    hits, _ = run_detector(det, drive(world, gains, *fast_motion, every=2), 2e-3)
    assert hits == []


@pytest.mark.parametrize('link,force', [('forearm_link', (0.0, 40.0, 0.0)),
                                        ('upper_arm_link', (30.0, 0.0, 0.0)),
                                        ('gripper_base_link', (0.0, 0.0, 35.0))])
def test_contact_during_motion_is_detected_in_one_sample(dyn, model, gains, fast_motion,
                                                         link, force):
    world = World(seed=0, n_objects=0)
    det = make_detector(dyn, model)
    onset = 1500
    pushed = {}

    def push(k):
        if k == onset:
            world.apply_wrench(link, force, duration=0.05)
            pushed['jac'] = world_jacobian(world, link)

    hits, _ = run_detector(det, drive(world, gains, *fast_motion, on_step=push), 1e-3)
    assert hits and hits[0] == onset          # the state right after the first pushed step
    assert all(onset <= h < onset + 60 for h in hits)
    # with the one-sample observer, r is the external torque J^T F at the contact
    world2 = World(seed=0, n_objects=0)
    det2 = make_detector(dyn, model)
    for k, q, qd, eff in drive(world2, gains, *fast_motion, on_step=lambda k: (
            world2.apply_wrench(link, force, duration=0.05) if k == onset else None)):
        det2.update(q, qd, eff, 1e-3)
        det2.prepare(q, qd, eff, 1e-3)
        if k == onset:
            break
    expected = pushed['jac'].T @ np.asarray(force)
    np.testing.assert_allclose(det2.r, expected, atol=0.6 + 0.05 * np.abs(expected).max())


def world_jacobian(world, link):
    import mujoco
    jacp = np.zeros((3, world.model.nv))
    mujoco.mj_jacBodyCom(world.model, world.data, jacp, None, world.model.body(link).id)
    return jacp[:, :6]


def test_tremor_does_not_trigger(dyn, model, gains):
    # 1.5 N m tremor at 8 and 12 Hz over the wrist joints, switched on abruptly during motion
    q, qd = random_motion(np.random.default_rng(3), 3.0, speed=0.6)
    for f in (8.0, 12.0):
        world = World(seed=0, n_objects=0)
        det = make_detector(dyn, model)
        def on(k, w=world, f=f):
            if k == 300:
                w.set_tremor(1.5, f)
        hits, rmax = run_detector(det, drive(world, gains, q, qd, on_step=on), 1e-3)
        assert hits == [], f
        assert rmax[3:].max() > 0.8      # the tremor is seen, it just does not trigger
    # a collision on top of the tremor still does
    world = World(seed=0, n_objects=0)
    det = make_detector(dyn, model)

    def both(k):
        if k == 300:
            world.set_tremor(1.5, 8.0)
        if k == 2000:
            world.apply_wrench('forearm_link', (0, 0, -40.0), duration=0.05)
    hits, _ = run_detector(det, drive(world, gains, q, qd, on_step=both), 1e-3)
    assert hits and 2000 <= hits[0] <= 2002


def test_wrench_detector_steps_not_slow_changes():
    wd = WrenchDetector(threshold=10.0, tau=0.05)
    f = np.array([0.0, 0.0, -6.0])
    hits = []
    for k in range(400):        # gripper weight turning slowly + a 20 N push at k = 300
        g = np.array([6 * np.sin(k * 0.01), 0, -6 * np.cos(k * 0.01)])
        f = g + (np.array([0, 20.0, 0]) if k >= 300 else 0)
        hits.append(wd.update(f, 1e-3))
    assert not any(hits[:300]) and hits[300]


# ---------------------------------------------------------------- withdrawal
def test_min_jerk_profile():
    assert min_jerk(0.0) == (0.0, 0.0) and min_jerk(1.0) == (1.0, 0.0)
    s, ds = min_jerk(0.5)
    assert s == pytest.approx(0.5) and ds == pytest.approx(1.875)


def test_withdrawal_moves_along_the_contact_force(dyn, model):
    lim = model.limits()
    cfg = WithdrawConfig(distance=0.05, duration=0.2, max_joint=0.5, min_height=0.03)
    wd = Withdrawal(dyn, lim['lower'], lim['upper'], cfg)
    q8 = np.r_[model.home_pose(), 0.04, 0.04]
    dyn.set_state(q8)
    jac = dyn.tcp_jacobian()
    force = np.array([-30.0, 10.0, 20.0])        # pushes the tool back, sideways and up
    dq = wd.plan(q8, jac.T @ force, np.zeros(8), t0=1.0)
    move = jac @ dq
    assert np.dot(move, force) / (np.linalg.norm(move) * np.linalg.norm(force)) > 0.5
    assert np.linalg.norm(move) == pytest.approx(0.05, rel=0.2)
    q_start, _, done = wd.reference(1.0)
    np.testing.assert_allclose(q_start, q8[:6])
    q_end, qd_end, done = wd.reference(1.2)
    assert done and np.allclose(q_end, q8[:6] + dq) and not qd_end.any()


def test_withdrawal_stays_above_the_table(dyn, model):
    lim = model.limits()
    wd = Withdrawal(dyn, lim['lower'], lim['upper'],
                    WithdrawConfig(distance=0.3, max_joint=1.0, min_height=0.2))
    q8 = np.r_[model.home_pose(), 0.04, 0.04]        # tcp at ~0.25 m
    dyn.set_state(q8)
    jac = dyn.tcp_jacobian()
    dq = wd.plan(q8, jac.T @ np.array([0, 0, -50.0]), np.zeros(8), t0=0.0)   # pushed down
    q_t = q8.copy()
    q_t[:6] += dq
    dyn.set_state(q_t)
    assert dyn.tcp_position()[2] >= 0.2 - 1e-9


# ---------------------------------------------------------------- the whole arc
def run_arc(model, plan_at_once=False):
    """A push on the forearm during a move, closed loop on the MuJoCo body: the controller's
    modes, commands, the tick of its event (and the event) and the forearm's height."""
    cfg = SpinalConfig(quiet_time=0.3, withdraw=WithdrawConfig(distance=0.05, duration=0.2))
    ctrl = SpinalController(cfg=cfg)
    if plan_at_once:    # the plan inside the tick, before the first command
        start = ctrl._start_reflex
        ctrl._start_reflex = lambda q, qd, t, channel='joint_torque', defer=False: start(
            q, qd, t, channel)
    world = World(seed=0, n_objects=0)
    home = model.home_pose()
    target = home + np.array([0.5, 0, 0, 0, 0, 0])
    world.reset(q=home)
    force = np.array([0.0, 0.0, 40.0])              # push the forearm up during the move
    out = {'modes': [], 'commands': [], 'link_z': [], 'event': None}
    for k in range(1500):
        t = world.time
        s, ds = min_jerk(min(1.0, t / 0.8))
        ctrl.set_reference(home + (target - home) * s, (target - home) * ds / 0.8, now=t)
        q, qd, eff = world.joint_state()
        tau = ctrl.step(q, qd, eff, t, 1e-3, t)
        if ctrl.last_event is not None and out['event'] is None:
            out['event'], out['t_event'] = ctrl.last_event, t
            out['planned_in_tick'] = ctrl.last_event.offset is not None
        ctrl.after_tick(q, qd, eff, 1e-3)
        world.command('effort', tau)
        if k == 400:
            out['onset'] = world.apply_wrench('forearm_link', force, duration=0.1)
        world.step()
        out['modes'].append(ctrl.mode)
        out['commands'].append(list(tau))
        out['link_z'].append(world.data.xipos[world.model.body('forearm_link').id][2])
    out['events'] = ctrl.events
    out['withdraw_dq'] = ctrl.withdrawal.dq.copy()
    return out


def test_collision_during_motion_withdraws_then_recovers(model):
    arc = run_arc(model)
    modes, link_z = arc['modes'], arc['link_z']
    assert arc['event'] is not None and 0 < arc['t_event'] - arc['onset'] <= 0.0021
    assert arc['events'] == 1
    assert WITHDRAW in modes and COMPLIANT in modes
    # the pushed point (the forearm's centre of mass) moved along the push (up)
    assert link_z[650] - link_z[400] > 0.01
    # recovered after the quiet time: following the reference again (via hold/engage)
    assert modes[-1] not in (WITHDRAW, COMPLIANT) and HOLD in modes[modes.index(COMPLIANT):]
    # the tick that detects sends its brake without planning; after_tick plans, and the whole
    # withdrawal equals the one planned before the first command, to the last bit
    assert not arc['planned_in_tick']
    np.testing.assert_array_equal(arc['event'].offset, arc['withdraw_dq'])
    assert np.linalg.norm(arc['event'].offset) > 0.01
    at_once = run_arc(model, plan_at_once=True)
    assert at_once['planned_in_tick']
    assert arc['commands'] == at_once['commands']
    np.testing.assert_array_equal(arc['event'].offset, at_once['event'].offset)


def test_a_contact_does_not_desensitise_the_detector(dyn, model, gains, fast_motion):
    # two pushes 0.4 s apart: the second one is detected in one sample like the first
    world = World(seed=0, n_objects=0)
    det = make_detector(dyn, model)

    def push(k):
        if k in (1500, 1900):
            world.apply_wrench('forearm_link', (0.0, 0.0, 40.0), duration=0.1)
    hits, _ = run_detector(det, drive(world, gains, *fast_motion, on_step=push), 1e-3)
    assert 1500 in hits and 1900 in hits and 1899 not in hits


def test_compiled_observer_equals_the_numpy_reference(model, gains, fast_motion):
    """The C observer (``_core.Observer``) against the numpy ``update``: fast motion, contacts
    and dropped samples (2 ms gaps), compared to the last bit every sample."""
    lim = model.limits()
    fast, ref = (CollisionDetector(ArmDynamics(), lim['damping'], lim['friction'],
                                   DetectorConfig(), compiled=c) for c in (True, False))
    assert fast._fast is not None and ref._fast is None
    world = World(seed=1, n_objects=0)
    pushes = {400: ('forearm_link', (0.0, 0.0, 40.0)), 1600: ('wrist_2_link', (25.0, 0.0, 0.0))}

    def push(k):
        if k in pushes:
            world.apply_wrench(*pushes[k], duration=0.05)
    hits = 0
    for k, q, qd, eff in drive(world, gains, *fast_motion, on_step=push):
        dt = 2e-3 if 2000 <= k < 2300 and k % 2 else 1e-3     # some dropped samples
        if 2000 <= k < 2300 and not k % 2:
            continue
        got = [det.update(q, qd, eff, dt) for det in (fast, ref)]
        assert got[0] == got[1], k
        hits += got[0]
        for name in ('r', 'hit', '_abs', '_qacc'):
            np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
        np.testing.assert_array_equal(fast.dyn.data.qacc, ref.dyn.data.qacc)
        for det in (fast, ref):
            det.prepare(q, qd, eff, dt)
    assert hits > 0 and fast.samples == ref.samples
