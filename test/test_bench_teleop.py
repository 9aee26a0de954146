"""``neurovla bench teleop``: its measures on made-up states, and a short run of the bench as a
user runs it (bringup's graph, Chromium on the page)."""
import json
import math

import numpy as np
import pytest
from conftest import run_bench

from neurovla_ros import robot
from neurovla_ros.bench import teleop as bt


def states(q_of_t, t0=100.0, n=600):
    """(stamp, q, qd) at 1 kHz from ``q_of_t`` (arm q at t - t0), qd by differences."""
    out, prev = [], None
    for k in range(n):
        t = t0 + k * 1e-3
        q = np.asarray(q_of_t(k * 1e-3), float)
        qd = np.zeros(6) if prev is None else (q - prev) / 1e-3
        out.append((t, q, qd))
        prev = q
    return out


def test_first_motion_is_the_first_state_past_the_threshold_after_the_input():
    start = 0.2                           # moves at 0.5 rad/s from t0 + 0.2 on joint 2
    s = states(lambda t: [0, 0, 0.5 * max(0.0, t - start), 0, 0, 0])
    t_m = bt.first_motion(s, 100.05)
    expect = 100.0 + start + bt.MOTION_RAD / 0.5
    assert abs(t_m - expect) < 2e-3, (t_m, expect)
    assert math.isnan(bt.first_motion(states(lambda t: [0] * 6), 100.05))     # never moved
    assert math.isnan(bt.first_motion(s, 99.0))                                # nothing before


def test_halted_at_needs_the_joints_slow_for_the_hold_time():
    stop = 0.3                            # 0.2 rad/s until t0 + 0.3, then still
    s = states(lambda t: [0.2 * min(t, stop)] + [0] * 5)
    t_h = bt.halted_at(s, 100.1)
    assert abs(t_h - (100.0 + stop)) < 2e-3, t_h
    assert math.isnan(bt.halted_at(states(lambda t: [0.2 * t] + [0] * 5), 100.1))


def test_snap_back_is_the_way_back_along_the_jog_after_the_zero_twist():
    model = robot.load()
    home = model.home_pose()
    d = np.array([1.0, 0.0, 0.0])
    j = model.jacobian(home)[:3]
    dq = np.linalg.pinv(j) @ d                    # joint direction moving the tool along +x
    fwd_back = states(lambda t: home + dq * (0.01 * min(t, 0.3) / 0.3 - 0.02 * max(0, t - 0.4)))
    back = bt.snap_back(model, fwd_back, d, 100.2)
    assert abs(back - 0.004) < 4e-4, back          # went 10 mm, came back 4 mm
    stays = states(lambda t: home + dq * 0.01 * min(t, 0.3) / 0.3)
    assert bt.snap_back(model, stays, d, 100.2) < 1e-5


def test_a_short_run_counts_every_case(tmp_path):
    """A few cases of each kind: every one counted, the result's figures are its cases'."""
    _text, res = run_bench(tmp_path, ['teleop', '--twists', '4', '--markers', '2', '--ui',
                                      '2'], 420)
    out = tmp_path / 'bench_out'
    cases = json.loads((out / 'teleop_cases.json').read_text())
    assert [c['kind'] for c in cases].count('twist') == res['twist_cases'] == 4
    assert [c['kind'] for c in cases].count('marker') == res['marker_cases'] == 2
    assert [c['kind'] for c in cases].count('ui') == res['ui_cases'] == 2
    assert res['halt_cases'] == 2 and res['snap_back_cases'] == 4      # 2 twist + 2 ui
    assert res['zero_twists'] == sum(c.get('zero_twists', 0) for c in cases) > 20
    for key in bt.TARGETS:
        assert key in res
    # every input moved the arm and every halt was seen (none missed, none infinite)
    assert res['twist_misses'] == res['marker_misses'] == res['ui_misses'] == 0, res
    assert res['halt_misses'] == 0, res
    for kind in ('twist', 'marker', 'ui'):
        lat = [c['latency_ms'] for c in cases if c['kind'] == kind]
        assert all(0.0 < v < 1000 * bt.MISS_S for v in lat), (kind, lat)
        assert res[f'{kind}_to_motion_ms_p95'] == pytest.approx(np.percentile(lat, 95), abs=1e-5)
    halts = [c['halt_ms'] for c in cases if 'halt_ms' in c]
    assert all(100.0 < h < 1000.0 for h in halts), halts     # the 0.1 s timeout comes first
    assert res['snap_backs'] == sum(c['snap_back_m'] > bt.SNAP_BACK_M for c in cases
                                    if 'snap_back_m' in c)
    assert 0.5 < res['spinal_on_time_fraction_without_ui'] <= 1.0
    assert 0.5 < res['spinal_on_time_fraction_with_ui'] <= 1.0
    assert res['browser_clients'] == '1'
    assert (out / 'teleop.png').stat().st_size > 10_000
