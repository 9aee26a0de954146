"""Minimal readers of serialized (CDR) sensor_msgs/JointState and sensor_msgs/Imu. ROS-free.

At 1 kHz per stream, building a Python message object costs more than the whole cerebellum
tick (30-60 us each on the target machine). The node subscribes with ``raw=True`` and reads
only the fields it needs from the bytes, into preallocated arrays, with the XCDR1
little-endian layout the ROS 2 middlewares use (4-byte encapsulation header, then each field
aligned to its size relative to the end of that header). Any other encapsulation returns
``None`` so the caller can fall back to regular deserialization.
"""
from __future__ import annotations

import struct

import numpy as np

CDR_LE = (b'\x00\x01', b'\x00\x03')  # CDR_LE, PL_CDR_LE (first two bytes)
_U32 = struct.Struct('<I')
_STAMP = struct.Struct('<iI')


def _align(offset: int, n: int) -> int:
    return (offset + n - 1) & ~(n - 1)


def _header(buf: bytes) -> tuple[int, int, int]:
    """Stamp (sec, nanosec) and the offset (body-relative) just after header.frame_id."""
    sec, nsec = _STAMP.unpack_from(buf, 4)
    (n,) = _U32.unpack_from(buf, 12)
    return sec, nsec, 12 + n


class JointStateReader:
    """Stamp, names, positions and velocities of a serialized sensor_msgs/JointState.

    ``read(buf)`` returns the stamp [s] or None (not little-endian CDR, or malformed); after
    it, ``sec``, ``nanosec`` (the stamp), ``names`` (tuple of str), ``position`` and
    ``velocity`` (float64 views into ``buf``) hold the sample. The name block is parsed once
    and reused while it stays the same bytes.
    """

    def __init__(self):
        self.sec = self.nanosec = 0
        self.names: tuple = ()
        self.position = np.zeros(0)
        self.velocity = np.zeros(0)
        self._key = None     # the name block of the last layout (bytes)
        self._pos = 0        # body offset of the position count

    def _parse_names(self, buf: bytes, o: int) -> int:
        """Names from body offset ``o``; returns the body offset after them."""
        (count,) = _U32.unpack_from(buf, 4 + _align(o, 4))
        o = _align(o, 4) + 4
        names = []
        for _ in range(count):
            o = _align(o, 4)
            (n,) = _U32.unpack_from(buf, 4 + o)
            names.append(bytes(buf[4 + o + 4:4 + o + 4 + n - 1]).decode())
            o += 4 + n
        self.names = tuple(names)
        return o

    def _doubles(self, buf: bytes, o: int) -> tuple[np.ndarray, int]:
        o = _align(o, 4)
        (count,) = _U32.unpack_from(buf, 4 + o)
        o += 4
        if count:
            o = _align(o, 8)
        arr = np.frombuffer(buf, dtype='<f8', count=count, offset=4 + o)
        return arr, o + 8 * count

    def read(self, buf: bytes) -> float | None:
        if bytes(buf[:2]) not in CDR_LE:
            return None
        try:
            self.sec, self.nanosec, o = _header(buf)
            key_end = None
            if self._key is not None:
                end = o + len(self._key)
                if bytes(buf[4 + o:4 + end]) == self._key:
                    key_end = end
            if key_end is None:
                end = self._parse_names(buf, o)
                self._key = bytes(buf[4 + o:4 + end])
                key_end = end
            self.position, o2 = self._doubles(buf, key_end)
            self.velocity, _ = self._doubles(buf, o2)
        except (struct.error, ValueError, UnicodeDecodeError):
            self._key = None
            return None
        return self.sec + self.nanosec * 1e-9


class ImuReader:
    """Stamp, orientation (x, y, z, w), its covariance[0], angular velocity and linear
    acceleration of a serialized sensor_msgs/Imu, into preallocated arrays."""

    def __init__(self):
        self.quat = np.zeros(4)
        self.orientation_cov0 = 0.0
        self.gyro = np.zeros(3)
        self.accel = np.zeros(3)

    def read(self, buf: bytes) -> float | None:
        if bytes(buf[:2]) not in CDR_LE:
            return None
        try:
            sec, nsec, o = _header(buf)
            o = _align(o, 8)
            # orientation 4, orientation_covariance 9, angular_velocity 3, its covariance 9,
            # linear_acceleration 3, its covariance 9: 37 doubles
            v = np.frombuffer(buf, dtype='<f8', count=37, offset=4 + o)
        except (struct.error, ValueError):
            return None
        self.quat[:] = v[0:4]
        self.orientation_cov0 = float(v[4])
        self.gyro[:] = v[13:16]
        self.accel[:] = v[25:28]
        return sec + nsec * 1e-9


def _put_string(out: bytearray, s: str) -> None:
    b = s.encode() + b'\x00'
    out.extend(b'\x00' * (_align(len(out) - 4, 4) - (len(out) - 4)))
    out.extend(_U32.pack(len(b)))
    out.extend(b)


class JointStateWriter:
    """A serialized sensor_msgs/JointState (little-endian CDR) with fixed names and frame,
    written in place: set ``position``, ``velocity``, ``effort`` (float64 views into the
    buffer) and the stamp, then publish ``data()`` (bytes) as a raw message."""

    def __init__(self, names, frame_id: str = '', effort: bool = True):
        n = len(names)
        out = bytearray(b'\x00\x01\x00\x00')
        out.extend(_STAMP.pack(0, 0))
        _put_string(out, frame_id)
        out.extend(b'\x00' * (_align(len(out) - 4, 4) - (len(out) - 4)))
        out.extend(_U32.pack(n))
        for name in names:
            _put_string(out, name)
        offsets = []
        for k in range(3):
            count = n if (k < 2 or effort) else 0
            out.extend(b'\x00' * (_align(len(out) - 4, 4) - (len(out) - 4)))
            out.extend(_U32.pack(count))
            if count:
                out.extend(b'\x00' * (_align(len(out) - 4, 8) - (len(out) - 4)))
            offsets.append(len(out))
            out.extend(b'\x00' * (8 * count))
        self.buf = out
        self.position = np.frombuffer(out, dtype='<f8', count=n, offset=offsets[0])
        self.velocity = np.frombuffer(out, dtype='<f8', count=n, offset=offsets[1])
        self.effort = np.frombuffer(out, dtype='<f8', count=n if effort else 0,
                                    offset=offsets[2])

    def set_stamp(self, sec: int, nanosec: int) -> None:
        _STAMP.pack_into(self.buf, 4, int(sec), int(nanosec))

    def data(self) -> bytes:
        return bytes(self.buf)


def read_stamp(buf: bytes) -> tuple[int, int] | None:
    """(sec, nanosec) of any serialized message that starts with a std_msgs/Header."""
    if bytes(buf[:2]) not in CDR_LE or len(buf) < 12:
        return None
    return _STAMP.unpack_from(buf, 4)
