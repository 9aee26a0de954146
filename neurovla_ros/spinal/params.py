"""Parameters of the spinal node (ROS-free schema; see common/params.py)."""
from __future__ import annotations

from ..common.params import Param, realtime_priority
from ..robot.model import ARM_JOINTS

NODE_NAME = 'spinal'

# Energy per synaptic operation: Intel Loihi, 23.6 pJ per synaptic spike op (Davies et al.,
# "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE Micro 38(1), 2018).
LOIHI_J_PER_SOP = 23.6e-12



def command_topic(topic: str, interface: str) -> str:
    """The topic the spinal node commands on: ``command_topic``, or when empty the forward
    controller of ``command_interface``."""
    return topic or f'forward_{interface}_controller/commands'


PARAMS: list[Param] = [
    # ---- interfaces ----
    Param('command_interface', 'effort',
          'Arm command interface: effort = the spiking network\'s joint torques (on top of '
          'gravity compensation); position = the tick\'s desired position (reference, hold, '
          'engage blend, reflex withdrawal) for position-only servos such as the Feetech STS, '
          'whose own loop closes it (the network is then not in the loop)', read_only=True,
          choices=('effort', 'position')),
    Param('command_topic', '',
          'Joint commands (std_msgs/Float64MultiArray, 6 arm joints) [topic]; empty = '
          'forward_<command_interface>_controller/commands', read_only=True),
    Param('reference_topic', 'cerebellum/reference',
          'Desired joint state (sensor_msgs/JointState: position, optional velocity and '
          'feed-forward effort) [topic]', read_only=True),
    Param('wrench_topic', 'wrist/wrench',
          'Wrist force/torque (geometry_msgs/WrenchStamped), used when wrench_threshold > 0 '
          '[topic]', read_only=True),
    Param('weights_file', '',
          'Spiking network weights (.npz); empty = the packaged weights.npz', read_only=True),
    # ---- control ----
    Param('reference_timeout', 0.1,
          'A reference older than this is stale: hold the pose [s]', 0.002, 10.0),
    Param('engage_time', 0.3,
          'Blend from a held pose to the live reference over this time [s]', 0.0, 5.0),
    Param('feedforward', True, 'Add the reference effort field to the command'),
    # ---- reflex ----
    Param('reflex_enabled', True, 'Withdraw on detected collisions'),
    Param('reflex_threshold_arm', 3.0,
          'External torque that triggers the reflex, shoulder and elbow joints [N m]',
          0.1, 150.0),
    Param('reflex_threshold_wrist', 2.0,
          'External torque that triggers the reflex, wrist joints [N m]', 0.05, 28.0),
    Param('reflex_dynamic_fraction', 0.01,
          'Threshold increase per N m of measured joint torque (model error margin) [1]',
          0.0, 1.0),
    Param('reflex_tremor_gain', 1.5,
          'Threshold increase per N m of oscillating residual (tremor robustness) [1]',
          0.0, 10.0),
    Param('observer_gain', 1000.0,
          'Momentum observer bandwidth; >= the sample rate = one-sample estimate [1/s]',
          1.0, 1.0e5),
    Param('wrench_threshold', 0.0,
          'Step in wrist force (high-passed) that triggers the reflex; 0 = wrench not used '
          '[N]', 0.0, 1000.0),
    Param('withdraw_distance', 0.05,
          'Withdrawal travel of the tool centre point [m]', 0.0, 0.3),
    Param('withdraw_time', 0.25, 'Duration of the withdrawal motion [s]', 0.02, 5.0),
    Param('withdraw_max_joint', 0.35, 'Largest joint excursion of a withdrawal [rad]',
          0.0, 1.5),
    Param('withdraw_min_height', 0.03,
          'A withdrawal keeps the tool centre point this high above the table [m]',
          -1.0, 1.0),
    Param('hold_scale', 0.3,
          'Torque scale of the compliant hold after a withdrawal [1]', 0.0, 1.0),
    Param('quiet_time', 1.0,
          'Recover automatically after this long without contact; 0 = only on ~/reset [s]',
          0.0, 600.0),
    # ---- stop functions and watchdog (spinal/safety.py) ----
    # 20 ms: in a 60 s headless bringup on the 2-core VM the longest gap between two joint
    # states was 11.1 ms (23 gaps over 5 ms, 2 over 10 ms, none over 20 ms); 5 ms tripped 20
    # times. Below the body's own effort watchdog (sim effort_timeout_s, 50 ms).
    Param('state_timeout', 0.02,
          'Joint state older than this trips the watchdog: zero added torque (gravity '
          'compensation and the joints\' damping hold the arm), ERROR, until fresh state and '
          'an engage blend [s]', 0.001, 1.0),
    Param('stop_deceleration', 40.0,
          'Peak deceleration of the emergency / protective stop brake [rad/s^2]',
          0.5, 1000.0, read_only=True),
    Param('stop_jerk', 2000.0, 'Peak jerk of the stop brake [rad/s^3]', 1.0, 1.0e5,
          read_only=True),
    Param('standstill_velocity', 0.05,
          'A stopped arm slower than this on every joint is at standstill [rad/s]',
          0.001, 1.0, read_only=True),
    Param('standstill_tolerance', 0.05,
          'A stopped joint farther than this from the held pose violates standstill '
          '(ERROR) [rad]', 0.001, 1.0, read_only=True),
    # ---- rhythm generator (spinal/rhythm.py, docs/rhythm.md) ----
    Param('rhythm_joint', 'wrist_1_joint',
          'Joint a program without a "shake ... |" head shakes', choices=ARM_JOINTS),
    Param('rhythm_amplitude', 0.15,
          'Amplitude of a program without a head [rad]', 0.001, 0.5),
    Param('rhythm_velocity_scale', 0.8,
          'A program may ask a joint for at most this share of its URDF velocity limit '
          '(peak speed with the generator\'s frequency band and phase correction) [1]',
          0.05, 1.0),
    Param('rhythm_preempt_distance', 0.05,
          'A cerebellum reference this far from the one at the program start on any joint is '
          'a new goal: it pre-empts the program (larger than the tremor canceller\'s '
          'corrections) [rad]', 0.001, 1.0),
    Param('rhythm_k_phase', 6.0, 'Phase coupling of the oscillator to the measured motion '
          '[1/s]', 0.0, 100.0),
    Param('rhythm_k_freq', 2.0, 'Frequency adaptation gain [Hz/s per cycle]', 0.0, 100.0),
    Param('rhythm_max_correction', 0.2,
          'Largest phase correction, share of the stage frequency (re-locking never steps the '
          'command) [1]', 0.0, 0.5),
    Param('rhythm_sensor_timeout', 0.05,
          'An IMU phase sample older than this is stale: the oscillator free-runs [s]',
          0.005, 1.0),
    Param('rhythm_sense_rate_hz', 100.0,
          'Rate the IMU phase is read at, after the tick\'s command is out [Hz]', 1.0, 1000.0,
          read_only=True),
    Param('rhythm_imu_topic', 'imu/data',
          'Wrist IMU (sensor_msgs/Imu, imu_link) the generator entrains to [topic]',
          read_only=True),
    Param('rhythm_mode', 'oscillator',
          'Phase source of the next program: oscillator = the adaptive oscillator with phase '
          'memory; memoryless = phase from the newest IMU sample only; window16 = a line fit '
          'to the last 16 IMU phase samples (the NeuroVLA paper\'s 16-state window); the last '
          'two are the benchmark\'s baselines. A change applies to the next program',
          choices=('oscillator', 'memoryless', 'window16')),
    Param('rhythm_baseline_lead', 0.03,
          'Baselines only: lead of the command phase over the measured phase, the arm\'s '
          'tracking lag [s]', 0.0, 0.5),
    # ---- figures ----
    Param('energy_per_sop', LOIHI_J_PER_SOP,
          'Energy per synaptic operation for the energy estimate; default: Intel Loihi, '
          '23.6 pJ (Davies et al., IEEE Micro 2018) [J]', 0.0, 1.0e-6),
    Param('diagnostics_period', 1.0, 'Period of the /diagnostics status [s]', 0.05, 60.0),
    Param('expected_rate', 1000.0,
          'Joint-state (= control) rate the body should deliver; /diagnostics warns below '
          '90 % of it [Hz]', 1.0, 10000.0),
    realtime_priority(85),
]
