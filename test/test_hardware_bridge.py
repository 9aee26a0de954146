"""The bus bridge (ROS-free) against the servo-bus emulator over a real pty, through the official
SDKs: start-up checks, seeding before torque-on, following, every bus fault, unplug/replug,
park + torque off, the start-up warnings and ``neurovla calibrate``.

The emulator runs its MuJoCo arm in real time in this process (a physics thread; the servos
carry the arm, there is no gravity compensation but theirs). Every test also checks that no
goal beyond the URDF limits reached a servo (the emulator judges each goal write with its own
mounting).
"""
import dataclasses
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from neurovla_ros import robot
from neurovla_ros.hardware import bridge as br
from neurovla_ros.hardware import config, emulator, models

MODEL = robot.load()
HOME = MODEL.home_pose()
LIM = MODEL.limits()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rig(tmp_path):
    """rig(protocol, mounting=None, faults=(), q0=HOME, opts=..., **emulator kwargs)
    -> (Bridge, Standalone emulator). ``mounting`` changes the emulated arm's mounting only
    (the bridge keeps the packaged file); ``faults`` are injected before the start."""
    made = []

    def make(proto, mounting=None, faults=(), q0=HOME, opts=None, **kw):
        cfg = config.load(None, proto)
        emu = emulator.Standalone(cfg.with_mounting(mounting or {}),
                                  link=str(tmp_path / f'{proto}.pty'), q0=q0, **kw)
        for f in faults:
            emu.bus.inject(**f)
        link = emu.start()
        b = br.Bridge(cfg, link, opts or br.BridgeOptions(reconnect_s=0.1))
        made.append((b, emu))
        return b, emu
    yield make
    for b, emu in made:
        if b.torque_on:
            b._disable_all()
        b.close()
        outside = emu.bus.outside_limits
        emu.close()
        assert outside == 0, 'a goal beyond the URDF limits reached a servo'


def cycle(b, seconds, until=None, command=None, rate=500.0):
    """Run the bridge's loop (read, command, write) paced at ``rate`` [Hz] for ``seconds`` or
    until ``until(b)``; returns the bridge."""
    end = time.monotonic() + seconds
    due = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        b.read(now)
        if command is not None and b.fresh:
            command(b, now)
        b.write(now)
        if until is not None and until(b):
            break
        due += 1.0 / rate
        rem = due - time.monotonic()
        if rem > 0:
            time.sleep(rem)
    return b


def running(b):
    return b.state == br.RUNNING


def torque(emu):
    return [s.table['torque_enable'] for s in emu.bus.servos]


def joint_q(emu):
    return emu.world.data.qpos[:6].copy()


# ---------------------------------------------------------------- start-up
@pytest.mark.parametrize('proto', ['dynamixel', 'feetech'])
def test_torque_goes_on_only_after_the_goals_hold_the_measured_pose(rig, proto):
    q0 = HOME + np.array([0.3, -0.2, 0.25, 0.4, 0.3, -0.5])
    b, emu = rig(proto, q0=q0)
    cycle(b, 5.0, running)
    assert b.state == br.RUNNING, b.reason
    log = list(emu.bus.log)
    for s in emu.bus.servos:
        mine = [(n, v) for _t, sid, n, v in log if sid == s.servo_id]
        on = [i for i, (n, v) in enumerate(mine) if n == 'torque_enable' and v == 1]
        assert on, f'ID {s.servo_id}: torque never enabled'
        goals = [(n, v) for n, v in mine[:on[0]] if n.startswith('goal_')]
        assert goals, f'ID {s.servo_id}: torque on before any goal was written'
        if proto == 'dynamixel':   # the mode write (it resets Goal Current) comes before them
            modes = [i for i, (n, _v) in enumerate(mine[:on[0]]) if n == 'operating_mode']
            seeds = [i for i, (n, _v) in enumerate(mine[:on[0]]) if n.startswith('goal_')]
            assert not modes or max(modes) < max(seeds)
        name, value = goals[-1]
        if name == 'goal_position':    # seeded with the present position, to the tick
            assert abs(value - s.table['present_position']) <= 3, (s.drive.joint, value)
    # no jump: a second of holding after torque-on moves no joint by more than 0.02 rad
    start = joint_q(emu)
    cycle(b, 1.0)
    assert np.abs(joint_q(emu) - start).max() < 0.02
    assert np.abs(joint_q(emu) - q0).max() < 0.03
    assert all(torque(emu))


def test_current_interface_seeds_goal_current_with_the_gravity_torque(rig):
    b, emu = rig('dynamixel')
    cycle(b, 5.0, running)
    assert b.state == br.RUNNING
    q = b.q.copy()
    q[:6] = b.hold_q                              # the pose it measured and seeded at
    b.dyn.set_state(q)
    g = b.dyn.bias()[:6]
    for s, tau in zip(emu.bus.servos[:6], g):
        seeded = [v for _t, sid, n, v in emu.bus.log if sid == s.servo_id and n == 'goal_current']
        assert seeded
        assert s.drive.effort(seeded[0]) == pytest.approx(tau, abs=0.05 * abs(tau) + 0.2)


@pytest.mark.parametrize('fault, expect', [
    ({'kind': 'silent', 'ids': [5]}, r'wrist_2_joint: no servo answers at ID 5'),
    ({'kind': 'duplicate_id', 'ids': [3]}, r'elbow_joint: ID 3 answers with corrupt packets '
                                           r'\(two servos with the same ID\?\)'),
    ({'kind': 'model', 'ids': [6], 'value': 1030},
     r'wrist_3_joint: ID 6 is a XM430-W210 \(model number 1030\), the hardware file says '
     r'XM430-W350'),
])
def test_a_wrong_bus_at_start_names_joint_and_id_and_energises_nothing(rig, fault, expect):
    b, emu = rig('dynamixel', faults=[fault])
    cycle(b, 1.5)
    assert b.state == br.CONFIG_ERROR
    assert re.search(expect, b.reason), b.reason
    assert 'nothing energised' in b.reason
    assert not any(torque(emu)) and not b.torque_on
    assert not [e for e in emu.bus.log if e[2].startswith('goal_')]
    emu.bus.clear()                               # fixed (and checked again): it starts
    cycle(b, 3.0, running)
    assert b.state == br.RUNNING


def test_servos_at_unexpected_ids_are_named(rig, tmp_path):
    cfg = config.load(None, 'feetech')
    moved = dataclasses.replace(cfg, drives=tuple(
        d if d.servo_id != 4 else dataclasses.replace(d, servo_id=9) for d in cfg.drives))
    emu = emulator.Standalone(moved, link=str(tmp_path / 'ids.pty'), q0=HOME)
    link = emu.start()
    b = br.Bridge(cfg, link, br.BridgeOptions(reconnect_s=0.1))
    try:
        cycle(b, 1.5)
        assert b.state == br.CONFIG_ERROR
        assert 'wrist_1_joint: no servo answers at ID 4' in b.reason
        assert 'servos answer at IDs [9], which the file does not use' in b.reason
    finally:
        b.close()
        emu.close()


def test_return_delay_and_usb_latency_are_checked_at_start(rig):
    b, emu = rig('feetech', return_delay_us=500, usb_latency_s=0.016)
    cycle(b, 8.0, running)
    assert b.state == br.RUNNING
    text = ' '.join(b.warnings)
    assert 'Return Delay Time [500] us' in text and 'set_return_delay:=true' in text
    assert 'USB latency timer?' in text
    b2, emu2 = rig('dynamixel', return_delay_us=500,
                   opts=br.BridgeOptions(reconnect_s=0.1, set_return_delay=True))
    cycle(b2, 5.0, running)
    assert b2.state == br.RUNNING and not b2.warnings
    assert [s.table['return_delay_time'] for s in emu2.bus.servos] == [0] * 7


# ---------------------------------------------------------------- following
@pytest.mark.parametrize('proto', ['dynamixel', 'feetech'])
def test_the_arm_follows_position_commands(rig, proto):
    b, emu = rig(proto)
    cycle(b, 5.0, running)
    target = HOME + np.array([0.25, -0.15, 0.2, 0.3, -0.3, 0.4])
    t0 = time.monotonic()

    def cmd(b, now):      # a 1 s linear ramp to the target
        s = min(1.0, (now - t0) / 1.0)
        b.command_position(HOME + s * (target - HOME), now)
    cycle(b, 3.0, command=cmd)
    assert b.state == br.RUNNING and not b.holding
    assert np.abs(joint_q(emu) - target).max() < 0.03, joint_q(emu) - target
    assert np.abs(b.q[:6] - joint_q(emu)).max() < 0.01     # /joint_states = the arm
    b.command_gripper(0.01, time.monotonic())
    cycle(b, 1.5, command=lambda b, now: b.command_position(target, now))
    assert emu.world.data.qpos[6] == pytest.approx(0.01, abs=0.004)
    assert b.q[6] == pytest.approx(0.01, abs=0.004)


def test_effort_commands_go_on_the_wire_as_goal_current_inside_the_effort_limit(rig):
    b, emu = rig('dynamixel')
    cycle(b, 5.0, running)
    target = HOME + np.array([0.2, 0.1, -0.2, 0.2, 0.2, 0.2])

    def cmd(b, now):         # the spinal's job: PD torque on top of gravity compensation
        b.command_effort(b.gains.pd_torque(target, np.zeros(6), b.q[:6], b.qd[:6]), now)
    cycle(b, 2.5, command=cmd)
    assert np.abs(joint_q(emu) - target).max() < 0.03
    # effort = Present Current x torque constant: at rest it carries the gravity torque
    assert b.effort[:6] == pytest.approx(b._gravity(), abs=3.0)
    clipped = b.clipped
    cycle(b, 0.3, command=lambda b, now: b.command_effort(LIM['effort'] * 5, now))
    assert b.clipped > clipped                    # the clamp acted; the test's fixture
    assert emu.bus.outside_limits == 0            # checks nothing beyond it was written


def test_no_fresh_command_holds_the_pose(rig):
    b, emu = rig('feetech')
    cycle(b, 5.0, running)
    target = HOME + 0.2
    cycle(b, 1.5, command=lambda b, now: b.command_position(target, now))
    reached = joint_q(emu)
    cycle(b, 1.0)                                 # the commands stop
    assert b.holding and b.state == br.RUNNING
    assert np.abs(joint_q(emu) - reached).max() < 0.02


def test_a_silence_past_the_bus_watchdog_is_re_armed_and_the_arm_driven_again(rig):
    """The bridge stalls 0.3 s (a loaded host): the servos' Bus Watchdog (100 ms) stops their
    motors and refuses goal writes, which a Sync Write cannot report. The next cycle clears and
    re-arms it, and the goals drive the arm again (Present Current carries gravity)."""
    b, emu = rig('dynamixel')
    cycle(b, 5.0, running)
    assert b.state == br.RUNNING and b.watchdog_rearms == 0
    time.sleep(0.3)
    assert all(s.table['bus_watchdog'] == -1 for s in emu.bus.servos)      # tripped
    cycle(b, 0.5)
    assert b.watchdog_rearms == 1
    assert any('Bus Watchdog' in text for _lvl, text in b.events)
    assert all(s.table['bus_watchdog'] == 5 for s in emu.bus.servos)
    assert b.effort[:6] == pytest.approx(b._gravity(), abs=3.0)   # the motors hold it again
    assert b.state == br.RUNNING


def test_bytes_waiting_on_the_wire_count_for_the_bus_watchdog(tmp_path):
    """The emulator's physics steps while its serving thread is late (the process stalled)
    and the host's instruction waits in the pty: servos on a real wire have it, so their
    Bus Watchdog does not trip; with nothing waiting it does."""
    bus = emulator.ServoBus(config.load(None, 'dynamixel'), emulator.make_world(),
                            link=str(tmp_path / 'wd.pty'))
    bus.attach()
    bus._open_pty()                     # no serving thread: the bytes stay in the pty
    try:
        def expire():
            for s in bus.servos:
                s.table['torque_enable'], s.table['bus_watchdog'] = 1, 5
                s.watchdog_t = time.monotonic() - 0.2
        expire()
        os.write(bus._slave, b'\xff\xff\xfd')       # the host wrote, nobody read it yet
        bus.step(1)
        assert all(s.table['bus_watchdog'] == 5 for s in bus.servos)
        os.read(bus._master, 16)
        expire()
        bus.step(1)
        assert all(s.table['bus_watchdog'] == -1 for s in bus.servos)
    finally:
        bus._close_pty()
        bus.world.close()


# ---------------------------------------------------------------- faults
@pytest.mark.parametrize('kind', ['drop', 'truncate', 'bad_crc', 'wrong_id', 'silent'])
def test_three_failed_reads_stop_then_torque_off_then_resume(rig, kind):
    b, emu = rig('dynamixel')
    cycle(b, 5.0, running)
    q_before = joint_q(emu)
    emu.bus.inject(kind, ids=[3])
    cycle(b, 1.0, lambda b: b.state != br.RUNNING)
    assert b.state == br.PROTECTIVE_STOP and b.stop_category == 2
    assert 'consecutive failed reads' in b.reason and 'elbow_joint (ID 3)' in b.reason
    assert b.read_failures >= 3 and (b.corrupt if kind in ('truncate', 'bad_crc') else True)
    assert not b.accepting()
    cycle(b, 0.3)
    assert np.abs(joint_q(emu) - q_before).max() < 0.03      # held where it was
    cycle(b, 1.0, lambda b: b.state == br.TORQUE_OFF)
    assert b.state == br.TORQUE_OFF and 'controlled torque-off' in b.reason
    assert not any(torque(emu)[:2] + torque(emu)[3:])      # every servo that hears it
    ok, msg = b.resume(time.monotonic())
    assert not ok and 'reads still failing' in msg
    emu.bus.clear()
    cycle(b, 0.2)
    ok, msg = b.resume(time.monotonic())
    assert ok, msg
    assert b.state == br.RUNNING and all(torque(emu))


def test_two_lost_replies_are_not_a_stop(rig):
    b, emu = rig('feetech')
    cycle(b, 5.0, running)
    emu.bus.inject('drop', ids=[2], count=2)
    cycle(b, 0.5)
    assert b.state == br.RUNNING and b.read_failures == 2


def test_replies_later_than_the_timeout_count_as_lost(rig):
    b, emu = rig('feetech', opts=br.BridgeOptions(reconnect_s=0.1, reply_margin_ms=5.0))
    cycle(b, 5.0, running)
    emu.bus.inject('slow', ids=[6], value=0.05)
    cycle(b, 1.0, lambda b: b.state != br.RUNNING)
    assert b.state == br.PROTECTIVE_STOP and 'wrist_3_joint (ID 6)' in b.reason


@pytest.mark.parametrize('proto, bits, words', [
    ('dynamixel', models.HW_OVERLOAD, 'overload'),
    ('dynamixel', models.HW_OVERHEATING, 'overheating'),
    ('dynamixel', models.HW_INPUT_VOLTAGE, 'input voltage'),
    ('feetech', 0x20, 'overload'), ('feetech', 0x04, 'temperature')])
def test_a_hardware_error_is_a_protective_stop_naming_the_joint(rig, proto, bits, words):
    b, emu = rig(proto)
    cycle(b, 5.0, running)
    emu.bus.inject('hw_error', ids=[2], value=bits)
    cycle(b, 1.0, lambda b: b.state != br.RUNNING)
    assert b.state == br.PROTECTIVE_STOP
    assert b.reason == f'hardware error on shoulder_lift_joint (ID 2): {words}'
    assert b.errors == {'shoulder_lift_joint': words}
    emu.bus.clear('hw_error')
    cycle(b, 0.3)
    ok, msg = b.resume(time.monotonic())
    assert ok, msg
    assert b.state == br.RUNNING and not b.errors and all(torque(emu))


def test_an_unplugged_adapter_reconnects_and_never_energises_a_default_pose(rig):
    b, emu = rig('dynamixel', opts=br.BridgeOptions(reconnect_s=0.1))
    cycle(b, 5.0, running)
    emu.bus.inject('vanish', duration=1.0)
    cycle(b, 0.5, lambda b: b.state == br.CONNECTING)
    assert b.state == br.CONNECTING and b.reason.startswith('port lost')
    assert ('error', next(m for lv, m in b.events if m.startswith('port lost'))) in b.events
    cycle(b, 6.0, running)           # the port is back: checked, seeded, torque on
    assert b.state == br.RUNNING and b.reconnects >= 1
    assert np.abs(joint_q(emu) - HOME).max() < 0.05


# ---------------------------------------------------------------- shutdown
@pytest.mark.parametrize('proto', ['dynamixel', 'feetech'])
def test_park_then_torque_off_within_3_s(rig, proto):
    b, emu = rig(proto)
    cycle(b, 5.0, running)
    away = HOME + np.array([0.4, -0.3, -0.4, 0.3, 0.3, 0.3])
    cycle(b, 2.0, command=lambda b, now: b.command_position(away, now))
    t0 = time.monotonic()
    b.park(t0)
    assert b.state == br.PARKING
    cycle(b, 3.0, lambda b: b.state == br.OFF)
    took = time.monotonic() - t0
    assert b.state == br.OFF and took < 3.0, took
    assert not any(torque(emu))
    assert np.abs(joint_q(emu) - np.array(b.cfg.park)).max() < 0.05


def test_park_without_torque_is_an_immediate_off(rig):
    b, emu = rig('dynamixel', faults=[{'kind': 'silent', 'ids': [1]}])
    cycle(b, 0.5)
    b.park(time.monotonic())
    assert b.state == br.OFF and not any(torque(emu))


# ---------------------------------------------------------------- calibrate
def test_calibrate_records_the_arms_mounting_into_a_file_that_loads(rig, tmp_path):
    mounting = {'shoulder_pan_joint': {'zero_ticks': 2148}, 'elbow_joint': {'zero_ticks': 1900},
                'left_finger_joint': {'zero_ticks': 1200, 'open_ticks': 2900}}
    cfg = config.load(None, 'feetech')
    emu = emulator.Standalone(cfg.with_mounting(mounting), link=str(tmp_path / 'cal.pty'),
                              q0=np.zeros(6))
    link = emu.start()
    out = tmp_path / 'calibrated.yaml'
    p = subprocess.Popen([sys.executable, '-m', 'neurovla_ros.cli', 'calibrate', '--body',
                          'feetech', '--port', link, '--out', str(out)], cwd=REPO,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)

    def until(prefix):
        while True:
            line = p.stdout.readline()
            assert line, 'calibrate ended early'
            if line.startswith(prefix):
                return line

    def enter():
        p.stdin.write('\n')
        p.stdin.flush()

    def seen(rounds=5):
        """Wait until calibrate's tracking has read the servos ``rounds`` more times (the
        emulator's replies: on a loaded machine a fixed sleep may pass with none)."""
        goal = emu.bus.stats.replies + rounds * len(cfg.drives)
        deadline = time.monotonic() + 15.0
        while emu.bus.stats.replies < goal:
            assert time.monotonic() < deadline and p.poll() is None, 'no reads of the servos'
            time.sleep(0.01)
    try:
        until('1/3')
        emu.bus.move_by_hand(dict(zip(MODEL.arm_joints, np.zeros(6))))
        enter()
        until('2/3')
        lo, hi = LIM['lower'] * 0.3, LIM['upper'] * 0.3    # clear of the table (0.45: in it)
        for q in (lo, hi, np.zeros(6)):
            emu.bus.move_by_hand(dict(zip(MODEL.arm_joints, q)))
            seen()
        enter()
        until('3/3')
        g_lo, g_hi = cfg.gripper.lower, cfg.gripper.upper
        emu.bus.move_by_hand({'left_finger_joint': g_lo})
        time.sleep(0.2)
        enter()
        until('    now open')
        emu.bus.move_by_hand({'left_finger_joint': g_hi})
        time.sleep(0.2)
        enter()
        rest = p.communicate(timeout=30)[0]
    finally:
        if p.poll() is None:
            p.kill()
        emu.close()
    assert p.returncode == 0, rest
    cal = config.load(str(out), 'feetech')
    by = {d.joint: d for d in cal.drives}
    assert abs(by['shoulder_pan_joint'].zero_ticks - 2148) <= 1
    assert abs(by['elbow_joint'].zero_ticks - 1900) <= 1
    assert abs(by['shoulder_lift_joint'].zero_ticks - 2048) <= 1
    for d, low, h in zip(cal.arm, lo, hi):         # the range it was moved through
        assert d.to_joint(d.min_ticks) == pytest.approx(low, abs=0.01), d.joint
        assert d.to_joint(d.max_ticks) == pytest.approx(h, abs=0.01), d.joint
    g = by['left_finger_joint']
    assert abs(g.zero_ticks - 1200) <= 1 and abs(g.open_ticks - 2900) <= 1
    assert math.isclose(g.to_joint(2900), g_hi, abs_tol=1e-4)


def test_calibrate_refuses_a_wrong_bus(rig, tmp_path):
    cfg = config.load(None, 'dynamixel')
    emu = emulator.Standalone(cfg, link=str(tmp_path / 'bad.pty'))
    emu.bus.inject('silent', ids=[4])
    link = emu.start()
    try:
        r = subprocess.run([sys.executable, '-m', 'neurovla_ros.cli', 'calibrate', '--body',
                            'dynamixel', '--port', link, '--out', str(tmp_path / 'x.yaml')],
                           cwd=REPO, input='', capture_output=True, text=True, timeout=60)
    finally:
        emu.close()
    assert r.returncode == 1
    assert 'wrist_1_joint: no servo answers at ID 4' in r.stderr
    assert not (tmp_path / 'x.yaml').exists()
