"""The task outcome the bringup summary prints (cortex.task, ROS-free)."""
import numpy as np

from neurovla_ros.cortex import task

OBJECTS = [
    {'colour': 'blue', 'shape': 'cube', 'position': (0.5, 0.1, 0.02), 'size': (0.04, 0.04, 0.04)},
    {'colour': 'red', 'shape': 'ball', 'position': (0.4, -0.2, 0.025), 'size': (0.05,) * 3},
    {'colour': 'red', 'shape': 'cylinder', 'position': (0.6, -0.1, 0.02), 'size': (0.04,) * 3},
]


def still_at(p, seconds=0.6, jitter=0.0):
    rng = np.random.default_rng(0)
    return [(t, np.asarray(p) + rng.normal(0, jitter, 3)) for t in np.arange(0, seconds, 0.01)]


def test_success_when_near_the_named_object_and_still():
    r = task.outcome('touch the blue block', OBJECTS, still_at([0.505, 0.1, 0.05]))
    assert r['named'] == 'blue cube' and r['still'] and r['success']
    assert abs(r['distance_m'] - np.hypot(0.005, 0.01)) < 1e-9
    line = task.describe(r)
    assert 'blue cube' in line and 'success: yes' in line


def test_failure_when_far_moving_or_near_another_object():
    far = task.outcome('touch the blue cube', OBJECTS, still_at([0.45, 0.1, 0.05]))
    assert far['named'] == 'blue cube' and not far['success'] and far['distance_m'] > 0.03
    moving = [(t, np.array([0.5 + 0.05 * t, 0.1, 0.05])) for t in np.arange(0, 0.6, 0.01)]
    assert not task.outcome('touch the blue cube', OBJECTS, moving)['still']
    other = task.outcome('go to the red ball', OBJECTS, still_at([0.5, 0.1, 0.05]))
    assert other['named'] == 'red ball' and not other['success']
    assert 'success: no' in task.describe(other)


def test_unknown_or_ambiguous_names_are_reported():
    r = task.outcome('touch the green cube', OBJECTS, still_at([0.5, 0.1, 0.05]))
    assert r['named'] is None and not r['success'] and 'names no object' in r['reason']
    assert 'not judged' in task.describe(r)
    amb = task.outcome('touch the red one', OBJECTS, still_at([0.6, -0.1, 0.05]))
    assert amb['named'] == 'red cylinder' and amb['success'] and 'ambiguous' in amb['reason']
    assert not task.outcome('touch the blue cube', OBJECTS, [])['success']
