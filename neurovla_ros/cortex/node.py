"""The ``cortex`` node: camera + instruction + joint states -> goals, inference off the executor.

Interfaces:
  subscribes  /camera/image_raw [sensor_msgs/Image, rgb8 or bgr8]
              /camera/camera_info [sensor_msgs/CameraInfo]
              /cortex/instruction [std_msgs/String] (also the ``instruction`` parameter)
              /joint_states [sensor_msgs/JointState]
              estop, spinal/safety [latched]: the robot's stop state, reported (robot_stopped)
  publishes   /cortex/goal_pose [geometry_msgs/PoseStamped, tcp goal in base_link]
              /cortex/joint_goal [trajectory_msgs/JointTrajectory] (joint-space policies)
              /gripper_controller/commands [std_msgs/Float64MultiArray, finger opening m]
              /diagnostics [diagnostic_msgs/DiagnosticArray] (backend, latency, last error)
Parameters: ``neurovla_ros.cortex.params``. The planning loop (``core.Cortex``) runs in its own
thread; the callbacks only store the newest inputs and the goal timer re-publishes the last
safe goal. With ``dry_run`` (settable at run time) the node plans as usual but publishes no goal
pose, joint goal or gripper command; /diagnostics says what it would send.
"""
from __future__ import annotations

import re
import time

import numpy as np
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy._rclpy_pybind11 import RCLError
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from .. import robot
from ..common.cdr import ImageReader, rgb_image
from ..common.limits import invalid_reason
from ..common.rosutil import (
    COMMAND_QOS,
    LATEST_QOS,
    SENSOR_QOS,
    LatestSample,
    StopSignal,
    Throttled,
    cap_torch_threads,
    declare_params,
    decoder,
    diagnostic_status,
    go_realtime,
    run,
)
from ..robot.transforms import matrix_to_quat_xyzw
from . import backends
from .camera import Camera
from .core import Cortex, workspace_array
from .params import NODE_NAME, PARAMS, core_settings

DEFAULT_CAMERA_FRAME = 'scene_camera_optical_frame'


class CortexNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self._log = Throttled(self.get_logger())   # warnings about input, per kind
        self._rejected = {'image': 0, 'wrist_image': 0, 'joint_states': 0, 'instruction': 0}
        p = self.p = declare_params(
            self, PARAMS, check=lambda w: workspace_array(core_settings(w)['workspace']))
        go_realtime(self)       # before the model loads: start-up is most of the CPU it needs
        cap_torch_threads(p.torch_threads)
        self.model = robot.load()
        self.arm = list(self.model.arm_joints)
        self._fingers = list(robot.FINGER_JOINTS)
        backend = backends.make(
            p.backend, checkpoint=p.checkpoint, server_uri=p.server_uri,
            statistics_file=p.statistics_file, statistics_key=p.statistics_key,
            openpi_layout=p.openpi_layout, openpi_action_space=p.openpi_action_space,
            action_dt=p.action_dt,
            connect_timeout=p.connect_timeout_s, reply_timeout=p.reply_timeout_s,
            backoff_initial=p.backoff_initial_s, backoff_max=p.backoff_max_s,
            max_reply_bytes=p.max_reply_bytes, max_array_elements=p.max_array_elements,
            translation_scale=p.translation_scale, rotation_scale=p.rotation_scale,
            ensemble_horizon=p.ensemble_horizon, gripper_opening=p.gripper_opening,
            gripper_convention=p.gripper_convention, threads=p.torch_threads)
        self.core = Cortex(backend, rate_hz=p.plan_rate_hz, model=self.model,
                           **core_settings(p))
        self.core.set_instruction(p.instruction)
        self.add_post_set_parameters_callback(self._on_params)
        self._camera = None
        self._camera_key = None
        self._joint_index = None
        self._joint_names = None
        self.core.joints_provider = self._joints
        self._last_traj_id = -1
        self._logged_status = None      # (level, message shape) last logged

        self._image_reader = ImageReader(decoder(Image))
        self.create_subscription(Image, 'camera/image_raw', self._on_image, LATEST_QOS,
                                 raw=True)
        self.create_subscription(CameraInfo, 'camera/camera_info', self._on_info, LATEST_QOS)
        if getattr(backend, 'needs_wrist_image', False):
            self.create_subscription(Image, 'wrist_camera/image_raw', self._on_wrist_image,
                                     LATEST_QOS, raw=True)
        self.create_subscription(String, 'cortex/instruction', self._on_instruction,
                                 COMMAND_QOS)
        # 1 kHz stream read at the planning rate: taken when needed, no callback per message
        self._joint_states = LatestSample(self, JointState, 'joint_states')
        self.pub_goal = self.create_publisher(PoseStamped, 'cortex/goal_pose', COMMAND_QOS)
        self.pub_traj = self.create_publisher(JointTrajectory, 'cortex/joint_goal', COMMAND_QOS)
        self.pub_grip = self.create_publisher(Float64MultiArray, 'gripper_controller/commands',
                                              COMMAND_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', SENSOR_QOS)
        self._goal_msg = PoseStamped()
        self._goal_msg.header.frame_id = 'base_link'
        self._grip_msg = Float64MultiArray()
        self._grip_last, self._grip_t = None, 0.0
        self._published = self._withheld = 0     # goals sent / held back by dry_run
        self._would_send: dict = {}
        self.create_timer(1.0 / p.goal_rate_hz, self._publish_goal)
        self.create_timer(1.0 / p.diagnostics_rate_hz, self._publish_diagnostics)
        # the robot's stop state (estop, spinal/safety): reported; the cerebellum holds
        self._stop = StopSignal(self, lambda reason: self.get_logger().warning(
            f'robot {reason}' if reason else 'robot resumed'))
        self.core.start()
        self.get_logger().info(f'cortex up: backend {p.backend}, instruction {p.instruction!r}')

    # ---- inputs ----
    def _warn(self, what: str, msg: str) -> None:
        self._log.warning(what, msg)

    def _reject(self, what: str, msg: str) -> None:
        """An input refused: counted per kind (rejected_<kind> in /diagnostics), warned."""
        self._rejected[what] = self._rejected.get(what, 0) + 1
        self._warn(what, msg)

    def _on_params(self, params) -> None:
        """A parameter set at run time takes effect at the next plan (dry_run: the next goal)."""
        names = {prm.name for prm in params}
        if 'instruction' in names:
            self.core.set_instruction(self.p.instruction)
        if names - {'instruction', 'dry_run'}:
            self.core.configure(**core_settings(self.p))

    def _on_instruction(self, msg: String) -> None:
        """The topic sets the ``instruction`` parameter (so both say the same); the parameter
        callback hands it to the planner."""
        result = self.set_parameters([Parameter('instruction', value=msg.data)])[0]
        if result.successful:
            self.get_logger().info(f'instruction: {msg.data!r}')
        else:
            self._reject('instruction', f'instruction refused: {result.reason}')

    def _on_info(self, msg: CameraInfo) -> None:
        key = (tuple(msg.k), msg.width, msg.height, msg.header.frame_id)
        if key == self._camera_key:
            return
        frame = self.p.camera_frame or msg.header.frame_id or DEFAULT_CAMERA_FRAME
        if frame not in {j.child for j in self.model.joints.values()}:
            self._warn('camera_info', f'camera frame {frame!r} is not in the URDF; using '
                       f'{DEFAULT_CAMERA_FRAME}')
            frame = DEFAULT_CAMERA_FRAME
        try:
            self._camera = Camera.from_info(msg.k, msg.width, msg.height, frame, self.model)
        except ValueError as e:
            self._warn('camera_info', f'ignoring camera_info: {e}')
            return
        self._camera_key = key
        self.core.set_camera(self._camera)

    def _decode_image(self, buf: bytes, what: str):
        """HxWx3 RGB read in place from the serialized bytes (no 230 KB message object per
        frame), or None with a warning."""
        rd = self._image_reader
        if rd.read(buf) is None:
            self._reject(what, f'ignoring an image: {rd.error}')
            return None
        img, why = rgb_image(rd.encoding, rd.height, rd.width, rd.step, rd.data)
        if img is None:
            self._reject(what, f'ignoring image: {why}')
        return img

    def _on_image(self, buf: bytes) -> None:
        img = self._decode_image(buf, 'image')
        if img is None:
            return
        cam = self._camera
        h, w = img.shape[:2]
        if cam is not None and (cam.width, cam.height) != (w, h):
            self._reject('image',
                         f'image is {w}x{h} but camera_info says {cam.width}x{cam.height}')
            return
        self.core.set_image(img)

    def _on_wrist_image(self, buf: bytes) -> None:
        img = self._decode_image(buf, 'wrist_image')
        if img is not None:
            self.core.set_wrist_image(img)

    def _joints(self):
        """(arm q, fingers, monotonic stamp) of the newest valid /joint_states, else None."""
        buf = self._joint_states.take()
        if buf is None:
            return None
        stamp = time.monotonic()
        try:    # a message of its own: the planning thread and the goal timer both call this
            msg = deserialize_message(buf, JointState)
        except Exception as e:  # noqa: BLE001 - a damaged sample must not end the node
            self._reject('joint_states', f'ignoring an undecodable /joint_states ({e})')
            return None
        names = list(msg.name)
        if names != self._joint_names:
            try:
                self._joint_index = [names.index(n) for n in self.arm + self._fingers]
            except ValueError:
                missing = [n for n in self.arm + self._fingers if n not in names]
                self._reject('joint_states', f'/joint_states lacks {missing}; ignoring it')
                return None
            self._joint_names = names
        pos = msg.position
        if len(pos) != len(names):
            self._reject('joint_states',
                       f'/joint_states has {len(pos)} positions for {len(names)} names')
            return None
        values = np.array([pos[i] for i in self._joint_index], float)
        bad = invalid_reason(values, 8)
        if bad:
            self._reject('joint_states', f'ignoring /joint_states: {bad}')
            return None
        return values[:6], values[6:], stamp

    # ---- outputs ----
    def _publish_goal(self) -> None:
        goal = self.core.goal()
        if goal is None:
            return
        if self.p.dry_run:      # planned, not sent: the diagnostics say what it would be
            self._withheld += 1
            self._would_send = {
                'would_send': 'joint_goal' if goal.trajectory is not None else 'goal_pose',
                'would_send_position_m': [float(v) for v in goal.position],
                'would_send_stage': goal.stage}
            if goal.gripper is not None:
                self._would_send['would_send_gripper_m'] = float(goal.gripper)
            return
        self._published += 1
        now = self.get_clock().now().to_msg()
        if goal.trajectory is not None:
            if goal.plan_id != self._last_traj_id:
                self._last_traj_id = goal.plan_id
                self.pub_traj.publish(self._trajectory(goal.trajectory, now))
        else:
            m = self._goal_msg
            m.header.stamp = now
            pos = m.pose.position
            pos.x, pos.y, pos.z = (float(v) for v in goal.position)
            o = m.pose.orientation
            o.x, o.y, o.z, o.w = (float(v) for v in matrix_to_quat_xyzw(goal.rotation))
            self.pub_goal.publish(m)
        # the gripper command only when it changes (and once a second): it shares the sim's
        # command budget with the 1 kHz spinal stream
        now_s = time.monotonic()
        if goal.gripper is not None and (goal.gripper != self._grip_last or
                                         now_s - self._grip_t > 1.0):
            self._grip_last, self._grip_t = goal.gripper, now_s
            self._grip_msg.data = [float(goal.gripper)]
            self.pub_grip.publish(self._grip_msg)

    def _trajectory(self, points, stamp) -> JointTrajectory:
        msg = JointTrajectory()
        msg.header.stamp = stamp
        msg.header.frame_id = 'base_link'
        msg.joint_names = self.arm
        for t, q in points:
            pt = JointTrajectoryPoint()
            pt.positions = [float(v) for v in q]
            sec = int(t)
            pt.time_from_start = Duration(sec=sec, nanosec=int(round((t - sec) * 1e9)))
            msg.points.append(pt)
        return msg

    def _publish_diagnostics(self) -> None:
        s = self.core.status()
        values = {**s.values, 'dry_run': self.p.dry_run, 'goals_published': self._published,
                  'goals_withheld': self._withheld,
                  'robot_stopped': self._stop.reason or 'false',
                  **{f'rejected_{k}': n for k, n in self._rejected.items()}}
        message = s.message
        if self.p.dry_run:
            values.update(self._would_send)
            message += ' (dry run: no goals published)'
        st = diagnostic_status(f'{NODE_NAME}: planner', values, s.level, message,
                               s.values.get('backend', ''))
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        try:
            self.pub_diag.publish(arr)
        except RCLError:      # shutting down (the context went away under the timer)
            return
        # one log line per change of state, not one per diagnostics period
        key = (s.level, re.sub(r'[0-9.]+', '#', s.message))
        if key != self._logged_status:
            if s.level > 0:
                self._warn('backend', s.message)
            elif self._logged_status is not None and self._logged_status[0] > 0:
                self.get_logger().info(s.message)
            self._logged_status = key

    def close(self) -> None:
        self.core.stop()
        self._joint_states.destroy()


def main(args=None) -> int:
    return run(CortexNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
