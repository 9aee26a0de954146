"""Parameters of the ``hardware`` node, the servo-bus bridge (ROS-free schema)."""
from __future__ import annotations

from ..common.params import Param, realtime_priority

NODE_NAME = 'hardware'

PARAMS: list[Param] = [
    # ---- the bus ----
    Param('protocol', 'dynamixel', 'Servo bus: Dynamixel Protocol 2.0 (dynamixel-sdk) or Feetech '
          'STS (feetech-servo-sdk)', read_only=True, choices=('dynamixel', 'feetech')),
    Param('config_file', '', 'Hardware file (servo IDs, models, mounting, drive scaling); empty '
          '= the packaged config/hardware_<protocol>.yaml', read_only=True),
    Param('port', '', 'Serial port; empty = the hardware file\'s; "emulator" = the servo-bus '
          'emulator\'s pty link (sim node with servo_bus set)', read_only=True),
    Param('latency_timer_ms', 0.0, 'USB adapter latency timer the reply timeouts assume [ms]; '
          '0 = the hardware file\'s', 0.0, 100.0, read_only=True),
    Param('reply_margin_ms', 10.0, 'A reply may come this much later than wire time and the '
          'latency timer allow before it counts as lost (host scheduling) [ms]', 0.5, 100.0,
          read_only=True),
    Param('velocity_accel_noise', 0.01, 'Published arm velocity: a Kalman filter over encoder '
          'position and Present Velocity, predicted with the robot model under the measured '
          'torque; this is the acceleration it leaves unexplained (contacts, model error), larger '
          '= faster and noisier; 0 = the raw Present Velocity register [rad/s^2/sqrt(Hz)]',
          0.0, 100.0, read_only=True),
    Param('set_return_delay', False, 'At start, write Return Delay Time 0 into servos that '
          'answer later than the file allows (EEPROM, torque off)', read_only=True),
    # ---- the loop ----
    Param('rate_hz', 1000.0, 'Bus cycles per second at most (read all, write all); 0 = as fast '
          'as the wire allows. The spinal network is trained on 1 kHz ticks [Hz]', 0.0, 10000.0),
    Param('command_wait_s', 0.0006, 'After publishing a state, wait up to this long for the '
          'controller\'s answer before writing the goals (only while it answers every state) '
          '[s]', 0.0, 0.005),
    Param('command_timeout_s', 0.1, 'No fresh arm command for this long: hold the pose [s]',
          0.002, 10.0),
    # ---- safety on the bus ----
    Param('fail_stop_reads', 3, 'Consecutive failed reads that trigger the protective stop',
          1, 1000),
    Param('torque_off_after_s', 0.5, 'Reads still failing this long after the protective stop: '
          'controlled torque-off [s]', 0.0, 60.0),
    Param('reconnect_s', 0.5, 'Between tries to open a lost port / to check the servos [s]',
          0.05, 60.0),
    Param('park_time_s', 2.0, 'Longest move to the park pose at shutdown, before torque off '
          '(all within 3 s) [s]', 0.2, 2.7),
    Param('diagnostics_rate_hz', 1.0, '/diagnostics rate [Hz]', 0.1, 10.0),
    # above the sim (80): with the emulated bus the sim's catch-up steps at the same FIFO
    # priority kept the bridge off the CPU for 50-200 ms (a real arm's driver has no sim beside
    # it; below the spinal layer, 85, which answers each state)
    realtime_priority(82),
]
