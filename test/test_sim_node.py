"""The sim node over real DDS (node in its own process) and in-process with command hooks."""
import math
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from conftest import spin_until
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import WrenchStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, Imu, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import MarkerArray

from neurovla_ros import robot

MODULE = 'neurovla_ros.sim.node'
ARM = list(robot.ARM_JOINTS)
HOME = robot.load().home_pose()
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class Probe:
    """Latest messages and counts of the sim's outputs."""

    def __init__(self, node, camera=False, clock=False, streams=True):
        self.node = node
        self.streams = streams
        self.js, self.js_stamps, self.imu = None, [], []
        self.images, self.info, self.diag, self.dist = [], None, None, []
        self.objects, self.clock = None, []
        if streams:  # the 1 kHz streams (costly for the probe on a small machine)
            node.create_subscription(JointState, '/joint_states', self._on_js, BEST_EFFORT)
            node.create_subscription(Imu, '/imu/data', self.imu.append, BEST_EFFORT)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        node.create_subscription(WrenchStamped, '/sim/disturbance', self.dist.append, 10)
        node.create_subscription(MarkerArray, '/sim/objects', self._on_objects, LATCHED)
        self.wrist_images = []
        if camera:
            node.create_subscription(Image, '/camera/image_raw', self.images.append, BEST_EFFORT)
            node.create_subscription(Image, '/wrist_camera/image_raw', self.wrist_images.append,
                                     BEST_EFFORT)
            node.create_subscription(CameraInfo, '/camera/camera_info',
                                     lambda m: setattr(self, 'info', m), BEST_EFFORT)
        if clock:
            node.create_subscription(Clock, '/clock', lambda m: self.clock.append(ns(m.clock)),
                                     BEST_EFFORT)
        controllers = {'position': 'forward_position', 'velocity': 'forward_velocity',
                       'effort': 'forward_effort', 'gripper': 'gripper'}
        self.pub = {k: node.create_publisher(Float64MultiArray, f'/{c}_controller/commands', 10)
                    for k, c in controllers.items()}
        self.traj = node.create_publisher(JointTrajectory,
                                          '/joint_trajectory_controller/joint_trajectory', 10)
        self.wrench = node.create_publisher(WrenchStamped, '/sim/apply_wrench', 10)

    def _on_js(self, m):
        self.js = m
        self.js_stamps.append(ns(m.header.stamp))

    def _on_diag(self, m):
        for st in m.status:
            if st.hardware_id == 'sim':
                self.diag = {kv.key: kv.value for kv in st.values}

    def _on_objects(self, m):
        self.objects = m

    def q(self):
        return np.array(self.js.position[:6])

    def send(self, kind, values):
        self.pub[kind].publish(Float64MultiArray(data=[float(v) for v in values]))

    def wait_ready(self, timeout=30.0):
        assert spin_until(self.node, lambda: (self.js is not None or not self.streams)
                          and self.diag is not None, timeout), 'sim node did not come up'


def alive(proc):
    assert proc.poll() is None, proc.output()


def test_streams_at_rate_with_imu_camera_and_objects(ros_process, rclpy_node):
    proc = ros_process(MODULE, {'n_objects': 3})
    probe = Probe(rclpy_node, camera=True)
    probe.wait_ready()
    assert list(probe.js.name) == [*ARM, 'left_finger_joint', 'right_finger_joint']
    assert probe.q() == pytest.approx(HOME, abs=1e-3)
    probe.js_stamps.clear()
    probe.imu.clear()
    t0 = time.monotonic()
    spin_until(rclpy_node, lambda: False, 2.0)
    wall = time.monotonic() - t0
    js_hz, imu_hz = len(probe.js_stamps) / wall, len(probe.imu) / wall
    # 1000 Hz is the target (the bench measures it); on a loaded 2-core VM the probe itself
    # drops messages, so: a generous floor, and the stamps prove one message per 1 ms step
    assert js_hz > 100 and imu_hz > 100, (js_hz, imu_hz)
    st = np.diff(probe.js_stamps)
    assert np.all(st > 0) and np.all(st % 1_000_000 == 0)  # stamps on the 1 ms step grid
    assert np.median(st) == 1_000_000
    assert abs(ns(probe.js.header.stamp) - time.time_ns()) < 0.5e9  # real time: wall stamps
    imu = probe.imu[-1]
    a = imu.linear_acceleration
    assert math.hypot(a.x, a.y, a.z) == pytest.approx(9.81, abs=0.3)
    assert imu.header.frame_id == 'imu_link' and imu.linear_acceleration_covariance[0] > 0
    assert spin_until(rclpy_node, lambda: len(probe.images) >= 3 and probe.info is not None, 20)
    img = probe.images[-1]
    assert (img.width, img.height, img.encoding, img.step) == (320, 240, 'rgb8', 960)
    pix = np.frombuffer(bytes(img.data), np.uint8).reshape(240, 320, 3)
    assert pix.mean() > 30 and pix.std() > 10  # a lit scene, not a blank frame
    assert probe.info.k[0] > 100 and probe.info.header.frame_id == img.header.frame_id
    assert spin_until(rclpy_node, lambda: probe.objects is not None, 5)
    assert len(probe.objects.markers) == 3
    assert all(0.25 < m.pose.position.x < 0.75 for m in probe.objects.markers)
    assert not probe.wrist_images            # off unless asked for
    alive(proc)


def test_wrist_camera_rendered_beside_the_scene_camera_when_enabled(ros_process, rclpy_node):
    proc = ros_process(MODULE, {'n_objects': 3, 'wrist_camera_enabled': True})
    probe = Probe(rclpy_node, camera=True, streams=False)
    assert spin_until(rclpy_node, lambda: len(probe.wrist_images) >= 3
                      and len(probe.images) >= 3, 30)
    wrist, scene = probe.wrist_images[-1], probe.images[-1]
    assert wrist.header.frame_id == 'wrist_camera_optical_frame'
    assert scene.header.frame_id == 'scene_camera_optical_frame'
    a, b = (np.frombuffer(bytes(m.data), np.uint8).reshape(240, 320, 3) for m in (wrist, scene))
    assert a.std() > 10 and np.abs(a.astype(int) - b).mean() > 10   # another view, not a copy
    alive(proc)


def test_commands_reach_their_goals_and_bad_ones_are_rejected(ros_process, rclpy_node):
    proc = ros_process(MODULE, {'camera_enabled': False})
    probe = Probe(rclpy_node)
    probe.wait_ready()
    # position: reach and hold
    goal = HOME + np.array([0.2, -0.15, 0.1, 0.2, -0.3, 0.4])
    probe.send('position', goal)
    assert spin_until(rclpy_node, lambda: np.abs(probe.q() - goal).max() < 2e-3, 10), probe.q()
    # bad commands: each rejected, the last valid one held, the node keeps publishing
    bad = [('position', [0.0] * 5), ('position', [math.nan] * 6),
           ('position', [10.0] * 6), ('velocity', [0, 0, 0, 0, 0, 99.0]),
           ('effort', [math.inf] * 6), ('effort', [500.0] + [0] * 5), ('gripper', [0.5]),
           ('gripper', [])]
    for kind, values in bad:
        probe.send(kind, values)
    t = JointTrajectory(joint_names=['elbow_joint', 'no_such_joint'])
    t.points = [JointTrajectoryPoint(positions=[0.0, 0.0], time_from_start=Duration(sec=1))]
    probe.traj.publish(t)
    w = WrenchStamped()
    w.header.frame_id = 'no_such_link'
    probe.wrench.publish(w)
    n_bad = len(bad) + 2
    assert spin_until(rclpy_node, lambda: probe.diag is not None
                      and int(probe.diag['rejected_commands']) >= n_bad, 10), probe.diag
    assert int(probe.diag['rejected_commands']) == n_bad
    before = len(probe.js_stamps)
    spin_until(rclpy_node, lambda: False, 0.5)
    assert len(probe.js_stamps) - before > 100
    assert np.abs(probe.q() - goal).max() < 2e-3  # held
    # trajectory, joints in any order, a subset: the others hold
    names = ['wrist_3_joint', 'shoulder_pan_joint']
    traj = JointTrajectory(joint_names=names)
    traj.points = [JointTrajectoryPoint(positions=p, time_from_start=Duration(nanosec=t))
                   for p, t in (([-0.2, -0.1], 400_000_000), ([-0.5, 0.0], 800_000_000))]
    probe.traj.publish(traj)
    want = goal.copy()
    want[5], want[0] = -0.5, 0.0
    assert spin_until(rclpy_node, lambda: np.abs(probe.q() - want).max() < 2e-3, 10), probe.q()
    # gripper
    probe.send('gripper', [0.01])
    assert spin_until(rclpy_node, lambda: abs(probe.js.position[6] - 0.01) < 1e-3, 5)
    # effort: the watchdog falls back to holding when the stream stops
    probe.send('effort', [0, 0, 0, 0, 0, 0.5])
    assert spin_until(rclpy_node, lambda: probe.diag['effort_watchdog_trips'] != '0', 5)
    q_hold = probe.q()
    spin_until(rclpy_node, lambda: False, 0.5)
    assert np.abs(probe.q() - q_hold).max() < 2e-3
    alive(proc)


def test_wrench_onset_on_disturbance_topic_and_reset(ros_process, rclpy_node):
    proc = ros_process(MODULE, {'camera_enabled': False, 'wrench_duration_s': 0.2})
    probe = Probe(rclpy_node)
    wrist = []
    rclpy_node.create_subscription(WrenchStamped, '/wrist/wrench',
                                   lambda m: wrist.append((ns(m.header.stamp), m.wrench.force.z)),
                                   BEST_EFFORT)
    probe.wait_ready()
    states = []
    rclpy_node.create_subscription(
        JointState, '/joint_states',
        lambda m: states.append((ns(m.header.stamp), list(m.position[:6]))), BEST_EFFORT)
    spin_until(rclpy_node, lambda: len(states) > 50, 5)
    w = WrenchStamped()
    w.header.frame_id = 'gripper_base_link'
    w.wrench.force.z = 80.0  # push the gripper up (world frame)
    t_sent = time.time_ns()
    probe.wrench.publish(w)
    assert spin_until(rclpy_node, lambda: probe.dist, 5)
    onset = ns(probe.dist[0].header.stamp)
    assert probe.dist[0].header.frame_id == 'gripper_base_link'
    assert probe.dist[0].wrench.force.z == 80.0
    assert t_sent - 5e6 < onset < t_sent + 1e9  # the step after it arrived (loaded VM: generous)
    spin_until(rclpy_node, lambda: False, 0.3)
    # the wrist sensor shows the push only from the onset on: before it, the gripper weight
    before = [f for s, f in wrist if s <= onset - 2e6]
    after = [f for s, f in wrist if onset + 20e6 <= s <= onset + 150e6]
    assert before and after
    assert max(before[-50:]) < 7.0 and min(after) < -50.0  # tool z points down: load drops
    q_before = np.array([q for s, q in states if s <= onset][-1])
    q_during = np.array([q for s, q in states if s <= onset + 150e6][-1])
    assert np.abs(q_during - q_before).max() > 2e-4  # the push moved the arm
    # reset service: home again
    probe.send('position', HOME + 0.2)
    spin_until(rclpy_node, lambda: np.abs(probe.q() - HOME - 0.2).max() < 2e-3, 10)
    cli = rclpy_node.create_client(Trigger, '/sim/reset')
    assert cli.wait_for_service(timeout_sec=10)
    fut = cli.call_async(Trigger.Request())
    assert spin_until(rclpy_node, fut.done, 10) and fut.result().success
    assert spin_until(rclpy_node, lambda: np.abs(probe.q() - HOME).max() < 1e-3, 5)
    alive(proc)


def test_sim_time_publishes_clock_and_runs_faster_than_real_time(ros_process, rclpy_node):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    proc = ros_process(MODULE, {'camera_enabled': False, 'use_sim_time': True, 'speed': 0.0})
    probe = Probe(rclpy_node, clock=True, streams=False)
    probe.wait_ready()
    # a tremor switched on through a dynamic parameter is announced with its onset (sim time)
    client = AsyncParameterClient(rclpy_node, 'sim')
    assert client.wait_for_services(timeout_sec=10)
    fut = client.set_parameters([Parameter('tremor_amplitude', value=2.0)])
    assert spin_until(rclpy_node, fut.done, 10) and fut.result().results[0].successful
    assert spin_until(rclpy_node, lambda: probe.dist, 5)
    assert probe.dist[0].header.frame_id == 'tremor:wrist' and probe.dist[0].wrench.torque.x == 2.0
    spin_until(rclpy_node, lambda: False, 0.3)
    assert 0 < ns(probe.dist[0].header.stamp) <= probe.clock[-1]  # a sim-time stamp
    bad = client.set_parameters([Parameter('tremor_amplitude', value=-1.0)])
    assert spin_until(rclpy_node, bad.done, 10) and not bad.result().results[0].successful
    c0, t0 = probe.clock[-1], time.monotonic()
    spin_until(rclpy_node, lambda: False, 2.0)
    rtf = (probe.clock[-1] - c0) * 1e-9 / (time.monotonic() - t0)
    assert rtf > 1.2, rtf
    assert probe.clock[-1] < 3600e9  # sim time, not wall time
    assert float(probe.diag['sim_time']) > 0
    alive(proc)


def test_in_process_command_hooks_see_the_step_that_uses_the_command():
    import rclpy
    from rclpy.experimental import EventsExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from neurovla_ros.sim.node import SimNode
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    sim = SimNode(context=ctx, parameter_overrides=[Parameter('camera_enabled', value=False)])
    other = Node('commander', context=ctx)
    try:
        pub = other.create_publisher(Float64MultiArray,
                                     '/forward_position_controller/commands', 10)
        seen = []
        sim.command_hooks.append(lambda *a: seen.append(a))
        goal = HOME + 0.05
        other.create_timer(0.2, lambda: pub.publish(Float64MultiArray(data=list(goal))))
        ex = EventsExecutor(context=ctx)
        ex.add_node(other)
        sim.run(duration=1.0, executor=ex)
        assert seen, 'no command reached the hook'
        kind, step, t, values = seen[0]
        assert kind == 'position' and values == pytest.approx(goal)
        assert t == pytest.approx(step * sim.world.dt, abs=1e-9)
        assert sim.world.step_count > 500
        assert sim.world.setpoint == pytest.approx(goal)
    finally:
        sim.close()
        sim.destroy_node()
        other.destroy_node()
        rclpy.try_shutdown(context=ctx)


@pytest.mark.parametrize('wait_s', [0.0005, 0.0])
def test_after_a_stall_the_body_catches_up_no_faster_than_its_controller_answers(wait_s):
    """A controller answering every /joint_states sample (same process, real DDS); the body's
    thread stalls for 30 ms once. With catchup_wait_s each step of the catch-up waits for the
    answer to the state before it; with 0 the body runs through the backlog on a stale
    command."""
    import rclpy
    from rclpy.experimental import EventsExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from neurovla_ros.common.rosutil import COMMAND_QOS, LATEST_QOS
    from neurovla_ros.sim.node import SimNode
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    sim = SimNode(context=ctx, parameter_overrides=[
        Parameter('camera_enabled', value=False), Parameter('catchup_wait_s', value=wait_s),
        Parameter('imu_rate_hz', value=1.0), Parameter('wrench_rate_hz', value=1.0),
        Parameter('realtime_priority', value=0)])
    ctl = Node('controller', context=ctx)
    try:
        pub = ctl.create_publisher(Float64MultiArray, '/forward_position_controller/commands',
                                   COMMAND_QOS)
        hold = Float64MultiArray(data=list(HOME))
        ctl.create_subscription(JointState, '/joint_states', lambda _: pub.publish(hold),
                                LATEST_QOS, raw=True)
        answered = set()
        sim.command_hooks.append(lambda kind, k, t, v: answered.add(k))
        step, stall = sim.world.step, {'at': None}

        def step_with_a_stall(n=1):
            if stall['at'] is None and len(answered) > 200:   # the controller is live
                stall['at'] = sim.world.step_count
                time.sleep(0.03)
            step(n)
        sim.world.step = step_with_a_stall
        ex = EventsExecutor(context=ctx)
        ex.add_node(ctl)
        sim.run(duration=2.0, executor=ex)
        assert stall['at'] is not None, 'the controller never answered'
        after = range(stall['at'] + 2, stall['at'] + 27)      # the catch-up (~30 steps late)
        share = sum(k in answered for k in after) / len(after)
        if wait_s:
            assert sim.catchup_waits >= 20 and share >= 0.8, (share, sim.catchup_timeouts)
        else:
            assert sim.catchup_waits == 0 and share <= 0.5, share
    finally:
        sim.close()
        sim.destroy_node()
        ctl.destroy_node()
        rclpy.try_shutdown(context=ctx)
