"""Publish 1 kHz messages without re-serializing them: patch a CDR template in place.

ROS-free. A message whose layout never changes (same names, same frame_id; only the stamp and
double fields change) is serialized once with sentinel values in the fields that will change;
the sentinels' offsets are found in the bytes, and every tick writes the new values straight
into the buffer through numpy views. ``rclpy``'s ``Publisher.publish(bytes)`` sends the buffer
as an already serialized message. Layout: 4-byte encapsulation header (little-endian CDR), then
the message; a std_msgs/Header starts with ``int32 sec, uint32 nanosec``; doubles are 8-aligned
relative to the body.
"""
from __future__ import annotations

import struct

import numpy as np

ENCAPSULATION_LE = (b'\x00\x01', b'\x00\x03')  # CDR_LE, PL_CDR_LE


def sentinels(n: int, start: int = 0) -> list[float]:
    """``n`` distinct doubles that never occur in a real message."""
    return [-1.0e300 / (k + 3.0) for k in range(start, start + n)]


class CdrTemplate:
    """A serialized message with writable double fields and stamp.

    ``fields``: name -> (start, count): a run of ``count`` consecutive doubles that held
    ``sentinels(count, start)`` in the message that produced ``serialized``.
    """

    def __init__(self, serialized: bytes, fields: dict[str, tuple[int, int]],
                 stamp_offset: int | None = 4):
        if serialized[:2] not in ENCAPSULATION_LE:
            raise ValueError('only little-endian CDR is supported')
        self.buf = bytearray(serialized)
        self._stamp_offset = stamp_offset
        body = np.frombuffer(self.buf, dtype='<f8', offset=4, count=(len(self.buf) - 4) // 8)
        self.fields: dict[str, np.ndarray] = {}
        for name, (start, count) in fields.items():
            want = sentinels(count, start)
            hits = np.flatnonzero(body == want[0])
            if len(hits) != 1:
                raise ValueError(f'{name}: sentinel found {len(hits)} times (not 8-aligned?)')
            run = body[int(hits[0]):int(hits[0]) + count]
            if run.tolist() != want:
                raise ValueError(f'{name}: the {count} doubles are not consecutive')
            self.fields[name] = run  # a writable view into self.buf

    def set_stamp(self, ns: int) -> None:
        struct.pack_into('<iI', self.buf, self._stamp_offset, ns // 1_000_000_000,
                         ns % 1_000_000_000)

    def tobytes(self) -> bytes:
        return bytes(self.buf)
