"""Pure cortex pieces: language, action post-processing, camera geometry and the planning loop
(goal gating, approach staging, stale inputs, backend failures) with small in-test backends."""
import time

import numpy as np
import pytest

from neurovla_ros import robot
from neurovla_ros.cortex import language
from neurovla_ros.cortex.actions import ActionStats, ChunkEnsembler, StateHistory
from neurovla_ros.cortex.camera import Camera
from neurovla_ros.cortex.core import ERROR, OK, WARN, Cortex, Plan, PlanError

K = [277.19, 0, 160, 0, 277.19, 120, 0, 0, 1]


# ---------------------------------------------------------------- language
def test_parse_maps_synonyms_and_ignores_filler():
    assert language.parse('Could you go to the BLUE block, please?') == language.Query('blue',
                                                                                       'cube')
    assert language.parse('reach the sphere') == language.Query(None, 'ball')
    assert language.parse('hello there').empty


def test_describe_names_the_target_unambiguously():
    objs = [{'colour': 'red', 'shape': 'cube'}, {'colour': 'red', 'shape': 'ball'},
            {'colour': 'blue', 'shape': 'ball'}]
    rng = np.random.default_rng(0)
    for heldout in (False, True):
        for _ in range(200):
            t = int(rng.integers(3))
            text = language.describe(t, objs, rng, heldout=heldout)
            assert language.resolve(language.parse(text), objs) == [t], text


def test_train_and_heldout_phrasings_are_disjoint():
    assert not set(language.TRAIN_TEMPLATES) & set(language.HELDOUT_TEMPLATES)
    assert language.ambiguous([{'colour': 'red', 'shape': 'cube'}] * 2)


# ---------------------------------------------------------------- actions
def test_unnormalise_formula_and_mask():
    s = ActionStats([0, -2, 0], [1, 2, 10], mask=[True, True, False])
    # a = 0.5 (a + 1)(q99 - q01) + q01; masked dimensions pass through
    assert np.allclose(s.unnormalize([[-1, 0, 0.7], [1, 0.5, 0.7]]), [[0, 0, 0.7], [1, 1, 0.7]])
    nested = ActionStats.from_dict({'bridge': {'action': {'q01': [0], 'q99': [2]}}})
    assert nested.unnormalize([0.0]) == pytest.approx([1.0])
    with pytest.raises(ValueError):
        ActionStats.from_dict({'a': {'action': {'q01': [0], 'q99': [1]}},
                               'b': {'action': {'q01': [0], 'q99': [1]}}})


def test_chunk_ensembling_averages_predictions_for_the_current_step():
    e = ChunkEnsembler(horizon=3, decay=0.0, step_s=0.1)
    assert e.add([[1.0], [2.0], [3.0]], 0.0) == pytest.approx([1.0])
    # step 1: row 1 of the first chunk (2) and row 0 of the second (10): mean 6
    assert e.add([[10.0], [20.0], [30.0]], 0.1) == pytest.approx([6.0])
    # step 2: rows 2, 1, 0 of the three chunks: (3 + 20 + 100) / 3
    assert e.add([[100.0], [0], [0]], 0.2) == pytest.approx([41.0])
    w = ChunkEnsembler(horizon=2, decay=np.log(2))   # newer weighted: weights 1/2 and 1
    w.add([[0.0], [3.0]], 0.0)
    assert w.add([[6.0], [0.0]], 0.1) == pytest.approx([(3 * 0.5 + 6 * 1) / 1.5])


def test_chunks_are_aged_by_time_not_by_plans():
    e = ChunkEnsembler(horizon=3, decay=0.0, step_s=0.1)
    e.add([[1.0], [2.0], [3.0], [4.0]], 0.0)
    # a plan 0.3 s later (two plans missed): the first chunk's row 3, not its row 1
    assert e.add([[10.0], [0.0]], 0.3) == pytest.approx([(4.0 + 10.0) / 2])
    # after an outage longer than the chunk: only the new prediction counts
    assert e.add([[7.0], [0.0]], 5.0) == pytest.approx([7.0])
    assert len(e.chunks) == 1
    with pytest.raises(ValueError):
        ChunkEnsembler(step_s=0.0)


def test_openpi_norm_stats_are_refused():
    doc = {'norm_stats': {'actions': {'mean': [0.0], 'std': [1.0], 'q01': [-1.0],
                                      'q99': [1.0]}}}
    with pytest.raises(ValueError, match='already unnormalised'):
        ActionStats.from_dict(doc)


def test_state_history_pads_with_the_oldest():
    h = StateHistory(4, 2)
    h.push([1, 1])
    h.push([2, 2])
    assert h.array().tolist() == [[1, 1], [1, 1], [1, 1], [2, 2]]
    with pytest.raises(ValueError):
        h.push([1, 2, 3])


# ---------------------------------------------------------------- camera
def test_projection_and_backprojection_are_inverse():
    cam = Camera.from_info(K, 320, 240)
    pts = np.array([[0.3, -0.3, 0.0], [0.7, 0.3, 0.05], [0.5, 0.0, 0.02]])
    uv = cam.project(pts)
    assert np.all((uv > 0) & (uv < [320, 240]))
    assert np.allclose(cam.backproject(uv, pts[:, 2]), pts, atol=1e-9)
    half = cam.scaled(160, 120)
    assert np.allclose(half.project(pts), uv / 2)
    with pytest.raises(ValueError):
        Camera.from_info([0] * 9, 320, 240)


def test_camera_pose_is_the_urdf_scene_camera():
    cam = Camera.from_info(K, 320, 240)
    assert np.allclose(cam.pose[:3, 3], [1.25, 0, 0.75])
    # optical z axis looks back (-x) and down at the table
    assert cam.pose[0, 2] < -0.5 and cam.pose[2, 2] < -0.5


# ---------------------------------------------------------------- planning loop
class Scripted:
    """A stand-in policy whose answers the test dictates."""
    name = 'test'
    needs_image = True
    needs_joints = False

    def __init__(self):
        self.answer = Plan(centre=np.array([0.5, 0.1, 0.02]))
        self.calls = 0

    def plan(self, obs):
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class Clock:
    t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def cortex():
    clock = Clock()
    c = Cortex(Scripted(), clock=clock, approach_height=0.08, clearance=0.01, confirm=3)
    c.clock_ = clock
    c.set_camera(Camera.from_info(K, 320, 240))
    c.set_image(np.zeros((240, 320, 3), np.uint8))
    c.set_joints(robot.load().home_pose(), [0.04, 0.04])
    c.set_instruction('touch the red cube')
    return c


def q_at(x, y, z):
    from neurovla_ros.robot import ik
    m = robot.load()
    t = m.fk(m.home_pose())
    t[:3, 3] = [x, y, z]
    lim = m.limits()
    res = ik.solve(m, t, m.home_pose(), lim['lower'], lim['upper'])
    assert res.ok
    return res.q


def test_goal_hovers_then_descends_above_the_object(cortex):
    assert cortex.goal() is None
    assert cortex.step().level == OK
    g = cortex.goal()
    # object centre z 0.02 -> top 0.04 -> final 0.05; hover 0.08 higher while far away
    assert g.stage == 'approach' and np.allclose(g.position, [0.5, 0.1, 0.13])
    cortex.set_joints(q_at(0.505, 0.1, 0.14), [0.04, 0.04])
    g = cortex.goal()                  # the descent starts at rest at the hover height ...
    assert g.stage == 'final' and np.allclose(g.position, [0.5, 0.1, 0.13])
    cortex.clock_.t += 0.75            # ... is half-way after half the descent time ...
    assert np.allclose(cortex.goal().position, [0.5, 0.1, 0.09])
    cortex.clock_.t += 0.75            # ... and ends at the final goal
    g = cortex.goal()
    assert g.stage == 'final' and np.allclose(g.position, [0.5, 0.1, 0.05])
    cortex.set_joints(q_at(0.53, 0.1, 0.10), [0.04, 0.04])   # 3 cm off: still descending
    assert cortex.goal().stage == 'final'
    cortex.set_joints(q_at(0.55, 0.1, 0.10), [0.04, 0.04])   # 5 cm off: hover again
    assert cortex.goal().stage == 'approach'
    assert np.allclose(cortex.goal().rotation, cortex.home_rotation)
    cortex.set_joints(q_at(0.5, 0.1, 0.05), [0.04, 0.04])    # at the final goal, still
    cortex.goal()                      # (a new descent starts)
    cortex.clock_.t += 1.5
    cortex.goal()
    assert cortex.status().values['task'] == 'descending'
    cortex.clock_.t += 0.6
    cortex.set_joints(q_at(0.5, 0.1, 0.05), [0.04, 0.04])
    cortex.goal()
    st = cortex.status()
    assert st.values['task'] == 'reached' and st.message.startswith('reached the goal')
    assert st.values['goal_distance_m'] < 0.002
    # over the object the gripper hides it: the policy no longer sees it, the task is done
    cortex.backend.answer = Plan(note='no red object found')
    cortex.set_image(np.zeros((240, 320, 3), np.uint8))
    assert cortex.step().level == OK
    st = cortex.status()
    assert st.level == OK and st.message.startswith('reached the goal')


def test_a_distant_target_needs_confirmation(cortex):
    cortex.step()
    first = cortex.goal().position.copy()
    cortex.backend.answer = Plan(centre=np.array([0.4, -0.2, 0.02]))
    for _ in range(2):
        s = cortex.step()
        assert s.level == WARN and 'confirmation' in s.message
        assert np.allclose(cortex.goal().position, first)
    assert cortex.step().level == OK
    assert np.allclose(cortex.goal().position[:2], [0.4, -0.2])
    assert cortex.rejected == 2


def test_low_confidence_and_non_finite_plans_are_ignored(cortex):
    cortex.step()
    held = cortex.goal().position.copy()
    cortex.backend.answer = Plan(centre=np.array([0.3, 0.3, 0.02]), confidence=0.05)
    assert cortex.step().level == WARN
    cortex.backend.answer = Plan(centre=np.array([np.nan, 0.3, 0.02]))
    assert cortex.step().level == WARN
    assert np.allclose(cortex.goal().position, held)


def test_backend_errors_hold_the_last_goal_and_are_reported(cortex):
    cortex.step()
    held = cortex.goal().position.copy()
    cortex.backend.answer = PlanError('policy server timeout: no reply within 1.0 s')
    s = cortex.step()
    assert s.level == ERROR and 'timeout' in s.message and 'holding the last goal' in s.message
    cortex.backend.answer = ZeroDivisionError('bug')
    assert cortex.step().level == ERROR
    assert np.allclose(cortex.goal().position, held)
    st = cortex.status()
    assert st.values['errors'] == 2 and 'ZeroDivisionError' in st.values['last_error']


def test_stale_or_missing_inputs_stop_planning(cortex):
    cortex.clock_.t += 5.0
    s = cortex.step()
    assert s.level == WARN and 'stale' in s.message and cortex.backend.calls == 0
    cortex.set_image(np.zeros((240, 320, 3), np.uint8))
    cortex.set_instruction('')
    assert 'no instruction' in cortex.step().message
    assert cortex.goal() is None


def test_a_new_instruction_drops_the_old_goal(cortex):
    cortex.step()
    assert cortex.goal() is not None
    cortex.set_instruction('touch the green ball')
    assert cortex.goal() is None
    cortex.step()
    assert cortex.goal() is not None


def test_goals_are_clamped_to_the_workspace_and_trajectories_to_limits(cortex):
    cortex.backend.answer = Plan(position=np.array([2.0, 0.0, -1.0]))
    cortex.set_instruction('go far')
    cortex.step()
    assert np.allclose(cortex.goal().position, [0.8, 0.0, 0.02])
    q0 = robot.load().home_pose()
    cortex.backend.answer = Plan(trajectory=[(0.1, q0 + 5.0)])
    cortex.set_instruction('joints')
    cortex.step()
    traj = cortex.goal().trajectory
    assert np.all(np.abs(traj[0][1] - q0) <= 3.14 * 0.1 + 1e-9)


def test_worker_thread_keeps_the_goal_while_a_slow_plan_runs():
    class Slow(Scripted):
        def plan(self, obs):
            time.sleep(0.3)
            return super().plan(obs)
    c = Cortex(Slow(), rate_hz=20.0)
    c.set_camera(Camera.from_info(K, 320, 240))
    c.set_image(np.zeros((240, 320, 3), np.uint8))
    c.set_instruction('touch the red cube')
    c.start()
    try:
        t0 = time.monotonic()
        while c.goal() is None and time.monotonic() - t0 < 5:
            c.set_image(np.zeros((240, 320, 3), np.uint8))
            time.sleep(0.01)
        g = c.goal()
        assert g is not None
        t = time.perf_counter()
        for _ in range(50):                 # goal() never waits for the planner
            assert c.goal() is not None
        assert time.perf_counter() - t < 0.2
        assert c.status().values['infer_ms_p50'] >= 250
    finally:
        c.stop()


def test_jittery_plans_are_smoothed_and_small_changes_ignored(cortex):
    offsets = [0.012, -0.012, 0.010, -0.010, 0.011, -0.009, 0.0]
    for dx in offsets:
        cortex.backend.answer = Plan(centre=np.array([0.5 + dx, 0.1, 0.02]))
        assert cortex.step().level == OK
    # median of the last 5 accepted centres: x = 0.5 + median(0.010, -0.010, 0.011, -0.009, 0)
    assert cortex.goal().position[0] == pytest.approx(0.5, abs=1e-9)
    plan_id = cortex.goal().plan_id
    cortex.backend.answer = Plan(centre=np.array([0.501, 0.1, 0.02]))
    cortex.step()                       # median moves by < 3 mm: the goal is kept
    assert cortex.goal().plan_id == plan_id


def test_plans_pointing_at_the_arm_itself_are_ignored(cortex):
    from neurovla_ros.cortex.core import ray_hits_arm, segment_distance
    assert segment_distance(np.zeros(3), np.array([1.0, 0, 0]), np.array([0.5, 1, 0]),
                            np.array([0.5, 2, 0])) == pytest.approx(1.0)
    m = robot.load()
    q = m.home_pose()
    cam = Camera.from_info(K, 320, 240)
    origin = cam.pose[:3, 3]
    # a table point seen through the forearm/wrist at home (behind it from the camera) ...
    wrist = m.fk(q, tip='wrist_2_link')[:3, 3]
    d = wrist - origin
    behind = origin + d * ((0.02 - origin[2]) / d[2])
    assert ray_hits_arm(m, q, origin, behind)
    # ... and one in the open
    assert not ray_hits_arm(m, q, origin, np.array([0.55, -0.2, 0.02]))
    cortex.set_joints(q, [0.04, 0.04])
    cortex.backend.answer = Plan(centre=behind)
    s = cortex.step()
    assert s.level == WARN and 'arm itself' in s.message and cortex.goal() is None


def test_the_target_is_locked_while_descending(cortex):
    cortex.step()
    cortex.set_joints(q_at(0.5, 0.1, 0.13), [0.04, 0.04])
    assert cortex.goal().stage == 'final'
    cortex.clock_.t += 2.0
    cortex.set_image(np.zeros((240, 320, 3), np.uint8))
    cortex.set_joints(q_at(0.5, 0.1, 0.05), [0.04, 0.04])
    held = cortex.goal().position.copy()
    assert np.allclose(held, [0.5, 0.1, 0.05])
    # the gripper hides the object: plans wander by a few cm, the goal stays
    for dy in (0.02, 0.03, 0.04, 0.03, 0.02):
        cortex.backend.answer = Plan(centre=np.array([0.5, 0.1 + dy, 0.02]))
        assert 'locked' in cortex.step().message
    assert np.allclose(cortex.goal().position, held)
    # a distant target confirmed by several plans still moves it (and the hover restarts)
    cortex.backend.answer = Plan(centre=np.array([0.4, -0.2, 0.02]))
    for _ in range(3):
        cortex.step()
    g = cortex.goal()
    assert np.allclose(g.position[:2], [0.4, -0.2]) and g.stage == 'approach'
