"""Parameters of the ``cerebellum`` node (ROS-free schema; see common/params.py).

Every parameter except the node-only ones (topics, rates of the side outputs) is a field of
:class:`CerebellumConfig`, made from this schema (one source of names and defaults).
"""
from __future__ import annotations

from ..common.params import Param, config_class, realtime_priority

NODE_NAME = 'cerebellum'

PARAMS: list[Param] = [
    # ---- interfaces and rates ----
    Param('reference_topic', 'cerebellum/reference',
          'Output: desired joint state for the spinal layer (sensor_msgs/JointState: position, '
          'velocity, feed-forward effort) [topic]', read_only=True),
    Param('rate_hz', 500.0, 'Reference rate, ticks driven by /joint_states stamps [Hz]',
          100.0, 1000.0, read_only=True),
    Param('adapt_rate_hz', 250.0,
          'State estimation and canceller learning rate (the correction itself is output at '
          'rate_hz) [Hz]', 50.0, 1000.0, read_only=True),
    Param('state_rate_hz', 10.0,
          'Rate of the state estimate ~/ee_pose, ~/ee_twist, ~/ee_accel [Hz]; 0 = off',
          0.0, 500.0, read_only=True),
    Param('diagnostics_rate_hz', 2.0, '/diagnostics rate [Hz]', 0.1, 10.0, read_only=True),
    Param('smoothing', 'cerebellum',
          'Goal smoothing: cerebellum (goal filter, jerk-limited tracker, tremor canceller), '
          'linear (plain linear interpolation of the goals, no filtering, no cancellation) or '
          'ruckig (goals through a Butterworth low-pass, followed by the Ruckig online '
          'trajectory generator with the same limits, no cancellation; what MoveIt Servo '
          'users run); the baselines of the tremor benchmark',
          choices=('cerebellum', 'linear', 'ruckig')),
    Param('ruckig_lowpass_hz', 2.0,
          'smoothing ruckig: cut-off of the second-order Butterworth low-pass on the goals '
          '[Hz] (2.0: `neurovla bench tremor --tune` on its tuning seeds 101-103, full graph; '
          'docs/measured/tremor_tune.json)', 0.05, 100.0, read_only=True),
    # ---- sensors ----
    Param('joint_timeout', 0.05,
          '/joint_states older than this is stale: hold the reference, stop adapting [s]',
          0.002, 5.0),
    Param('imu_timeout', 0.05,
          '/imu/data older than this is stale: hold the reference, stop adapting [s]',
          0.002, 5.0),
    Param('crossover_hz', 2.0,
          'IMU/encoder fusion crossover: encoders below, IMU above [Hz]', 0.1, 50.0,
          read_only=True),
    Param('kinematics_period', 0.05,
          'Refresh period of the cached tcp/IMU Jacobians [s]', 0.002, 1.0, read_only=True),
    # ---- goal shaping ----
    Param('velocity_scale', 0.5, 'Reference speed limit as a share of the URDF velocity '
          'limit [1]', 0.01, 1.0, read_only=True),
    Param('max_acceleration', 3.0, 'Reference acceleration limit per joint [rad/s^2]',
          0.1, 100.0, read_only=True),
    Param('max_jerk', 100.0, 'Reference jerk limit per joint [rad/s^3]', 1.0, 10000.0,
          read_only=True),
    Param('bandwidth_hz', 2.0, 'Goal tracker bandwidth (triple pole) [Hz] (2.0: tuned with '
          '`bench tremor`\'s scenarios on its tuning seeds, 101-103)', 0.2, 20.0,
          read_only=True),
    Param('goal_alpha', 0.32, 'Goal filter position gain per goal [1]', 0.01, 1.0,
          read_only=True),
    Param('goal_beta', 0.45, 'Goal filter velocity gain per goal [1]', 0.0, 2.0,
          read_only=True),
    Param('goal_feedforward', 0.4,
          'Share of the estimated goal velocity fed forward to the tracker [1] (0.4: tuned '
          'with bandwidth_hz)', 0.0, 1.0),
    Param('goal_restart', 0.3,
          'A goal this far from the prediction starts a new motion (no smoothing) [rad]',
          0.01, 6.3, read_only=True),
    Param('goal_horizon', 0.25, 'Extrapolation limit after the last goal [s]', 0.0, 2.0,
          read_only=True),
    Param('goal_timeout', 0.5,
          'After this without goals the goal velocity estimate is dropped [s]', 0.05, 10.0,
          read_only=True),
    Param('inertia_feedforward', True,
          'Reference effort = (joint-space inertia at the current pose - the home inertia '
          'diagonal the spinal layer feeds forward itself) x reference acceleration'),
    Param('ik_position_tolerance', 0.002, 'Cartesian goal: largest IK position error [m]',
          1e-5, 0.1),
    Param('ik_rotation_tolerance', 0.02, 'Cartesian goal: largest IK rotation error [rad]',
          1e-4, 1.0),
    Param('ik_max_iterations', 50, 'IK iterations per Cartesian goal', 1, 1000),
    Param('workspace_min_z', 0.0,
          'Cartesian goals below this tcp height (base_link) are rejected [m]', -1.0, 2.0),
    Param('twist_timeout', 0.1, 'Teleop twist older than this: stop (MoveIt Servo style) [s]',
          0.01, 5.0),
    Param('max_linear_speed', 0.25, 'Teleop tcp speed limit [m/s]', 0.001, 2.0),
    Param('max_angular_speed', 1.0, 'Teleop tcp angular speed limit [rad/s]', 0.001, 6.0),
    Param('halt_acceleration', 10.0,
          'Teleop halt (zero twist or twist timeout): braking acceleration limit per joint, '
          'scaled by its share of the motion [rad/s^2]', 0.1, 100.0),
    Param('halt_jerk', 1000.0, 'Teleop halt: braking jerk limit per joint [rad/s^3]',
          1.0, 100000.0),
    Param('teleop_hold_time', 3.0,
          'After the last teleop input (/teleop/twist, /teleop/pose) cortex goals are refused '
          'this long, or until ~/release_teleop; 0 = until ~/release_teleop [s]', 0.0, 3600.0),
    # ---- tremor canceller ----
    Param('tremor_enabled', True, 'Adaptive tremor cancellation on'),
    Param('band_low_hz', 4.0, 'Tremor band, lower edge [Hz]', 0.5, 100.0, read_only=True),
    Param('band_high_hz', 12.0, 'Tremor band, upper edge [Hz]', 1.0, 200.0, read_only=True),
    Param('adapt_time', 0.25,
          'Adaptation time constant of the canceller (normalised LMS) [s]', 0.02, 100.0),
    Param('leak_time', 30.0, 'Weight leakage time constant [s]', 0.1, 1.0e6),
    Param('max_correction', 0.02, 'Largest correction amplitude per joint [rad]', 0.0, 0.5),
    Param('min_amplitude', 0.003,
          'Oscillation below this joint-velocity amplitude is not tremor [rad/s]', 0.0, 10.0),
    Param('window', 0.8, 'Spectrum window for tremor frequency acquisition [s]', 0.1, 10.0,
          read_only=True),
    Param('jump_hz', 0.6,
          'A spectral peak this far from the tracked frequency re-targets the canceller [Hz]',
          0.05, 10.0, read_only=True),
    Param('highpass_hz', 2.0, 'High-pass of the canceller error signal [Hz]', 0.1, 50.0,
          read_only=True),
    # ---- forward model of the spinal layer + arm ----
    Param('servo_omega_max', 40.0, 'Spinal servo bandwidth cap, as the spinal layer [rad/s]',
          1.0, 1000.0, read_only=True),
    Param('servo_accel_feedforward', True, 'The spinal layer feeds its home inertia x the '
          'desired acceleration forward, as the spinal layer', read_only=True),
    Param('servo_e_sat', 0.05, 'Spinal servo error that saturates the effort limit, as the '
          'spinal layer [rad]', 0.001, 1.0, read_only=True),
    Param('loop_delay', 0.003, 'Delay from a reference sent to the torque it causes [s]',
          0.0, 0.1, read_only=True),
    Param('model_period', 0.2, 'Forward model refreshed for the configuration every [s]',
          0.01, 10.0, read_only=True),
    # ---- health ----
    Param('max_tracking_error', 0.05,
          'Arm further than this from the reference: stop adapting [rad]', 0.001, 6.3),
    Param('resync_time', 0.5,
          'After a spinal reflex, a tracking error beyond max_tracking_error for this long '
          'restarts the reference from the measured pose (the arm stays where the withdrawal '
          'took it) [s]', 0.01, 60.0),
    Param('reflex_window', 10.0, 'A resync is allowed this long after a reflex event [s]',
          0.0, 600.0),
    Param('reflex_topic', 'spinal/reflex',
          'Reflex events of the spinal layer (diagnostic_msgs/DiagnosticArray, value '
          'event=collision) [topic]', read_only=True),
    realtime_priority(90),
    Param('background_priority', 60,
          'SCHED_FIFO priority of the node\'s work outside the tick (goal IK, the learning\'s '
          'housekeeping, diagnostics, state output), below the sim and spinal loops; the tick '
          '(joint state in, reference out) runs at realtime_priority. 0 = everything at '
          'realtime_priority', 0, 98, read_only=True),
]

# parameters that are node-only (not CerebellumConfig fields)
NODE_ONLY = ('reference_topic', 'state_rate_hz', 'diagnostics_rate_hz', 'reflex_topic',
             'realtime_priority', 'background_priority', 'teleop_hold_time')

CerebellumConfig = config_class(
    'CerebellumConfig', PARAMS, NODE_ONLY,
    'Configuration of :class:`neurovla_ros.cerebellum.core.Cerebellum`: the node\'s '
    'parameters without the node-only ones, with their defaults.')
