"""Parameters mean what they say (issue 14): every writable parameter of the spinal, cortex,
cerebellum, sim and relay nodes, set over DDS (their parameter services, from another node) to
a valid new value, is in force in the running node before its next tick or plan; read-only
ones and invalid values are refused with a reason. The live value is read from the object that
uses it, not from the parameter store (or, where a value is read at each use, from the live
namespace that use reads)."""
from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from rclpy.experimental import EventsExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from neurovla_ros.cortex.params import PARAMS as CORTEX_PARAMS
from neurovla_ros.spinal.params import PARAMS as SPINAL_PARAMS

# where each writable spinal parameter lives in the running node
SPINAL_LIVE = {
    # rhythm: read when a program comes (the generator's gains: at once)
    'rhythm_joint': lambda n: n.p.rhythm_joint,
    'rhythm_amplitude': lambda n: n.p.rhythm_amplitude,
    'rhythm_velocity_scale': lambda n: n.p.rhythm_velocity_scale,
    'rhythm_preempt_distance': lambda n: n.p.rhythm_preempt_distance,
    'rhythm_mode': lambda n: n.p.rhythm_mode,     # a new generator at the next program
    'rhythm_baseline_lead': lambda n: n.p.rhythm_baseline_lead,
    'rhythm_k_phase': lambda n: n.rhythm.cfg.k_phase,
    'rhythm_k_freq': lambda n: n.rhythm.cfg.k_freq,
    'rhythm_max_correction': lambda n: n.rhythm.cfg.max_correction,
    'rhythm_sensor_timeout': lambda n: n.rhythm.cfg.sensor_timeout,
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
    if isinstance(p.default, list) and all(isinstance(v, str) for v in p.default):
        return p.default[:1]
    if isinstance(p.default, list):
        return [v + 0.01 for v in p.default]
    hi = p.max if p.max is not None else p.default * 2 + 1
    if hi == p.default:                                  # at the top: go down
        hi = p.min
    v = p.default + (hi - p.default) / 2 if isinstance(p.default, float) else p.default + 1
    return type(p.default)(v)


def invalid_values(p):
    if isinstance(p.default, bool):
        return ['yes']                                   # wrong type
    if isinstance(p.default, list):                      # wrong length, not finite
        return [p.default[:-1], [float('nan')] + p.default[1:], [float('inf')] * len(p.default)]
    if isinstance(p.default, str):
        return [] if not p.choices else [p.default + '_unknown']
    out = [] if p.max is None else [type(p.default)(p.max * 2 + 1)]
    if p.min is not None:
        out.append(type(p.default)(p.min - abs(p.min) - 1))
    if isinstance(p.default, float):
        out.append(float('nan'))
    return out


def close(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return a == b
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
    """``live[name]``: the value in force, read from the object that uses it, or a pair
    (that, what it should be for a value set)."""
    expect = {k: f[1] for k, f in live.items() if not callable(f)}
    live = {k: f if callable(f) else f[0] for k, f in live.items()}
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
            want = expect[p.name](v) if p.name in expect else v
            assert close(live[p.name](node), want), (p.name, want, live[p.name](node))
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


CORTEX_LIVE = {
    'instruction': lambda n: n.core.instruction,
    'dry_run': lambda n: n.p.dry_run,            # read at each goal
    'image_timeout_s': lambda n: n.core.image_timeout,
    'joints_timeout_s': lambda n: n.core.joints_timeout,
    'clearance': lambda n: n.core.clearance,
    'approach_height': lambda n: n.core.approach_height,
    'descent_time': lambda n: n.core.descent_time,
    'xy_tolerance': lambda n: n.core.xy_tolerance,
    'jump_tolerance': lambda n: n.core.jump_tolerance,
    'confirm_plans': lambda n: n.core.confirm,
    'smoothing': lambda n: (n.core.smoothing, n.core._recent.maxlen),
    'deadband': lambda n: n.core.deadband,
    'min_confidence': lambda n: n.core.min_confidence,
    'gripper_opening': lambda n: (n.core.gripper_opening,   # and the remote backends' own
                                  getattr(n.core.backend, 'gripper_opening',
                                          n.core.gripper_opening)),
    'workspace_min': lambda n: n.core.workspace[:, 0],
    'workspace_max': lambda n: n.core.workspace[:, 1],
}


def test_every_cortex_parameter_takes_effect_or_is_refused():
    from neurovla_ros.cortex.node import CortexNode
    # realtime_priority 0: this test process stays off SCHED_FIFO and the PM QoS request
    rclpy.init(args=['--ros-args', '-p', 'backend:=scripted', '-p', 'realtime_priority:=0'])
    try:
        node = CortexNode()
        try:
            check_node(node, CORTEX_PARAMS, CORTEX_LIVE)
            # a workspace whose minimum passes its maximum is refused as a whole
            setter = Setter(node)
            before = node.core.workspace.copy()
            r = setter.set('workspace_min', [0.9, 0.0, 0.0])
            assert not r.successful and 'min < max' in r.reason
            np.testing.assert_array_equal(node.core.workspace, before)
            setter.close()
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.try_shutdown()


CEREBELLUM_LIVE = {
    'smoothing': lambda n: n.core.smoothing,
    'joint_timeout': lambda n: n.core.joint_timeout,          # slots the (C) tick reads
    'imu_timeout': lambda n: n.core.imu_timeout,
    'goal_feedforward': lambda n: n.core.goal_feedforward,
    'inertia_feedforward': lambda n: n.core.inertia_feedforward,
    'twist_timeout': lambda n: n.core.twist_timeout,
    'tremor_enabled': lambda n: n.core.tremor_enabled,
    'max_tracking_error': lambda n: n.core.max_tracking_error,
    'resync_time': lambda n: n.core.resync_time,
    'reflex_window': lambda n: n.core.reflex_window,
    'halt_acceleration': lambda n: n.core.halt_acceleration,   # the teleop brake
    'halt_jerk': lambda n: n.core.halt_jerk,
    'teleop_hold_time': lambda n: n.arbiter.hold_time,        # the teleop / cortex rule
    # the goal intake reads these from its configuration at each goal
    'ik_position_tolerance': lambda n: n.core.intake.cfg.ik_position_tolerance,
    'ik_rotation_tolerance': lambda n: n.core.intake.cfg.ik_rotation_tolerance,
    'ik_max_iterations': lambda n: n.core.intake.cfg.ik_max_iterations,
    'workspace_min_z': lambda n: n.core.intake.cfg.workspace_min_z,
    'max_linear_speed': lambda n: n.core.intake.cfg.max_linear_speed,
    'max_angular_speed': lambda n: n.core.intake.cfg.max_angular_speed,
    # the tremor canceller
    'adapt_time': lambda n: n.core.canceller.adapt_time,
    'leak_time': lambda n: n.core.canceller.leak_time,
    'max_correction': lambda n: n.core.canceller.max_correction,
    'min_amplitude': lambda n: n.core.canceller.min_amplitude,
}


def test_every_cerebellum_parameter_takes_effect_or_is_refused():
    from neurovla_ros.cerebellum.node import CerebellumNode
    from neurovla_ros.cerebellum.params import PARAMS
    rclpy.init(args=['--ros-args', '-p', 'realtime_priority:=0'])   # see the cortex's
    try:
        node = CerebellumNode()
        try:
            check_node(node, PARAMS, CEREBELLUM_LIVE)
            assert node.core.bound_arrays_intact()     # the C tick still reads the same arrays
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.try_shutdown()


def steps_every(rate_hz):
    """A rate set on the sim is served in whole 1 ms physics steps."""
    return max(1, int(round(1000.0 / rate_hz)))


def single_tremor_joint(n):
    amp = n.world.disturbances._tremor_amp
    on = np.flatnonzero(amp)
    return n.world.robot.arm_joints[int(on[0])] if len(on) == 1 else ''


SIM_LIVE = {
    # read where they are used (the paced loop, each wrench, each publish)
    'speed': lambda n: n.p.speed,
    'max_lateness_s': lambda n: n.p.max_lateness_s,
    'catchup_wait_s': lambda n: n.p.catchup_wait_s,
    'stamp_source': lambda n: n.p.stamp_source,
    'wrench_duration_s': lambda n: n.p.wrench_duration_s,
    'wrench_frame': lambda n: n.p.wrench_frame,
    # publishing periods in physics steps
    'joint_states_rate_hz': (lambda n: n._js_every, steps_every),
    'imu_rate_hz': (lambda n: n._imu_every, steps_every),
    'wrench_rate_hz': (lambda n: n._wrench_every, steps_every),
    'objects_rate_hz': (lambda n: n._objects_every, steps_every),
    'diagnostics_rate_hz': (lambda n: n._diag_every, steps_every),
    # the world
    'imu_accel_noise_std': lambda n: n.world._imu_noise[0],
    'imu_gyro_noise_std': lambda n: n.world._imu_noise[1],
    'imu_accel_bias': lambda n: n.world._imu_bias[0],
    'imu_gyro_bias': lambda n: n.world._imu_bias[1],
    'position_bandwidth_hz': lambda n: np.sqrt(n.world.drives._kp) / (2 * np.pi),
    'velocity_bandwidth_hz': lambda n: np.sqrt(n.world.drives._kp_v) / (2 * np.pi),
    'max_acceleration': lambda n: n.world.max_acceleration,
    'effort_timeout_s': lambda n: n.world.effort_timeout,
    'tremor_amplitude': lambda n: float(n.world.disturbances._tremor_amp.max()),
    'tremor_frequency_hz': lambda n: n.world.disturbances._tremor_omega / (2 * np.pi),
    'tremor_joint': single_tremor_joint,
    'base_vibration_amplitude': lambda n: float(np.linalg.norm(n.world.disturbances._vib_amp)),
    'base_vibration_frequency_hz': lambda n: n.world.disturbances._vib_omega / (2 * np.pi),
}


def test_every_sim_parameter_takes_effect_or_is_refused():
    from neurovla_ros.sim.node import SimNode
    from neurovla_ros.sim.params import PARAMS
    rclpy.init(args=['--ros-args', '-p', 'camera_enabled:=false'])
    try:
        node = SimNode()
        try:
            check_node(node, PARAMS, SIM_LIVE)
            node.world.step()      # the world still steps on the new settings
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.try_shutdown()


def test_list_parameters_are_checked_for_length_and_finiteness():
    from neurovla_ros.common.params import Param
    p = Param('bias', [0.0, 0.0, 0.0], 'a bias [m/s^2]')
    p.check([1.0, 2, -3.0])
    for bad, why in (([0.0, 0.0], 'expected 3 values'), ('abc', 'expected 3 values'),
                     ([0.0, float('nan'), 0.0], 'finite'), ([0.0, float('inf'), 0.0], 'finite'),
                     ([0.0, True, 0.0], 'finite'), (0.5, 'expected 3 values')):
        with pytest.raises(ValueError, match=why):
            p.check(bad)


RELAY_LIVE = {
    'loss': lambda n: n.line.loss,              # the line draws each message against it
    'delay_s': lambda n: n.line.delay_s,
}


def test_every_relay_parameter_takes_effect_or_is_refused():
    from neurovla_ros.relay.node import RelayNode
    from neurovla_ros.relay.params import PARAMS
    rclpy.init()
    try:
        node = RelayNode()
        try:
            check_node(node, PARAMS, RELAY_LIVE)
            node.line.configure(loss=0.0)
            assert node.line.push(0.0, b'x') and node.line.pop_due(node.line.delay_s) == [b'x']
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
