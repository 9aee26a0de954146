"""Serialized (CDR) messages at 1 kHz without Python message objects. ROS-free.

At 1 kHz per stream, building or parsing a Python message object costs more than a whole
control tick (30-60 us on the target machine). ROS 2 middlewares use XCDR1 little-endian: a
4-byte encapsulation header, then each field aligned to its size relative to the end of that
header; a std_msgs/Header starts with ``int32 sec, uint32 nanosec``.

Writing: :class:`CdrTemplate`. A message whose layout never changes (same names, same frame_id;
only the stamp and double fields change) is serialized once with sentinel values in the fields
that will change; the sentinels' offsets are found in the bytes, and every tick writes the new
values straight into the buffer through numpy views; ``Publisher.publish(bytes)`` sends it.
Reading: :class:`JointStateReader`, :class:`ImuReader`, :class:`ImageReader` and
:func:`read_stamp` take the bytes of a ``raw=True`` subscription. A reader given a ``decode``
function (bytes -> message object, e.g. ``rosutil.decoder(JointState)``) reads any other
encapsulation (or bytes it cannot parse) through it into the same attributes; ``read`` returns
``None`` only when the message cannot be read at all, with the reason in ``error``.
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


class _Reader:
    """The slow way for a reader: ``decode`` (bytes -> message) fills the same attributes
    (``_take``); without one, or when it fails, ``read`` returns None with ``error`` set."""

    def __init__(self, decode=None):
        self.error = ''
        self._decode = decode

    def _fallback(self, buf: bytes) -> float | None:
        if self._decode is None:
            self.error = 'not little-endian CDR, or malformed'
            return None
        try:
            msg = self._decode(buf)
            self._take(msg)
        except Exception as e:  # noqa: BLE001 - whatever the bytes are, the caller decides
            self.error = f'undecodable ({type(e).__name__}: {e})'
            return None
        st = msg.header.stamp
        return st.sec + st.nanosec * 1e-9

    def _take(self, msg) -> None:
        raise NotImplementedError


class JointStateReader(_Reader):
    """Stamp, names, positions, velocities and efforts of a serialized sensor_msgs/JointState.

    ``read(buf)`` returns the stamp [s] or None (not little-endian CDR, or malformed); after
    it, ``sec``, ``nanosec`` (the stamp), ``names`` (tuple of str), ``position``,
    ``velocity`` and ``effort`` (read-only float64 views into ``buf``) hold the sample. The
    name block is parsed once and reused while it stays the same bytes.
    """

    def __init__(self, decode=None):
        super().__init__(decode)
        self.sec = self.nanosec = 0
        self.names: tuple = ()
        self.position = np.zeros(0)
        self.velocity = np.zeros(0)
        self.effort = np.zeros(0)
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
            return self._fallback(buf)
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
            self.velocity, o3 = self._doubles(buf, o2)
            self.effort, _ = self._doubles(buf, o3)
        except (struct.error, ValueError, UnicodeDecodeError):
            self._key = None
            return self._fallback(buf)
        return self.sec + self.nanosec * 1e-9

    def _take(self, msg) -> None:
        self._key = None
        self.sec, self.nanosec = msg.header.stamp.sec, msg.header.stamp.nanosec
        self.names = tuple(msg.name)
        self.position, self.velocity, self.effort = (
            np.array(a, dtype=float) for a in (msg.position, msg.velocity, msg.effort))


class ImuReader(_Reader):
    """Stamp, orientation (x, y, z, w), its covariance[0], angular velocity and linear
    acceleration of a serialized sensor_msgs/Imu, into preallocated arrays."""

    def __init__(self, decode=None):
        super().__init__(decode)
        self.quat = np.zeros(4)
        self.orientation_cov0 = 0.0
        self.gyro = np.zeros(3)
        self.accel = np.zeros(3)

    def read(self, buf: bytes) -> float | None:
        if bytes(buf[:2]) not in CDR_LE:
            return self._fallback(buf)
        try:
            sec, nsec, o = _header(buf)
            o = _align(o, 8)
            # orientation 4, orientation_covariance 9, angular_velocity 3, its covariance 9,
            # linear_acceleration 3, its covariance 9: 37 doubles
            v = np.frombuffer(buf, dtype='<f8', count=37, offset=4 + o)
        except (struct.error, ValueError):
            return self._fallback(buf)
        self.quat[:] = v[0:4]
        self.orientation_cov0 = float(v[4])
        self.gyro[:] = v[13:16]
        self.accel[:] = v[25:28]
        return sec + nsec * 1e-9

    def _take(self, msg) -> None:
        w, a, o = msg.angular_velocity, msg.linear_acceleration, msg.orientation
        self.gyro[:] = (w.x, w.y, w.z)
        self.accel[:] = (a.x, a.y, a.z)
        self.quat[:] = (o.x, o.y, o.z, o.w)
        self.orientation_cov0 = float(msg.orientation_covariance[0])


class ImageReader(_Reader):
    """A serialized sensor_msgs/Image without a copy: ``read(buf)`` returns the stamp [s] or
    None; after it ``height``, ``width``, ``encoding``, ``step``, ``is_bigendian`` and ``data``
    (a read-only uint8 view into ``buf``, ``len(data)`` bytes as the message says) hold the image.
    A 230 KB frame becomes no new buffer: allocating and freeing one per frame costs kernel
    time (page faults, unmapping) that delays the 1 kHz loops on a non-preemptible kernel."""

    def __init__(self, decode=None):
        super().__init__(decode)
        self.sec = self.nanosec = self.height = self.width = self.step = 0
        self.encoding = ''
        self.is_bigendian = False
        self.data = np.zeros(0, np.uint8)

    def read(self, buf: bytes) -> float | None:
        if bytes(buf[:2]) not in CDR_LE:
            return self._fallback(buf)
        try:
            self.sec, self.nanosec, o = _header(buf)
            o = _align(o, 4)
            self.height, self.width, n = struct.unpack_from('<III', buf, 4 + o)
            o += 12
            self.encoding = bytes(buf[4 + o:4 + o + n - 1]).decode() if n else ''
            o += n
            self.is_bigendian = bool(buf[4 + o])
            o = _align(o + 1, 4)
            self.step, count = struct.unpack_from('<II', buf, 4 + o)
            self.data = np.frombuffer(buf, np.uint8, count=count, offset=4 + o + 8)
        except (struct.error, ValueError, UnicodeDecodeError, IndexError):
            return self._fallback(buf)
        return self.sec + self.nanosec * 1e-9

    def _take(self, msg) -> None:
        self.sec, self.nanosec = msg.header.stamp.sec, msg.header.stamp.nanosec
        self.height, self.width, self.step = msg.height, msg.width, msg.step
        self.encoding, self.is_bigendian = msg.encoding, bool(msg.is_bigendian)
        self.data = np.frombuffer(msg.data, np.uint8)


def rgb_image(encoding: str, height: int, width: int, step: int, data) -> tuple:
    """An rgb8 / bgr8 image's pixels as an H x W x 3 RGB view of ``data`` (uint8), or None and
    why not (another encoding, an empty image, too few bytes)."""
    enc = encoding.lower()
    if enc not in ('rgb8', 'bgr8') or height == 0 or width == 0 or step < 3 * width or \
            len(data) < step * height:
        return None, (f'encoding {enc!r} {width}x{height} step {step} ({len(data)} bytes); '
                      'need rgb8/bgr8')
    img = data[:step * height].reshape(height, step)[:, :3 * width].reshape(height, width, 3)
    return (img[:, :, ::-1] if enc == 'bgr8' else img), ''


def read_stamp(buf: bytes) -> tuple[int, int] | None:
    """(sec, nanosec) of any serialized message that starts with a std_msgs/Header."""
    if bytes(buf[:2]) not in CDR_LE or len(buf) < 12:
        return None
    return _STAMP.unpack_from(buf, 4)


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
        if serialized[:2] not in CDR_LE:
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

    def views(self, *names: str) -> tuple:
        """The float64 views of the named fields, to keep and write every tick."""
        return tuple(self.fields[n] for n in names)

    def set_stamp(self, ns: int) -> None:
        struct.pack_into('<iI', self.buf, self._stamp_offset, ns // 1_000_000_000,
                         ns % 1_000_000_000)

    def tobytes(self) -> bytes:
        return bytes(self.buf)
