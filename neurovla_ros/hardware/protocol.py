"""The servo side of the wire: instruction parsing and status packets, written from the manuals.

ROS-free. The bridge never uses this module (it frames and checks packets through the official
SDKs); the emulator, which plays the servos, needs its own framing. Every format here is checked
against the manuals' published example packets in ``test/test_hardware_emulator.py``.

Dynamixel Protocol 2.0 [DXL-P2 in :mod:`.models`]::

    instruction  FF FF FD 00 | ID | LEN_L LEN_H | INST | PARAM... | CRC_L CRC_H
    status       FF FF FD 00 | ID | LEN_L LEN_H | 0x55 | ERR | PARAM... | CRC_L CRC_H

LEN counts INST (+ ERR), the parameters and the CRC. CRC-16, polynomial 0x8005, initial value 0,
no reflection, over everything before it (byte stuffing included). Byte stuffing: inside
INST..PARAM, every FF FF FD gets one more FD (the receiver drops it). A Fast Sync Read status
packet holds, per device, ERR ID DATA CRC, where each device's CRC is the running CRC of the whole
packet up to that point (the last one is the packet's CRC); it is not byte-stuffed.

Feetech SCS/STS [STS-P]::

    instruction  FF FF | ID | LEN | INST | PARAM... | CHK      LEN = len(PARAM) + 2
    status       FF FF | ID | LEN | ERR  | PARAM... | CHK      CHK = ~(ID + LEN + INST/ERR + PARAM)
"""
from __future__ import annotations

from dataclasses import dataclass

DXL_HEADER = b'\xff\xff\xfd\x00'
STS_HEADER = b'\xff\xff'
DXL_STATUS = 0x55
# Dynamixel instructions
PING, READ, WRITE, REG_WRITE, ACTION, FACTORY_RESET, REBOOT, CLEAR = 1, 2, 3, 4, 5, 6, 8, 0x10
SYNC_READ, SYNC_WRITE, FAST_SYNC_READ, BULK_READ, BULK_WRITE = 0x82, 0x83, 0x8A, 0x92, 0x93
STS_RESTART = 0x08


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return table


_CRC = _crc_table()


def crc16(data, crc: int = 0) -> int:
    """Dynamixel Protocol 2.0 CRC-16 (poly 0x8005, MSB first, initial value ``crc``)."""
    for b in data:
        crc = ((crc << 8) ^ _CRC[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def stuff(body: bytes, before: bytes = b'') -> bytes:
    """Byte stuffing of INST..PARAM: an FD that completes FF FF FD gets a second FD.
    ``before``: the bytes just ahead of ``body`` in the packet (the length field)."""
    out = bytearray()
    prev = bytearray(before[-2:])
    for b in body:
        out.append(b)
        if b == 0xFD and prev[-2:] == b'\xff\xff':
            out.append(0xFD)
        prev = (prev + bytes([b]))[-2:]
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    """Inverse of :func:`stuff`: FF FF FD FD -> FF FF FD."""
    out = bytearray()
    i = 0
    while i < len(body):
        out.append(body[i])
        if (body[i] == 0xFD and len(out) >= 3 and out[-3:-1] == b'\xff\xff'
                and i + 1 < len(body) and body[i + 1] == 0xFD):
            i += 1
        i += 1
    return bytes(out)


@dataclass
class Instruction:
    """One instruction packet as a servo receives it. ``crc_ok`` False: the servo saw a packet
    for ``servo_id`` whose CRC / checksum failed (params are then unreliable)."""
    servo_id: int
    inst: int
    params: bytes
    crc_ok: bool = True
    nbytes: int = 0          # length on the wire


class _PacketStream:
    """Bytes in, :class:`Instruction` out (a stream: partial packets wait for more bytes).
    A protocol gives its header, the packet's total length from the bytes at the buffer's head
    (``_length``: None = wait for more, a negative number = drop that many bytes, a bad
    length) and the decoding of one whole packet."""
    header = b''

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[Instruction]:
        self.buf += data
        out = []
        while True:
            i = self.buf.find(self.header)
            if i < 0:       # keep a possible partial header
                del self.buf[:max(0, len(self.buf) - len(self.header) + 1)]
                return out
            del self.buf[:i]
            total = self._length(self.buf)
            if total is None:
                return out
            if total < 0:
                del self.buf[:-total]
                continue
            if len(self.buf) < total:
                return out
            pkt = bytes(self.buf[:total])
            del self.buf[:total]
            out.append(self._decode(pkt))


class DynamixelParser(_PacketStream):
    """Protocol 2.0 instruction packets (byte-stuffed, CRC-16)."""
    header = DXL_HEADER

    @staticmethod
    def _length(buf):
        if len(buf) < 7:
            return None
        length = buf[5] | (buf[6] << 8)
        return -1 if length < 3 or length > 1024 else 7 + length

    @staticmethod
    def _decode(pkt):
        crc_ok = crc16(pkt[:-2]) == (pkt[-2] | (pkt[-1] << 8))
        body = unstuff(pkt[7:-2])
        return Instruction(pkt[4], body[0] if body else 0, body[1:], crc_ok, len(pkt))


def dxl_status(servo_id: int, error: int, params: bytes = b'') -> bytes:
    """A byte-stuffed Protocol 2.0 status packet."""
    body = stuff(bytes([DXL_STATUS, error]) + bytes(params))
    length = len(body) + 2
    head = DXL_HEADER + bytes([servo_id, length & 0xFF, length >> 8])
    pkt = head + body
    crc = crc16(pkt)
    return pkt + bytes([crc & 0xFF, crc >> 8])


def dxl_instruction(servo_id: int, inst: int, params: bytes = b'') -> bytes:
    """A byte-stuffed instruction packet (for the emulator's own tests of its parser)."""
    body = stuff(bytes([inst]) + bytes(params))
    length = len(body) + 2
    pkt = DXL_HEADER + bytes([servo_id, length & 0xFF, length >> 8]) + body
    crc = crc16(pkt)
    return pkt + bytes([crc & 0xFF, crc >> 8])


def dxl_fast_sync_status(parts: list[tuple[int, int, bytes]]) -> list[bytes]:
    """The Fast Sync Read status packet for ``[(id, error, data), ...]``, split into the piece
    each device transmits (device k sends its ERR ID DATA CRC; the first also sends the header;
    each CRC is the running CRC of the packet so far). Not byte-stuffed."""
    n = sum(len(d) + 4 for _, _, d in parts)          # ERR ID DATA CRC per device
    length = 1 + n                                     # INST + the parts (last CRC included)
    head = DXL_HEADER + bytes([0xFE, length & 0xFF, length >> 8, DXL_STATUS])
    pieces = []
    crc = crc16(head)
    prefix = head
    for servo_id, error, data in parts:
        seg = bytes([error, servo_id]) + bytes(data)
        crc = crc16(seg, crc)
        piece = prefix + seg + bytes([crc & 0xFF, crc >> 8])
        crc = crc16(piece[-2:], crc)
        pieces.append(piece)
        prefix = b''
    return pieces


def sts_checksum(data) -> int:
    return (~sum(data)) & 0xFF


class FeetechParser(_PacketStream):
    """SCS/STS instruction packets (one-byte length, inverted-sum checksum)."""
    header = STS_HEADER

    @staticmethod
    def _length(buf):
        while len(buf) > 2 and buf[2] == 0xFF:   # a run of FF: the header is the last two
            del buf[:1]
        if len(buf) < 4:
            return None
        return -2 if buf[3] < 2 else 4 + buf[3]

    @staticmethod
    def _decode(pkt):
        ok = sts_checksum(pkt[2:-1]) == pkt[-1]
        return Instruction(pkt[2], pkt[4], pkt[5:-1], ok, len(pkt))


def sts_status(servo_id: int, error: int, params: bytes = b'') -> bytes:
    body = bytes([servo_id, len(params) + 2, error]) + bytes(params)
    return STS_HEADER + body + bytes([sts_checksum(body)])


def sts_instruction(servo_id: int, inst: int, params: bytes = b'') -> bytes:
    body = bytes([servo_id, len(params) + 2, inst]) + bytes(params)
    return STS_HEADER + body + bytes([sts_checksum(body)])
