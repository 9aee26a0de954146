"""msgpack-numpy codec: the exact wire format of the NeuroVLA/openpi policy servers."""
import msgpack
import numpy as np
import pytest

from neurovla_ros.cortex.codec import CodecError, packb, unpackb


@pytest.mark.parametrize('dtype', ['uint8', 'float32', 'float64', 'int64', 'bool', '>f4'])
def test_arrays_round_trip_with_dtype_and_shape(dtype):
    a = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    b = unpackb(packb({'x': a}))['x']
    assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


def test_non_contiguous_and_empty_arrays():
    a = np.arange(20.0).reshape(4, 5)[:, ::2]
    assert np.array_equal(unpackb(packb(a)), a)
    e = np.zeros((0, 7), np.float32)
    assert unpackb(packb(e)).shape == (0, 7)


def test_wire_format_uses_bytes_keys():
    a = np.ones((2, 2), np.float32)
    raw = msgpack.unpackb(packb({'a': a, 's': np.float32(2.5)}), raw=False)
    arr = raw['a']
    assert arr[b'__ndarray__'] is True and arr[b'dtype'] == '<f4' and arr[b'shape'] == [2, 2]
    assert arr[b'data'] == a.tobytes()
    assert raw['s'] == {b'__npgeneric__': True, b'data': 2.5, b'dtype': '<f4'}
    assert unpackb(packb(np.float32(2.5))) == np.float32(2.5)


def test_nested_structures_and_tuples():
    msg = {'type': 'infer', 'payload': {'batch_images': [[np.zeros((4, 5, 3), np.uint8)]],
                                        'instructions': ['touch'], 't': (1, 2)}}
    out = unpackb(packb(msg))
    assert out['payload']['instructions'] == ['touch'] and out['payload']['t'] == [1, 2]
    assert out['payload']['batch_images'][0][0].shape == (4, 5, 3)


def test_object_arrays_are_refused_both_ways():
    with pytest.raises(CodecError):
        packb(np.array([{}, None], dtype=object))
    evil = msgpack.packb({b'__ndarray__': True, b'data': b'\0' * 8, b'dtype': '|O',
                          b'shape': [1]}, use_bin_type=True)
    with pytest.raises(CodecError):
        unpackb(evil)


@pytest.mark.parametrize('frame', [b'\xc1\xc1 nope', b'', b'\x92\x01',
                                   msgpack.packb({b'__ndarray__': True, b'data': b'\0' * 3,
                                                  b'dtype': '<f4', b'shape': [2]},
                                                 use_bin_type=True),
                                   msgpack.packb({b'__ndarray__': True, b'dtype': '<f4'},
                                                 use_bin_type=True)])
def test_malformed_frames_raise_codec_error(frame):
    with pytest.raises(CodecError):
        unpackb(frame)


def test_text_frames_are_not_binary():
    with pytest.raises(CodecError):
        unpackb('Traceback (most recent call last): ...')
