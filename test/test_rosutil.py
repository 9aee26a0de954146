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
