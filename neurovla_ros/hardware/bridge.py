"""The bus bridge as one ROS-free object: start-up checks, the cycle, stops, park. ROS-free.

``Bridge.read(now)`` reads every servo once (:meth:`.bus.Bus.sync_read`) and updates the joint
state; ``Bridge.write(now)`` writes the goals of this cycle (one Sync Write). Between them the
node publishes /joint_states and takes the controller's answer (``command_effort`` /
``command_position`` / ``command_gripper``).

States (``STATES``; stop words as in the safety issue, IEC 60204-1 categories):

* ``connecting``: no port (not there yet, or unplugged): ERROR, a new try every
  ``reconnect_s``; never a crash.
* ``config error``: the servos do not match the hardware file (an ID that does not answer, a
  model mismatch, corrupt answers from an ID = two servos with one ID): ERROR naming the joint
  and the ID; nothing is energised; checked again every ``reconnect_s``.
* ``running``: torque on, following the commands. No fresh command for ``command_timeout`` s:
  hold the pose where they stopped (WARN).
* ``protective stop`` (category 2: controlled stop, power kept, standstill held): after
  ``fail_stop_reads`` consecutive failed reads, or a hardware error status (overload,
  overheating, voltage, ...) naming the joint. Holds the last good position (position
  interface: goal = that position; current interface: gravity from the robot model plus a PD to
  it, the gains of :class:`~neurovla_ros.common.servo.JointGains`); commands are refused.
* ``torque off`` (controlled torque-off): reads still failing ``torque_off_after`` s after the
  protective stop, or a servo that shut itself down: Torque Enable 0 on every servo.
* ``parking`` -> ``off``: on shutdown, a minimum-jerk move to the file's park pose (at most
  ``park_time`` s), then Torque Enable 0 (within 3 s of the request).

Leaving a stop: only ``resume()`` (a service), never by itself: servos with a latched hardware
error are rebooted and set up again, the goals are seeded from a fresh read of the present
positions (and, on the current interface, Goal Current = the gravity torque there), then torque
goes on. The same seeding happens at start: torque is never enabled before the goal registers
hold the measured pose (the failure of drivers whose first write is a default position), and on
a Dynamixel the seeding comes after the Operating Mode write, which resets Goal Current to
Current Limit.

Dynamixel Bus Watchdog (``bus_watchdog_ms`` in the hardware file): the servos stop by
themselves when the bridge falls silent that long (current interface: no torque), and then
refuse goal writes until the watchdog is cleared; a goal Sync Write has no status packet, so
that refusal is invisible. A cycle that starts half a watchdog period or more after the last
one clears and re-arms it on every servo (``watchdog_rearms`` in /diagnostics, a warning).

Limits: effort goals are clamped to the URDF effort limit (with the gravity term included),
position goals to the URDF range and the calibrated tick range, and a position goal moves at
most ``URDF velocity x dt`` from the last one. ``clipped`` counts the cycles where a clamp acted.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from . import models
from .bus import Bus, BusLost
from .config import HardwareConfig

CONNECTING, CONFIG_ERROR, RUNNING = 'connecting', 'config error', 'running'
PROTECTIVE_STOP, TORQUE_OFF, PARKING, OFF = 'protective stop', 'torque off', 'parking', 'off'
STATES = (CONNECTING, CONFIG_ERROR, RUNNING, PROTECTIVE_STOP, TORQUE_OFF, PARKING, OFF)
STOP_CATEGORY = {PROTECTIVE_STOP: 2, TORQUE_OFF: 1}      # torque off after a controlled stop
# the latency timer the start-up checks allow for before they measured the adapter's: FTDI's
# default (and what both SDKs assume), so an adapter left at it is found and named, not missed
STARTUP_LATENCY_MS = 16.0


@dataclass
class BridgeOptions:
    command_timeout: float = 0.1      # [s] no fresh arm command -> hold
    fail_stop_reads: int = 3          # consecutive failed reads -> protective stop
    torque_off_after: float = 0.5     # [s] still failing after the stop -> torque off
    reconnect_s: float = 0.5          # [s] between tries to open the port / check the servos
    park_time: float = 2.0            # [s] longest park move
    set_return_delay: bool = False    # write Return Delay Time 0 where it is larger
    latency_ms: float | None = None   # the adapter's latency timer (None: the file's)
    reply_margin_ms: float = 10.0     # a reply's timeout beyond wire time and latency [ms]
    velocity_accel_noise: float = 0.01  # estimator's unexplained accel [rad/s^2/sqrt(Hz)]; 0 off


def check_servos(bus: Bus, cfg: HardwareConfig) -> str | None:
    """Every servo of the file answers at its ID with its model: None, or what is wrong
    (naming the joint and the ID)."""
    bad = []
    for d in cfg.drives:
        number, corrupt = None, False
        for _ in range(3):
            number, corrupt = bus.ping(d.servo_id)
            if number is not None:
                break
        if number is None and corrupt:
            bad.append(f'{d.joint}: ID {d.servo_id} answers with corrupt packets (two servos '
                       'with the same ID?)')
        elif number is None:
            bad.append(f'{d.joint}: no servo answers at ID {d.servo_id}')
        elif number != d.model.model_number:
            found = models.MODEL_NAMES.get(number, 'unknown model')
            bad.append(f'{d.joint}: ID {d.servo_id} is a {found} (model number {number}), the '
                       f'hardware file says {d.model.name} ({d.model.model_number})')
    if not bad:
        return None
    if any('no servo answers' in b for b in bad):
        present = [i for i in range(0, max(cfg.ids) + 6)
                   if i not in cfg.ids and bus.ping(i)[0] is not None]
        if present:
            bad.append(f'servos answer at IDs {present}, which the file does not use')
    return f'{bus.port_name}: ' + '; '.join(bad) + ' - nothing energised'


class Bridge:
    """See the module docstring. ``events`` collects (level, message) for the node to log."""

    def __init__(self, cfg: HardwareConfig, port: str, opts: BridgeOptions | None = None,
                 dyn=None):
        from .. import robot as robot_mod
        from ..common.servo import JointGains
        from ..robot.dynamics import ArmDynamics
        self.cfg = cfg
        self.opts = opts or BridgeOptions()
        self.port = port
        self.bus = Bus(cfg, port, self.opts.latency_ms, self.opts.reply_margin_ms)
        self._latency_ms = self.bus.latency_ms        # the configured latency timer [ms]
        self.model = robot_mod.load()
        self.dyn = dyn or ArmDynamics()
        lim = self.model.limits()
        self.lower, self.upper = lim['lower'], lim['upper']
        self.vmax, self.effort_max = lim['velocity'], lim['effort']
        self.gains = JointGains.for_arm(self.model, self.dyn, e_sat=0.05, omega_max=40.0)
        arm = cfg.arm
        tick_lo = np.array([d.to_joint(d.min_ticks if d.direction > 0 else d.max_ticks)
                            for d in arm])
        tick_hi = np.array([d.to_joint(d.max_ticks if d.direction > 0 else d.min_ticks)
                            for d in arm])
        self.q_lo = np.maximum(self.lower, tick_lo)       # where position goals may go
        self.q_hi = np.minimum(self.upper, tick_hi)
        g = self.model.joints[robot_mod.GRIPPER_JOINT]
        self.grip_range = (g.lower, g.upper)
        self.current_mode = cfg.interface == 'current'
        # the published arm velocity: a model-based Kalman filter over the quantised registers
        # (estimator.py: the raw Present Velocity steps make the reflex's observer trip)
        self.estimator = None
        if self.opts.velocity_accel_noise > 0:
            from .estimator import VelocityEstimator
            self.estimator = VelocityEstimator(
                self.dyn, [abs(d.scale()) for d in arm], [abs(d.velocity(1)) for d in arm],
                self.opts.velocity_accel_noise, lim['damping'], lim['friction'])
        n = len(cfg.drives)
        self.n = n
        # joint state (/joint_states order: 6 arm joints, left finger, right finger = mimic)
        self.q = np.zeros(8)
        self.qd = np.zeros(8)
        self.effort = np.zeros(8)
        self.stamp_ns = 0
        self.fresh = False
        self.has_state = False
        # commands
        self.cmd = np.zeros(6)
        self.cmd_kind = None          # 'effort' | 'position'
        self.cmd_time = -math.inf
        self.grip_cmd = None
        self._grip_written = None
        self.commands = 0
        # state machine
        self.state = CONNECTING
        self.reason = 'starting'
        self.stop_since = None
        self.hold_q = None
        self.holding = False
        self.errors: dict[str, str] = {}      # joint -> hardware error text
        self.events: list[tuple[str, str]] = []
        self._next_try = 0.0
        self._fails = 0
        self._fail_joints: set[str] = set()
        self._unread = np.zeros(6, bool)      # arm joints without a valid reply this cycle
        self._last_goal = None
        self._goal_time = 0.0
        self._park = None
        self.torque_on = False
        # statistics
        self.reads = self.read_failures = self.corrupt = self.timeouts = 0
        self.reconnects = 0
        self.clipped = 0
        self.watchdog_rearms = 0
        self._cycle_t = None          # the last cycle's start [s]: the gap the Bus Watchdog sees
        self.cycle_s: list[float] = []
        self.warnings: list[str] = []         # start-up findings (return delay, latency)
        self.temperature = np.zeros(n)
        self.voltage = np.zeros(n)

    # ---------------------------------------------------------------- helpers
    def _event(self, level: str, msg: str) -> None:
        self.events.append((level, msg))

    def _enter(self, state: str, reason: str, now: float) -> None:
        if state != self.state or reason != self.reason:
            level = 'info' if state in (RUNNING, PARKING, OFF) else 'error'
            self._event(level, f'{state}: {reason}')
        if state in (PROTECTIVE_STOP, TORQUE_OFF) and self.state not in (PROTECTIVE_STOP,
                                                                         TORQUE_OFF):
            self.stop_since = now
            self.hold_q = self.q[:6].copy()
        self.state, self.reason = state, reason

    @property
    def stop_category(self) -> int | None:
        return STOP_CATEGORY.get(self.state)

    def _joint(self, i: int) -> str:
        d = self.cfg.drives[i]
        return f'{d.joint} (ID {d.servo_id})'

    # ---------------------------------------------------------------- connecting, checking
    def _connect(self, now: float) -> None:
        if now < self._next_try:
            return
        self._next_try = now + self.opts.reconnect_s
        if not self.bus.is_open:
            try:
                self.bus.open()
            except BusLost as e:
                self._enter(CONNECTING, str(e), now)
                return
        # until _check_latency measured it, the replies may come as late as FTDI's default
        self.bus.set_latency(max(self._latency_ms, STARTUP_LATENCY_MS))
        try:
            problem = self._check()
            if problem:
                self._enter(CONFIG_ERROR, problem, now)
                return
            self._configure()
            self._seed_and_enable(now)
        except BusLost as e:
            self._lost(str(e), now)

    def _check(self) -> str | None:
        return check_servos(self.bus, self.cfg)

    def _configure(self) -> None:
        """Torque off, operating mode, registers, return delay and latency checks."""
        bus, cfg = self.bus, self.cfg
        self.warnings = []
        for d in cfg.drives:
            bus.write(d.servo_id, 'torque_enable', 0)
        self.torque_on = False
        if cfg.protocol == 'dynamixel':
            for d in cfg.drives:
                mode = (models.DXL_OP_CURRENT if self.current_mode and not d.gripper
                        else models.DXL_OP_POSITION)
                if bus.read(d.servo_id, 'operating_mode') != mode:
                    bus.write(d.servo_id, 'operating_mode', mode)
            self._arm_watchdog()
        for d in cfg.drives:
            for name, value in cfg.registers.items():
                bus.write(d.servo_id, name, value)
        slow = {}
        for d in cfg.drives:
            rd = bus.read(d.servo_id, 'return_delay_time')
            if rd is not None and 2 * rd > cfg.max_return_delay_us:
                if self.opts.set_return_delay and bus.write(d.servo_id, 'return_delay_time', 0):
                    self._event('warning', f'{d.joint}: Return Delay Time was {2 * rd} us; '
                                'wrote 0')
                else:
                    slow[d.joint] = 2 * rd
        if slow:
            total = sum(slow.values()) * 1e-6
            self.warnings.append(
                f'Return Delay Time {sorted(set(slow.values()))} us on {sorted(slow)}: the bus '
                f'waits {total * 1e3:.2f} ms more per read; set it to 0 (parameter '
                'set_return_delay:=true writes it, or the vendor tool)')
        self._check_latency()
        for w in self.warnings:
            self._event('warning', w)

    def _check_latency(self) -> None:
        """The USB adapter's latency timer: from sysfs where it has one, and measured (the
        median of 5 one-register reads beyond their wire time: one transaction each, where a
        Feetech ping is two). The reply timeouts of the cycle then assume
        the larger of the configured and the found latency: an adapter left at 16 ms runs
        slowly, with a warning, instead of timing out every read."""
        dev = os.path.basename(os.path.realpath(self.port))
        path = f'/sys/bus/usb-serial/devices/{dev}/latency_timer'
        found = 0.0
        if os.path.isfile(path):
            try:
                found = float(int(open(path).read().strip()))
            except (OSError, ValueError):
                found = 0.0
            if found > self.cfg.latency_timer_ms:
                self.warnings.append(f'{dev}: USB latency timer {found:g} ms (limits the bus to '
                                     f'about {1000.0 / found:.0f} reads/s): '
                                     f'echo 1 | sudo tee {path}')
        sid = self.cfg.drives[0].servo_id
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            if self.bus.read(sid, 'return_delay_time') is not None:
                times.append(time.perf_counter() - t0)
        if times:
            wire = 26 * 10.0 / self.cfg.baud          # a Protocol 2.0 read and its status
            excess = (sorted(times)[len(times) // 2] - wire) * 1e3
            if excess > 2.0:
                self.warnings.append(f'a read takes {excess:.1f} ms more than the wire '
                                     'needs: USB latency timer? (FTDI: echo 1 > /sys/bus/'
                                     'usb-serial/devices/ttyUSB0/latency_timer)')
                found = max(found, excess)
        self.bus.set_latency(max(self._latency_ms, found))

    def _seed_and_enable(self, now: float) -> None:
        """Read the present state, seed every goal register with it, then torque on."""
        for _ in range(5):
            replies = self.bus.sync_read()
            if all(r.ok for r in replies):
                break
        else:
            self._enter(CONFIG_ERROR, 'no complete read of the present positions', now)
            return
        self._decode(replies, time.time_ns())
        self.hold_q = self.q[:6].copy()
        # the seed is the gravity torque at the measured pose: no PD term yet (the servos were
        # limp, a sagging arm's velocity is not an error to brake against before torque-on)
        self._write_goals(self.hold_q, now, hold=True, grip=self.q[6], qd_ref=self.qd[:6])
        for d in self.cfg.drives:
            if not self.bus.write(d.servo_id, 'torque_enable', 1):
                self._enter(PROTECTIVE_STOP, f'{self._joint(self.cfg.drives.index(d))}: '
                            'torque did not turn on', now)
                return
        self.torque_on = True
        self._cycle_t = now
        self.errors.clear()
        self._fails = 0
        self.cmd_time = -math.inf          # an older command does not count
        self.holding = True
        self._enter(RUNNING, 'torque on, goals seeded from the measured pose', now)

    def _arm_watchdog(self) -> None:
        """Clear a tripped Dynamixel Bus Watchdog (it reads -1 and refuses goals until 0 is
        written) and arm it again."""
        cfg = self.cfg
        if cfg.protocol != 'dynamixel' or not cfg.bus_watchdog_ms:
            return
        for d in cfg.drives:
            self.bus.write(d.servo_id, 'bus_watchdog', 0)
            self.bus.write(d.servo_id, 'bus_watchdog', max(1, round(cfg.bus_watchdog_ms / 20)))

    def _after_silence(self, now: float) -> None:
        """A cycle that came late: the servos may have timed the silence out. A tripped Bus
        Watchdog stops the motors (current mode: no torque) and answers goal Sync Writes with
        nothing (they have no status), so the bridge would write into the void: re-arm it when
        the gap since the last cycle reached half its period."""
        gap = 0.0 if self._cycle_t is None else now - self._cycle_t
        self._cycle_t = now
        wd = self.cfg.bus_watchdog_ms * 1e-3
        if not (self.torque_on and self.cfg.protocol == 'dynamixel' and wd and gap >= 0.5 * wd):
            return
        self._arm_watchdog()
        self.watchdog_rearms += 1
        self._event('warning', f'bus silent for {gap * 1e3:.0f} ms (Bus Watchdog '
                               f'{self.cfg.bus_watchdog_ms} ms): watchdog cleared and re-armed')

    # ---------------------------------------------------------------- the cycle
    def read(self, now: float) -> bool:
        """One read of every servo; True when a complete fresh state is available."""
        self.fresh = False
        if self.state in (CONNECTING, CONFIG_ERROR):
            self._connect(now)
            return False
        if not self.bus.is_open:
            self._lost('port closed', now)
            return False
        t0 = time.perf_counter()
        try:
            self._after_silence(now)
            replies = self.bus.sync_read()
        except BusLost as e:
            self._lost(str(e), now)
            return False
        self.reads += 1
        ok = [r.ok for r in replies]
        self._unread[:] = [not k for k in ok[:6]]
        if all(ok):
            self._fails = 0
            self._fail_joints.clear()
            self._decode(replies, time.time_ns())
            self.fresh = True
            self._hardware_errors(replies, now)
        else:
            self._fails += 1
            self.read_failures += 1
            if any(r.corrupt for r in replies):
                self.corrupt += 1
            else:
                self.timeouts += 1
            self._fail_joints = {self._joint(i) for i, r in enumerate(replies) if not r.ok}
            # what did answer still counts (a hold has the joints that read)
            self._decode(replies, time.time_ns(), partial=True)
            self._hardware_errors(replies, now)
        self._supervise(now)
        self.cycle_s.append(time.perf_counter() - t0)
        return self.fresh

    def _decode(self, replies, stamp_ns: int, partial: bool = False) -> None:
        bus = self.bus
        dxl = self.cfg.protocol == 'dynamixel'
        for i, (d, r) in enumerate(zip(self.cfg.drives, replies)):
            if not r.ok:
                continue
            ticks = bus.field(r, 'present_position')
            vel = bus.field(r, 'present_velocity')
            cur = bus.field(r, 'present_current')
            q, qd, e = d.to_joint(ticks), d.velocity(vel), d.effort(cur)
            if i < 6:
                self.q[i], self.qd[i], self.effort[i] = q, qd, e
            else:
                self.q[6] = self.q[7] = q
                self.qd[6] = self.qd[7] = qd
                self.effort[6] = self.effort[7] = e
            if not dxl:
                self.temperature[i] = bus.field(r, 'present_temperature')
                self.voltage[i] = 0.1 * bus.field(r, 'present_voltage')
        if not partial:
            self.stamp_ns = stamp_ns
            self.has_state = True
        if self.estimator is not None:
            if partial:
                self.estimator.reset()
            else:
                self.qd[:6] = self.estimator.update(self.q, self.qd, self.effort, stamp_ns * 1e-9)

    def _hardware_errors(self, replies, now: float) -> None:
        dxl = self.cfg.protocol == 'dynamixel'
        for i, r in enumerate(replies):
            if not r.ok:
                continue
            flag = r.error & models.DXL_ALERT if dxl else r.error
            d = self.cfg.drives[i]
            if not flag:
                continue
            if d.joint in self.errors:
                continue
            bits = self.bus.read(d.servo_id, 'hardware_error_status') if dxl else r.error
            table = models.DXL_HW_ERRORS if dxl else models.STS_ERRORS
            names = [n for b, n in table.items() if bits and bits & b] or ['unknown']
            self.errors[d.joint] = ', '.join(names)
            if self.state in (RUNNING, PROTECTIVE_STOP, PARKING):
                self._enter(PROTECTIVE_STOP, f'hardware error on {self._joint(i)}: '
                            f'{self.errors[d.joint]}', now)

    def _supervise(self, now: float) -> None:
        o = self.opts
        if self._fails >= o.fail_stop_reads and self.state in (RUNNING, PARKING):
            self._enter(PROTECTIVE_STOP, f'{self._fails} consecutive failed reads (no valid '
                        f'reply from {", ".join(sorted(self._fail_joints))})', now)
        if (self.state == PROTECTIVE_STOP and self._fails
                and now - self.stop_since >= o.torque_off_after):
            self._torque_off(now, f'reads still failing {o.torque_off_after:g} s after the '
                                  'protective stop: controlled torque-off')

    def _torque_off(self, now: float, reason: str) -> None:
        self._disable_all()
        self._enter(TORQUE_OFF, reason, now)

    def _disable_all(self) -> None:
        for d in self.cfg.drives:
            try:
                self.bus.write(d.servo_id, 'torque_enable', 0)
            except BusLost:
                break
        self.torque_on = False

    def _lost(self, reason: str, now: float) -> None:
        self.bus.close()
        self.reconnects += 1
        self.torque_on = False        # unknown: the servos hold their last goals (watchdog)
        self._next_try = now + self.opts.reconnect_s
        self.state = CONNECTING
        self._event('error', f'port lost ({reason}): reconnecting every '
                             f'{self.opts.reconnect_s:g} s')
        self.reason = f'port lost: {reason}'

    # ---------------------------------------------------------------- commands
    def command_effort(self, tau, now: float) -> bool:
        if not self.current_mode:
            return False
        self.cmd[:] = tau
        self.cmd_kind, self.cmd_time = 'effort', now
        self.commands += 1
        return True

    def command_position(self, q, now: float) -> bool:
        self.cmd[:] = q
        self.cmd_kind, self.cmd_time = 'position', now
        self.commands += 1
        return True

    def command_gripper(self, opening: float, now: float) -> None:
        self.grip_cmd = float(opening)

    def accepting(self) -> bool:
        return self.state == RUNNING

    def resume(self, now: float) -> tuple[bool, str]:
        """Leave a protective stop / torque-off (the only way out of one)."""
        if self.state not in (PROTECTIVE_STOP, TORQUE_OFF):
            return False, f'nothing to resume ({self.state})'
        if self._fails:
            return False, 'reads still failing: ' + ', '.join(sorted(self._fail_joints))
        try:
            if self.errors and self.cfg.protocol == 'dynamixel':
                # a Dynamixel latches its Hardware Error Status until a REBOOT; a Feetech's
                # status clears with its cause (the next reads tell whether it did)
                failed = []
                for d in self.cfg.drives:
                    if d.joint in self.errors:
                        if not self.bus.reboot(d.servo_id):
                            failed.append(d.joint)
                time.sleep(0.06)
                if failed:
                    return False, f'reboot failed on {failed}'
            self.errors.clear()
            self._configure()
            self._seed_and_enable(now)
        except BusLost as e:
            self._lost(str(e), now)
            return False, f'port lost: {e}'
        if self.state != RUNNING:
            return False, self.reason
        return True, 'resumed: goals seeded from the measured pose, torque on'

    def park(self, now: float) -> None:
        """Start the park move (then torque off); immediate torque-off when no torque."""
        if not self.torque_on or not self.has_state:
            self.state = OFF
            return
        q0 = self.q[:6].copy()
        target = np.asarray(self.cfg.park, float)
        dist = np.abs(target - q0) / (0.5 * self.vmax)
        duration = float(min(self.opts.park_time, max(0.5, dist.max())))
        self._park = (now, duration, q0, target)
        self._enter(PARKING, f'moving to the park pose in {duration:.1f} s', now)

    # ---------------------------------------------------------------- goals
    def write(self, now: float) -> None:
        """This cycle's goals (one Sync Write), from the state and the commands."""
        if not self.torque_on or not self.bus.is_open or not self.has_state:
            return
        try:
            if self.state == PARKING:
                self._park_step(now)
            elif self.state == RUNNING:
                fresh = now - self.cmd_time <= self.opts.command_timeout
                if fresh:
                    self.holding = False
                    self._write_goals(self.cmd, now, hold=False)
                else:
                    if not self.holding:
                        self.hold_q = self.q[:6].copy()
                        self.holding = True
                    self._write_goals(self.hold_q, now, hold=True)
                if self.grip_cmd is not None and self.grip_cmd != self._grip_written:
                    self._write_gripper(self.grip_cmd)
            elif self.state == PROTECTIVE_STOP:
                self._write_goals(self.hold_q, now, hold=True)
        except BusLost as e:
            self._lost(str(e), now)

    def _write_goals(self, values, now: float, hold: bool, grip: float | None = None,
                     qd_ref=None) -> None:
        arm = self.cfg.arm
        if self.current_mode:
            if hold:
                tau = self._hold_torque(values, qd_ref)
            elif self.cmd_kind == 'effort':
                tau = np.asarray(values, float) + self._gravity()
            else:                          # position commands on the current interface
                tau = self._hold_torque(values)
            lim = self.effort_max
            clipped = np.clip(tau, -lim, lim)
            self.clipped += int(np.any(clipped != tau))
            goals = {d.servo_id: d.current_units(t) for d, t in zip(arm, clipped)}
            self.bus.sync_write('goal_current', goals)
        else:
            q = np.clip(np.asarray(values, float), self.q_lo, self.q_hi)
            if self._last_goal is not None and not hold:   # the URDF velocity since the last
                step = self.vmax * min(max(now - self._goal_time, 1e-3), 0.02)
                q = np.clip(q, self._last_goal - step, self._last_goal + step)
            self.clipped += int(np.any(q != np.asarray(values, float)))
            self._last_goal, self._goal_time = q.copy(), now
            self.bus.sync_write('goal_position', {d.servo_id: d.to_ticks(v)
                                                  for d, v in zip(arm, q)})
        if grip is not None:
            self._write_gripper(grip)

    def _write_gripper(self, opening: float) -> None:
        g = self.cfg.gripper
        if g is None:
            return
        o = min(max(opening, self.grip_range[0]), self.grip_range[1])
        if self.bus.write(g.servo_id, 'goal_position', g.to_ticks(o)):
            self._grip_written = opening

    def _gravity(self) -> np.ndarray:
        self.dyn.set_state(self.q)
        return self.dyn.bias()[:6].copy()

    def _hold_torque(self, q_ref, qd_ref=None) -> np.ndarray:
        """Gravity at the measured pose + the PD of the model-derived gains toward ``q_ref``.
        A joint that did not answer this cycle gets no PD term: its position and velocity are
        the last good read, and feedback on a frozen value is a constant torque that drives the
        joint away (it gets the gravity torque at that pose alone)."""
        qd_ref = np.zeros(6) if qd_ref is None else qd_ref
        pd = self.gains.pd_torque(q_ref, qd_ref, self.q[:6], self.qd[:6])
        pd[self._unread] = 0.0
        return self._gravity() + pd

    def _park_step(self, now: float) -> None:
        from ..spinal.reflex import min_jerk
        t0, duration, q0, target = self._park
        s, ds = min_jerk((now - t0) / duration)
        q_ref = q0 + s * (target - q0)
        qd_ref = ds / duration * (target - q0)
        if self.current_mode:
            tau = np.clip(self._hold_torque(q_ref, qd_ref), -self.effort_max, self.effort_max)
            self.bus.sync_write('goal_current', {d.servo_id: d.current_units(t)
                                                 for d, t in zip(self.cfg.arm, tau)})
        else:
            self._last_goal = None
            self._write_goals(q_ref, now, hold=True)
        if now - t0 >= duration + 0.2:
            self._disable_all()
            self._enter(OFF, 'parked, torque off', now)

    # ---------------------------------------------------------------- figures
    def take_cycle_times(self) -> np.ndarray:
        out = np.array(self.cycle_s)
        self.cycle_s = []
        return out

    def close(self) -> None:
        self.bus.close()
