"""msgpack with numpy arrays: the wire format of the NeuroVLA/starVLA and openpi policy servers.

ROS-free. An array travels as a msgpack map with *bytes* keys::

    {b'__ndarray__': True, b'data': <raw C-order bytes>, b'dtype': '<f4', b'shape': [H, W, C]}

and a numpy scalar as ``{b'__npgeneric__': True, b'data': <python value>, b'dtype': '<f4'}``.
Object, void and complex arrays are refused both ways (they cannot be rebuilt safely from bytes).
"""
from __future__ import annotations

import msgpack
import numpy as np

_BAD_KINDS = ('O', 'V', 'c')


class CodecError(ValueError):
    """A frame that is not valid msgpack-numpy."""


def _encode(obj):
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in _BAD_KINDS:
            raise CodecError(f'cannot send arrays of dtype {obj.dtype}')
        a = np.ascontiguousarray(obj)
        return {b'__ndarray__': True, b'data': a.tobytes(), b'dtype': a.dtype.str,
                b'shape': list(a.shape)}
    if isinstance(obj, np.generic):
        if obj.dtype.kind in _BAD_KINDS:
            raise CodecError(f'cannot send scalars of dtype {obj.dtype}')
        return {b'__npgeneric__': True, b'data': obj.item(), b'dtype': obj.dtype.str}
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f'cannot serialise {type(obj).__name__}')


def _decode(obj: dict, max_elements: int | None = None):
    if b'__ndarray__' in obj:
        try:
            dtype = np.dtype(obj[b'dtype'])
            shape = tuple(int(s) for s in obj[b'shape'])
            data = obj[b'data']
        except (KeyError, TypeError, ValueError) as e:
            raise CodecError(f'bad ndarray map: {e}') from None
        if dtype.kind in _BAD_KINDS:
            raise CodecError(f'refusing arrays of dtype {dtype}')
        if not isinstance(data, (bytes, bytearray)) or any(s < 0 for s in shape):
            raise CodecError('bad ndarray map: data must be bytes and shape non-negative')
        if max_elements is not None and int(np.prod(shape, dtype=np.int64)) > max_elements:
            raise CodecError(f'an array of shape {shape} has more than the {max_elements} '
                             f'elements accepted per field')
        if len(data) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise CodecError(f'ndarray data has {len(data)} bytes, shape {shape} of {dtype} '
                             f'needs {dtype.itemsize * int(np.prod(shape))}')
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if b'__npgeneric__' in obj:
        try:
            dtype = np.dtype(obj[b'dtype'])
        except (KeyError, TypeError) as e:
            raise CodecError(f'bad npgeneric map: {e}') from None
        if dtype.kind in _BAD_KINDS:
            raise CodecError(f'refusing scalars of dtype {dtype}')
        return dtype.type(obj[b'data'])
    return obj


def packb(obj) -> bytes:
    """Serialise ``obj`` (maps, lists, str, numbers, numpy arrays/scalars) to one binary frame."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes, max_elements: int | None = None):
    """Parse one binary frame; raises :class:`CodecError` for anything that is not msgpack-numpy,
    or for an array of more than ``max_elements`` elements (None: any size)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f'expected a binary frame, got {type(data).__name__}')
    hook = _decode if max_elements is None else (lambda o: _decode(o, max_elements))
    try:
        return msgpack.unpackb(data, object_hook=hook, raw=False, strict_map_key=False)
    except CodecError:
        raise
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError,
            TypeError) as e:
        raise CodecError(f'not a msgpack frame ({type(e).__name__}: {e})') from None
