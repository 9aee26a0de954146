"""Parameters mean what they say (issue 14): every writable parameter of the spinal node, set
over DDS (its parameter services, from another node) to a valid new value, is in force in the
running controller before the next tick; read-only ones and invalid values are refused with a
reason. The live value is read from the object that uses it, not from the parameter store."""
from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from rclpy.experimental import EventsExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from neurovla_ros.spinal.params import PARAMS as SPINAL_PARAMS

# where each writable spinal parameter lives in the running node
SPINAL_LIVE = {
    'reference_timeout': lambda n: n.ctrl.cfg.reference_timeout,
    'engage_time': lambda n: n.ctrl.cfg.engage_time,
    'feedforward': lambda n: n.ctrl.cfg.feedforward,
    'reflex_enabled': lambda n: n.ctrl.cfg.reflex_enabled,
    'reflex_threshold_arm': lambda n: float(n.ctrl.detector.thresholds[0]),
    'reflex_threshold_wrist': lambda n: float(n.ctrl.detector.thresholds[3]),
    'reflex_dynamic_fraction': lambda n: n.ctrl.detector.cfg.dyn_fraction,
    'reflex_tremor_gain': lambda n: n.ctrl.detector.cfg.env_gain,
    'observer_gain': lambda n: n.ctrl.detector.cfg.gain,
    'wrench_threshold': lambda n: n.wrench.threshold if n.wrench else 0.0,
    'withdraw_distance': lambda n: n.ctrl.withdrawal.cfg.distance,
    'withdraw_time': lambda n: n.ctrl.withdrawal.cfg.duration,
    'withdraw_max_joint': lambda n: n.ctrl.withdrawal.cfg.max_joint,
    'withdraw_min_height': lambda n: n.ctrl.withdrawal.cfg.min_height,
    'hold_scale': lambda n: n.ctrl.cfg.hold_scale,
    'quiet_time': lambda n: n.ctrl.cfg.quiet_time,
    'state_timeout': lambda n: (n.watchdog.timeout,
                                n._check_timer.timer_period_ns * 1e-9 * 2),
    'diagnostics_period': lambda n: n._diag_timer.timer_period_ns * 1e-9,
    # read where they are used (each diagnostics period)
    'energy_per_sop': lambda n: n.p.energy_per_sop,
    'expected_rate': lambda n: n.p.expected_rate,
}


def new_value(p):
    """A valid value other than the default."""
    if isinstance(p.default, bool):
        return not p.default
    if p.choices:
        return next(c for c in p.choices if c != p.default)
    if isinstance(p.default, str):
        return p.default + '_x'
    hi = p.max if p.max is not None else p.default * 2 + 1
    v = p.default + (hi - p.default) / 2 if isinstance(p.default, float) else p.default + 1
    return type(p.default)(v)


def invalid_values(p):
    if isinstance(p.default, bool):
        return ['yes']                                   # wrong type
    out = [] if p.max is None else [type(p.default)(p.max * 2 + 1)]
    if p.min is not None:
        out.append(type(p.default)(p.min - abs(p.min) - 1))
    if isinstance(p.default, float):
        out.append(float('nan'))
    return out


def close(a, b):
    a, b = np.atleast_1d(a).astype(float), np.atleast_1d(np.broadcast_to(b, np.shape(a)))
    return np.allclose(a, b.astype(float), rtol=1e-9, atol=1e-12)


class Setter:
    """Sets parameters of another node through its parameter services over DDS."""

    def __init__(self, target: Node):
        self.node = Node('param_setter', context=target.context)
        self.ex = EventsExecutor(context=target.context)
        self.ex.add_node(target)
        self.ex.add_node(self.node)
        self.client = AsyncParameterClient(self.node, target.get_fully_qualified_name())
        deadline = time.monotonic() + 10
        while not self.client.services_are_ready() and time.monotonic() < deadline:
            self.ex.spin_once(timeout_sec=0.05)
        assert self.client.services_are_ready(), 'parameter services not found over DDS'

    def set(self, name, value):
        fut = self.client.set_parameters([Parameter(name, value=value)])
        deadline = time.monotonic() + 5
        while not fut.done() and time.monotonic() < deadline:
            self.ex.spin_once(timeout_sec=0.02)
        assert fut.done(), f'no reply setting {name}'
        return fut.result().results[0]

    def close(self):
        self.node.destroy_node()


def check_node(node, schema, live):
    setter = Setter(node)
    try:
        writable = [p for p in schema if not p.read_only]
        assert sorted(live) == sorted(p.name for p in writable), \
            'every writable parameter needs its live value in the test (or read_only=True)'
        for p in schema:
            if p.read_only:
                r = setter.set(p.name, new_value(p))
                assert not r.successful and r.reason, p.name
                continue
            for bad in invalid_values(p):
                before = live[p.name](node)
                r = setter.set(p.name, bad)
                assert not r.successful and r.reason, (p.name, bad)
                assert close(live[p.name](node), before), (p.name, 'changed by a refused set')
            v = new_value(p)
            assert not close(live[p.name](node), v), (p.name, 'already at the new value')
            r = setter.set(p.name, v)
            assert r.successful, (p.name, v, r.reason)
            assert close(live[p.name](node), v), (p.name, v, live[p.name](node))
    finally:
        setter.close()


def test_every_spinal_parameter_takes_effect_or_is_refused():
    from neurovla_ros.spinal.node import SpinalNode
    rclpy.init()
    try:
        node = SpinalNode()
        try:
            check_node(node, SPINAL_PARAMS, SPINAL_LIVE)
            # the controller still ticks on the new configuration
            q = np.zeros(6)
            node.ctrl.hold(q)
            cmd = node.ctrl.step(q, q, None, 0.0, 0.0, 0.0)
            assert np.all(np.isfinite(cmd))
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()


def test_spinal_controller_refuses_a_fixed_setting():
    from dataclasses import replace

    from neurovla_ros.spinal.controller import SpinalController
    ctrl = SpinalController()
    with pytest.raises(ValueError, match='limit_margin'):
        ctrl.configure(replace(ctrl.cfg, limit_margin=0.1))
