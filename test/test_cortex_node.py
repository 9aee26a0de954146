"""The cortex node over real DDS: an instruction on /cortex/instruction leads to a goal on
/cortex/goal_pose above the named object of a rendered MuJoCo scene; a dead remote policy server
is reported on /diagnostics, nothing crashes, and the node recovers when the server appears."""
import os
import signal
import socket

import numpy as np
import pytest
from conftest import spin_until
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.srv import GetParameters
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, String

from neurovla_ros import robot
from neurovla_ros.common.rosutil import COMMAND_QOS, SENSOR_QOS
from neurovla_ros.cortex.testservers import NeuroVLATestServer
from neurovla_ros.sim.world import World

NAMES = [*robot.ARM_JOINTS, 'left_finger_joint', 'right_finger_joint']


class Scene:
    """Publishes a rendered scene image, camera_info and joint states like the sim does."""

    def __init__(self, node, seed=3):
        self.world = World(seed=seed, n_objects=4, cameras=True)
        self.image = self.world.render('scene_camera')
        info = self.world.camera_info('scene_camera')
        self.info = CameraInfo(width=info['width'], height=info['height'], k=info['k'],
                               d=info['d'], r=info['r'], p=info['p'],
                               distortion_model=info['distortion_model'])
        self.info.header.frame_id = info['frame_id']
        q, _, _ = self.world.joint_state()
        self.joints = JointState(name=NAMES, position=[float(v) for v in q],
                                 velocity=[0.0] * 8, effort=[0.0] * 8)
        self.pub_img = node.create_publisher(Image, '/camera/image_raw', SENSOR_QOS)
        self.pub_wrist = node.create_publisher(Image, '/wrist_camera/image_raw', SENSOR_QOS)
        self.pub_info = node.create_publisher(CameraInfo, '/camera/camera_info', SENSOR_QOS)
        self.pub_js = node.create_publisher(JointState, '/joint_states', SENSOR_QOS)
        h, w, _ = self.image.shape
        self.img = Image(height=h, width=w, encoding='rgb8', step=3 * w,
                         data=self.image.tobytes())
        self.img.header.frame_id = info['frame_id']
        self.node = node
        node.create_timer(0.1, self.publish_camera)
        node.create_timer(0.01, self.publish_joints)

    def publish_camera(self):
        now = self.node.get_clock().now().to_msg()
        self.img.header.stamp = self.info.header.stamp = now
        self.pub_img.publish(self.img)
        self.pub_wrist.publish(self.img)     # a stand-in view: openpi's layouts need one
        self.pub_info.publish(self.info)

    def publish_joints(self):
        self.joints.header.stamp = self.node.get_clock().now().to_msg()
        self.pub_js.publish(self.joints)

    def close(self):
        self.world.close()


class Listener:
    def __init__(self, node):
        self.goals, self.grip, self.diag = [], [], []
        node.create_subscription(PoseStamped, '/cortex/goal_pose', self.goals.append,
                                 COMMAND_QOS)
        node.create_subscription(Float64MultiArray, '/gripper_controller/commands',
                                 self.grip.append, COMMAND_QOS)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, SENSOR_QOS)

    def _on_diag(self, msg):
        for st in msg.status:
            if st.name.startswith('cortex'):
                level = st.level[0] if isinstance(st.level, bytes) else int(st.level)
                self.diag.append((level, st.message, {kv.key: kv.value for kv in st.values}))


def stop_and_read(proc) -> str:
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(20)
    out = proc.output()
    return out


def alive(proc):
    assert proc.poll() is None, proc.output()


@pytest.mark.parametrize('backend', ['local', 'scripted'])
def test_instruction_on_the_topic_leads_to_a_goal_above_the_object(backend, ros_process,
                                                                   rclpy_node):
    proc = ros_process('neurovla_ros.cortex.node', {'backend': backend, 'instruction': ''})
    scene = Scene(rclpy_node)
    seen = Listener(rclpy_node)
    pub = rclpy_node.create_publisher(String, '/cortex/instruction', COMMAND_QOS)
    target = next(o for o in scene.world.objects() if o['shape'] == 'cube')
    text = f'please go to the {target["colour"]} block'
    try:
        # the node is up and says it waits for an instruction
        assert spin_until(rclpy_node, lambda: any('no instruction' in d[1] for d in seen.diag),
                          30.0), seen.diag
        assert not seen.goals
        assert spin_until(rclpy_node, lambda: pub.publish(String(data=text)) or
                          len(seen.goals) >= 3, 30.0)
        alive(proc)
        g = seen.goals[-1]
        assert g.header.frame_id == 'base_link'
        p = np.array([g.pose.position.x, g.pose.position.y, g.pose.position.z])
        top = target['position'][2] + target['size'][2] / 2
        assert np.linalg.norm(p[:2] - target['position'][:2]) < 0.03, (p, target)
        # hovering above the object first: top + clearance 0.01 + approach height 0.08
        assert p[2] == pytest.approx(top + 0.09, abs=0.02)
        q = g.pose.orientation
        assert np.isclose(np.linalg.norm([q.x, q.y, q.z, q.w]), 1.0)
        assert seen.grip and seen.grip[-1].data[0] == pytest.approx(0.04)
        assert spin_until(rclpy_node, lambda: seen.diag[-1][0] == 0, 5.0), seen.diag[-1]
        values = seen.diag[-1][2]
        assert values['backend'] == backend and values['instruction'] == text
        assert float(values['infer_ms_p50']) > 0
        # the topic and the parameter say the same (`ros2 param get /cortex instruction`)
        client = rclpy_node.create_client(GetParameters, '/cortex/get_parameters')
        assert client.wait_for_service(timeout_sec=10.0)
        reply = client.call_async(GetParameters.Request(names=['instruction']))
        assert spin_until(rclpy_node, reply.done, 10.0)
        assert reply.result().values[0].string_value == text
        # one log line per state, not one per diagnostics period
        out = stop_and_read(proc)
        assert out.count('no instruction') <= 1, out
    finally:
        scene.close()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dead_policy_server_is_a_diagnostic_then_the_node_recovers(ros_process, rclpy_node):
    port = free_port()
    proc = ros_process('neurovla_ros.cortex.node', {
        'backend': 'neurovla-server', 'server_uri': f'ws://127.0.0.1:{port}',
        'instruction': 'touch the red cube', 'reply_timeout_s': 0.5,
        'connect_timeout_s': 0.5, 'diagnostics_rate_hz': 4.0})
    scene = Scene(rclpy_node)
    seen = Listener(rclpy_node)
    try:
        assert spin_until(rclpy_node, lambda: any(d[0] == 2 and 'refused' in d[1]
                                                  for d in seen.diag), 30.0), seen.diag
        assert not seen.goals
        alive(proc)
        with NeuroVLATestServer(port=port) as server:   # the server comes up: reconnect
            assert spin_until(rclpy_node, lambda: len(seen.goals) >= 3, 30.0), seen.diag[-3:]
            assert server.violations == []
            server.mode = 'crash'                      # 1011 traceback frames from now on
            n = len(seen.diag)
            assert spin_until(rclpy_node, lambda: any(
                d[0] == 2 and 'server_error' in d[1] for d in seen.diag[n:]), 20.0)
            held = len(seen.goals)
            assert spin_until(rclpy_node, lambda: len(seen.goals) >= held + 3, 10.0)
        alive(proc)
        # zero actions: the goal is the current tcp pose, held
        g = seen.goals[-1].pose.position
        tcp = robot.load().fk(robot.load().home_pose())[:3, 3]
        assert np.allclose([g.x, g.y, g.z], tcp, atol=1e-3)
    finally:
        scene.close()


def test_openpi_joint_chunks_are_published_as_a_joint_trajectory(ros_process, rclpy_node):
    from trajectory_msgs.msg import JointTrajectory

    from neurovla_ros.cortex.testservers import OpenpiTestServer
    q0 = robot.load().home_pose()

    def policy(_obs):      # 4 steps moving the shoulder pan away by 0.05 rad each
        return np.array([np.r_[q0 + [0.05 * (k + 1), 0, 0, 0, 0, 0], 0.0] for k in range(4)],
                        np.float32)
    with OpenpiTestServer(horizon=4, policy=policy) as server:
        ros_process('neurovla_ros.cortex.node', {
            'backend': 'openpi', 'server_uri': server.uri, 'openpi_action_space':
            'joint_position', 'action_dt': 0.25, 'instruction': 'wave', 'plan_rate_hz': 2.0})
        scene = Scene(rclpy_node)
        trajs = []
        rclpy_node.create_subscription(JointTrajectory, '/cortex/joint_goal', trajs.append,
                                       COMMAND_QOS)
        try:
            assert spin_until(rclpy_node, lambda: len(trajs) >= 2, 30.0)
            t = trajs[-1]
            assert list(t.joint_names) == list(robot.ARM_JOINTS) and len(t.points) == 4
            times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in t.points]
            assert times == pytest.approx([0.25, 0.5, 0.75, 1.0])
            assert np.allclose(t.points[-1].positions, q0 + [0.2, 0, 0, 0, 0, 0], atol=1e-5)
            assert server.violations == []
        finally:
            scene.close()


def test_openpi_droid_layout_integrates_joint_velocities_and_closes_the_gripper(ros_process,
                                                                              rclpy_node):
    from trajectory_msgs.msg import JointTrajectory

    from neurovla_ros.cortex.testservers import OpenpiTestServer

    def policy(_obs):      # DROID: 7 joint velocities (0.2 rad a step at 1), gripper 0.7: closed
        a = np.zeros((3, 8), np.float32)
        a[:, 0], a[:, 7] = 0.2, 0.7
        return a
    with OpenpiTestServer(horizon=3, layout='droid', policy=policy) as server:
        ros_process('neurovla_ros.cortex.node', {
            'backend': 'openpi', 'server_uri': server.uri, 'openpi_layout': 'droid',
            'action_dt': 0.1, 'instruction': 'wave', 'plan_rate_hz': 2.0})
        scene = Scene(rclpy_node)
        listen = Listener(rclpy_node)
        trajs = []
        rclpy_node.create_subscription(JointTrajectory, '/cortex/joint_goal', trajs.append,
                                       COMMAND_QOS)
        try:
            assert spin_until(rclpy_node, lambda: len(trajs) >= 1 and listen.grip, 30.0)
            q_now = np.array(scene.joints.position[:6])
            t = trajs[-1]
            times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in t.points]
            assert times == pytest.approx([0.1, 0.2, 0.3])
            assert np.allclose(t.points[-1].positions, q_now + [3 * 0.2 * 0.2, 0, 0, 0, 0, 0],
                               atol=1e-5)
            assert listen.grip[-1].data[0] == pytest.approx(0.0)      # closed
            req = server.requests[-1]
            assert req['observation/joint_position'] == pytest.approx(np.r_[q_now, 0.0])
            assert server.violations == []
        finally:
            scene.close()


def test_dry_run_plans_and_reports_but_publishes_no_goals_until_switched_off(ros_process,
                                                                            rclpy_node):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from trajectory_msgs.msg import JointTrajectory
    scene = Scene(rclpy_node)
    target = next(o for o in scene.world.objects() if o['shape'] == 'cube')
    proc = ros_process('neurovla_ros.cortex.node', {
        'backend': 'scripted', 'instruction': f'touch the {target["colour"]} cube',
        'dry_run': True, 'diagnostics_rate_hz': 4.0})
    seen = Listener(rclpy_node)
    trajs = []
    rclpy_node.create_subscription(JointTrajectory, '/cortex/joint_goal', trajs.append,
                                   COMMAND_QOS)

    def latest():
        return seen.diag[-1][2] if seen.diag else {}
    try:
        # planning on the images: plans counted, the goal it would send reported, none sent
        assert spin_until(rclpy_node, lambda: int(latest().get('plans', 0)) >= 5 and
                          int(latest().get('goals_withheld', 0)) >= 10, 60.0), seen.diag[-3:]
        spin_until(rclpy_node, lambda: False, 1.0)
        values = latest()
        assert values['dry_run'] == 'true' and values['goals_published'] == '0'
        assert values['would_send'] == 'goal_pose' and 'dry run' in seen.diag[-1][1]
        would = np.array([float(v) for v in values['would_send_position_m'].split()])
        assert np.linalg.norm(would[:2] - target['position'][:2]) < 0.03, (would, target)
        assert float(values['would_send_gripper_m']) == pytest.approx(0.04)
        assert float(values['infer_ms_p50']) > 0
        assert not seen.goals and not seen.grip and not trajs
        alive(proc)
        # switched off at run time: the same plans now go out
        client = AsyncParameterClient(rclpy_node, 'cortex')
        assert client.wait_for_services(timeout_sec=10.0)
        fut = client.set_parameters([Parameter('dry_run', value=False)])
        assert spin_until(rclpy_node, fut.done, 10.0)
        assert fut.result().results[0].successful
        assert spin_until(rclpy_node, lambda: len(seen.goals) >= 3 and seen.grip, 10.0)
        p = seen.goals[-1].pose.position
        assert np.linalg.norm(np.array([p.x, p.y]) - target['position'][:2]) < 0.03
        assert seen.grip[-1].data[0] == pytest.approx(0.04)
        assert spin_until(rclpy_node, lambda: latest().get('dry_run') == 'false' and
                          int(latest().get('goals_published', 0)) >= 3, 5.0)
        assert 'would_send' not in latest() and 'dry run' not in seen.diag[-1][1]
    finally:
        scene.close()
