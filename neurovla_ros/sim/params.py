"""Parameters of the ``sim`` node (ROS-free schema; see docs/parameters.md)."""
from __future__ import annotations

from ..common.params import Param, realtime_priority
from ..robot.model import ARM_JOINTS

NODE_NAME = 'sim'

PARAMS: list[Param] = [
    # world
    Param('seed', 0, 'Random seed of the object layout (shapes, colours, positions)',
          0, 2**31 - 1, read_only=True),
    Param('n_objects', 4, 'Coloured objects on the table', 0, 8, read_only=True),
    # pacing
    Param('speed', 1.0, 'With use_sim_time: sim seconds per wall second, 0 = as fast as '
          'possible (publishes /clock). Without use_sim_time the sim runs in real time', 0.0,
          100.0),
    Param('max_lateness_s', 0.1, 'Real time: a loop later than this [s] skips ahead instead of '
          'catching up (counted as a resync)', 0.005, 10.0),
    Param('catchup_wait_s', 0.0005, 'Real time: behind schedule (after a stall), wait up to '
          'this long [s] for the answer of a controller that commands at the step rate before '
          'the next step, instead of stepping on with its stale command; 0 = catch up at full '
          'speed', 0.0, 0.0008),
    Param('stamp_source', 'scheduled', 'Header stamps in real time: the step\'s scheduled time '
          '(lateness shows as age) or the wall clock read just before publishing',
          choices=('scheduled', 'publish')),
    # streams
    Param('joint_states_rate_hz', 1000.0, '/joint_states rate [Hz] (every n-th 1 ms step)',
          1.0, 1000.0),
    Param('imu_rate_hz', 1000.0, '/imu/data rate [Hz]', 1.0, 1000.0),
    Param('wrench_rate_hz', 1000.0, '/wrist/wrench rate [Hz]', 1.0, 1000.0),
    Param('objects_rate_hz', 2.0, '~/objects (MarkerArray) rate [Hz]; 0 = only at start and '
          'reset', 0.0, 50.0),
    Param('diagnostics_rate_hz', 1.0, '/diagnostics rate [Hz]', 0.1, 10.0),
    # camera
    Param('camera_enabled', True, 'Render /camera/image_raw + /camera/camera_info (in a '
          'separate process, so rendering never stalls physics)', read_only=True),
    Param('camera_name', 'scene_camera', 'Camera to publish', read_only=True,
          choices=('scene_camera', 'wrist_camera')),
    Param('wrist_camera_enabled', False, 'Also render the wrist camera on '
          '/wrist_camera/image_raw + /wrist_camera/camera_info (same size and rate; for policies '
          'that need a wrist view, e.g. openpi\'s LIBERO and DROID layouts); needs '
          'camera_enabled', read_only=True),
    Param('camera_rate_hz', 15.0, 'Camera rate [Hz] (sim time)', 0.5, 60.0, read_only=True),
    Param('camera_width', 320, 'Image width [px]', 16, 1280, read_only=True),
    Param('camera_height', 240, 'Image height [px]', 16, 960, read_only=True),
    # IMU
    Param('imu_accel_noise_std', 0.04, 'Accelerometer white noise std [m/s^2]', 0.0, 10.0),
    Param('imu_gyro_noise_std', 0.005, 'Gyroscope white noise std [rad/s]', 0.0, 1.0),
    Param('imu_accel_bias', [0.0, 0.0, 0.0], 'Accelerometer bias x y z [m/s^2] (imu_link)'),
    Param('imu_gyro_bias', [0.0, 0.0, 0.0], 'Gyroscope bias x y z [rad/s] (imu_link)'),
    # drives
    Param('position_bandwidth_hz', 20.0, 'Position servo bandwidth [Hz] (critically damped, '
          'gains scaled by the joint-space inertia)', 1.0, 80.0),
    Param('velocity_bandwidth_hz', 10.0, 'Velocity servo bandwidth [Hz]', 1.0, 80.0),
    Param('max_acceleration', 20.0, 'Acceleration limit [rad/s^2] of set-point profiles: '
          'position jumps beyond one step at the velocity limit, velocity-mode ramps', 0.5, 500.0),
    Param('effort_timeout_s', 0.05, 'Effort watchdog: no effort command for this long [s] -> '
          'hold position', 0.002, 10.0),
    # disturbances
    Param('wrench_duration_s', 0.1, 'How long a ~/apply_wrench push lasts [s]', 0.001, 10.0),
    Param('wrench_frame', 'world', 'Frame ~/apply_wrench vectors are expressed in: world '
          '(= base_link) or link (the link named in header.frame_id); applied at the link\'s '
          'centre of mass', choices=('world', 'link')),
    Param('tremor_amplitude', 0.0, 'Tremor: oscillating joint torque amplitude [N m]; 0 = off',
          0.0, 28.0),
    Param('tremor_frequency_hz', 8.0, 'Tremor frequency [Hz]', 0.0, 100.0),
    Param('tremor_joint', '', 'Tremor joint; empty = a fixed pattern over the wrist joints',
          choices=('', *ARM_JOINTS)),
    Param('base_vibration_amplitude', 0.0, 'Base/table vibration acceleration amplitude '
          '[m/s^2] along x; 0 = off', 0.0, 50.0),
    Param('base_vibration_frequency_hz', 10.0, 'Base vibration frequency [Hz]', 0.0, 200.0),
    # servo bus emulator (neurovla_ros/hardware/emulator.py)
    Param('servo_bus', '', 'Emulate a servo bus on a pty instead of the ros2_control-style '
          'topics: the arm is driven by emulated servos (no gravity compensation but theirs), '
          'the hardware node talks to them and publishes /joint_states; empty = off',
          read_only=True, choices=('', 'dynamixel', 'feetech')),
    Param('servo_bus_config', '', 'Hardware file of the emulated servos; empty = the packaged '
          'config/hardware_<servo_bus>.yaml', read_only=True),
    Param('servo_bus_link', '', 'Path linked to the pty; empty = the default the hardware '
          'node\'s port:=emulator opens', read_only=True),
    Param('servo_bus_latency_ms', 0.0, 'Emulated USB adapter latency timer (FTDI-like; 0 = '
          'none, 1 or 16 as real adapters) [ms]', 0.0, 100.0, read_only=True),
    Param('servo_bus_return_delay_us', 0, 'Return Delay Time the emulated servos start with '
          '[us] (factory value: Dynamixel 500)', 0, 508, read_only=True),
    Param('servo_bus_fault', '', 'Injected bus faults, "kind:key=value,...;..." (kinds: drop, '
          'truncate, bad_crc, wrong_id, slow, silent, duplicate_id, hw_error, model, vanish; '
          'keys: ids=1+2, rate, count, duration [s], value); empty = none. At start (tests '
          'inject at run time through the emulator\'s ServoBus.inject)', read_only=True),
    realtime_priority(80),
]
