"""Remote policy clients against project-written servers that follow each protocol exactly,
including every failure a client must survive (refused, timeout, slow, malformed, wrong shape,
NaN, error map, 1011 traceback frame, close) and reconnection with backoff."""
import json
import socket
import time
import urllib.request

import numpy as np
import pytest

from neurovla_ros.cortex.actions import ActionStats
from neurovla_ros.cortex.backends import NeuroVLABackend, OpenpiBackend
from neurovla_ros.cortex.clients import NeuroVLAClient, OpenpiClient, PolicyError
from neurovla_ros.cortex.core import Observation, PlanError
from neurovla_ros.cortex.testservers import NeuroVLATestServer, OpenpiTestServer

IMG = np.zeros((240, 320, 3), np.uint8)
FAST = dict(connect_timeout=1.0, reply_timeout=0.3, backoff_initial=0.05, backoff_max=0.2)


def neuro_infer(client, b=1):
    return client.infer([[IMG]] * b, ['touch the red cube'] * b, np.zeros((b, 16, 8)))


IMG224 = np.zeros((224, 224, 3), np.uint8)


def openpi_obs():
    return {'observation/image': IMG224, 'observation/wrist_image': IMG224,
            'observation/state': np.zeros(8, np.float32), 'prompt': 'touch the red cube'}


def wait_backoff(client):
    time.sleep(client.conn.backoff_max + 0.05)


@pytest.fixture
def neuro():
    with NeuroVLATestServer(chunk=16) as s:
        yield s


@pytest.fixture
def openpi():
    with OpenpiTestServer(horizon=10) as s:
        yield s


def test_neurovla_metadata_ping_and_infer(neuro):
    c = NeuroVLAClient(neuro.uri, **FAST)
    assert c.ping()['type'] == 'ping'     # the NeuroVLA server echoes the type
    assert c.metadata['action_chunk'] == 16
    acts = neuro_infer(c, b=2)
    assert acts.shape == (2, 16, 7) and np.all(acts == 0)
    assert neuro.violations == []
    req = neuro.requests[-1]
    assert set(req) == {'type', 'request_id', 'payload'} and req['type'] == 'infer'
    assert set(req['payload']) == {'batch_images', 'instructions', 'states'}
    assert req['payload']['states'].dtype == np.float32
    assert req['payload']['states'].shape == (2, 16, 8)


def test_neurovla_rejects_bad_batches_before_sending(neuro):
    c = NeuroVLAClient(neuro.uri, **FAST)
    with pytest.raises(ValueError):
        c.infer([[IMG]], ['a', 'b'], np.zeros((2, 16, 8)))
    with pytest.raises(ValueError):
        c.infer([[IMG]], ['a'], np.zeros((1, 15, 8)))
    assert len(neuro.requests) == 0


@pytest.mark.parametrize('mode,kind', [('hang', 'timeout'), ('slow', 'timeout'),
                                       ('malformed', 'malformed'), ('wrong_shape', 'shape'),
                                       ('nan', 'malformed'), ('error', 'server_error'),
                                       ('crash', 'server_error'), ('close', 'closed')])
@pytest.mark.parametrize('protocol', ['neurovla', 'openpi'])
def test_failures_become_policy_errors_then_recover(protocol, mode, kind, neuro, openpi):
    server = neuro if protocol == 'neurovla' else openpi
    c = (NeuroVLAClient if protocol == 'neurovla' else OpenpiClient)(server.uri, **FAST)
    call = (lambda: neuro_infer(c)) if protocol == 'neurovla' else (lambda: c.infer(openpi_obs()))
    call()                                   # healthy first
    server.mode, server.delay = mode, 0.6    # slow: later than the 0.3 s reply timeout
    t0 = time.monotonic()
    with pytest.raises(PolicyError) as e:
        call()
    assert e.value.kind == kind, e.value
    assert time.monotonic() - t0 < 1.0       # bounded by the reply timeout
    assert not c.conn.connected and c.conn.failures == 1
    with pytest.raises(PolicyError) as e:    # inside the backoff window: fail fast, no connect
        call()
    assert e.value.kind == 'backoff'
    server.mode = 'ok'
    wait_backoff(c)
    call()                                   # reconnected
    assert c.conn.connected and c.conn.failures == 0 and c.conn.reconnects >= 1
    assert server.violations == []


def test_slow_server_within_timeout_is_fine(neuro):
    c = NeuroVLAClient(neuro.uri, **FAST)
    neuro.mode, neuro.delay = 'slow', 0.1
    assert neuro_infer(c).shape == (1, 16, 7)


def test_stale_replies_with_other_request_ids_are_skipped(neuro):
    c = NeuroVLAClient(neuro.uri, **FAST)
    neuro.mode, neuro.delay = 'slow', 0.4
    with pytest.raises(PolicyError):
        neuro_infer(c)                       # times out; its reply arrives late
    neuro.mode = 'ok'
    wait_backoff(c)
    assert neuro_infer(c).shape == (1, 16, 7)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.parametrize('cls', [NeuroVLAClient, OpenpiClient])
def test_connection_refused_and_backoff_growth(cls):
    c = cls(f'ws://127.0.0.1:{free_port()}', connect_timeout=0.5, reply_timeout=0.2,
            backoff_initial=0.05, backoff_max=0.4)
    delays = []
    for _ in range(4):
        with pytest.raises(PolicyError) as e:
            c.infer(openpi_obs()) if cls is OpenpiClient else neuro_infer(c)
        assert e.value.kind == 'refused'
        delays.append(c.conn._retry_at - time.monotonic())
        time.sleep(max(0.0, delays[-1]) + 0.01)
    assert delays[0] < delays[1] < delays[2] and delays[3] <= 0.4


def test_server_that_sends_a_traceback_instead_of_metadata():
    with NeuroVLATestServer() as s:
        s.metadata = 'not a map'
        c = NeuroVLAClient(s.uri, **FAST)
        with pytest.raises(PolicyError) as e:
            neuro_infer(c)
        assert e.value.kind == 'malformed'


def test_openpi_reply_and_healthz(openpi):
    c = OpenpiClient(openpi.uri, **FAST)
    r = c.infer(openpi_obs())
    assert r['actions'].shape == (10, 7) and 'infer_ms' in r['server_timing']
    assert 'infer_ms' in r['policy_timing'] and 'prev_total_ms' not in r['server_timing']
    assert 'prev_total_ms' in c.infer(openpi_obs())['server_timing']   # from the second on
    assert c.metadata['action_horizon'] == 10
    assert set(openpi.requests[-1]) == {'observation/image', 'observation/wrist_image',
                                        'observation/state', 'prompt'}
    assert c.metadata['layout'] == 'libero'
    body = urllib.request.urlopen(f'http://127.0.0.1:{openpi.port}/healthz', timeout=2).read()
    assert body.strip() == b'OK'


def test_openpi_undocumented_observation_is_a_server_error(openpi):
    c = OpenpiClient(openpi.uri, **FAST)
    with pytest.raises(PolicyError) as e:
        c.infer({'observation/image': IMG, 'prompt': 'x'})
    assert e.value.kind == 'server_error' and openpi.violations


def obs(q=None):
    from neurovla_ros import robot
    m = robot.load()
    q = m.home_pose() if q is None else q
    return Observation('touch the red cube', IMG, 0.0, None, q, np.array([0.04, 0.04]), 0.0,
                       m.fk(q), wrist_image=IMG, wrist_image_age=0.0)


def test_neurovla_backend_unnormalises_and_ensembles(tmp_path):
    # the server predicts normalised +1 (= q99) in x for every step of the first chunk, then -1
    value = {'x': 1.0}

    def policy(_payload):
        a = np.zeros((16, 7), np.float32)
        a[:, 0] = value['x']
        a[:, 6] = 1.0            # gripper: 1 -> unnormalised 1 -> close
        return a
    stats = {'libero': {'action': {'q01': [-0.5, -1, -1, -1, -1, -1, 0],
                                   'q99': [0.5, 1, 1, 1, 1, 1, 1],
                                   'mask': [True] * 6 + [False]}}}
    path = tmp_path / 'dataset_statistics.json'
    path.write_text(json.dumps(stats))
    with NeuroVLATestServer(policy=policy) as s:
        now = [0.0]
        b = NeuroVLABackend(s.uri, ActionStats.from_file(str(path)), translation_scale=1.0,
                            ensemble_horizon=2, ensemble_decay=0.0, action_dt=0.1,
                            clock=lambda: now[0])
        o = obs()
        p1 = b.plan(o)           # a = 0.5 (1 + 1)(0.5 + 0.5) - 0.5 = 0.5 m in x
        assert p1.position[0] == pytest.approx(o.tcp[0, 3] + 0.5)
        assert p1.gripper == pytest.approx(0.04)    # NeuroVLA: 1 = open
        value['x'] = -1.0        # unnormalised -0.5; ensembled with the first chunk's row 1
        now[0] = 0.1
        p2 = b.plan(o)
        assert p2.position[0] == pytest.approx(o.tcp[0, 3] + 0.0)
        states = s.requests[-1]['payload']['states'][0]
        assert np.allclose(states[-1, :3], o.tcp[:3, 3]) and np.allclose(states[-1, 6:], 0.04)
        assert s.violations == []
        s.mode = 'crash'
        with pytest.raises(PlanError, match='server_error'):
            b.plan(o)
        assert b.diagnostics()['last_error_kind'] == 'server_error'
        assert len(b.ensembler.chunks) == 0        # a failure clears the old predictions
        b.close()


@pytest.mark.parametrize('backend,convention,closes_above', [
    ('neurovla-server', 'backend', False), ('openpi', 'backend', True),
    ('neurovla-server', 'high_closes', True), ('openpi', 'high_opens', False)])
def test_gripper_convention_per_backend(backend, convention, closes_above):
    from neurovla_ros.cortex.backends import make
    grip = {'v': 1.0}

    def policy(_request):
        a = np.zeros((16, 7), np.float32)
        a[:, 6] = grip['v']
        return a
    cls = NeuroVLATestServer if backend == 'neurovla-server' else OpenpiTestServer
    kw = {'chunk': 16} if backend == 'neurovla-server' else {'horizon': 16}
    with cls(policy=policy, **kw) as s:
        b = make(backend, server_uri=s.uri, gripper_convention=convention)
        for v, closed in ((1.0, closes_above), (0.0, not closes_above)):
            grip['v'] = v
            b.reset()
            assert b.plan(obs()).gripper == pytest.approx(0.0 if closed else 0.04), (v, closed)
        b.close()


@pytest.mark.parametrize('backend,layout,value,closed', [
    # LIBERO: robosuite moves the gripper by the action's sign (-1 open, +1 close)
    ('openpi', 'libero', 0.3, True), ('openpi', 'libero', -0.3, False),
    # DROID: openpi's DROID client binarises the gripper position at 0.5 (1 = closed)
    ('openpi', 'droid', 0.3, False), ('openpi', 'droid', 0.7, True),
    # NeuroVLA: 1 = open, binarised at 0.5
    ('neurovla-server', '', 0.3, True), ('neurovla-server', '', 0.7, False)])
def test_gripper_threshold_per_backend_and_layout(backend, layout, value, closed):
    from neurovla_ros.cortex.backends import make
    dim = 8 if layout == 'droid' else 7

    def policy(_request):
        a = np.zeros((16, dim), np.float32)
        a[:, -1] = value
        return a
    if backend == 'openpi':
        server = OpenpiTestServer(horizon=16, layout=layout, policy=policy)
    else:
        server = NeuroVLATestServer(chunk=16, policy=policy)
    with server as s:
        b = make(backend, server_uri=s.uri, openpi_layout=layout or 'libero')
        assert b.plan(obs()).gripper == pytest.approx(0.0 if closed else 0.04)
        assert s.violations == []
        b.close()


def test_droid_joint_velocities_are_scaled_as_droids_controller_does():
    """DROID's RobotIKSolver.joint_velocity_to_delta: the 7 velocities scaled together so that
    none exceeds 1, then 0.2 rad x v per step."""
    from neurovla_ros import robot
    q0 = robot.load().home_pose()

    def policy(_obs):
        a = np.zeros((3, 8), np.float32)
        a[:, 0], a[:, 1] = 3.0, -0.25     # scaled by 1/3 together: 1 and -0.25 / 3
        return a
    with OpenpiTestServer(horizon=3, layout='droid', policy=policy) as s:
        b = OpenpiBackend(s.uri, layout='droid', action_dt=0.1)
        p = b.plan(obs(q0))
        assert [t for t, _ in p.trajectory] == pytest.approx([0.1, 0.2, 0.3])
        assert p.trajectory[-1][1][0] == pytest.approx(q0[0] + 3 * 0.2 * 1.0)
        assert p.trajectory[-1][1][1] == pytest.approx(q0[1] - 3 * 0.2 * 0.25 / 3.0)
        b.close()


def test_openpi_backend_refuses_a_statistics_file(tmp_path):
    from neurovla_ros.cortex.backends import make
    path = tmp_path / 'norm_stats.json'
    path.write_text(json.dumps({'norm_stats': {'actions': {'q01': [0] * 7, 'q99': [1] * 7}}}))
    with pytest.raises(ValueError, match='scale them twice'):
        make('openpi', server_uri='ws://127.0.0.1:1', statistics_file=str(path))
    with pytest.raises(ValueError, match='openpi norm_stats'):
        make('neurovla-server', server_uri='ws://127.0.0.1:1', statistics_file=str(path))


def test_backoff_keeps_the_cause_of_the_outage(neuro):
    b = NeuroVLABackend(neuro.uri, ActionStats.identity(), client_options=FAST)
    o = obs()
    b.plan(o)
    neuro.mode = 'nan'
    with pytest.raises(PlanError, match='malformed'):
        b.plan(o)
    with pytest.raises(PlanError) as e:       # inside the back-off: the cause is named
        b.plan(o)
    assert 'backoff' in str(e.value) and 'NaN' in str(e.value)
    d = b.diagnostics()
    assert d['last_error_kind'] == 'malformed' and 'NaN' in d['outage_cause']
    assert d['outage_s'] >= 0.0
    neuro.mode = 'ok'
    wait_backoff(b.client)
    b.plan(o)
    assert b.diagnostics()['outage_cause'] == '' and b.client.conn.outage is None
    b.close()


def test_inference_figures_count_completed_exchanges_and_failures_apart():
    """infer_ms_* are the exchanges that returned a plan (a slow server: ~50 ms each); the
    failures of an outage (the first one, then the instant back-off refusals) are counted in
    ``errors``, never in the latency figures."""
    from neurovla_ros import robot
    from neurovla_ros.cortex.camera import Camera
    from neurovla_ros.cortex.core import Cortex
    q0 = robot.load().home_pose()
    with NeuroVLATestServer(mode='slow', delay=0.05) as s:
        b = NeuroVLABackend(s.uri, ActionStats.identity(),
                            client_options=dict(FAST, reply_timeout=0.3, backoff_initial=0.5,
                                                backoff_max=1.0))
        c = Cortex(b)
        c.set_camera(Camera.from_info([277.19, 0, 160, 0, 277.19, 120, 0, 0, 1], 320, 240))
        c.set_instruction('touch the red cube')

        def step():
            c.set_image(np.zeros((240, 320, 3), np.uint8))
            c.set_joints(q0, [0.04, 0.04])
            return c.step()
        for _ in range(5):
            step()
        v = c.status().values
        assert v['errors'] == 0 and len(c.latencies) == 5 and v['infer_ms_p50'] >= 45.0
        s.mode = 'nan'
        for _ in range(20):          # one malformed reply, then refusals inside the back-off
            step()
        v = c.status().values
        assert v['errors'] == 20 and len(c.latencies) == 5 and v['infer_ms_p50'] >= 45.0
        c.stop()


def test_openpi_backend_joint_chunks_become_trajectories():
    from neurovla_ros import robot
    q0 = robot.load().home_pose()

    def policy(_obs):
        return np.tile(np.r_[q0 + 0.1, 0.0], (5, 1)).astype(np.float32)
    with OpenpiTestServer(horizon=5, policy=policy) as s:
        b = OpenpiBackend(s.uri, action_space='joint_position', action_dt=0.2)
        assert s.violations == []
        p = b.plan(obs(q0))
        assert [t for t, _ in p.trajectory] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
        assert np.allclose(p.trajectory[0][1], q0 + 0.1, atol=1e-6)
        assert p.gripper == 0.04
        b.close()


@pytest.mark.parametrize('cls', [NeuroVLATestServer, OpenpiTestServer])
def test_a_slow_policy_stalls_other_handshakes_as_on_the_real_servers(cls):
    # one event loop, the policy called inside it: a second client's handshake waits for it
    with cls(mode='slow', delay=0.6) as s:
        slow = (NeuroVLAClient if cls is NeuroVLATestServer else OpenpiClient)(
            s.uri, connect_timeout=2.0, reply_timeout=2.0)
        slow.conn.connect()
        slow.conn._ws.send(b'\x80')          # an empty map: the server starts "computing"
        time.sleep(0.1)
        other = NeuroVLAClient(s.uri, connect_timeout=2.0)
        t0 = time.monotonic()
        other.conn.connect()
        assert time.monotonic() - t0 > 0.3
        slow.close()
        other.close()


@pytest.mark.parametrize('layout', ['libero', 'droid'])
def test_openpi_layouts_send_what_openpis_input_transforms_read(layout):
    from neurovla_ros import robot
    q0 = robot.load().home_pose()
    # libero: ee deltas (+x 1 unit); droid: joint velocities (0.5 of DROID's unit on the pan
    # joint: 0.1 rad per step)
    dim = 7 if layout == 'libero' else 8

    def policy(_obs):
        a = np.zeros((4, dim), np.float32)
        a[:, 0] = 1.0 if layout == 'libero' else 0.5
        a[:, -1] = 1.0                   # the gripper: closes in both
        return a
    with OpenpiTestServer(horizon=4, layout=layout, policy=policy) as s:
        b = OpenpiBackend(s.uri, layout=layout, action_dt=0.1, translation_scale=0.05)
        o = obs(q0)
        p = b.plan(o)
        assert s.violations == [], s.violations
        req = s.requests[-1]
        images = [k for k in req if 'image' in k]
        assert len(images) == 2 and all(req[k].shape == (224, 224, 3) for k in images)
        assert p.gripper == 0.0
        if layout == 'libero':
            assert np.allclose(req['observation/state'][:3], o.tcp[:3, 3], atol=1e-6)
            assert p.position[0] == pytest.approx(o.tcp[0, 3] + 0.05)
        else:
            assert np.allclose(req['observation/joint_position'], np.r_[q0, 0.0])
            assert req['observation/gripper_position'] == pytest.approx([0.0])   # open
            assert [t for t, _ in p.trajectory] == pytest.approx([0.1, 0.2, 0.3, 0.4])
            assert p.trajectory[-1][1][0] == pytest.approx(q0[0] + 4 * 0.2 * 0.5)
        b.close()


def test_openpi_server_refuses_another_layout_as_openpi_would():
    with OpenpiTestServer(layout='droid') as s:
        b = OpenpiBackend(s.uri, layout='libero', client_options=FAST)
        with pytest.raises(PlanError, match='server_error'):
            b.plan(obs())
        assert s.violations and 'missing' in s.violations[0]
        b.close()


def test_resize_with_pad_keeps_the_aspect_ratio():
    from neurovla_ros.cortex.backends import resize_with_pad
    img = np.full((240, 320, 3), 200, np.uint8)
    out = resize_with_pad(img, 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    rows = np.where(out[:, 112, 0] > 0)[0]
    assert rows.min() == 28 and rows.max() == 195        # 168 rows of image, black bands


@pytest.mark.parametrize('protocol', ['neurovla', 'openpi'])
def test_replies_beyond_the_size_bounds_are_clear_errors(protocol):
    big = {'n': 16}

    def policy(_request):
        return np.zeros((big['n'], 7), np.float32)
    cls = NeuroVLATestServer if protocol == 'neurovla' else OpenpiTestServer
    with cls(policy=policy) as s:
        c = (NeuroVLAClient if protocol == 'neurovla' else OpenpiClient)(
            s.uri, **FAST, max_reply_bytes=100_000, max_array_elements=5_000)

        def call():
            return neuro_infer(c) if protocol == 'neurovla' else c.infer(openpi_obs())
        call()                                   # 16 x 7: within both bounds
        big['n'] = 1000                          # 7000 elements, 28 kB: too many elements
        with pytest.raises(PolicyError, match='elements accepted per field') as e:
            call()
        assert e.value.kind == 'malformed'
        big['n'] = 10_000                        # 280 kB: a frame over max_reply_bytes
        wait_backoff(c)
        with pytest.raises(PolicyError) as e:
            call()
        assert e.value.kind == 'too_large' and '100000 bytes' in e.value.message
        big['n'] = 16
        wait_backoff(c)
        call()                                   # and it recovers
        c.close()
