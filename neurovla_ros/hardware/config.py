"""The hardware YAML: which servo drives which joint, how it is mounted and scaled. ROS-free.

A file under ``config/`` (``hardware_dynamixel.yaml``, ``hardware_feetech.yaml``) holds the
bus (protocol, port, baud rate, interface), per joint the servo ID and model, its mounting
(``direction``, ``zero_ticks`` = the reading at the URDF's zero, ``min_ticks``/``max_ticks``
= the calibrated range) and its **drive properties**: ``torque_constant`` [N m / A at the joint,
N / A for the gripper finger], the only place where a servo is scaled onto this arm. The
bridge turns Present Current into /joint_states effort with it and effort commands into Goal
Current; the emulator drives its MuJoCo joints with the same numbers. ``neurovla calibrate``
rewrites the mounting fields from the real arm.

How the emulated servos sit on the UR5e-sized arm: position 1:1 (one servo turn = one joint turn,
as on SO-100 / Koch arms where the servo horn is the joint), velocity 1:1, torque scaled: each
joint's torque constant is the model's (stall torque / stall current) times the joint's URDF
effort limit over the model's stall torque, so a servo's stall current gives exactly the URDF
effort limit and Present Current reads the same fraction of its range that a real servo at the
same fraction of its stall torque would. :func:`scaled_torque_constant` is that rule; a test
checks the packaged files against it. A real arm of real servos keeps its model's own constant.

Errors name the field and the bad value (``ConfigError``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import numpy as np
import yaml

from . import models
from .models import RAD_PER_TICK, ServoModel

PROTOCOLS = ('dynamixel', 'feetech')
INTERFACES = ('current', 'position')


class ConfigError(ValueError):
    """A hardware file that cannot be used: the message names the field and the value."""


@dataclass(frozen=True)
class Drive:
    """One servo on one joint (arm joint or the gripper's left finger)."""
    joint: str
    servo_id: int
    model: ServoModel
    direction: int            # +1 / -1: joint angle = direction * (ticks - zero) * rad/tick
    zero_ticks: int           # arm: reading at joint zero; gripper: reading when closed
    min_ticks: int
    max_ticks: int
    torque_constant: float    # [N m / A] at the joint ([N / A] at the finger)
    open_ticks: int = 0       # gripper only: reading when fully open
    gripper: bool = False
    lower: float = 0.0        # gripper only: the finger's URDF range [m] (closed .. open)
    upper: float = 0.0

    # ---- conversions (ticks and register units <-> joint units) ----
    def scale(self) -> float:
        """Joint units per tick: rad for an arm joint, m of finger opening for the gripper."""
        if self.gripper:
            return (self.upper - self.lower) / (self.open_ticks - self.zero_ticks)
        return self.direction * RAD_PER_TICK

    def to_joint(self, ticks: float) -> float:
        return (self.lower if self.gripper else 0.0) + (ticks - self.zero_ticks) * self.scale()

    def to_ticks(self, value: float) -> int:
        off = value - (self.lower if self.gripper else 0.0)
        return int(round(self.zero_ticks + off / self.scale()))

    def velocity(self, units: int) -> float:
        """Present Velocity register -> joint velocity [rad/s | m/s]."""
        return units * self.model.velocity_unit / RAD_PER_TICK * self.scale()

    def velocity_units(self, qd: float) -> int:
        return int(round(qd / self.scale() * RAD_PER_TICK / self.model.velocity_unit))

    def effort(self, current_units: int) -> float:
        """Present Current register -> joint torque [N m] (finger force [N])."""
        sign = 1.0 if self.gripper else float(self.direction)
        return sign * current_units * self.model.current_unit * self.torque_constant

    def current_units(self, effort: float) -> int:
        sign = 1.0 if self.gripper else float(self.direction)
        return int(round(sign * effort / self.torque_constant / self.model.current_unit))

    @property
    def effort_limit(self) -> float:
        """The effort the servo's stall current gives at the joint [N m | N]."""
        return self.model.stall_current * self.torque_constant


@dataclass(frozen=True)
class HardwareConfig:
    protocol: str
    port: str
    baud: int
    interface: str                         # arm: 'current' (effort) or 'position'
    fast_sync_read: bool
    latency_timer_ms: float                # the USB adapter's setting the timeouts assume
    bus_watchdog_ms: int                   # Dynamixel Bus Watchdog (0 = off)
    max_return_delay_us: int               # a servo answering later than this: warning
    drives: tuple[Drive, ...]              # 6 arm joints (ARM_JOINTS order), then the gripper
    registers: dict = field(default_factory=dict)   # written to every servo at start
    park: tuple[float, ...] = ()           # arm park pose [rad]
    source: str = ''

    @property
    def arm(self) -> tuple[Drive, ...]:
        return self.drives[:6]

    @property
    def gripper(self) -> Drive | None:
        return self.drives[6] if len(self.drives) > 6 else None

    @property
    def ids(self) -> list[int]:
        return [d.servo_id for d in self.drives]

    def with_mounting(self, mounting: dict) -> 'HardwareConfig':
        """A copy with new mounting fields per joint (``{joint: {zero_ticks: .., ...}}``)."""
        drives = tuple(replace(d, **mounting.get(d.joint, {})) for d in self.drives)
        return replace(self, drives=drives)


def scaled_torque_constant(model: ServoModel, effort_limit: float) -> float:
    """The drive-scaling rule (module docstring): the model's torque constant times the joint's
    URDF effort limit over the model's stall torque = effort limit / stall current [N m / A]."""
    return model.torque_constant * effort_limit / model.stall_torque


def packaged(protocol: str) -> str:
    """Path of the packaged hardware file for ``protocol``."""
    from ..graph import data_file
    if protocol not in PROTOCOLS:
        raise ConfigError(f'protocol: {protocol!r} is not one of {list(PROTOCOLS)}')
    return data_file('config', f'hardware_{protocol}.yaml')


def _int(d: dict, key: str, where: str, lo: int | None = None, hi: int | None = None) -> int:
    if key not in d:
        raise ConfigError(f'{where}: missing {key!r}')
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f'{where}.{key}: {v!r} is not an integer')
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(f'{where}.{key}: {v} is outside {lo}..{hi}')
    return v


def _num(d: dict, key: str, where: str, positive: bool = False) -> float:
    if key not in d:
        raise ConfigError(f'{where}: missing {key!r}')
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f'{where}.{key}: {v!r} is not a finite number')
    if positive and v <= 0:
        raise ConfigError(f'{where}.{key}: {v} must be > 0')
    return float(v)


def load(path: str | None = None, protocol: str | None = None) -> HardwareConfig:
    """Read and check a hardware file (default: the packaged one for ``protocol``)."""
    from .. import robot as robot_mod
    path = path or packaged(protocol or 'dynamixel')
    try:
        with open(path, encoding='utf-8') as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f'hardware file {path!r}: {e.strerror}') from None
    except yaml.YAMLError as e:
        raise ConfigError(f'hardware file {path!r}: not YAML ({e})') from None
    if not isinstance(raw, dict):
        raise ConfigError(f'hardware file {path!r}: expected a mapping at the top')
    proto = raw.get('protocol')
    if proto not in PROTOCOLS:
        raise ConfigError(f'protocol: {proto!r} is not one of {list(PROTOCOLS)}')
    if protocol and proto != protocol:
        raise ConfigError(f'{path}: protocol {proto!r}, but {protocol!r} was asked for')
    interface = raw.get('interface', 'position')
    if interface not in INTERFACES:
        raise ConfigError(f'interface: {interface!r} is not one of {list(INTERFACES)}')
    rm = robot_mod.load()
    want = [*rm.arm_joints, robot_mod.GRIPPER_JOINT]
    items = raw.get('joints')
    if not isinstance(items, list) or not items:
        raise ConfigError('joints: expected a list of joint entries')
    by_joint = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or 'joint' not in item:
            raise ConfigError(f'joints[{i}]: expected a mapping with a "joint" name')
        name = item['joint']
        if name not in want:
            raise ConfigError(f'joints[{i}].joint: unknown joint {name!r}; known: {want}')
        if name in by_joint:
            raise ConfigError(f'joints[{i}].joint: {name!r} listed twice')
        by_joint[name] = item
    missing = [n for n in rm.arm_joints if n not in by_joint]
    if missing:
        raise ConfigError(f'joints: no entry for {missing}')
    drives = []
    for name in want:
        if name not in by_joint:
            continue
        item, where = by_joint[name], f'joints[{name}]'
        m = models.MODELS.get(item.get('model'))
        if m is None:
            raise ConfigError(f'{where}.model: {item.get("model")!r} is not one of '
                              f'{sorted(models.MODELS)}')
        if m.protocol != proto:
            raise ConfigError(f'{where}.model: {m.name} is a {m.protocol} servo, the bus is '
                              f'{proto}')
        grip = name == robot_mod.GRIPPER_JOINT
        direction = _int(item, 'direction', where) if not grip else 1
        if direction not in (1, -1):
            raise ConfigError(f'{where}.direction: {direction} must be 1 or -1')
        kw = dict(joint=name, servo_id=_int(item, 'id', where, 0, 252), model=m,
                  direction=direction, torque_constant=_num(item, 'torque_constant', where, True),
                  gripper=grip)
        if grip:
            kw.update(zero_ticks=_int(item, 'closed_ticks', where, 0, 4095),
                      open_ticks=_int(item, 'open_ticks', where, 0, 4095))
            if kw['open_ticks'] == kw['zero_ticks']:
                raise ConfigError(f'{where}: open_ticks and closed_ticks are equal')
            g = rm.joints[name]
            kw.update(min_ticks=min(kw['zero_ticks'], kw['open_ticks']),
                      max_ticks=max(kw['zero_ticks'], kw['open_ticks']),
                      lower=g.lower, upper=g.upper)
        else:
            kw.update(zero_ticks=_int(item, 'zero_ticks', where, 0, 4095),
                      min_ticks=_int(item, 'min_ticks', where, 0, 4095),
                      max_ticks=_int(item, 'max_ticks', where, 0, 4095))
            if not kw['min_ticks'] <= kw['zero_ticks'] <= kw['max_ticks']:
                raise ConfigError(f'{where}: need min_ticks <= zero_ticks <= max_ticks, got '
                                  f'{kw["min_ticks"]}, {kw["zero_ticks"]}, {kw["max_ticks"]}')
        drives.append(Drive(**kw))
    ids = [d.servo_id for d in drives]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f'joints: servo ID(s) {dup} used by more than one joint')
    if interface == 'current' and not all(d.model.current_control for d in drives[:6]):
        bad = [d.joint for d in drives[:6] if not d.model.current_control]
        raise ConfigError(f'interface: current, but {bad} have no current control mode')
    park = raw.get('park', list(rm.home_pose()))
    if (not isinstance(park, list) or len(park) != 6
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in park)):
        raise ConfigError(f'park: expected 6 joint positions [rad], got {park!r}')
    lim = rm.limits()
    if np.any(np.asarray(park) < lim['lower']) or np.any(np.asarray(park) > lim['upper']):
        raise ConfigError(f'park: {park} is outside the URDF joint limits')
    registers = raw.get('registers', {}) or {}
    table = drives[0].model.table
    for k, v in registers.items():
        if k not in table or not table[k].writable:
            raise ConfigError(f'registers.{k}: not a writable register of {drives[0].model.name}')
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f'registers.{k}: {v!r} is not an integer')
    codes = models.DXL_BAUD_CODES if proto == 'dynamixel' else models.STS_BAUD_CODES
    baud = _int(raw, 'baud', 'bus')
    if baud not in codes:
        raise ConfigError(f'baud: {baud} is not one of {sorted(codes)}')
    return HardwareConfig(
        protocol=proto, port=str(raw.get('port', '')), baud=baud, interface=interface,
        fast_sync_read=bool(raw.get('fast_sync_read', proto == 'dynamixel')),
        latency_timer_ms=_num(raw, 'latency_timer_ms', 'bus') if 'latency_timer_ms' in raw
        else 1.0,
        bus_watchdog_ms=int(raw.get('bus_watchdog_ms', 0)),
        max_return_delay_us=int(raw.get('max_return_delay_us', 0)),
        drives=tuple(drives), registers=dict(registers), park=tuple(float(v) for v in park),
        source=os.path.abspath(path))


def save_mounting(src: str, dst: str, mounting: dict) -> None:
    """Write ``dst``: the file ``src`` with new mounting fields per joint (calibration)."""
    with open(src, encoding='utf-8') as f:
        raw = yaml.safe_load(f)
    for item in raw['joints']:
        item.update({k: int(v) for k, v in mounting.get(item['joint'], {}).items()})
    head = (f'# Calibrated by `neurovla calibrate` from {os.path.basename(src)}: zero_ticks, '
            'min_ticks, max_ticks (and the gripper\'s closed/open ticks) measured on the arm.\n')
    with open(dst, 'w', encoding='utf-8') as f:
        f.write(head)
        yaml.safe_dump(raw, f, sort_keys=False, default_flow_style=None, width=100)
