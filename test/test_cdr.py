"""The serialized-message readers and writers of the 1 kHz paths (common/cdr.py)."""
import numpy as np
import pytest
from sensor_msgs.msg import JointState

from neurovla_ros import robot
from neurovla_ros.common import cdr
from neurovla_ros.common.rosutil import joint_state_template

MODEL = robot.load()


def test_readers_and_joint_state_template_agree_with_rclpy_serialization():
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Imu
    js = JointState()
    js.header.stamp.sec, js.header.stamp.nanosec = 17, 250_000_000
    js.header.frame_id = 'x'
    js.name = [*MODEL.arm_joints, 'left_finger_joint', 'right_finger_joint']
    js.position = [0.1 * i for i in range(8)]
    js.velocity = [-0.2 * i for i in range(8)]
    js.effort = [1.0] * 8
    rd = cdr.JointStateReader()
    for _ in range(2):  # second time through the cached name block
        assert rd.read(serialize_message(js)) == pytest.approx(17.25)
        assert rd.names == tuple(js.name)
        np.testing.assert_array_equal(rd.position, js.position)
        np.testing.assert_array_equal(rd.velocity, js.velocity)
    imu = Imu()
    imu.header.frame_id = 'imu_link'
    imu.orientation.x, imu.orientation.w = 0.6, 0.8
    imu.angular_velocity.y = 1.25
    imu.linear_acceleration.z = 9.81
    imu.orientation_covariance[0] = -1.0
    ir = cdr.ImuReader()
    assert ir.read(serialize_message(imu)) == 0.0
    np.testing.assert_array_equal(ir.quat, [0.6, 0, 0, 0.8])
    np.testing.assert_array_equal(ir.gyro, [0, 1.25, 0])
    np.testing.assert_array_equal(ir.accel, [0, 0, 9.81])
    assert ir.orientation_cov0 == -1.0
    w = joint_state_template(list(MODEL.arm_joints), 'base_link')
    w.fields['position'][:] = np.arange(6)
    w.fields['velocity'][:] = 1.5
    w.fields['effort'][:] = -2.0
    w.set_stamp(3_000_000_004)
    m = deserialize_message(w.tobytes(), JointState)
    assert list(m.name) == list(MODEL.arm_joints) and m.header.frame_id == 'base_link'
    assert list(m.position) == list(range(6)) and list(m.effort) == [-2.0] * 6
    assert (m.header.stamp.sec, m.header.stamp.nanosec) == (3, 4)
    assert cdr.read_stamp(w.tobytes()) == (3, 4)


def test_templates_round_trip_through_rclpy_serialization():
    from rclpy.serialization import deserialize_message, serialize_message

    js = JointState()
    js.name = ['a', 'bb', 'ccc']
    js.position, js.velocity = cdr.sentinels(3), cdr.sentinels(3, 3)
    js.effort = [0.5, 0.25, 0.125]  # fixed fields keep their values
    t = cdr.CdrTemplate(serialize_message(js), {'position': (0, 3), 'velocity': (3, 3)})
    t.fields['position'][:] = [1.0, -2.0, 3.5]
    t.fields['velocity'][:] = [0.1, 0.2, 0.3]
    t.set_stamp(1_700_000_123_456_789_012)
    back = deserialize_message(t.tobytes(), JointState)
    assert list(back.name) == ['a', 'bb', 'ccc']
    assert list(back.position) == [1.0, -2.0, 3.5] and list(back.velocity) == [0.1, 0.2, 0.3]
    assert list(back.effort) == [0.5, 0.25, 0.125]
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (1_700_000_123, 456_789_012)
    with pytest.raises(ValueError):  # a field that was not filled with its sentinels
        cdr.CdrTemplate(serialize_message(js), {'effort': (6, 3)})


def test_joint_state_reader_effort_and_damaged_bytes():
    from rclpy.serialization import serialize_message
    js = JointState()
    js.name = ['a', 'b']
    js.position, js.velocity, js.effort = [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]
    buf = serialize_message(js)
    rd = cdr.JointStateReader()
    assert rd.read(buf) == 0.0 and list(rd.effort) == [5.0, 6.0]
    js.effort = []
    assert rd.read(serialize_message(js)) == 0.0 and len(rd.effort) == 0
    assert rd.read(buf[:-9]) is None                  # truncated
    assert rd.read(b'\x00\x00' + buf[2:]) is None      # big-endian / unknown encapsulation
    assert rd.read(b'') is None


def _big_endian(*fields) -> bytes:
    """A big-endian CDR message from (format, value) fields: 'i'/'I'/'B' scalars, 's' a
    string, 'd*' a double sequence, '37d' 37 doubles, 'B*' a byte sequence."""
    import struct
    body = bytearray()

    def put(fmt, *v):
        size = struct.calcsize('>' + fmt[-1])
        body.extend(b'\0' * (-len(body) % size))
        body.extend(struct.pack('>' + fmt, *v))
    for fmt, v in fields:
        if fmt == 's':
            b = v.encode() + b'\0'
            put('I', len(b))
            body.extend(b)
        elif fmt in ('d*', 'B*'):
            put('I', len(v))
            if len(v):
                put(f'{len(v)}{fmt[0]}', *v)
        else:
            put(fmt, *(v if isinstance(v, (list, tuple)) else [v]))
    return b'\x00\x00\x00\x00' + bytes(body)


def test_readers_with_a_decoder_read_other_encapsulations_into_the_same_fields():
    """Big-endian CDR (another middleware) goes through rclpy's deserializer into the same
    attributes; bytes nothing can read give None and the reason."""
    from sensor_msgs.msg import Image, Imu

    from neurovla_ros.common.rosutil import decoder
    head = [('i', 5), ('I', 250_000_000), ('s', 'f')]
    js = _big_endian(*head, ('I', 2), ('s', 'a'), ('s', 'b'), ('d*', [1.0, 2.0]),
                     ('d*', [3.0, 4.0]), ('d*', []))
    assert cdr.JointStateReader().read(js) is None
    rd = cdr.JointStateReader(decoder(JointState))
    assert rd.read(js) == pytest.approx(5.25) and (rd.sec, rd.nanosec) == (5, 250_000_000)
    assert rd.names == ('a', 'b') and list(rd.position) == [1.0, 2.0]
    assert list(rd.velocity) == [3.0, 4.0] and len(rd.effort) == 0
    imu = _big_endian(*head, ('37d', [0.1 * i for i in range(37)]))
    ir = cdr.ImuReader(decoder(Imu))
    assert ir.read(imu) == pytest.approx(5.25)
    np.testing.assert_allclose(ir.quat, [0.0, 0.1, 0.2, 0.3])
    assert ir.orientation_cov0 == pytest.approx(0.4)
    np.testing.assert_allclose(ir.gyro, [1.3, 1.4, 1.5])
    np.testing.assert_allclose(ir.accel, [2.5, 2.6, 2.7])
    img = _big_endian(*head, ('I', 1), ('I', 2), ('s', 'rgb8'), ('B', 0), ('I', 6),
                      ('B*', list(range(6))))
    mr = cdr.ImageReader(decoder(Image))
    assert mr.read(img) == pytest.approx(5.25)
    assert (mr.height, mr.width, mr.encoding, mr.step) == (1, 2, 'rgb8', 6)
    assert list(mr.data) == list(range(6))
    for reader in (rd, ir, mr):
        assert reader.read(b'\x00\x00\x00\x00\x01') is None
        assert 'undecodable' in reader.error


def test_float64_array_template():
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import Float64MultiArray

    from neurovla_ros.common.rosutil import float64_array_template
    t = float64_array_template(6)
    t.fields['data'][:] = np.arange(6) * 0.5
    m = deserialize_message(t.tobytes(), Float64MultiArray)
    assert list(m.data) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5] and not m.layout.dim


@pytest.mark.parametrize('frame_id,encoding', [('', 'rgb8'), ('wrist_camera_link', 'bgr8'),
                                               ('cam', 'mono8')])
def test_image_reader_agrees_with_rclpy_and_rejects_damage(frame_id, encoding):
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    rng = np.random.default_rng(0)
    h, w, ch = 5, 7, 1 if encoding == 'mono8' else 3
    pixels = rng.integers(0, 256, (h, w * ch + 1), dtype=np.uint8)   # step with padding
    img = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=w * ch + 1,
                data=pixels.tobytes())
    img.header.frame_id = frame_id
    img.header.stamp.sec, img.header.stamp.nanosec = 4, 500_000_000
    buf = serialize_message(img)
    rd = cdr.ImageReader()
    assert rd.read(buf) == pytest.approx(4.5)
    assert (rd.height, rd.width, rd.step, rd.encoding) == (h, w, w * ch + 1, encoding)
    assert not rd.is_bigendian
    np.testing.assert_array_equal(rd.data, pixels.reshape(-1))
    assert rd.read(buf[:-3]) is None                   # truncated pixel block
    assert rd.read(b'\x00\x00' + buf[2:]) is None


def test_latest_sample_takes_only_the_newest_message_over_dds(rclpy_node):
    """rosutil.LatestSample: nothing is delivered per message; a take returns the newest
    sample once, then None until another arrives (here from a publisher in the same process)."""
    import time

    from rclpy.serialization import deserialize_message

    from neurovla_ros.common.rosutil import SENSOR_QOS, LatestSample
    pub = rclpy_node.create_publisher(JointState, '/latest_probe', SENSOR_QOS)
    latest = LatestSample(rclpy_node, JointState, 'latest_probe')
    deadline = time.monotonic() + 10
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert latest.take() is None
    for k in range(5):
        pub.publish(JointState(name=['a'], position=[float(k)]))
    deadline = time.monotonic() + 5
    got = None
    while got is None and time.monotonic() < deadline:
        time.sleep(0.05)
        got = latest.take()
    assert got is not None and list(deserialize_message(got, JointState).position) == [4.0]
    assert latest.take() is None
    # two samples share one helper node; it goes with the last of them
    other = LatestSample(rclpy_node, JointState, 'latest_probe_2')
    helper = rclpy_node._latest_sample_node
    name = helper.get_name()
    assert other._node is helper and latest._node is helper
    latest.destroy()
    assert rclpy_node._latest_sample_node is helper and len(list(helper.subscriptions)) == 1
    other.destroy()
    assert not hasattr(rclpy_node, '_latest_sample_node')
    assert name not in rclpy_node.get_node_names()


def test_rgb_image_gives_rgb_pixels_or_why_not():
    data = np.arange(2 * 8, dtype=np.uint8)          # 2 rows of 2 pixels, step 8 (2 padding)
    img, why = cdr.rgb_image('bgr8', 2, 2, 8, data)
    assert why == '' and img.shape == (2, 2, 3)
    assert img[1, 1].tolist() == [13, 12, 11]       # bgr -> rgb, the padding skipped
    assert cdr.rgb_image('RGB8', 2, 2, 8, data)[0][0, 0].tolist() == [0, 1, 2]
    for args, word in ((('mono8', 2, 2, 8), 'mono8'), (('rgb8', 0, 2, 8), '2x0'),
                       (('rgb8', 2, 2, 5), 'step 5'), (('rgb8', 3, 2, 8), '16 bytes')):
        img, why = cdr.rgb_image(*args, data)
        assert img is None and word in why and 'rgb8/bgr8' in why, why
