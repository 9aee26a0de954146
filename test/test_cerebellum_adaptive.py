"""The adaptive tremor canceller and the forward model, ROS-free.

A synthetic plant (three joints under a PD servo with a loop delay, exactly the structure of
the forward model) shaken by a sinusoidal torque: the canceller must converge, re-converge
after a frequency step, stay stable at any learning rate and do no harm with a wrong model.
Then the forward model against the real simulated body under the real spinal controller.
"""
import math

import numpy as np
import pytest

from neurovla_ros.cerebellum.adaptive import TremorCanceller
from neurovla_ros.cerebellum.forward_model import ServoForwardModel

M = np.array([0.13, 0.11, 0.10])          # [kg m^2]
W = 2 * math.pi * np.array([6.0, 6.0, 6.0])
KP, KD, B = M * W * W, 2 * M * W, np.array([0.5, 0.5, 0.5])
DELAY = 0.003                             # [s] plant loop delay
AMP = np.array([1.0, 0.7, 0.5])           # [N m] tremor torque
PHASE = np.array([0.0, 2.09, 4.19])


def simulate(canceller, seconds, freq, switch=None, rate=250.0, drop=0.0, seed=0, burst=None):
    """1 kHz plant; the canceller learns at ``rate`` from the joint velocity and its
    correction goes into the position and velocity reference. ``switch``: (time, new
    frequency[, torque scale]); ``burst``: (start, end, frequency, torque scale), a second
    tremor torque on top for a while. Returns (t, qd) per ms."""
    rng = np.random.default_rng(seed)
    dt = 0.001
    q, qd = np.zeros(3), np.zeros(3)
    lag = int(round(DELAY / dt))
    hist = [(np.zeros(3), np.zeros(3))] * (lag + 1)
    every = int(round(1.0 / (rate * dt)))
    last = 0.0
    out_t, out_v = [], []
    for k in range(int(seconds / dt)):
        t = k * dt
        f, scale = freq, 1.0
        if switch is not None and t >= switch[0]:
            f, scale = switch[1], (switch[2] if len(switch) > 2 else 1.0)
        d = scale * AMP * np.sin(2 * math.pi * f * t + PHASE)
        if burst is not None and burst[0] <= t < burst[1]:
            d += burst[3] * AMP * np.sin(2 * math.pi * burst[2] * t + PHASE)
        r, rd = hist[-lag - 1]
        acc = (KP * (r - q) + KD * (rd - qd) + B * rd - B * qd + d) / M
        qd = qd + dt * acc
        q = q + dt * qd
        if k % every == 0 and rng.random() >= drop:
            canceller.update(t - last if k else 1.0 / rate, qd.copy())
            last = t
        elif k % every == 0:
            canceller.advance(every * dt)
        hist.append((np.array(canceller.u), np.array(canceller.ud)))
        hist = hist[-(lag + 2):]
        out_t.append(t)
        out_v.append(qd.copy())
    return np.array(out_t), np.array(out_v)


def rms(t, v, t0, t1):
    s = (t >= t0) & (t < t1)
    return float(np.sqrt(np.mean(np.sum(v[s] ** 2, axis=1))))


def model(mass_scale=1.0, delay=DELAY):
    return ServoForwardModel(M * mass_scale, KP, KD, B, delay=delay, damping_feedforward=True)


def uncancelled(freq, scale=1.0):
    """RMS joint velocity the tremor causes with no correction at all."""
    off = TremorCanceller(3, 250.0, model().velocity_response, max_correction=0.0)
    t, v = simulate(off, 3.0, freq, switch=(0.0, freq, scale))
    return rms(t, v, 1.0, 3.0)


def test_forward_model_frequency_response_matches_its_time_simulation():
    fm = model()
    fm.reset(np.zeros(3), 0.001)
    f = 7.0
    ts = np.arange(0, 3.0, 0.001)
    out = []
    for t in ts:
        u = 0.01 * math.sin(2 * math.pi * f * t)
        ud = 0.01 * 2 * math.pi * f * math.cos(2 * math.pi * f * t)
        fm.step(0.001, [u] * 3, [ud] * 3)
        out.append(fm.qd.copy())
    out = np.array(out)[ts >= 1.0]
    basis = np.exp(-2j * math.pi * f * ts[ts >= 1.0])
    measured = 2 * np.mean(out * basis[:, None], axis=0) / (-1j * 0.01)
    predicted = np.diag(fm.velocity_response(f))
    np.testing.assert_allclose(np.abs(measured), np.abs(predicted), rtol=0.03)
    np.testing.assert_allclose(np.angle(measured), np.angle(predicted), atol=0.05)


def test_converges_on_a_sinusoid_and_readapts_after_a_frequency_step():
    c = TremorCanceller(3, 250.0, model().velocity_response, adapt_time=0.25)
    t, v = simulate(c, 12.0, 7.0, switch=(6.0, 9.5))
    base7, base95 = uncancelled(7.0), uncancelled(9.5)
    att7 = 20 * math.log10(base7 / rms(t, v, 4.0, 6.0))
    assert att7 > 25.0
    assert abs(c.f_hat - 9.5) < 0.05
    att95 = 20 * math.log10(base95 / rms(t, v, 10.0, 12.0))
    assert att95 > 25.0
    # re-adaptation: within 2 s of the step the residual is 20 dB below the uncancelled level
    assert 20 * math.log10(base95 / rms(t, v, 7.5, 8.0)) > 20.0


@pytest.mark.parametrize('scale', [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize('f1,f2', [(5.0, 9.0), (10.0, 6.0), (6.0, 9.5), (11.0, 6.5)])
def test_reacquires_a_new_tremor_frequency_weaker_equal_or_stronger(f1, f2, scale):
    """The tremor jumps by 3.5-4.5 Hz (more than the frequency-locked loop can follow) and
    comes back with half, the same or 2-3x its torque: the tracker re-targets the new
    frequency and cancels it again within 2 s of the step."""
    c = TremorCanceller(3, 250.0, model().velocity_response, adapt_time=0.25)
    t, v = simulate(c, 9.0, f1, switch=(5.0, f2, scale))
    assert abs(c.f_hat - f2) < 0.05
    base = uncancelled(f2, scale)
    assert 20 * math.log10(base / rms(t, v, 7.0, 7.5)) > 20.0
    assert 20 * math.log10(base / rms(t, v, 8.0, 9.0)) > 25.0


@pytest.mark.parametrize('f2,scale', [(9.5, 2.0), (9.5, 3.0), (4.5, 3.0)])
def test_a_passing_competing_peak_does_not_retarget(f2, scale):
    """A second, 2-3x stronger oscillation for 0.5 s while the tremor goes on dominates the
    spectrum for a while: the tracker stays on the tremor, which stays cancelled."""
    c = TremorCanceller(3, 250.0, model().velocity_response, adapt_time=0.25)
    t, v = simulate(c, 8.0, 7.0, burst=(4.0, 4.5, f2, scale))
    assert c.jumps == 0
    assert abs(c.f_hat - 7.0) < 0.05
    assert 20 * math.log10(uncancelled(7.0) / rms(t, v, 6.5, 8.0)) > 25.0


def test_a_second_tremor_that_stays_dominant_takes_over_after_the_dominance_time():
    """The old tremor goes on (it never fades) and a 3x stronger one joins it; with the
    frequency-locked loop off only the dominance timer can re-target: it does, once, after
    the rival has dominated for ``dominance_time`` - and not for a 1.2 s burst."""
    c = TremorCanceller(3, 250.0, model().velocity_response, adapt_time=0.25, pll_gain=0.0)
    assert c.dominance_time == pytest.approx(2 * c.window)
    seen = []
    track = c.track_frequency

    def tracked():
        track()
        seen.append((c.t, c.f_hat))
    c.track_frequency = tracked
    simulate(c, 9.0, 7.0, burst=(4.0, 99.0, 9.5, 3.0))
    assert c.jumps == 1 and abs(c.f_hat - 9.5) < 0.1
    t_jump = next(t for t, f in seen if abs(f - 9.5) < 0.5) - 4.0
    assert c.dominance_time < t_jump < c.dominance_time + c.window
    c = TremorCanceller(3, 250.0, model().velocity_response, adapt_time=0.25, pll_gain=0.0)
    simulate(c, 8.0, 7.0, burst=(4.0, 5.2, 9.5, 3.0))
    assert c.jumps == 0 and abs(c.f_hat - 7.0) < 0.05


@pytest.mark.parametrize('rate', [100.0, 1000.0])
def test_stable_at_any_learning_rate(rate):
    c = TremorCanceller(3, rate, model().velocity_response, adapt_time=0.25)
    t, v = simulate(c, 6.0, 7.0, rate=rate)
    assert np.all(np.isfinite(v))
    assert np.all(np.abs(c.w) <= c.max_correction + 1e-12)
    assert 20 * math.log10(uncancelled(7.0) / rms(t, v, 4.0, 6.0)) > 15.0


def test_robust_to_model_error_and_irregular_samples():
    # inertia off by 2x, delay off by 2 ms, a quarter of the learning samples dropped
    c = TremorCanceller(3, 250.0, model(mass_scale=2.0, delay=0.001).velocity_response)
    t, v = simulate(c, 8.0, 8.0, drop=0.25)
    assert 20 * math.log10(uncancelled(8.0) / rms(t, v, 6.0, 8.0)) > 15.0


def test_a_wrong_model_does_no_harm():
    """A forward model with the wrong sign (180 deg off) would drive the oscillation; the
    monitor resets the weights and backs off, the oscillation stays near its natural level."""
    def inverted(f):
        return -model().velocity_response(f)
    c = TremorCanceller(3, 250.0, inverted, adapt_time=0.25)
    t, v = simulate(c, 12.0, 7.0)
    assert c.resets >= 1
    assert rms(t, v, 6.0, 12.0) < 2.0 * uncancelled(7.0)
    assert np.all(np.abs(c.w) <= c.max_correction + 1e-12)


def test_no_tremor_no_correction():
    c = TremorCanceller(3, 250.0, model().velocity_response)
    rng = np.random.default_rng(1)
    for _ in range(1000):  # broadband noise only
        c.update(0.004, rng.normal(0, 0.001, 3))
    assert not c.locked
    assert c.weight_norm == 0.0
    assert max(abs(x) for x in c.u) == 0.0


def test_forward_model_predicts_the_simulated_arm_under_the_spinal_layer():
    """The real MuJoCo body under the real spinal controller: a 7 Hz reference wiggle on each
    wrist joint shows up in the joint velocity as the forward model predicts (coupling incl.)."""
    from neurovla_ros import robot
    from neurovla_ros.cerebellum.forward_model import spinal_servo_model
    from neurovla_ros.sim.world import World
    from neurovla_ros.spinal.controller import SpinalController
    rm = robot.load()
    q0 = rm.home_pose()
    fm = spinal_servo_model(rm, delay=0.002)
    fm.set_configuration(q0)
    f, amp = 7.0, 0.004
    world = World(seed=0, n_objects=0)
    predicted = fm.velocity_response(f)
    for j in (3, 4):
        world.reset(q0)
        sp = SpinalController()
        pending = (q0.copy(), np.zeros(6))
        rows = []
        for k in range(1500):
            t = k * 0.001
            q, qd, eff = world.joint_state()
            sp.set_reference(*pending, now=t)  # one tick of transport delay
            u = np.zeros(6)
            ud = np.zeros(6)
            u[j] = amp * math.sin(2 * math.pi * f * t)
            ud[j] = amp * 2 * math.pi * f * math.cos(2 * math.pi * f * t)
            pending = (q0 + u, ud)
            world.command('effort', sp.step(q, qd, eff, t, 0.001, t))
            sp.after_tick(q, qd, eff, 0.001)
            world.step()
            if t >= 0.7:
                rows.append((t, qd[:6].copy()))
        ts = np.array([r[0] for r in rows])
        v = np.array([r[1] for r in rows])
        g = 2 * np.mean(v * np.exp(-2j * math.pi * f * ts)[:, None], axis=0) / (-1j * amp)
        assert abs(g[j]) == pytest.approx(abs(predicted[j, j]), rel=0.35)
        # phase within 35 deg: the learning rule converges for anything below 90
        err = np.angle(g[j] / predicted[j, j])
        assert abs(math.degrees(err)) < 35.0
