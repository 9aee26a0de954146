"""The relay's lossy, delaying line (common/relay.py, ROS-free)."""
import math

import numpy as np
import pytest

from neurovla_ros.common.relay import LossDelayLine


@pytest.mark.parametrize('loss', [0.1, 0.3, 0.9])
@pytest.mark.parametrize('seed', [0, 7])
def test_loss_fraction_is_within_binomial_bounds(loss, seed):
    n = 20000
    line = LossDelayLine(loss, 0.0, seed)
    kept = [line.push(0.0, i) for i in range(n)]
    sd = math.sqrt(n * loss * (1 - loss))
    assert abs(line.dropped - n * loss) < 5 * sd, (line.dropped, n * loss)
    assert line.received == n and line.dropped == kept.count(False)
    assert line.pop_due(0.0) == [i for i, k in zip(range(n), kept) if k]
    assert line.forwarded == n - line.dropped and line.pending == 0


def test_the_seed_repeats_a_run_and_another_seed_differs():
    def drops(seed):
        line = LossDelayLine(0.3, 0.0, seed)
        return [line.push(0.0, i) for i in range(500)]
    assert drops(3) == drops(3) and drops(3) != drops(4)


def test_delay_is_exact_and_order_is_kept():
    line = LossDelayLine(0.0, 0.05, 0)
    ts = np.arange(0.0, 0.1, 0.01)
    for i, t in enumerate(ts):
        line.push(float(t), i)
    assert line.next_due() == pytest.approx(0.05)
    assert line.pop_due(0.0499) == []
    got = []
    for i, t in enumerate(ts):
        due = line.pop_due(float(t) + 0.05)
        assert due == [i]                      # each one exactly delay_s after its push
        got += due
    assert got == list(range(len(ts))) and line.next_due() is None


def test_a_shortened_delay_never_reorders():
    line = LossDelayLine(0.0, 0.2, 0)
    line.push(0.0, 'old')
    line.configure(delay_s=0.0)
    line.push(0.01, 'new')
    assert line.pop_due(0.05) == []            # waits behind the older item
    assert line.pop_due(0.2) == ['old', 'new']
    line.configure(loss=1.0)
    assert not line.push(1.0, 'x') and line.dropped == 1 and line.delay_s == 0.0


def test_loss_0_and_delay_0_pass_everything_through_at_once():
    line = LossDelayLine()
    for i in range(1000):
        assert line.push(i * 1e-3, i)
        assert line.pop_due(i * 1e-3) == [i]
    assert (line.received, line.dropped, line.forwarded) == (1000, 0, 1000)


@pytest.mark.parametrize('kwargs, what', [
    ({'loss': -0.1}, 'loss'), ({'loss': 1.01}, 'loss'), ({'loss': float('nan')}, 'loss'),
    ({'loss': True}, 'loss'), ({'loss': '0.1'}, 'loss'),
    ({'delay_s': -0.001}, 'delay_s'), ({'delay_s': float('inf')}, 'delay_s'),
    ({'delay_s': 5.5}, 'delay_s'),
    ({'seed': -1}, 'seed'), ({'seed': 1.5}, 'seed'), ({'seed': True}, 'seed'),
])
def test_invalid_values_are_refused(kwargs, what):
    with pytest.raises(ValueError, match=what):
        LossDelayLine(**kwargs)
    line = LossDelayLine(0.2, 0.1, 0)
    if what != 'seed':
        with pytest.raises(ValueError, match=what):
            line.configure(**kwargs)
        assert (line.loss, line.delay_s) == (0.2, 0.1)      # nothing changed
