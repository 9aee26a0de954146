"""Stop state machine, brake profile and state watchdog (spinal/safety.py), ROS-free; and the
brake run in closed loop with the real spinal controller on the MuJoCo arm."""
import numpy as np
import pytest

from neurovla_ros import robot
from neurovla_ros.spinal.safety import (
    BRAKING,
    EMERGENCY,
    PROTECTIVE,
    RUN,
    STOPPED,
    BrakeConfig,
    BrakeProfile,
    StateWatchdog,
    StopState,
)


def test_brake_profile_limits_and_end():
    cfg = BrakeConfig(deceleration=40.0, jerk=2000.0)
    v0 = np.array([3.14, -2.0, 1.0, 0.0, -3.14, 0.5])
    q0 = np.linspace(-1, 1, 6)
    b = BrakeProfile(q0, v0, 2.0, cfg)
    ts = 2.0 + np.linspace(0, b.T, 2001)
    qs, vs = [], []
    for t in ts:
        b.sample(t)
        qs.append(b.q.copy())
        vs.append(b.qd.copy())
    qs, vs = np.array(qs), np.array(vs)
    dt = ts[1] - ts[0]
    acc = np.diff(vs, axis=0) / dt
    jerk = np.diff(acc, axis=0) / dt
    assert np.abs(acc).max() <= cfg.deceleration * 1.01
    assert np.abs(jerk).max() <= cfg.jerk * 1.02
    np.testing.assert_allclose(vs[0], v0)
    np.testing.assert_allclose(vs[-1], 0.0, atol=1e-12)
    np.testing.assert_allclose(qs[-1], q0 + 0.5 * b.T * v0)     # stops within v0 T / 2
    np.testing.assert_allclose(np.diff(qs, axis=0) / dt, 0.5 * (vs[1:] + vs[:-1]), atol=1e-4)
    assert b.sample(ts[-1] + 0.1) and np.all(b.qd == 0)
    # top speed 3.14 rad/s: braked in < 0.2 s by these defaults
    assert b.T < 0.2
    assert BrakeProfile(q0, np.zeros(6), 0.0, cfg).sample(0.0)   # at rest: done at once


def _run_to_rest(s, q, t=0.0):
    """Feed samples of a joint following the stop's own reference."""
    qd = np.full(6, 2.0)
    while True:
        ref = s.update(q, qd, t)
        assert ref is not None
        q, qd = ref[0].copy(), ref[1].copy()
        t += 1e-3
        if s.state == STOPPED and s.standstill:
            return q, t


def test_stop_state_machine_emergency_needs_release_and_resume():
    s = StopState()
    assert s.update(np.zeros(6), np.zeros(6), 0.0) is None and s.state == RUN
    assert s.resume() == (False, 'not stopped')
    s.set_estop(True)
    assert s.state == BRAKING and s.kind == EMERGENCY and s.category == 1
    ok, why = s.resume()
    assert not ok and 'estop' in why
    q, t = _run_to_rest(s, np.zeros(6))
    assert s.status()['stop_to_standstill_s'] > 0
    assert s.status()['stop'] == STOPPED
    # estop released: still stopped (holds), no automatic resume
    assert 'still stopped' in s.set_estop(False)
    hold, _ = s.update(q, np.zeros(6), t)
    np.testing.assert_allclose(hold, q)
    assert s.active
    ok, why = s.resume()
    assert ok and s.state == RUN and s.update(q, np.zeros(6), t) is None


def test_protective_stop_escalation_and_standstill_violation():
    s = StopState(BrakeConfig(standstill_tolerance=0.05))
    s.request(PROTECTIVE)
    assert s.category == 2
    assert not s.resume()[0]                          # still braking
    assert 'already' in s.request(PROTECTIVE)
    s.request(EMERGENCY)                              # escalates, same brake
    assert s.kind == EMERGENCY and s.state == BRAKING
    s.set_estop(False)
    q, t = _run_to_rest(s, np.zeros(6))
    s.changed = False
    s.update(q + 0.06, np.zeros(6), t + 0.01)         # pushed away while stopped
    assert s.violated and s.changed and s.status()['standstill_violation_rad'] > 0.05
    with pytest.raises(ValueError):
        s.request('halt')


def test_watchdog():
    w = StateWatchdog(0.005)
    assert not w.check(1.0)                           # no state yet: nothing to time out
    assert not w.feed(1.0)
    assert not w.check(1.004)
    assert w.check(1.006) and w.tripped and w.trips == 1
    assert not w.check(1.007)                         # one trip per stale spell
    assert w.feed(1.0095) and not w.tripped           # fresh state clears it
    assert not w.feed(1.011)
    st = w.status()                                   # the gaps seen: 1.0 -> 1.0095 -> 1.011
    assert abs(st['state_gap_max_ms'] - 9.5) < 1e-6
    assert st['state_gaps_over_5ms'] == 1 and st['state_gaps_over_10ms'] == 0
    assert st['watchdog_trips'] == 1


def test_brake_with_the_spinal_controller_on_the_arm():
    """The stop's reference tracked by the real controller on the MuJoCo arm at top speed:
    standstill in <= 200 ms, no motion afterwards, torques inside the URDF limits."""
    from neurovla_ros.sim.world import World
    from neurovla_ros.spinal.controller import SpinalController
    world = World(seed=3, n_objects=0)
    ctrl = SpinalController()
    model = robot.load()
    lim = model.limits()
    dt = world.dt
    q0 = world.joint_state()[0][:6]
    stop = StopState()
    # drive the shoulder pan at 3 rad/s, then estop
    t = 0.0
    v = np.array([3.0, 0, 0, 0, 0, 0])
    q_ref = np.array(q0, float)
    t_stop, t_still = None, None
    max_tau = 0.0
    for k in range(2000):
        q, qd, _ = world.joint_state()
        if t_stop is None and qd[0] > 2.9 and not stop.active:
            stop.set_estop(True)
            t_stop = t
        if stop.active:
            ref = stop.update(q, qd, t)
            ctrl.track(ref[0], ref[1], t)
        else:
            q_ref = q_ref + v * dt
            ctrl.set_reference(q_ref, v, None, t)
        tau = np.array(ctrl.step(q, qd, None, t, dt, t))
        ctrl.after_tick(q, qd, None, dt)
        max_tau = max(max_tau, float(np.max(np.abs(tau) / lim['effort'])))
        world.command('effort', tau)
        world.step()
        t += dt
        if stop.standstill and t_still is None:
            t_still = t
            q_still = np.array(q[:6])
        if t_still is not None and t > t_still + 0.5:
            break
    assert t_stop is not None, "never reached 2.9 rad/s"
    print(f"estop at {t_stop:.3f} s, standstill {1e3 * (t_still - t_stop):.1f} ms later, dt {dt}")
    assert t_still is not None and t_still - t_stop <= 0.2, (t_stop, t_still)
    assert np.abs(world.joint_state()[0][:6] - q_still).max() < 0.02   # no motion after
    assert max_tau <= 1.0
