"""Serial-bus servo models: control tables, units and drive figures, as the manuals give them.

ROS-free data, shared by the bridge (which talks to real servos through the official SDKs) and
the emulator (which plays the servos). Only the registers this project uses are listed.

Sources
-------
[DXL-X]  ROBOTIS e-Manual, XM430-W350 / XM430-W210 control tables (Protocol 2.0), and the
         included register pages: Return Delay Time (unit 2 us, default 250), Baud Rate (code 0..7:
         9600, 57600, 115200, 1M, 2M, 3M, 4M, 4.5M), Operating Mode (0 current, 1 velocity,
         3 position, 4 extended position, 5 current-based position, 16 PWM; switching resets
         Goal Current to Current Limit and Goal PWM to PWM Limit), Shutdown / Hardware Error
         Status bits (0 input voltage, 2 overheating, 3 motor encoder, 4 electrical shock,
         5 overload; a bit set in both clears Torque Enable, only REBOOT re-enables it), Bus
         Watchdog (unit 20 ms, -1 = error: goal values become read-only), Position PID gains
         (K_P = P(84)/128, K_I = I(82)/65536, K_D = D(80)/16, output PWM limited by PWM Limit).
         Units: position 1 pulse = 360/4096 deg, velocity 0.229 rev/min, current 2.69 mA, PWM
         0.113 %, voltage 0.1 V, temperature 1 degC. Signed values are two's complement.
         XM430-W350 at 12 V: stall 4.1 N m at 2.3 A, no load 46 rev/min; model number 1020;
         XM430-W210: model number 1030.
[DXL-P2] ROBOTIS e-Manual, DYNAMIXEL Protocol 2.0 (instruction/status packets, error byte,
         byte stuffing, CRC-16 polynomial 0x8005, Sync Read 0x82, Sync Write 0x83, Fast Sync
         Read 0x8A: one status packet for all devices, no byte stuffing).
[STS]    Feetech STS3215 memory table (Waveshare "ST3215 memory register map", the same table
         as LeRobot's ``STS_SMS_SERIES_CONTROL_TABLE``): little-endian; position 4096 steps/rev;
         speed in steps/s (50 steps/s = 0.732 rev/min); Present Load (60) in 0.1 % of the drive
         duty, sign in bit 10; Present Current (69) 6.5 mA, sign in bit 15 (Feetech SDK
         ``ReadCurrent``); Present Speed (58) and Position (56) sign in bit 15; Position
         Correction (31) sign in bit 11; Torque Limit (48) 0..1000 = 0..100 % of stall torque;
         Return Delay (7) 2 us units; Unloading Condition (19, default 44) / Servo Status (65)
         bits: 0 voltage, 1 sensor, 2 temperature, 3 current, 4 angle, 5 overload; baud code
         0 = 1 Mbps ... 4 = 115200 (the sources disagree above 4); model number 777 (LeRobot
         ``MODEL_NUMBER_TABLE``). STS3215 C018 (12 V, 1:345): stall 30 kg cm = 2.94 N m, no load
         45 rev/min (the manufacturer figures as quoted by robonine.com's STS3215 test); its stall
         current is not in these sources: we take the servo's own current ceiling, Protection
         Current (28) default 500 x 6.5 mA = 3.25 A.
[STS-P]  Feetech SCS/STS communication protocol manual ("Steering Gear SCS Communication
         Protocol"): FF FF ID LEN INST PARAM.. CHK, CHK = ~(ID + LEN + INST + PARAMS) & 0xFF,
         PING 0x01, READ 0x02, WRITE 0x03, SYNC READ 0x82, SYNC WRITE 0x83, RESTART 0x08 (no
         reply); broadcast ID 0xFE gets no reply except to PING.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

TWO_PI = 2.0 * math.pi
TICKS_PER_REV = 4096
RAD_PER_TICK = TWO_PI / TICKS_PER_REV
BROADCAST_ID = 0xFE


@dataclass(frozen=True)
class Register:
    """One control-table entry. ``encoding``: 'u' unsigned, 's' two's complement, 'smN'
    sign-magnitude with the sign in bit N. ``eeprom``: only writable with torque off (Dynamixel)."""
    address: int
    size: int
    default: int = 0
    writable: bool = True
    eeprom: bool = False
    encoding: str = 'u'


def _r(address, size, default=0, writable=True, eeprom=False, encoding='u') -> Register:
    return Register(address, size, default, writable, eeprom, encoding)


# ---- Dynamixel X series (XM430), Protocol 2.0 [DXL-X] ----
DXL_X_TABLE: dict[str, Register] = {
    'model_number': _r(0, 2, 1020, writable=False, eeprom=True),
    'firmware_version': _r(6, 1, 48, writable=False, eeprom=True),  # Fast Sync Read: fw >= 45
    'id': _r(7, 1, 1, eeprom=True),
    'baud_rate': _r(8, 1, 1, eeprom=True),
    'return_delay_time': _r(9, 1, 250, eeprom=True),
    'drive_mode': _r(10, 1, 0, eeprom=True),
    'operating_mode': _r(11, 1, 3, eeprom=True),
    'homing_offset': _r(20, 4, 0, eeprom=True, encoding='s'),
    'temperature_limit': _r(31, 1, 80, eeprom=True),
    'max_voltage_limit': _r(32, 2, 160, eeprom=True),
    'min_voltage_limit': _r(34, 2, 95, eeprom=True),
    'pwm_limit': _r(36, 2, 885, eeprom=True),
    'current_limit': _r(38, 2, 1193, eeprom=True),
    'velocity_limit': _r(44, 4, 330, eeprom=True),
    'max_position_limit': _r(48, 4, 4095, eeprom=True),
    'min_position_limit': _r(52, 4, 0, eeprom=True),
    'shutdown': _r(63, 1, 52, eeprom=True),
    'torque_enable': _r(64, 1, 0),
    'led': _r(65, 1, 0),
    'status_return_level': _r(68, 1, 2),
    'hardware_error_status': _r(70, 1, 0, writable=False),
    'position_d_gain': _r(80, 2, 0),
    'position_i_gain': _r(82, 2, 0),
    'position_p_gain': _r(84, 2, 800),
    'bus_watchdog': _r(98, 1, 0, encoding='s'),
    'goal_pwm': _r(100, 2, 885, encoding='s'),
    'goal_current': _r(102, 2, 1193, encoding='s'),
    'goal_velocity': _r(104, 4, 0, encoding='s'),
    'profile_acceleration': _r(108, 4, 0),
    'profile_velocity': _r(112, 4, 0),
    'goal_position': _r(116, 4, 0, encoding='s'),
    'realtime_tick': _r(120, 2, 0, writable=False),
    'moving': _r(122, 1, 0, writable=False),
    'present_pwm': _r(124, 2, 0, writable=False, encoding='s'),
    'present_current': _r(126, 2, 0, writable=False, encoding='s'),
    'present_velocity': _r(128, 4, 0, writable=False, encoding='s'),
    'present_position': _r(132, 4, 0, writable=False, encoding='s'),
    'present_input_voltage': _r(144, 2, 120, writable=False),
    'present_temperature': _r(146, 1, 30, writable=False),
}
DXL_X_TABLE_SIZE = 148          # 0..147 (Backup Ready); indirect data is not emulated
DXL_BAUD_CODES = {9600: 0, 57600: 1, 115200: 2, 1_000_000: 3, 2_000_000: 4, 3_000_000: 5,
                  4_000_000: 6, 4_500_000: 7}
DXL_OP_CURRENT, DXL_OP_VELOCITY, DXL_OP_POSITION, DXL_OP_EXT_POSITION = 0, 1, 3, 4
DXL_OP_CURRENT_POSITION, DXL_OP_PWM = 5, 16
DXL_PWM_FULL = 885              # PWM Limit default: 885 x 0.113 % = 100 %
# Hardware Error Status bits
HW_INPUT_VOLTAGE, HW_OVERHEATING, HW_ENCODER, HW_SHOCK, HW_OVERLOAD = 0x01, 0x04, 0x08, 0x10, 0x20
DXL_HW_ERRORS = {HW_INPUT_VOLTAGE: 'input voltage', HW_OVERHEATING: 'overheating',
                 HW_ENCODER: 'motor encoder', HW_SHOCK: 'electrical shock',
                 HW_OVERLOAD: 'overload'}
# status packet error byte
DXL_ALERT = 0x80
DXL_ERR_RESULT_FAIL, DXL_ERR_INSTRUCTION, DXL_ERR_CRC = 0x01, 0x02, 0x03
DXL_ERR_DATA_RANGE, DXL_ERR_DATA_LENGTH, DXL_ERR_DATA_LIMIT, DXL_ERR_ACCESS = 0x04, 0x05, 0x06, 0x07

# ---- Feetech STS3215 (SMS/STS series, "protocol 0", little-endian) [STS] ----
STS_TABLE: dict[str, Register] = {
    'firmware_major': _r(0, 1, 3, writable=False),
    'firmware_minor': _r(1, 1, 6, writable=False),
    'model_number': _r(3, 2, 777, writable=False),
    'id': _r(5, 1, 1),
    'baud_rate': _r(6, 1, 0),
    'return_delay_time': _r(7, 1, 0),
    'response_status_level': _r(8, 1, 1),
    'min_angle_limit': _r(9, 2, 0),
    'max_angle_limit': _r(11, 2, 4095),
    'max_temperature_limit': _r(13, 1, 70),
    'max_voltage_limit': _r(14, 1, 80),
    'min_voltage_limit': _r(15, 1, 40),
    'max_torque_limit': _r(16, 2, 1000),
    'unloading_condition': _r(19, 1, 44),
    'p_coefficient': _r(21, 1, 32),
    'd_coefficient': _r(22, 1, 32),
    'i_coefficient': _r(23, 1, 0),
    'protection_current': _r(28, 2, 500),
    'homing_offset': _r(31, 2, 0, encoding='sm11'),
    'operating_mode': _r(33, 1, 0),
    'torque_enable': _r(40, 1, 0),
    'acceleration': _r(41, 1, 0),
    'goal_position': _r(42, 2, 0, encoding='sm15'),
    'goal_time': _r(44, 2, 0),
    'goal_velocity': _r(46, 2, 0, encoding='sm15'),
    'torque_limit': _r(48, 2, 1000),
    'lock': _r(55, 1, 0),
    'present_position': _r(56, 2, 0, writable=False, encoding='sm15'),
    'present_velocity': _r(58, 2, 0, writable=False, encoding='sm15'),
    'present_load': _r(60, 2, 0, writable=False, encoding='sm10'),
    'present_voltage': _r(62, 1, 120, writable=False),
    'present_temperature': _r(63, 1, 30, writable=False),
    'status': _r(65, 1, 0, writable=False),
    'moving': _r(66, 1, 0, writable=False),
    'present_current': _r(69, 2, 0, writable=False, encoding='sm15'),
}
STS_TABLE_SIZE = 71
STS_BAUD_CODES = {1_000_000: 0, 500_000: 1, 250_000: 2, 128_000: 3, 115_200: 4}
# Servo Status / error byte bits
STS_ERRORS = {0x01: 'voltage', 0x02: 'sensor', 0x04: 'temperature', 0x08: 'current',
              0x10: 'angle', 0x20: 'overload'}
STS_DUTY_FULL = 1000            # Torque Limit / Present Load: 1000 = 100 %


@dataclass(frozen=True)
class ServoModel:
    """A servo model: its protocol, table and the drive figures at its horn (unscaled)."""
    name: str
    protocol: str                 # 'dynamixel' | 'feetech'
    model_number: int
    stall_torque: float           # [N m] at the nominal voltage
    stall_current: float          # [A]
    no_load_speed: float          # [rad/s]
    current_unit: float           # [A] per register unit
    velocity_unit: float          # [rad/s] per register unit
    current_control: bool         # has a current (torque) operating mode
    table: dict[str, Register] = field(repr=False, default_factory=dict)
    table_size: int = 0

    @property
    def torque_constant(self) -> float:
        """Stall torque / stall current [N m / A] at the horn."""
        return self.stall_torque / self.stall_current


def _rpm(v: float) -> float:
    return v * TWO_PI / 60.0


MODELS: dict[str, ServoModel] = {
    'XM430-W350': ServoModel('XM430-W350', 'dynamixel', 1020, 4.1, 2.3, _rpm(46.0), 2.69e-3,
                             _rpm(0.229), True, DXL_X_TABLE, DXL_X_TABLE_SIZE),
    'STS3215': ServoModel('STS3215', 'feetech', 777, 2.94, 3.25, _rpm(45.0), 6.5e-3,
                          RAD_PER_TICK, False, STS_TABLE, STS_TABLE_SIZE),
}
# model numbers a bus may answer with, for error messages
MODEL_NAMES = {1020: 'XM430-W350', 1030: 'XM430-W210', 777: 'STS3215', 2825: 'STS3250'}


def model(name: str) -> ServoModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f'unknown servo model {name!r}; known: {sorted(MODELS)}') from None


# ---------------------------------------------------------------- register values
def decode(raw: int, reg: Register) -> int:
    """A register's unsigned little-endian value -> the signed number it stands for."""
    enc = reg.encoding
    if enc == 'u':
        return raw
    if enc == 's':
        bits = 8 * reg.size
        return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw
    sign = 1 << int(enc[2:])
    return -(raw & ~sign) if raw & sign else raw


def encode(value: int, reg: Register) -> int:
    """A signed number -> the register's unsigned value (clamped to what the field can hold)."""
    value = int(value)
    enc = reg.encoding
    bits = 8 * reg.size
    if enc == 'u':
        return min(max(value, 0), (1 << bits) - 1)
    if enc == 's':
        lim = 1 << (bits - 1)
        return min(max(value, -lim), lim - 1) & ((1 << bits) - 1)
    sign = 1 << int(enc[2:])
    mag = min(abs(value), sign - 1)
    return mag | sign if value < 0 else mag


def le_bytes(raw: int, size: int) -> bytes:
    return int(raw).to_bytes(size, 'little')


def from_le(data, offset: int, size: int) -> int:
    return int.from_bytes(bytes(data[offset:offset + size]), 'little')
