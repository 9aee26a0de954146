"""The fault bench's server control: a test server process whose mode changes at run time,
killed with SIGKILL and restarted on the same port, as `bench cortex` drives it."""
import numpy as np
import pytest

from neurovla_ros.bench._cortex_faults import FAULTS, PolicyServer, free_port, summary
from neurovla_ros.cortex.clients import NeuroVLAClient, OpenpiClient, PolicyError

IMG = np.zeros((240, 320, 3), np.uint8)
IMG224 = np.zeros((224, 224, 3), np.uint8)


@pytest.mark.parametrize('protocol', ['neurovla', 'openpi'])
def test_policy_server_modes_kill_and_restart_on_its_port(protocol):
    port = free_port()
    server = PolicyServer(protocol, port)
    opts = dict(connect_timeout=2.0, reply_timeout=1.0, backoff_initial=0.01, backoff_max=0.01)
    client = (NeuroVLAClient if protocol == 'neurovla' else OpenpiClient)(
        f'ws://127.0.0.1:{port}', **opts)

    def call():
        if protocol == 'neurovla':
            return client.infer([[IMG]], ['touch the red cube'], np.zeros((1, 16, 8)))[0]
        return client.infer({'observation/image': IMG224, 'observation/wrist_image': IMG224,
                             'observation/state': np.zeros(8), 'prompt': 'touch the red cube'}
                            )['actions']
    try:
        server.start()
        a, b = call(), call()
        assert np.abs(a[0, :2]).max() > 0.1 and not np.allclose(a, b)   # the circle turns
        server.mode('nan')
        with pytest.raises(PolicyError, match='NaN'):
            call()
        server.mode('ok')
        client.conn._retry_at = 0.0
        call()
        server.kill()
        with pytest.raises(PolicyError):
            call()
        server.start()                    # the same port again
        client.conn._retry_at = 0.0
        call()
    finally:
        client.close()
        server.stop()


def test_the_fault_list_and_the_summary_count_every_row():
    names = [n for n, _ in FAULTS]
    assert names == ['absent_at_start', 'killed', 'slow_2s', 'error_map', 'wrong_shape', 'nan',
                     'traceback_1011']
    rows = [{'safe': True, 'recovered': True, 'recovery_s': 0.5, 'detect_s': 0.2,
             'excursion_m': 0.01},
            {'safe': False, 'recovered': False, 'recovery_s': None, 'detect_s': None,
             'excursion_m': 0.02}]
    s = summary(rows)
    assert s['remote_faults'] == 2 and s['remote_faults_safe'] == 1
    assert s['remote_unrecovered'] == 1 and s['remote_recovery_s_max'] is None


def test_protocol_overhead_per_backend_and_layout_against_server_processes():
    from neurovla_ros.bench.cortex import parse, protocol_overhead
    overhead, prep = protocol_overhead(5)
    assert sorted(overhead) == ['neurovla-server_neurovla', 'openpi_droid', 'openpi_libero']
    assert sorted(prep) == ['openpi_droid', 'openpi_libero']
    for v in (*overhead.values(), *prep.values()):
        assert len(v) == 5 and np.all(np.isfinite(v)) and np.all(v > 0)
    a = parse(['--remote-only'])
    assert a.remote_only and a.remote_faults == 'on'
