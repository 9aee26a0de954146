"""``neurovla bench reflex``: its pieces, and short runs of both graphs end to end."""
import json
import math

import numpy as np
import pytest
from conftest import run_bench

from neurovla_ros.bench import reflex


def test_half_point_finds_the_force_where_half_are_detected():
    rng = np.random.default_rng(3)
    force = np.exp(rng.uniform(np.log(2.0), np.log(80.0), 4000))
    # detection probability 1 / (1 + (12 / f)^4): half at 12 N
    detected = rng.random(4000) < 1.0 / (1.0 + (12.0 / force) ** 4)
    assert reflex.half_point(force, detected) == pytest.approx(12.0, rel=0.05)
    # all or none detected, or detection falling with force: no crossing to report
    assert math.isnan(reflex.half_point(force, np.ones(4000, bool)))
    assert math.isnan(reflex.half_point(force, np.zeros(4000, bool)))
    assert math.isnan(reflex.half_point(force, force < 12.0))


def test_pushes_are_binned_by_excess_and_every_one_counted():
    cols = [{'excess': e, 'event': {} if hit else None}
            for e, hit in ((0.2, False), (0.9, True), (1.2, False), (1.4, True), (1.6, True),
                           (2.0, True), (5.0, True), (9.0, False))]
    rates, counts = reflex.by_excess(cols)
    assert counts == {'<1x': 2, '1-1.5x': 2, '1.5-2x': 1, '>2x': 3}
    assert rates == {'<1x': 0.5, '1-1.5x': 0.5, '1.5-2x': 1.0, '>2x': pytest.approx(2 / 3)}
    assert reflex.by_excess([])[0] == {name: None for name, _lo, _hi in reflex.EXCESS_BINS}


def test_push_forces_cover_the_range_and_the_sweep_below_it():
    f = np.array(reflex.push_forces(np.random.default_rng(0), 150, 100))
    assert len(f) == 250
    strong = f[f >= reflex.FORCE_N[0]]
    assert len(strong) >= 150 and strong.max() <= reflex.FORCE_N[1]
    assert f.min() >= reflex.WEAK_N[0] and np.sum(f < 5.0) > 10    # down to below thresholds
    assert not np.all(np.diff(f) >= 0) and not np.all(f[:150] >= reflex.FORCE_N[0])  # mixed


def test_a_push_along_the_upper_arm_loads_no_joint():
    from neurovla_ros import robot
    from neurovla_ros.sim.world import World
    world = World(seed=0, n_objects=0)
    try:
        world.reset(q=robot.load().home_pose())
        body = world.model.body('upper_arm_link').id
        axis = world.data.xmat[body].reshape(3, 3)[:, 2]
        thr = reflex.base_thresholds()
        assert list(thr) == [3.0, 3.0, 3.0, 2.0, 2.0, 2.0]
        assert axis[2] > 0.99                   # at home the upper arm stands upright
        along = reflex.excess(world, 'upper_arm_link', 60.0 * axis, thr)
        across = reflex.excess(world, 'upper_arm_link', [60.0, 0.0, 0.0], thr)
        assert along < 1.0 < 2.0 < across      # undetectable by joint torque: below 1x
    finally:
        world.close()


@pytest.mark.parametrize('graph', ['full', 'minimal'])
def test_a_short_run_counts_every_push(graph, tmp_path):
    """A few pushes of each kind and a few seconds of free motion with tremor (short options);
    in the full graph the cortex plans in dry run and publishes nothing, the cerebellum takes
    the bench's goals."""
    _text, res = run_bench(tmp_path, ['reflex', '--graph', graph, '--collisions', '3',
                                      '--weak', '2', '--false-trigger-s', '2'], 240)
    assert res['graph'] == graph
    assert res['collisions'] == 5 and res['collisions_in_force_range'] >= 3
    assert sum(res['pushes_by_excess'].values()) == 5
    assert res['undetectable_by_joint_torque'] == res['pushes_by_excess']['<1x']
    assert res['false_trigger_s'] >= 2.0 and res['tremor_nm'] == 1.0
    assert res['misses'] == 0 and res['false_triggers'] == 0
    assert 0.0 < res['detect_ms_p99'] and 0.0 < res['latency_ms_p50'] <= res['latency_ms_p99']
    records = json.loads((tmp_path / 'bench_out' / 'reflex_collisions.json').read_text())
    assert len(records) == 5
    for name, lo, hi in reflex.EXCESS_BINS:      # the rates are the records' own
        sel = [r for r in records if lo <= r['excess'] < hi]
        rate = res['detection_rate_by_excess'][name]
        assert (rate is None) == (not sel)
        if sel:
            assert rate == pytest.approx(sum(r['detected'] for r in sel) / len(sel))
    assert all(r['excess'] >= r['excess_onset'] > 0 for r in records)
    for png in ('reflex.png', 'reflex_detection.png'):
        assert (tmp_path / 'bench_out' / png).stat().st_size > 10_000
    if graph == 'full':
        assert res['cortex_plans'] >= 1 and res['cortex_goals_published'] == 0
        assert res['goals_sent'] > 0 and res['cerebellum_goals_accepted'] > 0
        # every goal the bench sends is valid: a refusal can only be the cerebellum holding
        # on a stale sensor (a loaded machine), which is counted and said
        assert res['cerebellum_goals_rejected'] == res['cerebellum_goals_rejected_not_ready'], \
            res['cerebellum_last_rejection']
        assert res['cerebellum_goals_rejected_not_ready'] <= 0.05 * res['goals_sent'], \
            res['cerebellum_last_rejection']
        assert {'cerebellum_process_cpu', 'cortex_process_cpu'} <= set(res)
    else:
        assert 'cortex_plans' not in res and 'cerebellum_process_cpu' not in res


def test_the_reflex_through_the_emulated_dynamixel_bus(tmp_path):
    """``--body dynamixel``: the sim's servos behind a pty, the hardware node between them and
    the spinal layer; each detection's withdrawal command is found as a goal write on the bus.
    (The figures of such a run are the bench's business; here: the path and the accounting.)"""
    text, res = run_bench(tmp_path, ['reflex', '--body', 'dynamixel', '--collisions', '5',
                                     '--weak', '1', '--false-trigger-s', '2'], 240)
    assert res['body'] == 'dynamixel' and res['graph'] == 'full'
    assert res['collisions'] == 6 and sum(res['pushes_by_excess'].values()) == 6
    assert res['hardware']['state'] == 'running' and float(res['hardware']['cycle_hz']) > 100
    assert int(res['hardware']['commands']) > 0.5 * int(res['hardware']['reads'])
    detected = [r for r in json.loads((tmp_path / 'bench_out' /
                                       'reflex_collisions.json').read_text()) if r['detected']]
    assert detected, text[-3000:]
    # every detection's command was seen arriving on the bus, after the push began
    assert res['commands_unmatched'] == 0 and res['latency_ms_p50'] > 0
    assert res['reflex_latency_ms_p99_dynamixel'] == res['latency_ms_p99']


def test_a_bus_body_needs_the_full_graph_in_real_time():
    for extra in (['--graph', 'minimal'], ['--speed', '0.5']):
        with pytest.raises(SystemExit):
            reflex.main(['--body', 'dynamixel', *extra])
