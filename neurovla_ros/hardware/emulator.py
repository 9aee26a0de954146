"""A servo bus behind a pty: Dynamixel X / Feetech STS servos on the MuJoCo arm. ROS-free.

The emulator opens a pty pair, links the slave to a path (``default_link()``; the bridge opens
it like a USB adapter) and answers on the master as the servos of a hardware file
(:mod:`.config`) would, byte for byte (:mod:`.protocol`, checked against the manuals' example
packets). Behind the control tables is the MuJoCo arm of :class:`~neurovla_ros.sim.world.World`
built without the simulator's gravity compensation: every joint torque comes from a servo.

Servos (per physics step of 1 ms, joint units through the file's ``torque_constant``, see
:mod:`.config` for the scaling; ``tau_max`` = stall current x torque constant = the URDF effort
limit, ``w_nl`` the model's no-load speed, ``w`` the horn speed):

* Dynamixel current mode: ``tau = kt * Goal Current`` (clamped to Current Limit), inside the DC
  motor's envelope ``tau_max * (+-1 - w / w_nl)``;
* Dynamixel position mode: the manual's PID on the tick error, ``PWM = K_P e + K_D de + K_I
  sum(e)`` (K_P = P/128, K_D = D/16 per 1 ms step, K_I = I/65536), limited by PWM Limit, then
  ``tau = tau_max * (PWM / 885 - w / w_nl)`` and the Current Limit;
* Feetech position mode: ``duty[0.1 %] = P e / 4 + D de + I sum(e) / 256`` (e in steps per 1 ms
  step; the STS manual publishes no scale for its loop: this one gives the XM430's default
  stiffness at P = 32), limited by Torque Limit, then ``tau = tau_max * (duty / 1000 - w /
  w_nl)``; Present Load is the duty, Present Current ``tau / kt``;
* torque off (or rebooting, or a Bus Watchdog stop in current mode): no motor torque; the
  gear train (1:353 / 1:345) holds the joint by static friction up to ``HOLD_FRICTION`` of its
  effort limit and slips beyond it (a stiff spring-damper at the rest position, clipped to that
  friction), as a real unpowered servo arm rests where it was left; this torque is not motor
  current (Present Current stays 0);
* the gripper servo (position) sets the World's finger drive to the opening its goal maps to;
* temperature: first order toward ``25 + 45 (I / I_stall)^2`` degC, 60 s; voltage 12.0 V;
* Dynamixel Operating Mode writes reset Goal Current / Goal PWM to their limits (as the manual
  says), EEPROM writes with torque on, read-only and undefined addresses give Access Error,
  Goal Current beyond Current Limit gives Data Limit Error; a hardware error bit that is also
  in Shutdown clears Torque Enable (only REBOOT clears it); the Bus Watchdog stops the servo
  (current mode: no torque; position mode: holds the goal) and makes goals read-only.

Wire timing (:class:`Wire`): each byte is 10 bits at the baud rate; a servo answers the
return delay (its register) after the instruction's last byte, the servos of a sync read one
after another; with ``usb_latency_s`` > 0 the replies pass an FTDI-like adapter that hands bytes
to the host only when 62 are waiting or when its latency timer (restarted at every transfer)
runs out. So the rate a bridge reaches on this pty is the rate the wire allows.

Faults (:meth:`ServoBus.inject`, by the sim node's ``servo_bus_fault`` parameter or from tests):
``drop`` (replies not sent), ``truncate`` (half a reply), ``bad_crc`` (last byte flipped),
``wrong_id`` (a valid reply with another ID), ``slow`` (``value`` s more before the reply),
``silent`` (a servo stops answering; it still listens), ``duplicate_id`` (a second servo with
that ID answers one byte later: the replies collide, wired-AND), ``hw_error`` (``value`` =
error bits: Dynamixel Hardware Error Status, Feetech status), ``model`` (the servo reports model
number ``value``), ``vanish`` (the pty is closed: the bridge's reads fail with EIO; a new one
appears after ``duration`` s or at ``clear``). ``ids`` selects servos (None: all), ``rate`` the
share of replies hit, ``count`` / ``duration`` how long a fault lasts.

Records for tests and benchmarks: ``log`` (every host write of torque, mode and goal
registers with its time), ``outside_limits`` (goals beyond the joint's URDF position or effort
limit, judged with the emulator's own mounting), ``goal_hooks`` (called on each goal write).
"""
from __future__ import annotations

import collections
import math
import os
import pty
import random
import select
import threading
import time
import tty
from dataclasses import dataclass, field

import numpy as np

from . import models, protocol
from .config import Drive, HardwareConfig
from .models import (
    DXL_ALERT,
    DXL_ERR_ACCESS,
    DXL_ERR_CRC,
    DXL_ERR_DATA_LENGTH,
    DXL_ERR_DATA_LIMIT,
    DXL_ERR_DATA_RANGE,
    DXL_ERR_INSTRUCTION,
    DXL_ERR_RESULT_FAIL,
    RAD_PER_TICK,
)

DT = 0.001
HOLD_FRICTION = 0.5        # torque off: gear-train static friction, share of the effort limit
USB_PACKET = 62            # FTDI: payload bytes per USB packet (64 minus 2 status bytes)
REBOOT_S = {'dynamixel': 0.05, 'feetech': 0.8}   # unresponsive after a reboot/restart [s]
WATCHDOG_UNIT_S = 0.02     # Dynamixel Bus Watchdog unit [s]
FAULTS = ('drop', 'truncate', 'bad_crc', 'wrong_id', 'slow', 'silent', 'duplicate_id',
          'hw_error', 'model', 'vanish')
GOALS = ('goal_position', 'goal_current', 'goal_pwm', 'goal_velocity')
LOGGED = ('torque_enable', 'operating_mode', *GOALS)


def default_link() -> str:
    """Where the emulator links its pty (per user and ROS domain, so parallel runs differ)."""
    return f'/tmp/neurovla-servo-bus-{os.getuid()}-{os.environ.get("ROS_DOMAIN_ID", "0")}'


# ---------------------------------------------------------------- control table
class Table:
    """One servo's control table: bytes plus the register map of its model."""

    def __init__(self, model: models.ServoModel, servo_id: int):
        self.model = model
        self.regs = model.table
        self.mem = bytearray(model.table_size)
        self.dxl = model.protocol == 'dynamixel'
        self._owner = {}       # address -> register name
        for name, r in self.regs.items():
            self.mem[r.address:r.address + r.size] = models.le_bytes(r.default, r.size)
            for a in range(r.address, r.address + r.size):
                self._owner[a] = name
        self['model_number'] = model.model_number
        self['id'] = servo_id
        pp = self.regs.get('present_position')
        self._pp = (pp.address, pp.address + pp.size) if pp is not None else (-1, -1)
        self.read_position = None   # Present Position as the host last read it [ticks]

    def __getitem__(self, name: str) -> int:
        r = self.regs[name]
        return models.decode(models.from_le(self.mem, r.address, r.size), r)

    def __setitem__(self, name: str, value: int) -> None:
        r = self.regs[name]
        self.mem[r.address:r.address + r.size] = models.le_bytes(models.encode(value, r), r.size)

    def get(self, name: str, default: int = 0) -> int:
        return self[name] if name in self.regs else default

    def read(self, address: int, length: int) -> tuple[bytes, int]:
        """Host read: (data, error number)."""
        if length < 1 or address + length > len(self.mem):
            return b'', DXL_ERR_ACCESS
        if address <= self._pp[0] and self._pp[1] <= address + length:
            self.read_position = self['present_position']
        return bytes(self.mem[address:address + length]), 0

    def write(self, address: int, data: bytes) -> tuple[list[str], int]:
        """Host write with the servo's checks: (register names written, error number)."""
        end = address + len(data)
        if not data or end > len(self.mem):
            return [], DXL_ERR_ACCESS
        names = []
        for a in range(address, end):
            name = self._owner.get(a)
            if name is None:
                return [], DXL_ERR_ACCESS
            if not names or names[-1] != name:
                names.append(name)
        new = {}
        for name in names:
            r = self.regs[name]
            if r.address < address or r.address + r.size > end:
                return [], DXL_ERR_DATA_LENGTH
            if not r.writable:
                return [], DXL_ERR_ACCESS
            if self.dxl and r.eeprom and self['torque_enable']:
                return [], DXL_ERR_ACCESS
            off = r.address - address
            new[name] = models.decode(models.from_le(data, off, r.size), r)
        if self.dxl:
            err = self._check_dxl(new)
            if err:
                return [], err
        else:
            if 'goal_position' in new:      # the STS keeps goals inside its angle limits
                new['goal_position'] = min(max(new['goal_position'], self['min_angle_limit']),
                                           self['max_angle_limit'])
        for name, value in new.items():
            self[name] = value
        if self.dxl and 'operating_mode' in new:   # manual: mode switch resets these
            self['goal_current'] = self['current_limit']
            self['goal_pwm'] = self['pwm_limit']
            self['profile_velocity'] = self['profile_acceleration'] = 0
        return names, 0

    def _check_dxl(self, new: dict) -> int:
        if self['bus_watchdog'] == -1 and any(n in new for n in GOALS):
            return DXL_ERR_DATA_RANGE
        if 'goal_current' in new and abs(new['goal_current']) > self['current_limit']:
            return DXL_ERR_DATA_LIMIT
        if ('goal_position' in new and self['operating_mode'] == models.DXL_OP_POSITION
                and not self['min_position_limit'] <= new['goal_position']
                <= self['max_position_limit']):
            return DXL_ERR_DATA_LIMIT
        if new.get('torque_enable') and self['hardware_error_status'] & self['shutdown']:
            return DXL_ERR_RESULT_FAIL
        return 0

    def reset_ram(self) -> None:
        """Power-on values of the RAM area (reboot)."""
        for name, r in self.regs.items():
            if r.writable and not r.eeprom and name != 'id':
                self[name] = r.default
        if self.dxl:
            self['hardware_error_status'] = 0


# ---------------------------------------------------------------- one servo on one joint
class Servo:
    """A control table on a joint of the World: drive physics and present values."""

    def __init__(self, drive: Drive, effort_limit: float, dof: int, qadr: int,
                 inertia: float = 1.0):
        self.drive = drive
        self.model = drive.model
        self.table = Table(drive.model, drive.servo_id)
        self.effort_limit = float(effort_limit)
        self.dof, self.qadr = dof, qadr
        self.tau_max = drive.model.stall_current * drive.torque_constant
        self.kt = drive.torque_constant
        self.temperature = 30.0
        self.e_prev = 0.0
        self.e_sum = 0.0
        self.ticks = float(drive.zero_ticks)
        self.busy_until = 0.0          # rebooting
        self.latched_error = 0         # hardware error bits injected (Dynamixel: latched)
        self.phantom_offset = 0        # duplicate_id: the second servo's position offset
        self.model_number = drive.model.model_number
        self.watchdog_t = 0.0          # last instruction seen [s]
        self.motor_tau = 0.0           # the motor's torque at the joint [N m]
        self.rest = None               # torque off: where static friction holds the joint
        self.in_hand = False           # a person holds the joint at rest (move_by_hand)
        self._kb = 0.05 * inertia / DT ** 2     # stable explicit spring-damper at 1 ms steps
        self._db = 0.1 * inertia / DT

    def brake(self, q: float, qd: float) -> float:
        """Static friction of the unpowered gear train [N m]: holds, or slips past its limit
        (not while a hand holds the joint there)."""
        if self.rest is None:
            self.rest = q
        tau = self._kb * (self.rest - q) - self._db * qd
        lim = HOLD_FRICTION * self.effort_limit
        if abs(tau) > lim and not self.in_hand:
            self.rest = q
            return math.copysign(lim, tau)
        return tau

    @property
    def servo_id(self) -> int:
        return self.table['id']

    # ---- physics (called from the physics thread) ----
    def torque(self, q: float, qd: float, now: float) -> float | None:
        """The joint torque this servo's motor applies in the step starting now [N m]; None
        when the motor does not drive (torque off, rebooting, stopped by the Bus Watchdog in
        current mode): then only the gear train's static friction holds the joint."""
        t, d = self.table, self.drive
        self.ticks = d.zero_ticks + (q - (d.lower if d.gripper else 0.0)) / d.scale()
        w = qd / d.scale() * RAD_PER_TICK                  # horn speed [rad/s], servo frame
        if self.model.protocol == 'dynamixel':
            wd = t['bus_watchdog']
            if wd > 0 and t['torque_enable'] and now - self.watchdog_t > wd * WATCHDOG_UNIT_S:
                t['bus_watchdog'] = -1
                t['goal_position'] = int(round(self.ticks))
            if not t['torque_enable'] or now < self.busy_until:
                return None
            mode = t['operating_mode']
            limit_i = t['current_limit'] * self.model.current_unit
            if mode == models.DXL_OP_CURRENT:
                if t['bus_watchdog'] == -1:
                    return None
                i_cmd = min(max(t['goal_current'], -t['current_limit']), t['current_limit'])
                tau = i_cmd * self.model.current_unit * self.kt
            else:
                e = t['goal_position'] - self.ticks
                de, self.e_prev = e - self.e_prev, e
                self.e_sum += e
                pwm = (t['position_p_gain'] / 128.0 * e + t['position_d_gain'] / 16.0 * de
                       + t['position_i_gain'] / 65536.0 * self.e_sum)
                lim = min(t['pwm_limit'], abs(t['goal_pwm']))
                pwm = min(max(pwm, -lim), lim)
                t['present_pwm'] = int(pwm)
                tau = self.tau_max * (pwm / models.DXL_PWM_FULL)
                tau -= self.tau_max * w / self.model.no_load_speed
            hi = self.tau_max * (1.0 - w / self.model.no_load_speed)
            lo = self.tau_max * (-1.0 - w / self.model.no_load_speed)
            tau = min(max(tau, lo, -limit_i * self.kt), hi, limit_i * self.kt)
        else:
            if not t['torque_enable'] or now < self.busy_until:
                return None
            e = t['goal_position'] - self.ticks
            de, self.e_prev = e - self.e_prev, e
            self.e_sum = min(max(self.e_sum + e, -1e6), 1e6)
            duty = (t['p_coefficient'] * e / 4.0 + t['d_coefficient'] * de
                    + t['i_coefficient'] * self.e_sum / 256.0)
            lim = min(t['torque_limit'], models.STS_DUTY_FULL)
            duty = min(max(duty, -lim), lim)
            t['present_load'] = int(round(duty))
            tau = self.tau_max * (duty / models.STS_DUTY_FULL - w / self.model.no_load_speed)
            lim_i = t['protection_current'] * self.model.current_unit * self.kt
            tau = min(max(tau, -lim_i), lim_i)
        return tau * (1.0 if d.gripper else d.direction)

    def sense(self, q: float, qd: float, tau_joint: float, dt: float) -> None:
        """Present values after a step (joint position/velocity/applied torque)."""
        t, d = self.table, self.drive
        ticks = d.zero_ticks + (q - (d.lower if d.gripper else 0.0)) / d.scale()
        if self.phantom_offset:
            ticks += self.phantom_offset
        t['present_position'] = int(round(ticks))
        t['present_velocity'] = d.velocity_units(qd)
        amps = tau_joint * (1.0 if d.gripper else d.direction) / self.kt
        t['present_current'] = int(round(amps / self.model.current_unit))
        self.temperature += dt / 60.0 * (25.0 + 45.0 * (amps / self.model.stall_current) ** 2
                                         - self.temperature)
        t['present_temperature'] = int(round(self.temperature))
        t['moving'] = int(abs(t['present_velocity']) > (10 if t.dxl else 50))
        if t.dxl:
            t['realtime_tick'] = int(time.monotonic() * 1000) % 32768
            t['hardware_error_status'] = t['hardware_error_status'] | self.latched_error
            if self.latched_error & t['shutdown']:
                t['torque_enable'] = 0
        else:
            t['status'] = self.latched_error
            if self.latched_error & t['unloading_condition']:
                t['torque_enable'] = 0

    def error_byte(self) -> int:
        t = self.table
        if t.dxl:
            return DXL_ALERT if t['hardware_error_status'] else 0
        return t['status']


# ---------------------------------------------------------------- wire timing
class Wire:
    """Byte times, the servos' turnaround and an FTDI-like USB adapter on the way back."""

    def __init__(self, baud: int, usb_latency_s: float = 0.0):
        self.byte_s = 10.0 / baud
        self.latency = float(usb_latency_s)
        self.bus_free = 0.0          # end of the last transmission on the wire
        self.usb_last = 0.0          # last USB transfer to the host

    def deliveries(self, pieces: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
        """Servo transmissions [(start time, bytes)] -> what the host gets when [(t, bytes)]."""
        if self.latency <= 0.0:
            return [(t0 + len(b) * self.byte_s, b) for t0, b in pieces]
        arrivals = [(t0 + (i + 1) * self.byte_s, x) for t0, b in pieces for i, x in enumerate(b)]
        out, buf = [], bytearray()
        tick = None
        for t, x in arrivals:
            if tick is None:       # the timer runs in periods from the last transfer
                tick = self.usb_last + self.latency * max(1, math.ceil(
                    (t - self.usb_last) / self.latency))
            elif t > tick:         # what waited went at the tick; the next one starts
                out.append((tick, bytes(buf)))
                buf.clear()
                self.usb_last = tick
                tick = tick + self.latency * max(1, math.ceil((t - tick) / self.latency))
            buf.append(x)
            if len(buf) >= USB_PACKET:
                out.append((t, bytes(buf)))
                buf.clear()
                self.usb_last = t
                tick = None
        if buf:
            out.append((tick, bytes(buf)))
            self.usb_last = tick
        return out


@dataclass
class Fault:
    kind: str
    ids: tuple | None = None
    rate: float = 1.0
    count: int | None = None
    until: float | None = None
    value: float = 0.0
    hits: int = 0

    def applies(self, servo_id: int, now: float, rng: random.Random) -> bool:
        if self.ids is not None and servo_id not in self.ids:
            return False
        if self.until is not None and now > self.until:
            return False
        if self.count is not None and self.hits >= self.count:
            return False
        if self.rate < 1.0 and rng.random() >= self.rate:
            return False
        self.hits += 1
        return True

    def expired(self, now: float) -> bool:
        return ((self.until is not None and now > self.until)
                or (self.count is not None and self.hits >= self.count))


def parse_fault(spec: str) -> dict:
    """'kind[:key=value,...]' (the sim node's parameter) -> ``inject`` keyword arguments, e.g.
    ``drop:ids=3,duration=0.05`` or ``hw_error:ids=2,value=32``. Raises ValueError."""
    kind, _, rest = spec.strip().partition(':')
    if kind not in FAULTS:
        raise ValueError(f'fault {kind!r} is not one of {list(FAULTS)}')
    kw: dict = {'kind': kind}
    for item in filter(None, rest.split(',')):
        key, _, val = item.partition('=')
        key = key.strip()
        if key == 'ids':
            kw['ids'] = tuple(int(v) for v in val.split('+') if v)
        elif key in ('rate', 'duration', 'value'):
            kw[key] = float(val)
        elif key == 'count':
            kw['count'] = int(val)
        else:
            raise ValueError(f'fault {spec!r}: unknown key {key!r} (ids, rate, count, duration, '
                             'value)')
    return kw


# ---------------------------------------------------------------- the bus
@dataclass
class Stats:
    instructions: int = 0
    replies: int = 0
    crc_errors: int = 0
    faults_applied: dict = field(default_factory=lambda: collections.Counter())


class ServoBus:
    """The servos of a hardware file on a World, answering on a pty; see the module docstring.

    ``attach()`` wraps ``world.step`` so that each physics step runs the servos first and
    updates their present values after it. ``start()`` opens the pty and starts the thread that
    answers on it; ``close()`` ends both.
    """

    def __init__(self, cfg: HardwareConfig, world, link: str | None = None,
                 usb_latency_s: float = 0.0, return_delay_us: int = 0, seed: int = 0):
        from .. import robot as robot_mod
        from ..robot.dynamics import ArmDynamics
        self.cfg = cfg
        self.protocol = cfg.protocol
        self.world = world
        self.link = link or default_link()
        self.wire = Wire(cfg.baud, usb_latency_s)
        rm = robot_mod.load()
        m = world.model
        self.servos: list[Servo] = []
        inertia = ArmDynamics().home_inertia()      # the joint's inertia at home [kg m^2]
        for i, d in enumerate(cfg.drives):
            jnt = m.joint(d.joint)
            eff = rm.joints[d.joint].effort
            self.servos.append(Servo(d, eff, int(jnt.dofadr[0]), int(jnt.qposadr[0]),
                                     float(inertia[i]) if i < len(inertia) else 1.0))
        for s in self.servos:
            t = s.table
            t['baud_rate'] = (models.DXL_BAUD_CODES if t.dxl else models.STS_BAUD_CODES)[cfg.baud]
            t['return_delay_time'] = int(round(return_delay_us / 2.0))
        self._arm = [s for s in self.servos if not s.drive.gripper]
        self._grip = next((s for s in self.servos if s.drive.gripper), None)
        self._arm_dof = np.array([s.dof for s in self._arm])
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.faults: list[Fault] = []
        self.stats = Stats()
        self.log: collections.deque = collections.deque(maxlen=20000)   # (t, id, name, value)
        self.goal_hooks: list = []
        self.outside_limits = 0
        self._limits = {d.joint: (rm.joints[d.joint].lower, rm.joints[d.joint].upper)
                        for d in cfg.drives}
        self._out: collections.deque = collections.deque()   # (due time, bytes)
        self._master = self._slave = None
        self._thread = None
        self._running = False
        self._vanished_until = None
        self._parser = None
        self.last_instruction = 0.0
        self._step = None
        self._tau = np.zeros(len(self._arm))

    # ---- physics side ----
    def attach(self) -> None:
        """Route ``world.step`` through the servos (each step: torques, physics, present)."""
        if self._step is None:
            self._step = self.world.step
            self.world.step = self.step
        self.move_by_hand({})           # present values of the pose it starts in

    def _host_talking(self, now: float) -> None:
        """Bytes waiting in the pty were sent by the host: servos on a real wire have them, even
        when this process's serving thread is late (a catch-up step after the process stalled).
        For the Bus Watchdog they are communication now."""
        fd = self._master
        try:
            if fd is None or not select.select([fd], [], [], 0)[0]:
                return
        except (OSError, ValueError):
            return
        for s in self.servos:
            s.watchdog_t = now

    def step(self, n: int = 1) -> None:
        w = self.world
        for _ in range(n):
            now = time.monotonic()
            d = w.data
            if now - self.last_instruction > WATCHDOG_UNIT_S * 0.75:
                self._host_talking(now)
            with self._lock:
                for i, s in enumerate(self._arm):
                    q, qd = float(d.qpos[s.qadr]), float(d.qvel[s.dof])
                    tau = s.torque(q, qd, now)
                    if tau is not None:
                        s.rest, s.in_hand = None, False       # the motor has it now
                        s.motor_tau = self._tau[i] = tau
                    else:
                        s.motor_tau = 0.0
                        self._tau[i] = s.brake(q, qd)
                g = self._grip
                if g is not None:
                    g.torque(float(d.qpos[g.qadr]), float(d.qvel[g.dof]), now)
                    if g.table['torque_enable'] and now >= g.busy_until:
                        w.command_gripper(g.drive.to_joint(g.table['goal_position']))
            w.command('effort', self._tau)
            self._step(1)
            with self._lock:
                for s in self._arm:
                    s.sense(float(d.qpos[s.qadr]), float(d.qvel[s.dof]), s.motor_tau, DT)
                if g is not None:
                    g.sense(float(d.qpos[g.qadr]), float(d.qvel[g.dof]),
                            float(d.qfrc_actuator[g.dof]), DT)

    def move_by_hand(self, positions: dict) -> None:
        """A person moving joints (torque off): {joint: position [rad | m]}, set at rest and
        held there (where the unpowered gear train alone would slip under gravity) until the
        next move or until the motor drives the joint."""
        w = self.world
        with self._lock:
            for s in self.servos:
                if s.drive.joint in positions:
                    w.data.qpos[s.qadr] = positions[s.drive.joint]
                    w.data.qvel[s.dof] = 0.0
                    s.rest = None
                    s.in_hand = True
                    if s.drive.gripper:    # the finger stays where the hand left it
                        right = w.model.joint('right_finger_joint').qposadr[0]
                        w.data.qpos[right] = positions[s.drive.joint]
                        w.drives.place_gripper(positions[s.drive.joint])
            import mujoco
            mujoco.mj_forward(w.model, w.data)
            for s in self.servos:
                s.sense(float(w.data.qpos[s.qadr]), 0.0, 0.0, 0.0)

    # ---- faults ----
    def inject(self, kind: str, ids=None, rate: float = 1.0, count: int | None = None,
               duration: float | None = None, value: float = 0.0) -> None:
        if kind not in FAULTS:
            raise ValueError(f'fault {kind!r} is not one of {list(FAULTS)}')
        now = time.monotonic()
        ids = None if ids is None else tuple(int(i) for i in np.atleast_1d(ids))
        f = Fault(kind, ids, float(rate), count,
                  None if duration is None else now + float(duration), float(value))
        with self._lock:
            if kind == 'hw_error':
                for s in self._select(ids):
                    s.latched_error |= int(value)
            elif kind == 'model':
                for s in self._select(ids):
                    s.model_number = int(value)
            elif kind == 'duplicate_id':
                for s in self._select(ids):
                    s.phantom_offset = 0   # the phantom is a second servo, see _collide
            self.faults.append(f)
        if kind == 'vanish':
            self._vanish(None if duration is None else now + float(duration))

    def clear(self, kind: str | None = None) -> None:
        """End faults (all, or one kind). Latched Dynamixel hardware errors stay until REBOOT;
        Feetech status bits drop when their cause is gone."""
        with self._lock:
            gone = [f for f in self.faults if kind is None or f.kind == kind]
            self.faults = [f for f in self.faults if f not in gone]
            for f in gone:
                if f.kind == 'hw_error':
                    for s in self._select(f.ids):
                        if not s.table.dxl:
                            s.latched_error = 0
                            s.table['status'] = 0
                        else:
                            s.latched_error = 0   # the register keeps the bits until REBOOT
                elif f.kind == 'model':
                    for s in self._select(f.ids):
                        s.model_number = s.model.model_number
        if any(f.kind == 'vanish' for f in gone) and self._master is None and self._running:
            self._open_pty()

    def set_faults(self, spec: str) -> None:
        """Replace the injected faults by ``spec`` ('kind:k=v,...;...', see ``parse_fault``)."""
        parsed = [parse_fault(x) for x in spec.split(';') if x.strip()]   # all or nothing
        self.clear()
        for kw in parsed:
            self.inject(**kw)

    def diagnostics(self) -> dict[str, str]:
        """Figures for the body's /diagnostics."""
        return {'servo_bus': f'{self.protocol} on {self.link}',
                'bus_instructions': str(self.stats.instructions),
                'bus_replies': str(self.stats.replies),
                'bus_crc_errors': str(self.stats.crc_errors),
                'bus_faults': ','.join(sorted({f.kind for f in self.faults})) or 'none',
                'bus_goals_outside_limits': str(self.outside_limits),
                'bus_torque_on': ','.join(str(s.servo_id) for s in self.servos
                                          if s.table['torque_enable']) or 'none'}

    def linger(self, quiet_s: float = 0.5, longest_s: float = 5.0) -> None:
        """Keep the physics running in real time (without ROS) until the bus has been quiet
        for ``quiet_s`` or ``longest_s`` passed: a driver that parks the arm at shutdown still
        has a body to park."""
        end = time.monotonic() + longest_s
        due = time.monotonic()
        while time.monotonic() < end:
            if (time.monotonic() - self.last_instruction > quiet_s
                    and not any(s.table['torque_enable'] for s in self.servos)):
                break
            due += DT
            self.world.step(1)
            rem = due - time.monotonic()
            if rem > 0:
                time.sleep(rem)

    def _select(self, ids):
        return [s for s in self.servos if ids is None or s.servo_id in ids]

    def _hit(self, kind: str, servo_id: int, now: float) -> Fault | None:
        for f in self.faults:
            if f.kind == kind and f.applies(servo_id, now, self._rng):
                self.stats.faults_applied[kind] += 1
                return f
        return None

    # ---- pty ----
    def start(self) -> str:
        """Open the pty, link it, start answering; returns the link path."""
        self._running = True
        self._open_pty()
        self._thread = threading.Thread(target=self._serve, name='servo-bus', daemon=True)
        self._thread.start()
        return self.link

    def _open_pty(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)          # no echo, no line discipline: a serial line
        tty.setraw(master)
        name = os.ttyname(slave)
        tmp = f'{self.link}.tmp{os.getpid()}'
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.replace(tmp, self.link)
        self._parser = protocol.DynamixelParser() if self.protocol == 'dynamixel' \
            else protocol.FeetechParser()
        self._out.clear()
        self._master, self._slave = master, slave

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None

    def _vanish(self, until: float | None) -> None:
        """The adapter is unplugged: the bridge's open port reads EIO; the link is gone."""
        self._vanished_until = until
        if os.path.islink(self.link):
            os.unlink(self.link)
        self._close_pty()

    def close(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._close_pty()
        if os.path.islink(self.link):
            try:
                os.unlink(self.link)
            except OSError:
                pass
        if self._step is not None:
            self.world.step = self._step
            self._step = None

    def _serve(self) -> None:
        from ..common import realtime
        realtime.adopt()
        while self._running:
            if self._master is None:
                if self._vanished_until is not None and time.monotonic() >= self._vanished_until:
                    with self._lock:
                        self.faults = [f for f in self.faults if f.kind != 'vanish']
                    self._open_pty()
                else:
                    time.sleep(0.01)
                    continue
            fd = self._master       # a vanish (another thread) may close it at any time
            now = time.monotonic()
            while self._out and self._out[0][0] <= now + 20e-6:
                _due, data = self._out.popleft()
                try:
                    os.write(fd, data)
                except OSError:
                    break
                now = time.monotonic()
            timeout = min(0.05, max(0.0, self._out[0][0] - now)) if self._out else 0.05
            try:
                ready, _, _ = select.select([fd], [], [], timeout)
                if not ready:
                    continue
                data = os.read(fd, 4096)
            except (OSError, ValueError, TypeError):
                continue
            t = time.monotonic()
            self.last_instruction = t
            with self._lock:
                self.faults = [f for f in self.faults if not f.expired(t)]
                wire_t = max(t, self.wire.bus_free)
                for ins in self._parser.feed(data):
                    wire_t += ins.nbytes * self.wire.byte_s
                    self.stats.instructions += 1
                    pieces = (self._dxl(ins, wire_t) if self.protocol == 'dynamixel'
                              else self._sts(ins, wire_t))
                    if pieces:
                        end = max(t0 + len(b) * self.wire.byte_s for t0, b in pieces)
                        self.wire.bus_free = wire_t = max(wire_t, end)
                        self._out.extend(self.wire.deliveries(pieces))
                    else:
                        self.wire.bus_free = wire_t

    # ---- replies: shared steps ----
    def _targets(self, servo_id: int, now: float) -> list[Servo]:
        out = []
        for s in self.servos:
            if servo_id in (s.servo_id, models.BROADCAST_ID):
                s.watchdog_t = now
                if now >= s.busy_until:
                    out.append(s)
        return out

    def _reply(self, s: Servo, packet: bytes, start: float, now: float) -> list:
        """Faults on one reply; returns [(start, bytes)] (empty: nothing sent)."""
        sid = s.servo_id
        if self._hit('silent', sid, now) or self._hit('drop', sid, now):
            return []
        f = self._hit('slow', sid, now)
        if f is not None:
            start += f.value
        if self._hit('wrong_id', sid, now):
            packet = self._renumber(packet, (sid % 252) + 1)
        if self._hit('bad_crc', sid, now):
            packet = packet[:-1] + bytes([packet[-1] ^ 0xFF])
        if self._hit('truncate', sid, now):
            packet = packet[:max(1, len(packet) // 2)]
        if self._hit('duplicate_id', sid, now):
            packet = self._collide(packet)
        self.stats.replies += 1
        return [(start, packet)]

    def _renumber(self, packet: bytes, new_id: int) -> bytes:
        if self.protocol == 'dynamixel':
            body = packet[:4] + bytes([new_id]) + packet[5:-2]
            c = protocol.crc16(body)
            return body + bytes([c & 0xFF, c >> 8])
        body = bytes([new_id]) + packet[3:-1]
        return packet[:2] + body + bytes([protocol.sts_checksum(body)])

    @staticmethod
    def _collide(packet: bytes) -> bytes:
        """A second servo sends the same kind of reply one byte later: wired-AND on the line
        (a 0 bit from either transmitter wins)."""
        other = b'\xff' + packet[:-1]
        return bytes(a & b for a, b in zip(packet, other)) + packet[-1:]

    def _delay(self, s: Servo) -> float:
        return s.table['return_delay_time'] * 2e-6

    def _record(self, s: Servo, names: list[str], now: float) -> None:
        for n in names:
            if n in LOGGED:
                v = s.table[n]
                self.log.append((now, s.servo_id, n, v))
                if n in GOALS and self._outside(s, n, v):
                    self.outside_limits += 1

    def _outside(self, s: Servo, name: str, value: int) -> bool:
        lo, hi = self._limits[s.drive.joint]
        if name == 'goal_position':
            q = s.drive.to_joint(value)
            return not (lo - 1e-6 - abs(s.drive.scale()) <= q <= hi + 1e-6 + abs(s.drive.scale()))
        if name == 'goal_current':
            tau = abs(value * s.model.current_unit * s.kt)
            return tau > s.effort_limit * (1 + 1e-6) + s.model.current_unit * s.kt
        return False

    def _sync_write(self, targets, p, addr: int, length: int, first: int, now: float,
                    skip_errors: bool) -> list:
        """A broadcast Sync Write: from ``first``, each servo's ID then ``length`` data bytes
        for ``addr``; ``skip_errors``: a write its table refuses is not reported as a goal
        (Dynamixel), else it is (Feetech). No reply."""
        by_id = {s.servo_id: s for s in targets}
        written = {}
        for k in range(first, len(p) - length, length + 1):
            s = by_id.get(p[k])
            if s is None:
                continue
            names, err = s.table.write(addr, p[k + 1:k + 1 + length])
            self._record(s, names, now)
            if not (err and skip_errors):
                written[s.servo_id] = {n: s.table[n] for n in names}
        if written:
            self._goal_written(now, written)
        return []

    def _goal_written(self, now: float, written: dict) -> None:
        for hook in self.goal_hooks:
            hook(time.time_ns(), self.world.step_count, now, written)

    def _ping(self, targets, start: float, now: float, status) -> list:
        """Every addressed servo answers a ping in ID order, each after its return delay."""
        out: list = []
        for s in sorted(targets, key=lambda x: x.servo_id):
            start += self._delay(s)
            pkt = status(s)
            out += self._reply(s, pkt, start, now)
            start += len(pkt) * self.wire.byte_s
        return out

    # ---- Dynamixel Protocol 2.0 ----
    def _dxl(self, ins: protocol.Instruction, t_end: float) -> list:
        now = time.monotonic()
        targets = self._targets(ins.servo_id, now)
        broadcast = ins.servo_id == models.BROADCAST_ID
        if not ins.crc_ok:
            self.stats.crc_errors += 1
            if broadcast or not targets:
                return []
            s = targets[0]
            return self._reply(s, protocol.dxl_status(s.servo_id, s.error_byte() | DXL_ERR_CRC),
                               t_end + self._delay(s), now)
        p, inst = ins.params, ins.inst
        out: list = []
        start = t_end
        if inst == protocol.PING:
            return self._ping(targets, start, now, lambda s: protocol.dxl_status(
                s.servo_id, s.error_byte(),
                bytes([s.model_number & 0xFF, s.model_number >> 8, s.table['firmware_version']])))
        if inst == protocol.READ and not broadcast and targets and len(p) == 4:
            s = targets[0]
            data, err = s.table.read(p[0] | p[1] << 8, p[2] | p[3] << 8)
            data = self._model_patch(s, p[0] | p[1] << 8, data)
            if s.table['status_return_level'] < 1:
                return []
            pkt = protocol.dxl_status(s.servo_id, s.error_byte() | err, data)
            return self._reply(s, pkt, t_end + self._delay(s), now)
        if inst == protocol.WRITE and len(p) >= 3:
            addr = p[0] | p[1] << 8
            for s in targets:
                names, err = s.table.write(addr, p[2:])
                self._record(s, names, now)
                if not broadcast and s.table['status_return_level'] >= 2:
                    out += self._reply(s, protocol.dxl_status(s.servo_id, s.error_byte() | err),
                                       t_end + self._delay(s), now)
            return out
        if inst == protocol.REBOOT:
            for s in targets:
                s.table.reset_ram()
                s.latched_error = 0 if not self._hw_fault_active(s, now) else s.latched_error
                s.e_sum = 0.0
                s.busy_until = now + REBOOT_S['dynamixel']
                if not broadcast:
                    out += self._reply(s, protocol.dxl_status(s.servo_id, 0),
                                       t_end + self._delay(s), now)
            return out
        if inst in (protocol.SYNC_READ, protocol.FAST_SYNC_READ) and broadcast and len(p) >= 5:
            addr, length = p[0] | p[1] << 8, p[2] | p[3] << 8
            by_id = {s.servo_id: s for s in targets}
            parts = []
            for sid in p[4:]:
                s = by_id.get(sid)
                if s is None:
                    continue
                data, err = s.table.read(addr, length)
                parts.append((s, err, data))
            if inst == protocol.SYNC_READ:
                for s, err, data in parts:
                    start += self._delay(s)
                    pkt = protocol.dxl_status(s.servo_id, s.error_byte() | err, data)
                    out += self._reply(s, pkt, start, now)
                    start += len(pkt) * self.wire.byte_s
                return out
            pieces = protocol.dxl_fast_sync_status(
                [(s.servo_id, s.error_byte() | err, data if not err else bytes(length))
                 for s, err, data in parts])
            for (s, _err, _data), pkt in zip(parts, pieces):
                start += self._delay(s)
                out += self._reply(s, pkt, start, now)
                start += len(pkt) * self.wire.byte_s
            return out
        if inst == protocol.SYNC_WRITE and broadcast and len(p) >= 5:
            return self._sync_write(targets, p, p[0] | p[1] << 8, p[2] | p[3] << 8, 4, now,
                                    skip_errors=True)
        if not broadcast and targets:       # not emulated: Instruction Error
            s = targets[0]
            return self._reply(s, protocol.dxl_status(s.servo_id,
                                                      s.error_byte() | DXL_ERR_INSTRUCTION),
                               t_end + self._delay(s), now)
        return []

    def _model_patch(self, s: Servo, addr: int, data: bytes) -> bytes:
        """A ``model`` fault: reads of the model number see the other number."""
        reg = s.table.regs['model_number']
        if not data or s.model_number == s.model.model_number:
            return data
        raw = bytearray(data)
        mn = models.le_bytes(s.model_number, reg.size)
        for i in range(reg.size):
            a = reg.address + i - addr
            if 0 <= a < len(raw):
                raw[a] = mn[i]
        return bytes(raw)

    def _hw_fault_active(self, s: Servo, now: float) -> bool:
        return any(f.kind == 'hw_error' and (f.ids is None or s.servo_id in f.ids)
                   for f in self.faults)

    # ---- Feetech SCS/STS ----
    def _sts(self, ins: protocol.Instruction, t_end: float) -> list:
        now = time.monotonic()
        if not ins.crc_ok:                  # a packet with a bad checksum is dropped
            self.stats.crc_errors += 1
            return []
        targets = self._targets(ins.servo_id, now)
        broadcast = ins.servo_id == models.BROADCAST_ID
        p, inst = ins.params, ins.inst
        out: list = []
        start = t_end
        if inst == protocol.PING:
            return self._ping(targets, start, now,
                              lambda s: protocol.sts_status(s.servo_id, s.error_byte()))
        if inst == protocol.READ and not broadcast and targets and len(p) == 2:
            s = targets[0]
            data, err = s.table.read(p[0], p[1])
            if err:
                return []
            data = self._model_patch(s, p[0], data)
            return self._reply(s, protocol.sts_status(s.servo_id, s.error_byte(), data),
                               t_end + self._delay(s), now)
        if inst == protocol.WRITE and len(p) >= 2:
            for s in targets:
                names, _err = s.table.write(p[0], p[1:])
                self._record(s, names, now)
                if not broadcast and s.table['response_status_level'] >= 1:
                    out += self._reply(s, protocol.sts_status(s.servo_id, s.error_byte()),
                                       t_end + self._delay(s), now)
            return out
        if inst == protocol.SYNC_READ and broadcast and len(p) >= 3:
            addr, length = p[0], p[1]
            by_id = {s.servo_id: s for s in targets}
            for sid in p[2:]:
                s = by_id.get(sid)
                if s is None:
                    continue
                data, err = s.table.read(addr, length)
                if err:
                    continue
                start += self._delay(s)
                pkt = protocol.sts_status(s.servo_id, s.error_byte(), data)
                out += self._reply(s, pkt, start, now)
                start += len(pkt) * self.wire.byte_s
            return out
        if inst == protocol.SYNC_WRITE and broadcast and len(p) >= 3:
            return self._sync_write(targets, p, p[0], p[1], 2, now, skip_errors=False)
        if inst == protocol.STS_RESTART:
            for s in targets:
                s.table.reset_ram()
                s.busy_until = now + REBOOT_S['feetech']
            return []
        return []


# ---------------------------------------------------------------- the wire's limit
def _cycle_packets(cfg: HardwareConfig) -> tuple[bytes, list[bytes], bytes]:
    """The bridge's cycle as bytes on the wire (zero data): the read instruction, each
    servo's reply (the pieces of a Fast Sync Read's one packet) and the goals' Sync Write."""
    from .bus import READ_BLOCK, goal_register
    addr, length = READ_BLOCK[cfg.protocol]
    ids = cfg.ids
    reg = cfg.drives[0].model.table[goal_register(cfg)]
    goals = b''.join(bytes([d.servo_id]) + bytes(reg.size) for d in cfg.arm)
    if cfg.protocol == 'dynamixel':
        head = bytes([addr & 0xFF, addr >> 8, length & 0xFF, length >> 8])
        fast = cfg.fast_sync_read
        read = protocol.dxl_instruction(models.BROADCAST_ID, protocol.FAST_SYNC_READ if fast
                                        else protocol.SYNC_READ, head + bytes(ids))
        replies = (protocol.dxl_fast_sync_status([(i, 0, bytes(length)) for i in ids]) if fast
                   else [protocol.dxl_status(i, 0, bytes(length)) for i in ids])
        write = protocol.dxl_instruction(
            models.BROADCAST_ID, protocol.SYNC_WRITE,
            bytes([reg.address & 0xFF, reg.address >> 8, reg.size, 0]) + goals)
        return read, replies, write
    read = protocol.sts_instruction(models.BROADCAST_ID, protocol.SYNC_READ,
                                    bytes([addr, length, *ids]))
    replies = [protocol.sts_status(i, 0, bytes(length)) for i in ids]
    write = protocol.sts_instruction(models.BROADCAST_ID, protocol.SYNC_WRITE,
                                     bytes([reg.address, reg.size]) + goals)
    return read, replies, write


def cycle_bytes(cfg: HardwareConfig) -> tuple[int, int]:
    """(bytes of the read transaction, bytes of the write) of one bridge cycle."""
    read, replies, write = _cycle_packets(cfg)
    return len(read) + sum(len(r) for r in replies), len(write)


def cycle_wire_s(cfg: HardwareConfig, usb_latency_s: float = 0.0,
                 return_delay_us: int = 0) -> float:
    """The shortest bus cycle the timing model (:class:`Wire`) allows [s]: the read
    instruction, the servos' replies one after another (each after its return delay), through
    the USB adapter (its latency timer starting with the cycle), then the Sync Write. The
    ``wire_limit_hz`` of ``neurovla bench bus`` is its inverse."""
    read, replies, write = _cycle_packets(cfg)
    wire = Wire(cfg.baud, usb_latency_s)
    start = len(read) * wire.byte_s
    pieces = []
    for r in replies:
        start += return_delay_us * 1e-6
        pieces.append((start, r))
        start += len(r) * wire.byte_s
    arrival = max(t for t, _ in wire.deliveries(pieces))
    return arrival + len(write) * wire.byte_s


def sim_bus(world, p, sim_time: bool) -> ServoBus:
    """The sim node's bus (parameters ``servo_bus*``): attached to its World, answering."""
    from . import config
    if sim_time:
        raise ValueError('servo_bus: the emulated bus runs in real time (use_sim_time false)')
    cfg = config.load(p.servo_bus_config or None, p.servo_bus)
    bus = ServoBus(cfg, world, link=p.servo_bus_link or None,
                   usb_latency_s=p.servo_bus_latency_ms * 1e-3,
                   return_delay_us=p.servo_bus_return_delay_us)
    bus.attach()
    if p.servo_bus_fault:
        bus.set_faults(p.servo_bus_fault)
    bus.start()
    return bus


# ---------------------------------------------------------------- standalone
def make_world(seed: int = 0, n_objects: int = 0):
    """The emulator's own World: the URDF arm without the simulator's gravity compensation."""
    from ..sim.world import World
    return World(seed=seed, n_objects=n_objects, gravity_compensation=False)


class Standalone:
    """World + bus + a real-time physics thread, for tests and benchmarks without ROS."""

    def __init__(self, cfg: HardwareConfig, link: str | None = None, q0=None, **bus_kw):
        self.world = make_world()
        if q0 is not None:
            self.world.reset(q=q0)
        self.bus = ServoBus(cfg, self.world, link=link, **bus_kw)
        self.bus.attach()
        self._run = False
        self._thread = None
        self.overruns = 0

    def start(self) -> str:
        link = self.bus.start()
        self._run = True
        self._thread = threading.Thread(target=self._physics, name='physics', daemon=True)
        self._thread.start()
        return link

    def _physics(self) -> None:
        due = time.monotonic()
        while self._run:
            due += DT
            self.world.step(1)
            rem = due - time.monotonic()
            if rem > 0:
                time.sleep(rem)
            elif rem < -0.05:
                self.overruns += 1
                due = time.monotonic()

    def close(self) -> None:
        self._run = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.bus.close()


def main(argv=None) -> int:
    """``python -m neurovla_ros.hardware.emulator --body dynamixel|feetech``: the emulated
    arm on a pty, in real time, until SIGINT/SIGTERM (no ROS)."""
    import argparse
    import signal

    from . import config
    ap = argparse.ArgumentParser(prog='python -m neurovla_ros.hardware.emulator',
                                 description=main.__doc__)
    ap.add_argument('--body', choices=config.PROTOCOLS, default='dynamixel')
    ap.add_argument('--config', default='', help='hardware file (default: the packaged one)')
    ap.add_argument('--link', default='', help=f'pty link (default: {default_link()})')
    ap.add_argument('--latency-ms', type=float, default=0.0, help='USB latency timer [ms]')
    ap.add_argument('--return-delay-us', type=int, default=0)
    ap.add_argument('--fault', action='append', default=[], help='fault spec, e.g. drop:ids=3')
    ap.add_argument('--realtime-priority', type=int, default=0)
    a = ap.parse_args(argv)
    cfg = config.load(a.config or None, a.body)
    emu = Standalone(cfg, link=a.link or None, usb_latency_s=a.latency_ms * 1e-3,
                     return_delay_us=a.return_delay_us)
    if a.realtime_priority:
        from ..common import realtime
        realtime.make_realtime(a.realtime_priority)
    for spec in a.fault:
        emu.bus.inject(**parse_fault(spec))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    link = emu.start()
    print(f'servo bus emulator ({cfg.protocol}, {cfg.baud} baud, {len(cfg.drives)} servos) on '
          f'{link}', flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        emu.close()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
