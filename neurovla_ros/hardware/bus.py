"""The bridge's side of the wire: the official SDKs, one bus object per protocol. ROS-free.

Every packet is framed, stuffed and checked by ROBOTIS' ``dynamixel_sdk`` (Protocol 2.0:
``PacketHandler(2.0)``, ``syncReadTx`` / ``fastSyncReadRx`` / ``rxPacket``, ``syncWriteTxOnly``,
``ping``, ``reboot``, ``readTxRx`` / ``writeTxRx``) or by Feetech's ``scservo_sdk`` (protocol 0,
little-endian, what LeRobot uses). This module only decides which registers to move and in
which order, and reads the values out of the SDKs' packets.

Two changes to the SDKs' ``PortHandler`` (subclasses, not copies): ``readPort`` waits in
``select()`` for bytes instead of spinning on a non-blocking read (the SDKs poll in a busy loop
until their packet timeout: a core at 100 % on a 2-core machine), and the packet timeout is
``bytes x byte time + 2 x latency + margin`` with the adapter's real latency timer (the SDKs
assume 16 ms, so every lost reply would stall the loop 34 ms) and a margin for the host's
scheduling (a reply that arrives after its timeout also corrupts the next transaction). The
Feetech ``clearPort`` also drops stale input (the SDK only flushes output), so a late reply is
never taken for the next.

Reads per cycle: Dynamixel Present Current..Present Position (126, 10 bytes) of all servos with
one Fast Sync Read (one status packet; on any failure the next cycle uses a plain Sync Read,
which tells which servo failed); Feetech Present Position..Present Current (56, 15 bytes: also
load, voltage, temperature and the servo status) with one Sync Read. Writes: one Sync Write of
the goal register of every arm servo.
"""
from __future__ import annotations

import select
import termios
from dataclasses import dataclass

import dynamixel_sdk as dxl_sdk
import scservo_sdk as sts_sdk

from . import models
from .config import HardwareConfig

READ_BLOCK = {'dynamixel': (126, 10), 'feetech': (56, 15)}


def goal_register(cfg: HardwareConfig) -> str:
    """The register the cycle's Sync Write sets on the arm servos."""
    return 'goal_current' if cfg.interface == 'current' else 'goal_position'


# what a vanished port raises: pyserial's SerialException (an OSError), termios.error from a
# flush (not an OSError), a closed port's ValueError/TypeError
PORT_ERRORS = (OSError, ValueError, TypeError, termios.error)


class BusLost(OSError):
    """The port failed (unplugged adapter, EIO): close it and reconnect."""


class _WaitingPort:
    """``PortHandler`` overrides shared by both SDKs (module docstring)."""
    latency_ms = 1.0
    margin_ms = 10.0

    def readPort(self, length):  # noqa: N802 - the SDK's name
        try:
            data = self.ser.read(length)
            if data:
                return data
            remaining = self.packet_timeout - self.getTimeSinceStart()
            if remaining > 0:
                select.select([self.ser.fd], [], [], remaining * 1e-3)
                data = self.ser.read(length)
            return data
        except PORT_ERRORS as e:     # SerialException is an OSError
            raise BusLost(f'reading {self.port_name}: {e}') from None

    def writePort(self, packet):  # noqa: N802
        try:
            return self.ser.write(bytes(packet))
        except PORT_ERRORS as e:
            raise BusLost(f'writing {self.port_name}: {e}') from None

    def setPacketTimeout(self, packet_length):  # noqa: N802
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = (self.tx_time_per_byte * packet_length + 2.0 * self.latency_ms
                               + self.margin_ms)

    def clearPort(self):  # noqa: N802
        try:
            self.ser.reset_input_buffer()
        except PORT_ERRORS as e:
            raise BusLost(f'{self.port_name}: {e}') from None


class DxlPort(_WaitingPort, dxl_sdk.PortHandler):
    pass


class StsPort(_WaitingPort, sts_sdk.PortHandler):
    pass


@dataclass
class Reply:
    """One servo's answer to the cycle's read: ``ok`` False = no valid reply (``corrupt``:
    something arrived that failed the SDK's checks)."""
    ok: bool = False
    error: int = 0            # the status packet's error byte
    data: bytes = b''
    corrupt: bool = False


def _drop_repeated(ids: list[int], where: dict[int, int], out: list[Reply]) -> bool:
    """Replies of one read that name an ID twice: one of them came from another servo (a
    wrong ID on the wire), and which one cannot be told, so neither counts (a joint must never
    take another joint's position). True when there was one."""
    repeated = {sid for sid in ids if ids.count(sid) > 1 and sid in where}
    for sid in repeated:
        out[where[sid]] = Reply()
    return bool(repeated)


class Bus:
    """One servo bus (either protocol) through its official SDK."""

    def __init__(self, cfg: HardwareConfig, port: str, latency_ms: float | None = None,
                 margin_ms: float = 10.0):
        self.cfg = cfg
        self.protocol = cfg.protocol
        self.port_name = port
        self.latency_ms = cfg.latency_timer_ms if latency_ms is None else float(latency_ms)
        self.margin_ms = float(margin_ms)
        self.ids = cfg.ids
        self.addr, self.length = READ_BLOCK[self.protocol]
        self.table = cfg.drives[0].model.table
        self.port = None
        self.fast = cfg.fast_sync_read and self.protocol == 'dynamixel'
        self.use_fast = self.fast
        if self.protocol == 'dynamixel':
            self.ph = dxl_sdk.PacketHandler(2.0)
            self.ok_code, self.corrupt_code = dxl_sdk.COMM_SUCCESS, dxl_sdk.COMM_RX_CORRUPT
        else:
            self.ph = sts_sdk.PacketHandler(0)
            self.ok_code, self.corrupt_code = sts_sdk.COMM_SUCCESS, sts_sdk.COMM_RX_CORRUPT

    # ---- port ----
    def open(self) -> None:
        """Open the port at the file's baud rate; BusLost when it cannot be opened."""
        cls = DxlPort if self.protocol == 'dynamixel' else StsPort
        port = cls(self.port_name)
        port.latency_ms, port.margin_ms = self.latency_ms, self.margin_ms
        try:
            ok = port.openPort() and port.setBaudRate(self.cfg.baud)
        except (OSError, ValueError) as e:
            raise BusLost(f'cannot open {self.port_name}: {e}') from None
        if not ok:
            raise BusLost(f'cannot open {self.port_name} at {self.cfg.baud} baud')
        self.port = port

    def set_latency(self, latency_ms: float) -> None:
        """The adapter latency the reply timeouts assume from now on [ms]."""
        self.latency_ms = float(latency_ms)
        if self.port is not None:
            self.port.latency_ms = self.latency_ms

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.closePort()
            except (OSError, AttributeError):
                pass
            self.port = None

    @property
    def is_open(self) -> bool:
        return self.port is not None

    # ---- single servos ----
    def ping(self, servo_id: int) -> tuple[int | None, bool]:
        """(model number or None, corrupt): who answers at ``servo_id``."""
        model, result, _err = self.ph.ping(self.port, servo_id)
        return (model if result == self.ok_code else None), result == self.corrupt_code

    def read(self, servo_id: int, name: str) -> int | None:
        r = self.table[name]
        data, result, _err = self.ph.readTxRx(self.port, servo_id, r.address, r.size)
        if result != self.ok_code or len(data) < r.size:
            return None
        return models.decode(models.from_le(data, 0, r.size), r)

    def write(self, servo_id: int, name: str, value: int) -> bool:
        """Write one register and wait for the status packet: True when it took."""
        r = self.table[name]
        raw = list(models.le_bytes(models.encode(value, r), r.size))
        result, err = self.ph.writeTxRx(self.port, servo_id, r.address, r.size, raw)
        if self.protocol == 'dynamixel':
            return result == self.ok_code and (err & 0x7F) == 0
        return result == self.ok_code

    def reboot(self, servo_id: int) -> bool:
        if self.protocol != 'dynamixel':
            return False
        result, _err = self.ph.reboot(self.port, servo_id)
        return result == self.ok_code

    # ---- the cycle ----
    def sync_read(self) -> list[Reply]:
        """Present values of every servo (file order), one transaction."""
        n = len(self.ids)
        if self.use_fast:
            self.ph.syncReadTx(self.port, self.addr, self.length, self.ids, n, True)
            data, result, _err = self.ph.fastSyncReadRx(self.port, models.BROADCAST_ID,
                                                        (self.length + 4) * n)
            out = [Reply() for _ in range(n)]
            if result == self.ok_code and len(data) >= (self.length + 4) * n:
                where = {sid: i for i, sid in enumerate(self.ids)}
                step = self.length + 4
                segs = [data[k * step:(k + 1) * step] for k in range(n)]
                for seg in segs:
                    i = where.get(seg[1])
                    if i is not None:
                        out[i] = Reply(True, seg[0], bytes(seg[2:2 + self.length]))
                _drop_repeated([seg[1] for seg in segs], where, out)
                if all(r.ok for r in out):
                    return out
            for r in out:
                if not r.ok:
                    r.corrupt = result == self.corrupt_code
            self.use_fast = False       # next cycle: plain sync read, to see who failed
            return out
        if self.protocol == 'dynamixel':
            self.ph.syncReadTx(self.port, self.addr, self.length, self.ids, n, False)
            id_at, err_at, data_at = 4, 8, 9
        else:
            self.ph.syncReadTx(self.port, self.addr, self.length, self.ids, n)
            id_at, err_at, data_at = 2, 4, 5
        out = [Reply() for _ in range(n)]
        where = {sid: i for i, sid in enumerate(self.ids)}
        got = 0
        corrupt = False
        seen_ids = []
        while got < n:
            if self.protocol == 'dynamixel':
                pkt, result = self.ph.rxPacket(self.port, False)
            else:
                pkt, result = self.ph.rxPacket(self.port)
            if result != self.ok_code:
                if result == self.corrupt_code and not self.port.isPacketTimeout():
                    corrupt = True
                    continue            # something broken arrived; the rest may follow
                corrupt = corrupt or result == self.corrupt_code
                break
            seen_ids.append(pkt[id_at])
            i = where.get(pkt[id_at])
            if i is None or out[i].ok:
                continue
            out[i] = Reply(True, pkt[err_at], bytes(pkt[data_at:data_at + self.length]))
            got += 1
        corrupt = _drop_repeated(seen_ids, where, out) or corrupt
        for r in out:
            if not r.ok:
                r.corrupt = corrupt
        if got == n and self.fast:
            self.use_fast = True
        return out

    def sync_write(self, name: str, values: dict[int, int]) -> None:
        """One Sync Write of register ``name`` (no reply)."""
        r = self.table[name]
        param = []
        for sid, v in values.items():
            param.append(sid)
            param.extend(models.le_bytes(models.encode(v, r), r.size))
        self.ph.syncWriteTxOnly(self.port, r.address, r.size, param, len(param))
        if self.protocol == 'dynamixel':
            self.port.is_using = False   # TxOnly leaves no reply to wait for

    def field(self, reply: Reply, name: str) -> int:
        """A register's value out of a cycle reply."""
        r = self.table[name]
        return models.decode(models.from_le(reply.data, r.address - self.addr, r.size), r)
