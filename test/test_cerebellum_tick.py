"""The cerebellum's tick in C (``_tick.c``) against its numpy reference, bit for bit.

Closed loop on the real MuJoCo body with a 7 Hz tremor torque under the real spinal
controller, driven by the compiled cerebellum: 10 Hz noisy joint goals, a pose goal, a teleop
twist, a joint trajectory, stale IMU and joint samples, the two baselines switched in and out
(linear, ruckig), the canceller switched off and on, and a reflex followed by a resync. After
every tick all the state the C code works on (every bound array and every scalar slot) is the
same, to the last bit, in the numpy twin fed the same inputs.
"""
import math

import numpy as np
import pytest

from neurovla_ros import robot
from neurovla_ros.cerebellum.core import Cerebellum
from neurovla_ros.cerebellum.params import CerebellumConfig
from neurovla_ros.cerebellum.state import layout
from neurovla_ros.robot.transforms import matrix_to_quat_xyzw

MODEL = robot.load()
HOME = MODEL.home_pose()


def state_bytes(cb: Cerebellum) -> dict:
    """Every scalar slot (its bits) and every array (its bytes) the C tick works on."""
    slots, arrays = cb.shared_state()
    out = {f'{k}.{name}': v for k, o in slots.items()
           for name, v in zip(layout(type(o)), o._s.view(np.int64).tolist())}
    out.update({k: a.tobytes() for k, a in arrays.items()})
    return out


def first_difference(a: dict, b: dict) -> str:
    return next((k for k in a if a[k] != b[k]), '')


def test_compiled_tick_equals_the_numpy_reference_bit_for_bit():
    from neurovla_ros.sim.world import World
    from neurovla_ros.spinal.controller import SpinalController
    fast, ref = (Cerebellum(MODEL, CerebellumConfig(), compiled=c) for c in (True, False))
    assert fast.compiled and not ref.compiled      # the extension is built by the install
    world = World(seed=1, n_objects=0)
    world.reset(q=HOME)
    world.set_tremor(1.0, 7.0)
    spinal = SpinalController()
    rng = np.random.default_rng(5)
    goal_a, goal_b = HOME + np.array([0.3, -0.2, 0.25, 0.2, -0.3, 0.2]), HOME.copy()
    pose = MODEL.fk(HOME + np.array([-0.2, 0.1, -0.1, 0.1, 0.2, 0.0]), 'tcp_link')
    offset = np.zeros(6)
    seen = {'states': set(), 'sources': set(), 'smoothings': set(), 'resync': 0}
    dt = 0.002
    for k in range(int(9.0 / dt)):
        t = round(k * dt, 9)
        q, qd, eff = world.joint_state()
        quat, gyro, accel = world.imu()
        stale_imu = 5.0 <= t < 5.2
        stale_joints = 5.4 <= t < 5.5
        for cb in (fast, ref):
            if not stale_joints:
                cb.set_joints(t, q[:6] + offset, qd[:6])
            if not stale_imu:
                cb.set_imu(t, gyro, accel, quat if k % 2 else None)
        # goals (the same to both)
        if k % 50 == 0 and t < 3.0 or 4.6 <= t < 7.6 and k % 50 == 0:
            s = 0.5 - 0.5 * math.cos(2 * math.pi * t / 6.0)
            g = goal_b + s * (goal_a - goal_b) + rng.normal(0, 0.003, 6)
            results = [cb.accept_joint_goal(t, g) for cb in (fast, ref)]
            assert results[0] == results[1]
        if abs(t - 3.0) < 1e-9:
            quat_goal = matrix_to_quat_xyzw(pose[:3, :3])
            assert fast.accept_pose_goal(t, pose[:3, 3], quat_goal) == \
                ref.accept_pose_goal(t, pose[:3, 3], quat_goal)
        if 3.5 <= t < 4.0 and k % 10 == 0:
            tw = ([0.05, -0.02, 0.03], [0.0, 0.1, -0.1])
            assert fast.accept_twist(t, *tw) == ref.accept_twist(t, *tw)
        if abs(t - 4.2) < 1e-9:
            times = [0.1, 0.2, 0.3]
            pts = [fast.ref_pos + d for d in (0.02, 0.04, 0.05)]
            assert fast.accept_trajectory(t, times, pts) == ref.accept_trajectory(t, times, pts)
        # mode and parameter changes at run time
        changes = {5.8: ('smoothing', 'linear'), 6.2: ('smoothing', 'cerebellum'),
                   6.6: ('smoothing', 'ruckig'), 7.0: ('smoothing', 'cerebellum'),
                   7.2: ('tremor_enabled', False), 7.4: ('tremor_enabled', True)}
        for when, (name, value) in changes.items():
            if abs(t - when) < 1e-9:
                for cb in (fast, ref):
                    setattr(cb.cfg, name, value)
                    cb.configure()
        # a reflex moved the arm: the measured pose jumps away from the reference
        if abs(t - 4.9) < 1e-9:      # before the stale sensors and the mode switches
            seen['locked_hz'] = fast.canceller.f_hat if fast.canceller.locked else None
        if abs(t - 7.8) < 1e-9:
            for cb in (fast, ref):
                cb.note_reflex(t)
            offset[:] = 0.08
        for cb in (fast, ref):
            cb.tick(t, dt)
        a, b = state_bytes(fast), state_bytes(ref)
        assert a == b, (t, first_difference(a, b))
        seen['states'].add(fast.canceller.state)
        seen['sources'].add(fast.intake.source)
        seen['smoothings'].add(fast.smoothing)
        for cb in (fast, ref):
            cb.after_tick()
        seen['resync'] = fast.resyncs
        # the loop: the spinal layer follows the compiled cerebellum's reference
        for sub in range(2):
            tt = t + sub * 0.001
            qs, qds, effs = world.joint_state()
            spinal.set_reference(fast.ref_pos, fast.ref_vel, fast.ref_eff, now=tt)
            world.command('effort', spinal.step(qs, qds, effs, tt, 0.001, tt))
            spinal.after_tick(qs, qds, effs, 0.001)
            world.step()
    assert seen['states'] >= {'idle', 'adapting', 'holding'}, seen
    assert seen['sources'] == {'goals', 'trajectory', 'servo'}, seen
    assert seen['smoothings'] == {'cerebellum', 'linear', 'ruckig'}, seen
    assert seen['resync'] >= 1, seen
    assert abs(seen['locked_hz'] - 7.0) < 0.5, seen      # it locked on the tremor
    assert fast.status() == ref.status()
    assert fast.bound_arrays_intact()


def test_compiled_tick_refuses_a_layout_it_does_not_know():
    from neurovla_ros.cerebellum import _tick
    cb = Cerebellum(MODEL)
    slots, arrays = cb.shared_state()
    good = {k: (o.SLOTS, o._s) for k, o in slots.items()}
    bad = dict(good, core=(tuple(reversed(cb.SLOTS)), cb._s))
    with pytest.raises(ValueError, match='slots of core'):
        _tick.Tick(bad, arrays, cb.n)
    with pytest.raises(TypeError, match='float64'):
        _tick.Tick(good, dict(arrays, q=np.zeros(6, np.float32)), cb.n)
    with pytest.raises(ValueError, match='need 6 values'):
        _tick.Tick(good, dict(arrays, q=np.zeros(5)), cb.n)
    with pytest.raises(KeyError):
        _tick.Tick(good, {k: v for k, v in arrays.items() if k != 'u'}, cb.n)
