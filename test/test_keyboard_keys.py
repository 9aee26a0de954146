"""The keyboard tool's key state, ROS-free: bindings, held keys from auto-repeat, one zero
twist on release, speeds, frames."""
import math

import pytest

from neurovla_ros.keyboard.keys import MOVE, TURN, KeyState


def test_translation_keys_follow_teleop_twist_keyboard():
    assert MOVE['i'] == (1, 0, 0) and MOVE[','] == (-1, 0, 0)
    assert MOVE['j'] == (0, 1, 0) and MOVE['l'] == (0, -1, 0)
    assert MOVE['u'] == (1, 1, 0) and MOVE['.'] == (-1, -1, 0)
    assert {MOVE['t'], MOVE['b']} == {(0, 0, 1), (0, 0, -1)}
    assert set(TURN) == {'I', '<', 'J', 'L', 'U', 'O'}
    assert not set(MOVE) & set(TURN)


def test_a_held_key_sends_until_its_repeats_stop_then_one_zero_twist():
    ks = KeyState(speed=0.05, first_hold=0.7, repeat_hold=0.15)
    assert ks.twist(0.0) is None                 # nothing held: nothing sent
    ks.press('u', 0.0)
    lin, ang = ks.twist(0.5)                     # within the first-repeat delay
    assert math.isclose(math.hypot(*lin), 0.05) and lin[0] > 0 and lin[1] > 0
    assert ang == (0.0, 0.0, 0.0)
    for k in range(20):                          # auto-repeat at 30 Hz from 0.6 s
        ks.press('u', 0.6 + k / 30)
        assert ks.twist(0.6 + k / 30 + 0.01) is not None
    t_up = 0.6 + 19 / 30
    assert ks.twist(t_up + 0.1) is not None      # the next repeat could still come
    assert ks.twist(t_up + 0.2) == ((0, 0, 0), (0, 0, 0))    # released: one zero twist
    assert ks.twist(t_up + 0.25) is None         # then silence
    ks.press('J', 5.0)
    lin, ang = ks.twist(5.0)
    assert lin == (0.0, 0.0, 0.0) and math.isclose(ang[2], ks.turn)


@pytest.mark.parametrize('stop', ['k', ' '])
def test_stop_keys_send_a_zero_twist_at_once(stop):
    ks = KeyState()
    ks.press('i', 0.0)
    assert ks.press(stop, 0.1).kind == 'stop'
    assert ks.twist(0.1) == ((0, 0, 0), (0, 0, 0)) and ks.twist(0.2) is None


def test_speeds_frame_gripper_and_quit():
    ks = KeyState(speed=0.05, turn=0.3, max_speed=0.25)
    ks.press('q', 0.0)
    assert math.isclose(ks.speed, 0.055) and math.isclose(ks.turn, 0.33)
    ks.press('x', 0.0)
    assert math.isclose(ks.speed, 0.0495) and math.isclose(ks.turn, 0.33)
    for _ in range(40):
        ks.press('w', 0.0)
    assert ks.speed == 0.25                      # never above the cerebellum's tool limit
    assert ks.frame == 'base_link' and ks.press('f', 0.0).kind == 'frame'
    assert ks.frame == 'tcp_link' and 'tcp_link' in ks.status()
    assert ks.press('g', 0.0).kind == 'gripper'
    assert ks.press('\x03', 0.0).kind == 'quit' and ks.press('?', 0.0).kind == 'unknown'


@pytest.mark.parametrize('args, why', [(['--speed', 'nan'], '--speed nan'),
                                       (['--turn', '-1'], '--turn -1.0'),
                                       (['--rate', '10'], '--rate 10.0')])
def test_bad_options_are_refused_before_anything_is_sent(args, why):
    import subprocess
    import sys

    from conftest import REPO
    r = subprocess.run([sys.executable, '-m', 'neurovla_ros.cli', 'teleop', *args],
                       cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=60)
    assert r.returncode == 2 and why in r.stderr, r.stderr
