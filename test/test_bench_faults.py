"""neurovla bench faults (issue 14): its table, its measures, and a short run of a few rows in
bringup's full graph (real DDS, real MuJoCo, real time)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_bench

from neurovla_ros.bench import faults


def test_the_table_covers_the_issue_and_is_well_formed(tmp_path):
    t = faults.load_table()
    names = [r['name'] for r in t['faults']]
    kinds = {r['kind'] for r in t['faults']}
    assert kinds == set(faults.KINDS)
    assert {r['node'] for r in t['faults'] if r['kind'] == 'kill'} == {'cortex', 'cerebellum',
                                                                       'spinal'}
    assert {r['ms'] for r in t['faults'] if r['kind'] == 'body_pause'} == {20, 100}
    flooded = {r['topic'] for r in t['faults'] if r['kind'] == 'flood'}
    # every input of every node of the graph (the estop Bool and instruction String carry no
    # numbers to corrupt)
    assert flooded >= {'joint_states', 'imu/data', 'cerebellum/reference', 'cortex/goal_pose',
                       'cortex/joint_goal', 'teleop/twist', 'forward_effort_controller/commands',
                       'gripper_controller/commands', 'camera/image_raw'}
    assert sum(n.startswith('estop_fast_move#') for n in names) == 5      # repeats
    bad = tmp_path / 't.yaml'
    bad.write_text('seed: 0\nfaults:\n  - {name: a, kind: cpu_hog, expect: ride}\n'
                   '  - {name: a, kind: cpu_hog, expect: ride}\n')
    with pytest.raises(ValueError, match='duplicate'):
        faults.load_table(str(bad))
    bad.write_text('seed: 0\nfaults:\n  - {name: a, kind: flood, expect: reject}\n')
    with pytest.raises(ValueError, match='detect'):
        faults.load_table(str(bad))


def test_detection_rules_and_standstill():
    assert faults.matches({'key': 'n', 'increases': True}, {'n': 3}, 2)
    assert not faults.matches({'key': 'n', 'increases': True}, {'n': 2}, 2)
    assert faults.matches({'key': 'mode', 'equals': 'hold'}, {'mode': 'hold'}, None)
    assert not faults.matches({'key': 'mode', 'equals': 'hold'}, {}, None)
    assert faults.matches({'key': 'm', 'contains': 'stale'}, {'m': 'stale /imu/data'}, None)
    speed = np.r_[np.full(100, 1.0), np.full(30, 0.01), [0.2], np.full(80, 0.01)]
    assert faults.standstill_index(speed, 0) == 131          # the short dip does not count
    assert faults.standstill_index(speed[:150], 0) is None


def test_flood_messages_are_refused_by_the_stacks_own_checks():
    from rclpy.serialization import deserialize_message

    from neurovla_ros import robot
    from neurovla_ros.common.limits import invalid_reason
    arm = list(robot.load().arm_joints)
    ty, msgs = faults.bad_messages('JointState', arm)
    for buf in msgs:
        m = deserialize_message(buf, ty)
        assert invalid_reason(m.position, 6) is not None
    ty, msgs = faults.bad_messages('Float64MultiArray', arm)
    assert all(invalid_reason(deserialize_message(b, ty).data, 6) for b in msgs)
    with pytest.raises(ValueError):
        faults.bad_messages('Bool', arm)


def test_a_short_run_in_the_full_graph(tmp_path):
    """A watchdog row, a flood, a bad goal, a killed node and one emergency stop."""
    _text, res = run_bench(tmp_path, ['faults', '--only', 'body_pause_100ms,flood_goal_pose,'
                                      'goal_below_floor,kill_cerebellum,estop_fast_move'], 400)
    assert res['faults'] == res['faults_in_table'] == 9       # 4 rows + 5 estop repeats
    rows = json.loads((tmp_path / 'bench_out' / 'faults.json').read_text())
    assert len(rows) == 9
    assert res['faults_safe'] == sum(r['safe'] for r in rows)
    assert res['unrecovered'] == sum(not r['recovered'] for r in rows)
    by = {r['name']: r for r in rows}
    assert by['body_pause_100ms']['detected'] and by['body_pause_100ms']['detect_ms'] < 100
    assert by['flood_goal_pose']['detected'] and by['goal_below_floor']['detected']
    assert by['kill_cerebellum']['detected'] and 'cerebellum' not in by['kill_cerebellum']['alive']
    assert by['kill_cerebellum']['recovered']
    est = [r for n, r in by.items() if n.startswith('estop_fast_move#')]
    assert all(r['stop_category'] == 1 and r['detected'] and r['detect_ms'] < 50 for r in est)
    assert all(r['speed_at_fault_rad_s'] > 0.5 for r in est)        # during the fast move
    # standstill is measured (a row that never reaches it makes the p99 NaN: reported as is)
    held = [r['standstill_ms'] for r in est if np.isfinite(r['standstill_ms'])]
    assert held and all(0 < v < 1000 for v in held)
    assert (len(held) == len(est)) == np.isfinite(res['estop_standstill_ms_p99'])
    assert res['commands_outside_limits'] == 0
    for r in rows:
        assert (tmp_path / 'bench_out' / 'faults' / f'{r["name"]}.png').stat().st_size > 10_000
