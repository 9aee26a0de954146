"""The arm description: xacro expansion, check_urdf, frames, ros2_control block, model, FK."""
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from conftest import tool

from neurovla_ros import robot

ARM = list(robot.ARM_JOINTS)
FRAMES = ('world', 'base_link', 'tool0', 'tcp_link', 'imu_link', 'gripper_base_link',
          'wrist_camera_link', 'wrist_camera_optical_frame',
          'scene_camera_link', 'scene_camera_optical_frame')
HOME = [-0.3, -0.1, 2.0, -0.33, -1.5708, 0.0]  # the ros2_control initial_values


@pytest.fixture(scope='module', params=[False, True], ids=['mujoco', 'gazebo'])
def xml(request):
    return robot.urdf_xml(sim_gazebo=request.param, controllers_file='/cfg/controllers.yaml')


def test_check_urdf_accepts_the_expanded_file(xml, tmp_path):
    path = tmp_path / 'arm.urdf'
    path.write_text(xml)
    res = subprocess.run([tool('check_urdf'), str(path)], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'root Link: world' in res.stdout


def test_check_urdf_rejects_a_broken_file(tmp_path):
    """The validator is real: a joint whose child link does not exist fails."""
    path = tmp_path / 'broken.urdf'
    path.write_text(robot.urdf_xml().replace('<child link="tcp_link"/>',
                                             '<child link="no_such_link"/>'))
    res = subprocess.run([tool('check_urdf'), str(path)], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode != 0


def test_required_frames_and_joints_exist(xml):
    root = ET.fromstring(xml)
    links = {ln.get('name') for ln in root.findall('link')}
    assert set(FRAMES) <= links
    joints = {j.get('name'): j for j in root.findall('joint')}
    assert set(ARM) | {'left_finger_joint', 'right_finger_joint'} <= set(joints)
    assert joints['right_finger_joint'].find('mimic').get('joint') == 'left_finger_joint'


def test_ros2_control_block(xml):
    root = ET.fromstring(xml)
    (block,) = root.findall('ros2_control')
    by_name = {j.get('name'): j for j in block.findall('joint')}
    for name in ARM:
        j = by_name[name]
        assert {c.get('name') for c in j.findall('command_interface')} == {
            'position', 'velocity', 'effort'}, name
        assert {s.get('name') for s in j.findall('state_interface')} == {
            'position', 'velocity', 'effort'}, name
    (imu,) = block.findall('sensor')
    states = {s.get('name') for s in imu.findall('state_interface')}
    quantities = (('orientation', 'xyzw'), ('angular_velocity', 'xyz'),
                  ('linear_acceleration', 'xyz'))
    assert states == {f'{q}.{a}' for q, axes in quantities for a in axes}
    assert imu.find("param[@name='frame_id']").text == 'imu_link'


def test_gazebo_variant_uses_gz_ros2_control_and_the_controllers_file():
    gz = ET.fromstring(robot.urdf_xml(sim_gazebo=True, controllers_file='/cfg/controllers.yaml'))
    mock = ET.fromstring(robot.urdf_xml(sim_gazebo=False))
    assert gz.find('ros2_control/hardware/plugin').text == 'gz_ros2_control/GazeboSimSystem'
    assert mock.find('ros2_control/hardware/plugin').text == 'mock_components/GenericSystem'
    assert gz.find('gazebo/plugin/parameters').text == '/cfg/controllers.yaml'
    sensors = {s.get('name'): s.get('type') for s in gz.iter('sensor') if s.get('type')}
    assert sensors == {'imu_sensor': 'imu', 'scene_camera': 'camera', 'wrist_camera': 'camera'}


def test_model_limits_and_home():
    m = robot.load()
    assert m.actuated == ARM + ['left_finger_joint']
    lim = m.limits()
    np.testing.assert_allclose(lim['lower'], [-np.pi, -np.pi, -2.8, -np.pi, -np.pi, -np.pi])
    np.testing.assert_allclose(lim['upper'], [np.pi, np.pi, 2.8, np.pi, np.pi, np.pi])
    np.testing.assert_allclose(lim['velocity'], [3.14] * 6)
    np.testing.assert_allclose(lim['effort'], [150, 150, 150, 28, 28, 28])
    assert np.all(lim['damping'] > 0)
    np.testing.assert_allclose(m.home_pose(), HOME)
    g = m.limits(['left_finger_joint'])
    assert (g['lower'][0], g['upper'][0], g['effort'][0]) == (0.0, 0.04, 40.0)
    assert m.link_mass['upper_arm_link'] == pytest.approx(8.058)


def test_home_tcp_is_above_the_table_pointing_down():
    m = robot.load()
    t = m.fk(m.home_pose())
    np.testing.assert_allclose(t[:3, 3], [0.45, 0.0, 0.25], atol=0.01)
    assert t[:3, 2] @ [0, 0, -1] > 0.999  # tool z axis points down
    np.testing.assert_allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3), atol=1e-9)


def test_zero_pose_is_the_straight_up_arm():
    """At q = 0 every joint frame is aligned with base_link: the tcp height is the sum of the
    z offsets along the chain (0.1625 + 0.425 + 0.3922 + 0.0997 up to wrist_3), and the flange
    (tool0) points along +y of the base, 0.0996 + 0.11 m further out for the tcp."""
    m = robot.load()
    t = m.fk(np.zeros(6))
    np.testing.assert_allclose(t[:3, 3], [0.0, 0.138 - 0.131 + 0.127 + 0.0996 + 0.11,
                                          0.1625 + 0.425 + 0.3922 + 0.0997], atol=1e-9)


def test_jacobian_matches_finite_differences():
    m = robot.load()
    rng = np.random.default_rng(0)
    for _ in range(3):
        q = m.home_pose() + rng.uniform(-0.5, 0.5, 6)
        jac = m.jacobian(q)
        eps = 1e-6
        num = np.stack([(m.fk(q + eps * e)[:3, 3] - m.fk(q - eps * e)[:3, 3]) / (2 * eps)
                        for e in np.eye(6)], axis=1)
        np.testing.assert_allclose(jac[:3], num, atol=1e-6)
