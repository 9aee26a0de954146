"""The rhythm generator (spinal/rhythm.py): frequency, exact counts, start and stop phase,
entrainment, free-running drift over 2 s, re-lock without a jump, the phase ring, and the
program grammar's refusals."""
import math

import numpy as np
import pytest

from neurovla_ros.robot import model as robot_model
from neurovla_ros.spinal import rhythm
from neurovla_ros.spinal.rhythm import PhaseRing, ProgramError, RhythmConfig, RhythmGenerator, parse

JOINTS = robot_model.ARM_JOINTS
LIMITS = rhythm.Limits(JOINTS)
DT = 1e-3
D = np.eye(6)[3]           # wrist_1


def program(text, joint='wrist_1', amplitude=0.1):
    return parse(text, LIMITS, joint, amplitude)


class Arm:
    """An arm that follows the commanded offset ``delay`` s late (a pure delay line)."""

    def __init__(self, delay=0.03):
        self.delay = delay
        self.hist = []

    def record(self, t, gen):
        self.hist.append((t, float(gen.offset @ D), float(gen.offset_vel @ D)))

    def at(self, t):
        k = int(round((t - self.delay - self.hist[0][0]) / DT)) if self.hist else -1
        if k < 0:
            return 0.0, 0.0
        return self.hist[min(k, len(self.hist) - 1)][1:]


def run(gen, seconds, t0=0.0, arm=None, sense=lambda t: True, log=None):
    """Tick ``gen`` for ``seconds``; with ``arm``, sense its (delayed) motion while
    ``sense(t)``. Returns the time after the last tick."""
    t = t0
    for _ in range(int(round(seconds / DT))):
        t += DT
        if arm is not None and sense(t) and gen.active:
            x, v = arm.at(t)
            gen.sense(t, x, v)
        gen.step(t, DT)
        if arm is not None:
            arm.record(t, gen)
        if log is not None:
            log.append((t, gen.theta, gen.state, gen.stage, float(gen.offset @ D),
                        float(gen.offset_vel @ D), gen.ideal_phase(t)))
        if not gen.active:
            break
    return t


def started(text, t=0.0, cfg=None):
    gen = RhythmGenerator(cfg)
    prog = program(text)
    gen.start(prog, D, t)
    return gen, prog


def arm_phase_error(gen, arm, t):
    """Ideal program phase minus the arm's measured phase at ``t`` [cycles]."""
    x, v = arm.at(t)
    return rhythm.wrap(gen.ideal_phase(t) - gen.measured_phase(x, v))


def test_frequency_and_duration_free_running():
    gen, _ = started('4 @ 2Hz')
    log = []
    t = run(gen, 5.0, log=log)
    assert gen.state == rhythm.IDLE
    assert t == pytest.approx(2.0, abs=1.5 * DT)          # 4 cycles at 2 Hz
    x = np.array([r[4] for r in log])
    ts = np.array([r[0] for r in log])
    up = ts[1:][(x[:-1] < 0) & (x[1:] >= 0)]               # upward zero crossings
    assert np.allclose(np.diff(up), 0.5, atol=2 * DT)
    assert np.max(np.abs(x)) == pytest.approx(0.1, rel=1e-3)


def test_counts_exact_and_stage_timing():
    gen, prog = started('4 @ 2Hz ; pause 1s ; 3 @ 3Hz')
    log = []
    t = run(gen, 10.0, log=log)
    assert gen.counts == [4, 0, 3] and gen.total_cycles == 7
    assert t == pytest.approx(prog.duration, abs=2 * DT)
    kinds = [e[0] for e in gen.events]
    assert kinds == ['started', 'stage_done', 'stage_done', 'stage_done', 'finished']
    assert [e[2].get('cycles') for e in gen.events if e[0] == 'stage_done'] == [4, 0, 3]
    # the pause holds still for 1 s
    pause = [r for r in log if r[2] == rhythm.PAUSED]
    assert len(pause) == pytest.approx(1000, abs=2)
    assert all(r[4] == 0.0 and r[5] == 0.0 for r in pause)


def test_start_and_stop_phase():
    """A stage starts and ends at phase 0 with zero offset and zero velocity; the command
    never steps (the envelope ramps in and out)."""
    gen, _ = started('3 @ 2.5Hz ; 2 @ 3.5Hz')
    log = []
    run(gen, 5.0, log=log)
    x = np.array([r[4] for r in log])
    v = np.array([r[5] for r in log])
    assert abs(x[0]) < 1e-6 and abs(v[0]) < 0.01
    ends = [i for i in range(1, len(log)) if log[i][3] != log[i - 1][3]]
    assert len(ends) == 1
    i = ends[0]
    assert abs(x[i - 1]) < 1e-4 and abs(x[i]) < 1e-4 and abs(v[i - 1]) < 0.02
    assert x[-1] == 0.0 and v[-1] == 0.0        # the program ended where it began
    # no step: each tick moves by about velocity * dt
    assert np.max(np.abs(np.diff(x))) <= 1.05 * np.max(np.abs(v)) * DT
    # and the velocity changes by at most an acceleration of 4 A (2 pi f)^2 (the envelope
    # ramps add to the sine's own A (2 pi f)^2)
    assert np.max(np.abs(np.diff(v))) <= 4 * 0.1 * (2 * math.pi * 3.5) ** 2 * DT


def test_stop_request_ends_at_the_end_of_the_cycle():
    gen, _ = started('10 @ 2Hz')
    t = run(gen, 1.2)                       # 2.4 cycles in
    gen.request_stop()
    log = []
    t = run(gen, 5.0, t0=t, log=log)
    assert gen.state == rhythm.IDLE and gen.counts == [3]
    assert t == pytest.approx(1.5, abs=2 * DT)
    assert log[-1][4] == 0.0


def test_entrains_to_the_arm_lag():
    """An arm 40 ms late (0.08 cycles at 2 Hz): the generator builds a lead, so the measured
    motion follows the ideal program."""
    gen, _ = started('12 @ 2Hz')
    arm = Arm(0.04)
    t = run(gen, 4.0, arm=arm)
    assert abs(arm_phase_error(gen, arm, t)) < 0.01
    assert gen.omega == pytest.approx(2.0, abs=0.02)
    gen2, _ = started('12 @ 2Hz')            # without entrainment it stays late
    arm2 = Arm(0.04)
    t = run(gen2, 4.0, arm=arm2, sense=lambda t: False)
    assert arm_phase_error(gen2, arm2, t) == pytest.approx(0.08, abs=0.01)


def test_free_running_drift_over_2_s():
    gen, _ = started('20 @ 3Hz')
    arm = Arm(0.03)
    t = run(gen, 3.0, arm=arm)
    before = arm_phase_error(gen, arm, t)
    t = run(gen, 2.0, t0=t, arm=arm, sense=lambda t: False)     # the sensor is silent
    assert not gen.locked
    after = arm_phase_error(gen, arm, t)
    assert abs(before) < 0.01 and abs(after - before) < 0.01   # < 1 % of a cycle in 2 s
    # the command leads the program clock by the arm's lag (30 ms = 0.09 cycles at 3 Hz)
    assert gen.counts == [int(gen.theta)]
    assert gen.theta - gen.ideal_phase(t) == pytest.approx(0.09, abs=0.01)


def test_relock_without_a_jump():
    """During a 2 s dropout the arm's lag grows from 20 to 70 ms (a load): when the sensor
    returns the error is 0.15 cycles; the correction is rate-limited (no step in position or
    velocity) and the arm is back within 5 % in under a cycle."""
    cfg = RhythmConfig()
    gen, _ = started('40 @ 3Hz', cfg=cfg)
    arm = Arm(0.02)
    t = run(gen, 3.0, arm=arm)
    t = run(gen, 2.0, t0=t, arm=arm, sense=lambda t: False)
    arm.delay = 0.07
    t_back = t
    log = []
    t = run(gen, 2.0, t0=t, arm=arm, log=log)
    err = [abs(rhythm.wrap(r[6] - gen.measured_phase(*arm.at(r[0])))) for r in log[::10]]
    assert max(err[:5]) > 0.13
    within = next(i for i, e in enumerate(err) if e < 0.05) * 10 * DT
    assert within * 3.0 < 1.0, f'{within * 3.0:.2f} cycles to re-lock'
    x = np.array([r[4] for r in log])
    v = np.array([r[5] for r in log])
    vmax = 0.1 * 2 * math.pi * 3.0 * (1 + cfg.max_correction)
    assert np.max(np.abs(v)) <= 1.01 * vmax
    assert np.max(np.abs(np.diff(x))) <= 1.01 * vmax * DT
    rate = np.diff([r[1] for r in log]) / DT
    assert np.max(rate) <= 3.0 * rhythm.SPEED_MARGIN + 1e-9
    assert t > t_back


def test_phase_ring_carries_the_phase_and_is_silent_at_rest():
    ring = PhaseRing()
    assert ring.spikes == 0 and math.isnan(ring.decoded())     # nothing before it is driven
    idle = RhythmGenerator()
    assert not idle.step(0.001, DT) and idle.ring.spikes == 0  # idle: the ring stays silent
    errs = []
    for k in range(2000):
        phase = 2.0 * k * DT                # 2 Hz
        ring.step(phase, DT)
        if k > 200:
            errs.append(rhythm.wrap(phase - ring.decoded()))
    errs = np.array(errs)
    assert np.mean(np.abs(errs)) < 0.05     # decoded within 5 % of a cycle (trace lag incl.)
    rate = ring.spikes / ring.n / (2000 * DT)
    assert 1.0 < rate < 100.0                # spikes per neuron per second: sparse, not silent
    gen, _ = started('2 @ 2Hz')
    run(gen, 2.0)
    assert gen.ring.spikes > 0


def test_tool_direction_maps_through_the_jacobian():
    m = robot_model.load()
    q0 = m.home_pose(JOINTS)
    prog = parse('shake dir=z amp=20mm | 2 @ 1Hz', LIMITS, 'wrist_1', 0.1)
    assert prog.amplitude == pytest.approx(0.02) and prog.direction == (0, 0, 1)
    d = rhythm.joint_direction(m, prog, q0)
    jac = m.jacobian(q0)[:3]
    assert jac @ d == pytest.approx([0, 0, 1], abs=0.02)


def test_axis_sensor_reads_a_joint_rotation_from_the_wrist():
    m = robot_model.load()
    from neurovla_ros.robot.transforms import matrix_to_quat_xyzw
    q0 = m.home_pose(JOINTS)
    s = rhythm.AxisSensor(m, D, q0)
    assert s.usable
    s.calibrate(matrix_to_quat_xyzw(m.fk(q0, tip='imu_link')[:3, :3]), q0)
    q = q0 + 0.07 * D
    r = m.fk(q, tip='imu_link')[:3, :3]
    gyro_world = m.jacobian(q, tip='imu_link')[3:] @ (0.5 * D)
    x, v = s.read(matrix_to_quat_xyzw(r), r.T @ gyro_world)
    assert x == pytest.approx(0.07, rel=0.02) and v == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize('text, reason', [
    ('', 'no stages'),
    ('4 @ 2Hz ;; 3 @ 3Hz', 'two ";" in a row'),
    ('4 @ 9Hz', 'outside 0.5-4 Hz'),
    ('4 @ 0.2Hz', 'outside 0.5-4 Hz'),
    ('0 @ 2Hz', '0 cycles'),
    ('2.5 @ 2Hz', 'not a stage'),
    ('four @ 2Hz', 'not a stage'),
    ('pause 1s', 'no cycle stage'),
    ('4 @ 2Hz ; pause 0s', 'a pause lasts'),
    ('4 @ 2Hz ; pause 100s', 'a pause lasts'),
    ('4 @ 2Hz ; stop', 'stands alone'),
    ('shake joint=elbow_2 | 4 @ 2Hz', "unknown joint 'elbow_2'"),
    ('shake joint=wrist_1 dir=x amp=0.01 | 4 @ 2Hz', 'not both'),
    ('shake dir=q amp=0.01 | 4 @ 2Hz', 'dir=q is not one of'),
    ('shake dir=x | 4 @ 2Hz', 'needs amp='),
    ('shake dir=x amp=0.1rad | 4 @ 2Hz', 'does not fit'),
    ('shake joint=wrist_1 amp=2 | 4 @ 2Hz', 'must be > 0 and <= 0.5'),
    ('shake joint=wrist_1 amp=abc | 4 @ 2Hz', 'not a number'),
    ('shake joint=wrist_1 speed=3 | 4 @ 2Hz', 'is not joint=J'),
    ('shake amp=0.1 amp=0.2 | 4 @ 2Hz', 'given twice'),
    ('wiggle | 4 @ 2Hz', 'expected "shake'),
    (' ; '.join(['1 @ 1Hz'] * 40), 'at most 32'),
    ('x' * 2000, 'longer than'),
    (None, 'a program is text'),
])
def test_bad_programs_are_refused_with_a_reason(text, reason):
    with pytest.raises(ProgramError) as e:
        parse(text, LIMITS, 'wrist_1', 0.1)
    assert reason in str(e.value)


def test_good_programs():
    p = parse('shake joint=wrist_2 amp=5deg | 4 @ 2Hz ; pause 1s ; 3 @ 3Hz ;', LIMITS,
              'wrist_1', 0.1)
    assert p.joint == 'wrist_2_joint' and p.amplitude == pytest.approx(math.radians(5))
    assert p.cycles == [4, 0, 3] and p.duration == pytest.approx(4.0)
    q = parse('  4 @ 2HZ ; PAUSE 0.5 S ; 3@3hz', LIMITS, 'wrist_1', 0.1)
    assert q.joint == 'wrist_1_joint' and q.cycles == [4, 0, 3]
    assert parse(str(p), LIMITS, 'x', 1.0) == p          # str() is a valid program
    assert parse('stop', LIMITS, 'wrist_1', 0.1).stop


def test_limits_are_checked_at_the_start_pose():
    m = robot_model.load()
    lim = m.limits(JOINTS)
    prog = program('shake joint=elbow amp=0.3 | 2 @ 1Hz')
    q0 = np.zeros(6)
    q0[2] = 2.7                                          # 0.1 rad from the elbow's limit
    d = rhythm.joint_direction(m, prog, q0)
    with pytest.raises(ProgramError, match='leaves'):
        rhythm.check_limits(prog, d, q0, lim['lower'], lim['upper'], lim['velocity'], 0.8)
    fast = program('shake joint=wrist_1 amp=0.4 | 2 @ 4Hz')
    with pytest.raises(ProgramError, match='rad/s'):
        rhythm.check_limits(fast, D, np.zeros(6), lim['lower'], lim['upper'],
                            lim['velocity'], 0.8)
    rhythm.check_limits(program('2 @ 2Hz'), D, np.zeros(6), lim['lower'], lim['upper'],
                        lim['velocity'], 0.8)
