"""``neurovla bench bus`` pieces on the emulated bus over a real pty, through the official SDKs:
a rate case cannot beat the emulator's wire model and reports it beside its rate; an injected
fault case is detected, stopped, recovered and counted safe; a start-up fault energises nothing."""
from neurovla_ros.bench import bus


def test_rate_case_stays_under_the_wire_limit(tmp_path):
    r = bus.rate_case('dynamixel', 0.0, 1.0, str(tmp_path))
    assert r['cycles'] > 100 and r['read_failures'] == 0 and r['commands_outside_limits'] == 0
    assert 0 < r['cycle_hz'] <= r['wire_limit_hz'] * 1.02, r
    assert r['cycle_ms_p50'] <= r['cycle_ms_p99']
    assert abs(r['share_of_wire_limit'] - r['cycle_hz'] / r['wire_limit_hz']) < 1e-9
    slow = bus.rate_case('feetech', 16.0, 1.0, str(tmp_path))
    assert slow['wire_limit_hz'] < 70 and slow['cycle_hz'] <= slow['wire_limit_hz'] * 1.02


def test_fault_cases_are_detected_stopped_and_recovered(tmp_path):
    f = bus.fault_case('feetech', 'bad_crc', {}, False, str(tmp_path))
    assert f['detected'] and f['stop_reached'] and f['recovered'] and f['safe'], f
    assert 'elbow_joint (ID 3)' in f['reason']
    s = bus.fault_case('dynamixel', 'duplicate_id', {}, True, str(tmp_path))
    assert s['detected'] and s['stop_reached'] and s['safe'], s
    assert 'nothing energised' in s['reason']
