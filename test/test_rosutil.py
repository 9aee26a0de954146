"""rosutil helpers that need a live rclpy node (LatestSample's DDS test is in test_cdr.py)."""
import time

from neurovla_ros.common.rosutil import Throttled


def test_throttled_logs_once_per_period_per_key_and_counts_the_rest(rclpy_node, capfd):
    log = Throttled(rclpy_node.get_logger(), period=0.3)
    t0 = time.monotonic()
    sent = [log.warning('joint_states', f'bad sample {i}') for i in range(500)]
    assert time.monotonic() - t0 < 0.3           # all inside one period
    assert sent == [True] + [False] * 499
    assert log.warning('reference', 'bad reference')        # another key has its own period
    assert log('reflex', 'a note', 'info')
    time.sleep(0.35)
    assert log.error('joint_states', 'bad sample again')
    err = capfd.readouterr().err
    lines = [x for x in err.splitlines() if 'test_probe' in x]
    assert len(lines) == 4, err
    assert '[WARN]' in lines[0] and 'bad sample 0' in lines[0]
    assert '[WARN]' in lines[1] and 'bad reference' in lines[1]
    assert '[INFO]' in lines[2] and 'a note' in lines[2]
    assert '[ERROR]' in lines[3] and 'bad sample again (499 more since the last such message)' \
        in lines[3]


def test_diagnostic_values_are_formatted_one_way_and_read_back():
    import math

    import numpy as np

    from neurovla_ros.common.rosutil import diagnostic_status, diagnostic_values, kv_text, kv_value
    cases = [(True, 'true'), (np.bool_(False), 'false'), (7, '7'), (np.int64(-3), '-3'),
             (0.1234567891, '0.123457'), (np.float32(2.5), '2.5'), (1e-9, '1e-09'),
             (float('nan'), 'nan'), (float('inf'), 'inf'), ([1.0, 2, True], '1 2 true'),
             (np.array([0.5, -1.25]), '0.5 -1.25'), ('as it is 1.000', 'as it is 1.000'),
             ('', ''), ({'a': 1}, "{'a': 1}")]
    for value, text in cases:
        assert kv_text(value) == text, value
    assert [kv_value(t) for t in ('7', '-3', '0.123457', 'true', 'false', 'follow', '')] == \
        [7, -3, 0.123457, True, False, 'follow', '']
    assert math.isnan(kv_value('nan')) and kv_value('inf') == math.inf
    st = diagnostic_status('spinal: controller', {'mode': 'follow', 'tick_us_p99': 41.25,
                                                  'reflex_events': 2, 'adapting': False},
                           level=1, message='late', hardware_id='neurovla_arm')
    assert (st.level, st.name, st.message, st.hardware_id) == \
        (b'\x01', 'spinal: controller', 'late', 'neurovla_arm')
    assert [(kv.key, kv.value) for kv in st.values] == [
        ('mode', 'follow'), ('tick_us_p99', '41.25'), ('reflex_events', '2'),
        ('adapting', 'false')]
    assert diagnostic_values(st) == {'mode': 'follow', 'tick_us_p99': 41.25,
                                     'reflex_events': 2, 'adapting': False}
