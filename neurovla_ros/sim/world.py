"""The body: a MuJoCo world built from the arm URDF at start-up, with ros2_control-like drives.

ROS-free (the sim node and the benchmarks wrap it). The world is the scene of :mod:`.scene` (the
arm from ``robot.urdf_xml()`` through ``mujoco.MjSpec``, no second copy of it, plus what a URDF
cannot say), its drives and its disturbances, stepped at 1 ms, and what its sensors and
cameras read.

Conventions
-----------
* ``joint_names``: the /joint_states order, 6 arm joints then left_finger_joint,
  right_finger_joint (the mimic finger follows through an equality constraint).
* One physics step is 1 ms. ``step()`` runs ``mj_step1`` (kinematics, inertia, bias forces and
  position/velocity sensors for the current state), the drive and disturbances, then ``mj_step2``.
  So ``imu()`` and ``wrench()`` describe the state at the start of the last step (MuJoCo's
  convention), at most one step older than ``joint_state()``.
* The drives (:mod:`.drives`): ros2_control-like position, velocity, effort (on top of gravity
  compensation, Franka-style) and trajectory modes, the gripper, the effort watchdog.
  ``gravity_compensation=False`` leaves the compensation out (the servo-bus emulator, whose
  servos carry the arm themselves).
  ``joint_state()`` effort = total applied actuator torque, never beyond the URDF effort limit.
* The disturbances (:mod:`.disturbances`): pushes, tremor, base vibration. The scene
  (:mod:`.scene`): the arm from the URDF, sensors, cameras, table and objects.
* Steps are counted in ``step_count``; a command or disturbance given between steps first acts
  in step number ``step_count`` which starts at sim time ``time`` (that is its onset).
* Sim time keeps running across ``reset()`` (a /clock never goes back).
* The drives' reflected motor inertia (``armature``) comes from the robot model
  (urdf/drives.yaml). MuJoCo sleeping for objects at rest (they wake on contact, a push or a
  reset; the arm never sleeps).
* Wrist wrench: MuJoCo force/torque sensor at tool0 (between wrist_3_link and the gripper),
  expressed in the tool0 frame (z out of the flange): the force and torque that the gripper side
  (gripper weight, contacts, pushes) exerts on the wrist. Raw: the gripper weight is in it.
"""
from __future__ import annotations

import math

import mujoco
import numpy as np

from .. import robot as robot_mod
from .disturbances import Disturbances
from .drives import MODES, ArmDrives  # noqa: F401  (re-exported)
from .scene import (  # noqa: F401
    CAMERAS,
    DT,
    PALETTE,
    SHAPES,
    build_spec,
    camera_specs,
    draw_objects,
    place_objects,
)


class World:
    """The arm on a table with objects, sensors and cameras; see the module docstring."""

    def __init__(self, seed: int = 0, n_objects: int = 4, cameras: bool = False,
                 width: int = 320, height: int = 240, *, position_bandwidth_hz: float = 20.0,
                 velocity_bandwidth_hz: float = 10.0, effort_timeout: float = 0.05,
                 max_acceleration: float = 20.0, sleep: bool = True,
                 gravity_compensation: bool = True):
        if not 0 <= n_objects <= len(PALETTE):
            raise ValueError(f'n_objects: {n_objects} not in 0..{len(PALETTE)}')
        self.robot = robot_mod.load()
        self.width, self.height = int(width), int(height)
        self._rng = np.random.default_rng(seed)
        urdf = robot_mod.urdf_xml()
        self._camera_specs = camera_specs(urdf)
        self._object_specs = draw_objects(self._rng, n_objects)
        spec = build_spec(self.robot, urdf, self._object_specs, self.width, self.height,
                          bool(sleep), bool(gravity_compensation))
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.dt = float(self.model.opt.timestep)
        self._index()
        self.drives = ArmDrives(self.model, self.data, self.robot, self._arm_q, self._arm_d,
                                self._grip_q, self._grip_d,
                                position_bandwidth_hz=position_bandwidth_hz,
                                velocity_bandwidth_hz=velocity_bandwidth_hz,
                                effort_timeout=effort_timeout, max_acceleration=max_acceleration)
        dr = self.drives
        self.lower, self.upper, self.vmax = dr.lower, dr.upper, dr.vmax
        self.effort_limit, self.gripper_range = dr.effort_limit, dr.gripper_range
        self.disturbances = Disturbances(self.model, self.data, self.robot.arm_joints,
                                         self._arm_d)
        self.step_count = 0
        self._renderer = None
        self._imu_noise = (0.0, 0.0)
        self._imu_bias = (np.zeros(3), np.zeros(3))
        self._noise_rng = np.random.default_rng(seed + 7919)
        self._noise = np.zeros((0, 6))  # white noise drawn in blocks (cheap per sample)
        self._noise_i = 0
        self.reset(seed=seed)  # reset(seed=s) reproduces the layout of World(seed=s)
        if cameras:
            self._make_renderer()

    def _index(self):
        m = self.model
        self.joint_names = list(robot_mod.STATE_JOINTS)
        jid = [m.joint(n).id for n in self.joint_names]
        self._qadr = np.array([m.jnt_qposadr[i] for i in jid])
        self._dadr = np.array([m.jnt_dofadr[i] for i in jid])
        self._arm_q = self._as_slice(self._qadr[:6])
        self._arm_d = self._as_slice(self._dadr[:6])
        self._all_q = self._as_slice(self._qadr)
        self._all_d = self._as_slice(self._dadr)
        if not (isinstance(self._arm_q, slice) and isinstance(self._arm_d, slice)):
            raise RuntimeError('the arm joints must come first and in order in the URDF')
        self._grip_q, self._grip_d = int(self._qadr[6]), int(self._dadr[6])

        def sadr(name):
            return int(m.sensor_adr[m.sensor(name).id])
        self._s_quat, self._s_gyro = sadr('imu_quat'), sadr('imu_gyro')
        self._s_acc = sadr('imu_accel')
        self._s_force, self._s_torque = sadr('ft_force'), sadr('ft_torque')
        self._imu_site = m.site('imu').id
        self._body_ids = {m.body(i).name: i for i in range(m.nbody)}
        self._obj_body = [m.body(o['name']).id for o in self._object_specs]
        self._obj_qadr = [m.jnt_qposadr[m.joint(o['name'] + '_free').id]
                          for o in self._object_specs]
        self._obj_dadr = [m.jnt_dofadr[m.joint(o['name'] + '_free').id] for o in self._object_specs]

    @staticmethod
    def _as_slice(idx):
        idx = np.asarray(idx)
        if idx.size and np.all(np.diff(idx) == 1):
            return slice(int(idx[0]), int(idx[-1]) + 1)
        return idx

    @property
    def time(self) -> float:
        return float(self.data.time)

    # ---- the drives (:class:`.drives.ArmDrives`) and disturbances, as the world's own API
    @property
    def mode(self) -> str:
        return self.drives.mode

    @property
    def setpoint(self) -> np.ndarray:
        """The arm drive's current position set-point [rad] (copy)."""
        return self.drives.setpoint

    @property
    def watchdog_trips(self) -> int:
        return self.drives.watchdog_trips

    @property
    def effort_timeout(self) -> float:
        return self.drives.effort_timeout

    @effort_timeout.setter
    def effort_timeout(self, value: float) -> None:
        self.drives.effort_timeout = float(value)

    @property
    def max_acceleration(self) -> float:
        return self.drives.max_acceleration

    @max_acceleration.setter
    def max_acceleration(self, value: float) -> None:
        self.drives.max_acceleration = value

    def set_gains(self, position_bandwidth_hz: float = 20.0,
                  velocity_bandwidth_hz: float = 10.0) -> None:
        self.drives.set_gains(position_bandwidth_hz, velocity_bandwidth_hz)

    def command(self, mode: str, values) -> np.ndarray:
        return self.drives.command(mode, values)

    def command_trajectory(self, points) -> None:
        self.drives.command_trajectory(points)

    def command_gripper(self, opening: float) -> float:
        return self.drives.command_gripper(opening)

    def apply_wrench(self, link: str, force, torque=(0, 0, 0), duration: float = 0.1,
                     frame: str = 'world') -> float:
        return self.disturbances.apply_wrench(self.step_count, link, force, torque, duration,
                                              frame)

    def set_tremor(self, amplitude: float, frequency_hz: float, joint: str | None = None) -> float:
        return self.disturbances.set_tremor(amplitude, frequency_hz, joint)

    def set_base_vibration(self, amplitude: float, frequency_hz: float,
                           direction=(1.0, 0.0, 0.0)) -> float:
        return self.disturbances.set_base_vibration(amplitude, frequency_hz, direction)

    # ---- reset

    def reset(self, q=None, seed=None) -> None:
        """Arm to ``q`` (default: URDF home), gripper open, objects re-placed, disturbances off.

        ``seed`` re-seeds the placement; without it the next layout of this world's random
        stream is drawn. Sim time and the step count keep running.
        """
        m, d = self.model, self.data
        t, steps = d.time, self.step_count
        mujoco.mj_resetData(m, d)
        d.time = t
        self.step_count = steps
        q = self.robot.home_pose() if q is None else np.asarray(q, float)
        if q.shape != (6,) or not np.all(np.isfinite(q)):
            raise ValueError(f'reset: need 6 finite joint positions, got {q!r}')
        q = np.clip(q, self.lower, self.upper)
        d.qpos[self._arm_q] = q
        g_open = self.robot.home.get(robot_mod.GRIPPER_JOINT, self.gripper_range[1])
        d.qpos[self._qadr[6]] = d.qpos[self._qadr[7]] = g_open
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        place_objects(d, self._rng, self._object_specs, self._obj_qadr)
        self.drives.reset(q, g_open)   # hold the new pose
        self.disturbances.clear_pushes()
        mujoco.mj_forward(m, d)

    def set_imu_noise(self, accel_std: float = 0.0, gyro_std: float = 0.0,
                      accel_bias=(0, 0, 0), gyro_bias=(0, 0, 0)) -> None:
        """White noise std [m/s^2], [rad/s] and constant biases added to every IMU reading."""
        self._imu_noise = (float(accel_std), float(gyro_std))
        self._imu_bias = (np.asarray(accel_bias, float).copy(), np.asarray(gyro_bias, float).copy())

    # ------------------------------------------------------------------ stepping
    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps of ``dt``: drives and disturbances act in each."""
        m, d = self.model, self.data
        drive, disturb = self.drives.drive, self.disturbances.apply
        for _ in range(n):
            mujoco.mj_step1(m, d)
            drive()
            disturb(self.step_count)
            mujoco.mj_step2(m, d)
            self.step_count += 1

    # ------------------------------------------------------------------ sensing
    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """q [rad | m], qd, effort (applied actuator torque/force incl. gravity compensation)."""
        d = self.data
        return (d.qpos[self._all_q].copy(), d.qvel[self._all_d].copy(),
                d.qfrc_actuator[self._all_d].copy())

    def joint_state_into(self, q: np.ndarray, qd: np.ndarray, effort: np.ndarray) -> None:
        """``joint_state()`` written into preallocated arrays (no allocation; for 1 kHz loops)."""
        d = self.data
        q[:] = d.qpos[self._all_q]
        qd[:] = d.qvel[self._all_d]
        effort[:] = d.qfrc_actuator[self._all_d]

    @property
    def links(self) -> list[str]:
        """Bodies a wrench can be applied to (robot links and objects)."""
        return [n for n in self._body_ids if n != 'world']

    def imu(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """imu_link orientation quaternion (x, y, z, w) in world, gyro [rad/s] and specific
        force [m/s^2] in the imu frame (+9.81 along the up axis at rest), with noise/bias."""
        sd = self.data.sensordata
        w, x, y, z = sd[self._s_quat:self._s_quat + 4]
        quat = np.array([x, y, z, w])
        gyro = sd[self._s_gyro:self._s_gyro + 3] + self._imu_bias[1]
        acc = sd[self._s_acc:self._s_acc + 3] + self._imu_bias[0]
        a = self.disturbances.base_acceleration()
        if a is not None:
            acc += self.data.site_xmat[self._imu_site].reshape(3, 3).T @ a
        sa, sg = self._imu_noise
        if sa or sg:
            i = self._noise_i
            if i >= len(self._noise):
                self._noise = self._noise_rng.standard_normal((1000, 6))
                i = 0
            self._noise_i = i + 1
            n = self._noise[i]
            if sa:
                acc += sa * n[:3]
            if sg:
                gyro += sg * n[3:]
        return quat, gyro, acc

    def wrench(self) -> tuple[np.ndarray, np.ndarray]:
        """Wrist force [N] and torque [N m] in tool0 (see the module docstring)."""
        sd = self.data.sensordata  # MuJoCo reports what the wrist exerts on the gripper side
        return (-sd[self._s_force:self._s_force + 3], -sd[self._s_torque:self._s_torque + 3])

    def objects(self) -> list[dict]:
        """name, colour, shape, size (full extents x, y, z [m]), position and quaternion
        (x, y, z, w) in base_link, rgba."""
        d = self.data
        out = []
        for o, b in zip(self._object_specs, self._obj_body):
            w, x, y, z = d.xquat[b]
            out.append({'name': o['name'], 'colour': o['colour'], 'shape': o['shape'],
                        'size': (2 * o['half']).tolist(), 'position': d.xpos[b].tolist(),
                        'quaternion': [float(x), float(y), float(z), float(w)],
                        'rgba': list(o['rgba'])})
        return out

    def body_pose(self, link: str) -> tuple[np.ndarray, np.ndarray]:
        """Position and 3x3 rotation of a link in world (= base_link)."""
        b = self._body_ids[link]
        return self.data.xpos[b].copy(), self.data.xmat[b].reshape(3, 3).copy()

    def warnings(self) -> dict[str, int]:
        """MuJoCo warnings raised so far (name -> count), empty when none."""
        return {mujoco.mjtWarning(i).name: int(w.number)
                for i, w in enumerate(self.data.warning) if w.number}

    # ------------------------------------------------------------------ cameras
    def _make_renderer(self):
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
        return self._renderer

    def render(self, camera: str = 'scene_camera') -> np.ndarray:
        """HxWx3 uint8 RGB image of ``camera`` ('scene_camera' | 'wrist_camera')."""
        if camera not in CAMERAS:
            raise KeyError(camera)
        r = self._make_renderer()
        r.update_scene(self.data, camera=camera)
        return r.render()

    def camera_info(self, camera: str = 'scene_camera') -> dict:
        """Pinhole intrinsics of ``camera`` at this world's resolution (ROS CameraInfo fields)."""
        if camera not in CAMERAS:
            raise KeyError(camera)
        w, h = self.width, self.height
        fx = (w / 2.0) / math.tan(self._camera_specs[camera]['hfov'] / 2.0)
        k = [fx, 0.0, w / 2.0, 0.0, fx, h / 2.0, 0.0, 0.0, 1.0]
        return {'width': w, 'height': h, 'frame_id': f'{camera}_optical_frame',
                'distortion_model': 'plumb_bob', 'd': [0.0] * 5, 'k': k,
                'r': [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                'p': [fx, 0.0, w / 2.0, 0.0, 0.0, fx, h / 2.0, 0.0, 0.0, 0.0, 1.0, 0.0]}

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
