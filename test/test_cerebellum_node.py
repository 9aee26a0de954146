"""The cerebellum node over real DDS, in its own process, against a probe that plays an ideal
arm (it echoes the reference as /joint_states) with a resting IMU."""
import math
import time

import numpy as np
import pytest
from conftest import spin_until

from neurovla_ros import robot
from neurovla_ros.cerebellum.estimator import GRAVITY
from neurovla_ros.robot.transforms import matrix_to_quat_xyzw

MODEL = robot.load()
HOME = MODEL.home_pose()
ARM = list(MODEL.arm_joints)


@pytest.fixture
def arm(ros_process, rclpy_node):
    """Start the node; the probe publishes joint states (echoing the reference) and IMU."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Imu, JointState
    from trajectory_msgs.msg import JointTrajectory

    from neurovla_ros.common.rosutil import COMMAND_QOS, SENSOR_QOS
    proc = ros_process('neurovla_ros.cerebellum.node', {'diagnostics_rate_hz': 5.0})
    node = rclpy_node
    state = {'q': HOME.copy(), 'qd': np.zeros(6), 'refs': [], 'diag': {}, 'imu_on': True}
    js_pub = node.create_publisher(JointState, '/joint_states', SENSOR_QOS)
    imu_pub = node.create_publisher(Imu, '/imu/data', SENSOR_QOS)
    goal_pub = node.create_publisher(JointTrajectory, '/cortex/joint_goal', COMMAND_QOS)
    r = MODEL.fk(HOME, 'imu_link')[:3, :3]
    quat = matrix_to_quat_xyzw(r)
    acc = r.T @ np.array([0.0, 0.0, GRAVITY])

    def on_ref(msg):
        state['refs'].append((time.monotonic(), list(msg.name), np.array(msg.position),
                              np.array(msg.velocity)))
        idx = [list(msg.name).index(n) for n in ARM]
        state['q'] = np.array(msg.position)[idx]     # an ideal arm follows exactly
        state['qd'] = np.array(msg.velocity)[idx]

    def on_diag(msg):
        for s in msg.status:
            if s.name == 'cerebellum':
                state['diag'] = {kv.key: kv.value for kv in s.values} | {'_msg': s.message}

    def tick():
        now = node.get_clock().now().to_msg()
        js = JointState()
        js.header.stamp = now
        js.name = ARM + ['left_finger_joint', 'right_finger_joint']
        js.position = [*map(float, state['q']), 0.04, 0.04]
        js.velocity = [*map(float, state['qd']), 0.0, 0.0]
        js_pub.publish(js)
        if state['imu_on']:
            m = Imu()
            m.header.stamp, m.header.frame_id = now, 'imu_link'
            m.orientation.x, m.orientation.y, m.orientation.z, m.orientation.w = map(float, quat)
            m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = \
                map(float, acc)
            imu_pub.publish(m)

    node.create_subscription(JointState, '/cerebellum/reference', on_ref, SENSOR_QOS)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, COMMAND_QOS)
    node.create_timer(0.004, tick)
    state['goal_pub'] = goal_pub
    yield node, state, proc


def joint_goal(positions, names=ARM):
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    msg = JointTrajectory()
    msg.joint_names = list(names)
    pt = JointTrajectoryPoint()
    pt.positions = [float(v) for v in positions]
    pt.time_from_start = Duration(sec=0, nanosec=0)
    msg.points = [pt]
    return msg


def test_reference_goals_rejections_and_stale_imu(arm):
    node, st, proc = arm
    assert spin_until(node, lambda: len(st['refs']) > 20 and st['diag'], 30.0), \
        'no reference / diagnostics from the cerebellum node'
    _, names, pos, vel = st['refs'][-1]
    assert names == ARM
    np.testing.assert_allclose(pos, HOME, atol=1e-3)
    # bad goals: NaN, out of the URDF limits, unknown joint -> refused, nothing moves
    bad = [joint_goal([math.nan] * 6), joint_goal(HOME + np.array([0, 0, 5.0, 0, 0, 0])),
           joint_goal(HOME, names=ARM[:5] + ['elbow_2_joint'])]
    for msg in bad:
        st['goal_pub'].publish(msg)
    assert spin_until(node, lambda: int(st['diag'].get('goals_rejected', 0)) +
                      int(st['diag'].get('rejected_goal', 0)) >= 3, 10.0), st['diag']
    np.testing.assert_allclose(st['refs'][-1][2], HOME, atol=1e-3)
    # a valid goal: the reference moves there smoothly, within the velocity limits
    goal = HOME + np.array([0.0, 0.0, 0.0, 0.15, -0.1, 0.2])
    st['goal_pub'].publish(joint_goal(goal))
    assert spin_until(node, lambda: np.max(np.abs(st['refs'][-1][2] - goal)) < 2e-3, 15.0), \
        st['refs'][-1][2] - goal
    vels = np.array([r[3] for r in st['refs']])
    assert np.max(np.abs(vels)) <= MODEL.limits()['velocity'].max()
    # the IMU goes silent: hold, no adaptation, goals refused, the reference stops
    st['imu_on'] = False
    assert spin_until(node, lambda: 'stale /imu/data' in st['diag'].get('_msg', ''), 10.0), \
        st['diag']
    before = int(st['diag']['goals_rejected'])
    st['goal_pub'].publish(joint_goal(HOME))
    assert spin_until(node, lambda: int(st['diag'].get('goals_rejected', 0)) > before, 10.0)
    assert st['diag']['adapting'] == 'false'
    spin_until(node, lambda: False, 0.5)
    np.testing.assert_allclose(st['refs'][-1][2], goal, atol=2e-3)
    assert np.max(np.abs(st['refs'][-1][3])) < 1e-6
    assert proc.poll() is None, 'the node must not crash on bad input'


def test_work_outside_the_tick_drops_to_the_background_priority():
    """``@background``: a callback of the tick's thread (FIFO realtime_priority) runs at
    background_priority and returns to the tick's; a thread under the normal scheduler (rclpy's
    timer thread) is left alone. In a child process: the policy must not leak into pytest."""
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent('''
        import threading
        from neurovla_ros.common import realtime
        from neurovla_ros.cerebellum.node import background
        class Node:
            _bg = 60
            @background
            def work(self, seen):
                seen.append(realtime.current_priority())
        problem = realtime.make_realtime(90)
        seen = []
        Node().work(seen)
        seen.append(realtime.current_priority())
        t = threading.Thread(target=lambda: (Node().work(seen),
                                             seen.append(realtime.current_priority())))
        t.start(); t.join()
        print(problem or 'ok', *seen)
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60).stdout.split()
    assert out[0] == 'ok', out           # the tests run as root (CI too)
    assert out[1:] == ['60', '90', '0', '0']


def test_teleop_preempts_cortex_goals_until_handed_back(arm):
    """A twist takes the arm: cortex goals are refused (counted, control=teleop) until
    ~/release_teleop; then the next cortex goal moves the arm again."""
    from geometry_msgs.msg import TwistStamped
    from std_srvs.srv import Trigger

    from neurovla_ros.common.rosutil import COMMAND_QOS
    node, st, proc = arm
    twist_pub = node.create_publisher(TwistStamped, '/teleop/twist', COMMAND_QOS)
    release = node.create_client(Trigger, '/cerebellum/release_teleop')
    assert spin_until(node, lambda: len(st['refs']) > 20 and st['diag'], 30.0)
    assert st['diag']['control'] == 'cortex'
    tw = TwistStamped()
    tw.header.frame_id = 'base_link'
    tw.twist.linear.z = 0.05
    for _ in range(10):                      # 0.3 s of jogging up at 30 Hz
        tw.header.stamp = node.get_clock().now().to_msg()
        twist_pub.publish(tw)
        spin_until(node, lambda: False, 1 / 30)
    assert spin_until(node, lambda: st['diag'].get('control') == 'teleop', 5.0), st['diag']
    assert MODEL.fk(st['q'])[2, 3] > MODEL.fk(HOME)[2, 3] + 0.005
    assert spin_until(node, lambda: np.max(np.abs(st['qd'])) < 1e-9, 5.0)   # halted
    held = st['q'].copy()
    goal = HOME + np.array([0.0, 0.0, 0.0, 0.2, 0.0, 0.0])
    st['goal_pub'].publish(joint_goal(goal))
    assert spin_until(node, lambda: int(st['diag'].get('cortex_goals_preempted', 0)) >= 1, 5.0)
    spin_until(node, lambda: False, 0.5)
    np.testing.assert_allclose(st['q'], held, atol=1e-3)     # the cortex goal did not move it
    assert release.wait_for_service(timeout_sec=10.0)
    fut = release.call_async(Trigger.Request())
    assert spin_until(node, fut.done, 10.0) and fut.result().success, fut.result()
    st['goal_pub'].publish(joint_goal(goal))
    assert spin_until(node, lambda: np.max(np.abs(st['q'] - goal)) < 2e-3, 15.0)
    assert spin_until(node, lambda: st['diag'].get('control') == 'cortex', 5.0)
    assert proc.poll() is None
