"""The body: a MuJoCo world built from the arm URDF at start-up, with ros2_control-like drives.

ROS-free (the sim node and the benchmarks wrap it). The arm comes from ``robot.urdf_xml()``
through ``mujoco.MjSpec``; this module only adds what a URDF cannot say: torque motors with the
URDF effort limits, IMU and wrist force/torque sensors, cameras, lights, a table (top at z = 0 of
base_link) and coloured objects. There is no second copy of the arm.

Conventions
-----------
* ``joint_names``: the /joint_states order, 6 arm joints then left_finger_joint,
  right_finger_joint (the mimic finger follows through an equality constraint).
* One physics step is 1 ms. ``step()`` runs ``mj_step1`` (kinematics, inertia, bias forces and
  position/velocity sensors for the current state), the drive and disturbances, then ``mj_step2``.
  So ``imu()`` and ``wrench()`` describe the state at the start of the last step (MuJoCo's
  convention), at most one step older than ``joint_state()``.
* Gravity is compensated by the drives in every mode (MuJoCo ``gravcomp`` routed through the
  joint actuators, so it counts against the URDF effort limit). Effort mode = commanded torque on
  top of gravity compensation, Franka-style. ``joint_state()`` effort = total applied actuator
  torque, never beyond the URDF effort limit.
* Position mode: a stiff servo whose gains are scaled by the joint-space inertia (computed
  torque: ``tau = M (kp e + kd ed) + coriolis + damping qd_ref + gravity``); its set-point moves
  toward the target at no more than the URDF velocity limit and stays inside the URDF range.
  Velocity mode: the set-point integrates the (clamped) commanded velocity, the same servo
  tracks it. Trajectory mode: cubic Hermite interpolation feeds the position servo, then holds
  the last point. Effort watchdog: no effort command for ``effort_timeout`` [s] -> hold position.
* Steps are counted in ``step_count``; a command or disturbance given between steps first acts
  in step number ``step_count`` which starts at sim time ``time`` (that is its onset).
* Sim time keeps running across ``reset()`` (a /clock never goes back).
* From the robot model's drive properties (urdf/drives.yaml): the reflected motor inertia
  (``armature``) of each joint. Added here: MuJoCo sleeping for objects at rest (they wake on contact, a push
  or a reset; the arm never sleeps).
* Wrist wrench: MuJoCo force/torque sensor at tool0 (between wrist_3_link and the gripper),
  expressed in the tool0 frame (z out of the flange): the force and torque that the gripper side
  (gripper weight, contacts, pushes) exerts on the wrist. Raw: the gripper weight is in it.
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET

import numpy as np

os.environ.setdefault('MUJOCO_GL', 'egl')
import mujoco  # noqa: E402  (MUJOCO_GL must be set before the import)

from .. import robot as robot_mod  # noqa: E402

DT = 0.001
PALETTE = (  # name, rgb
    ('red', (0.85, 0.12, 0.10)), ('green', (0.12, 0.70, 0.20)), ('blue', (0.12, 0.30, 0.90)),
    ('yellow', (0.95, 0.85, 0.10)), ('orange', (1.00, 0.50, 0.05)), ('purple', (0.55, 0.20, 0.75)),
    ('cyan', (0.10, 0.80, 0.85)), ('white', (0.95, 0.95, 0.95)))
SHAPES = ('cube', 'ball', 'cylinder')
OBJECT_X = (0.3, 0.7)      # placement area in base_link [m]
OBJECT_Y = (-0.3, 0.3)
OBJECT_MIN_GAP = 0.09      # minimum centre distance between objects [m]
TABLE_EXTENT = ((-0.25, 0.95), (-0.6, 0.6))  # table top x, y range [m]
TABLE_THICKNESS = 0.04
# collision groups: the arm touches the table and objects, never itself
ARM_CONTYPE, ARM_CONAFFINITY = 1, 2
WORLD_CONTYPE, WORLD_CONAFFINITY = 2, 3
# tremor pattern over the wrist joints when no joint is named: relative amplitude and phase
TREMOR_PATTERN = {'wrist_1_joint': (1.0, 0.0), 'wrist_2_joint': (0.7, 2.0944),
                  'wrist_3_joint': (0.5, 4.1888)}
CAMERAS = ('scene_camera', 'wrist_camera')
DEFAULT_HFOV = {'scene_camera': 1.047, 'wrist_camera': 1.2}  # [rad], used if the URDF lacks one
MODES = ('position', 'velocity', 'effort', 'trajectory')


def camera_specs(urdf: str) -> dict[str, dict]:
    """Horizontal field of view and clip range of each camera from the URDF's gazebo sensors."""
    out = {c: {'hfov': DEFAULT_HFOV[c], 'near': 0.02, 'far': 5.0} for c in CAMERAS}
    for gz in ET.fromstring(urdf).findall('gazebo'):
        ref = gz.get('reference', '')
        cam = ref[:-len('_link')] if ref.endswith('_link') else ref
        sensor = gz.find("sensor[@type='camera']")
        if cam in out and sensor is not None:
            for key, path in (('hfov', 'camera/horizontal_fov'), ('near', 'camera/clip/near'),
                              ('far', 'camera/clip/far')):
                el = sensor.find(path)
                if el is not None and el.text:
                    out[cam][key] = float(el.text)
    return out


class World:
    """The arm on a table with objects, sensors and cameras; see the module docstring."""

    def __init__(self, seed: int = 0, n_objects: int = 4, cameras: bool = False,
                 width: int = 320, height: int = 240, *, position_bandwidth_hz: float = 20.0,
                 velocity_bandwidth_hz: float = 10.0, effort_timeout: float = 0.05,
                 max_acceleration: float = 20.0, sleep: bool = True):
        if not 0 <= n_objects <= len(PALETTE):
            raise ValueError(f'n_objects: {n_objects} not in 0..{len(PALETTE)}')
        self.robot = robot_mod.load()
        self.width, self.height = int(width), int(height)
        self._rng = np.random.default_rng(seed)
        urdf = robot_mod.urdf_xml()
        self._camera_specs = camera_specs(urdf)
        self._object_specs = self._draw_objects(n_objects)
        self._sleep = bool(sleep)
        spec = self._build_spec(urdf)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self.dt = float(self.model.opt.timestep)
        self._index()
        self._views()
        self.effort_timeout = float(effort_timeout)
        self.max_acceleration = float(max_acceleration)  # set-point profiles [rad/s^2]
        self.set_gains(position_bandwidth_hz, velocity_bandwidth_hz)
        self.step_count = 0
        self.watchdog_trips = 0
        self._renderer = None
        self._wrenches: list[list] = []
        self._xfrc_dirty = False
        self._tremor_amp = np.zeros(6)
        self._tremor_phase = np.zeros(6)
        self._tremor_omega = 0.0
        self._tremor_on = False
        self._vib_amp = np.zeros(3)
        self._vib_omega = 0.0
        self._vib_on = False
        self._imu_noise = (0.0, 0.0)
        self._imu_bias = (np.zeros(3), np.zeros(3))
        self._noise_rng = np.random.default_rng(seed + 7919)
        self._noise = np.zeros((0, 6))  # white noise drawn in blocks (cheap per sample)
        self._noise_i = 0
        self.reset(seed=seed)  # reset(seed=s) reproduces the layout of World(seed=s)
        if cameras:
            self._make_renderer()

    # ------------------------------------------------------------------ building
    def _draw_objects(self, n: int) -> list[dict]:
        rng = self._rng
        colours = rng.permutation(len(PALETTE))[:n]
        out = []
        for i, c in enumerate(colours):
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            if shape == 'cube':
                h = float(rng.uniform(0.02, 0.026))
                half = (h, h, h)
            elif shape == 'ball':
                r = float(rng.uniform(0.02, 0.026))
                half = (r, r, r)
            else:
                r, h = float(rng.uniform(0.018, 0.025)), float(rng.uniform(0.02, 0.03))
                half = (r, r, h)
            name, rgb = PALETTE[int(c)]
            out.append({'name': f'object_{i}', 'colour': name, 'shape': shape,
                        'half': np.array(half), 'rgba': (*rgb, 1.0)})
        return out

    def _build_spec(self, urdf: str):
        spec = mujoco.MjSpec.from_string(urdf)
        spec.modelname = 'neurovla_world'
        spec.option.timestep = DT
        spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        if self._sleep:  # objects at rest sleep (halves the step cost); the arm never does
            spec.option.enableflags |= mujoco.mjtEnableBit.mjENBL_SLEEP
        arm = self.robot.arm_joints
        gripper = robot_mod.GRIPPER_JOINT
        # every robot body: gravity compensated through its joints' actuators; no self-collision
        for body in spec.bodies:
            if body.name == 'world':
                continue
            body.gravcomp = 1.0
            for g in body.geoms:
                g.contype, g.conaffinity = ARM_CONTYPE, ARM_CONAFFINITY
        armature = dict(zip(arm, self.robot.armature()))
        for j in spec.joints:
            j.actgravcomp = True
            if j.name in armature:  # reflected motor inertia of the drive (robot model)
                j.armature = armature[j.name]
        for name in (*arm, gripper):
            eff = self.robot.joints[name].effort
            act = spec.add_actuator(name=name, target=name,
                                    trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_motor()
            act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
            act.ctrlrange = [-eff, eff]
        # sensor sites and sensors
        spec.body('imu_link').add_site(name='imu')
        spec.body('tool0').add_site(name='ft')
        spec.body('tcp_link').add_site(name='tcp')
        site = mujoco.mjtObj.mjOBJ_SITE
        st = mujoco.mjtSensor
        for name, typ, obj in (('imu_quat', st.mjSENS_FRAMEQUAT, 'imu'),
                               ('imu_gyro', st.mjSENS_GYRO, 'imu'),
                               ('imu_accel', st.mjSENS_ACCELEROMETER, 'imu'),
                               ('ft_force', st.mjSENS_FORCE, 'ft'),
                               ('ft_torque', st.mjSENS_TORQUE, 'ft')):
            spec.add_sensor(name=name, type=typ, objtype=site, objname=obj)
        # cameras: MuJoCo cameras look along -z with y up; the optical frame (z forward, y down)
        # is the same frame turned half a turn about x.
        aspect = self.height / self.width
        for cam in CAMERAS:
            hfov = self._camera_specs[cam]['hfov']
            fovy = 2.0 * math.degrees(math.atan(math.tan(hfov / 2.0) * aspect))
            spec.body(f'{cam}_optical_frame').add_camera(name=cam, quat=[0, 1, 0, 0], fovy=fovy)
        # lights, headlight, offscreen buffer
        spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
        spec.visual.headlight.diffuse = [0.35, 0.35, 0.35]
        spec.visual.global_.offwidth = max(640, self.width)
        spec.visual.global_.offheight = max(480, self.height)
        wb = spec.worldbody
        wb.add_light(name='sun', type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                     pos=[0.3, -0.5, 2.5], dir=[-0.1, 0.2, -1.0], diffuse=[0.6, 0.6, 0.6],
                     castshadow=False)
        wb.add_light(name='fill', type=mujoco.mjtLightType.mjLIGHT_SPOT, pos=[1.2, 0.6, 1.5],
                     dir=[-0.6, -0.4, -1.0], diffuse=[0.35, 0.35, 0.35], castshadow=False)
        # table (top at z = 0 of base_link, which coincides with world) and floor
        (x0, x1), (y0, y1) = TABLE_EXTENT
        wb.add_geom(name='table', type=mujoco.mjtGeom.mjGEOM_BOX,
                    size=[(x1 - x0) / 2, (y1 - y0) / 2, TABLE_THICKNESS / 2],
                    pos=[(x0 + x1) / 2, (y0 + y1) / 2, -TABLE_THICKNESS / 2],
                    rgba=[0.62, 0.48, 0.34, 1], contype=WORLD_CONTYPE,
                    conaffinity=WORLD_CONAFFINITY)
        wb.add_geom(name='floor', type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1],
                    pos=[0, 0, -0.75], rgba=[0.45, 0.47, 0.5, 1], contype=0, conaffinity=0)
        # objects: free bodies, placed by reset()
        gt = {'cube': mujoco.mjtGeom.mjGEOM_BOX, 'ball': mujoco.mjtGeom.mjGEOM_SPHERE,
              'cylinder': mujoco.mjtGeom.mjGEOM_CYLINDER}
        for o in self._object_specs:
            b = wb.add_body(name=o['name'], pos=[0.5, 0, 0.1])
            b.add_freejoint(name=o['name'] + '_free')
            h = o['half']
            size = {'cube': h, 'ball': [h[0], 0, 0], 'cylinder': [h[0], h[2], 0]}[o['shape']]
            ball = o['shape'] == 'ball'
            b.add_geom(name=o['name'], type=gt[o['shape']], size=size, rgba=list(o['rgba']),
                       mass=0.08, contype=WORLD_CONTYPE, conaffinity=WORLD_CONAFFINITY,
                       condim=6 if ball else 3,
                       friction=[1.0, 0.005, 0.002 if ball else 0.0001])
        return spec

    def _index(self):
        m = self.model
        arm = self.robot.arm_joints
        self.joint_names = list(robot_mod.STATE_JOINTS)
        jid = [m.joint(n).id for n in self.joint_names]
        self._qadr = np.array([m.jnt_qposadr[i] for i in jid])
        self._dadr = np.array([m.jnt_dofadr[i] for i in jid])
        self._arm_q = self._as_slice(self._qadr[:6])
        self._arm_d = self._as_slice(self._dadr[:6])
        self._all_q = self._as_slice(self._qadr)
        self._all_d = self._as_slice(self._dadr)
        self._grip_q, self._grip_d = int(self._qadr[6]), int(self._dadr[6])
        self._act_arm = slice(m.actuator(arm[0]).id, m.actuator(arm[0]).id + 6)
        self._act_grip = m.actuator(robot_mod.GRIPPER_JOINT).id
        lim = self.robot.limits(arm)
        self.lower, self.upper = lim['lower'], lim['upper']
        self.vmax, self.effort_limit = lim['velocity'], lim['effort']
        self.damping = m.dof_damping[self._arm_d].copy()
        g = self.robot.joints[robot_mod.GRIPPER_JOINT]
        self.gripper_range = (g.lower, g.upper)
        self.gripper_vmax, self.gripper_effort = g.velocity, g.effort

        def sadr(name):
            return int(m.sensor_adr[m.sensor(name).id])
        self._s_quat, self._s_gyro, self._s_acc = sadr('imu_quat'), sadr('imu_gyro'), sadr('imu_accel')
        self._s_force, self._s_torque = sadr('ft_force'), sadr('ft_torque')
        self._imu_site = m.site('imu').id
        self._body_ids = {m.body(i).name: i for i in range(m.nbody)}
        self._obj_body = [m.body(o['name']).id for o in self._object_specs]
        self._obj_qadr = [m.jnt_qposadr[m.joint(o['name'] + '_free').id] for o in self._object_specs]
        self._obj_dadr = [m.jnt_dofadr[m.joint(o['name'] + '_free').id] for o in self._object_specs]
        # moving bodies (feel a base vibration as an inertial force)
        self._moving = np.array([i for i in range(1, m.nbody) if m.body_weldid[i] != 0], int)
        self._moving_mass = m.body_mass[self._moving].copy()
        # preallocated work arrays and views into MjData (its buffers live as long as it does)
        self._vec = np.zeros(m.nv)
        self._res = np.zeros(m.nv)
        self._t1, self._t2 = np.zeros(6), np.zeros(6)
        self._vdt = self.vmax * DT
        self._neg_vdt = -self._vdt
        self._inv_dt = 1.0 / DT
        self._g_vdt = self.gripper_vmax * DT

    def _views(self):
        d = self.data
        if not (isinstance(self._arm_q, slice) and isinstance(self._arm_d, slice)):
            raise RuntimeError('the arm joints must come first and in order in the URDF')
        self._q, self._qd = d.qpos[self._arm_q], d.qvel[self._arm_d]
        self._bias, self._gravcomp = d.qfrc_bias[self._arm_d], d.qfrc_gravcomp[self._arm_d]
        self._ctrl = d.ctrl[self._act_arm]
        self._vec_arm, self._res_arm = self._vec[self._arm_d], self._res[self._arm_d]

    @staticmethod
    def _as_slice(idx):
        idx = np.asarray(idx)
        if idx.size and np.all(np.diff(idx) == 1):
            return slice(int(idx[0]), int(idx[-1]) + 1)
        return idx

    def set_gains(self, position_bandwidth_hz: float = 20.0,
                  velocity_bandwidth_hz: float = 10.0) -> None:
        """Servo bandwidths [Hz] (critically damped, scaled by the joint-space inertia)."""
        wp = 2 * math.pi * position_bandwidth_hz
        wv = 2 * math.pi * velocity_bandwidth_hz
        self._kp, self._kd = wp * wp, 2.0 * wp
        self._kp_v, self._kd_v = wv * wv, 2.0 * wv
        self._kp_g, self._kd_g = 2000.0, 60.0  # gripper finger [N/m], [N s/m]

    # ------------------------------------------------------------------ state
    @property
    def max_acceleration(self) -> float:
        """Acceleration limit [rad/s^2] of set-point profiles (position jumps, velocity mode)."""
        return self._amax

    @max_acceleration.setter
    def max_acceleration(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f'max_acceleration: {value!r} must be > 0')
        self._amax = float(value)
        self._adt = np.full(6, self._amax * DT)
        self._neg_adt = -self._adt

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def mode(self) -> str:
        return self._mode

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
        self._place_objects()
        # drives: hold the new pose
        self._mode = 'position'
        self._target = q.copy()
        self._sp = q.copy()
        self._qd_sp = np.zeros(6)
        self._v_cmd = np.zeros(6)
        self._tau_cmd = np.zeros(6)
        self._effort_time = d.time
        self._traj = None
        self._profiling = False
        self._g_target = self._g_sp = g_open
        self._wrenches.clear()
        d.xfrc_applied[:] = 0.0
        d.qfrc_applied[:] = 0.0
        mujoco.mj_forward(m, d)

    def _place_objects(self):
        d, rng = self.data, self._rng
        placed = []
        for o, qa in zip(self._object_specs, self._obj_qadr):
            for _ in range(1000):
                p = np.array([rng.uniform(*OBJECT_X), rng.uniform(*OBJECT_Y)])
                if all(np.linalg.norm(p - other) >= OBJECT_MIN_GAP for other in placed):
                    break
            placed.append(p)
            yaw = rng.uniform(-math.pi, math.pi) if o['shape'] == 'cube' else 0.0
            d.qpos[qa:qa + 3] = (p[0], p[1], o['half'][2])
            d.qpos[qa + 3:qa + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))

    # ------------------------------------------------------------------ commands
    def command(self, mode: str, values) -> np.ndarray:
        """Set the arm drive: 'position' [rad], 'velocity' [rad/s] or 'effort' [N m] (6 values).

        Values are clamped to the URDF limits; returns what the drive will use.
        """
        v = np.asarray(values, float)
        if v.shape != (6,) or not np.all(np.isfinite(v)):
            raise ValueError(f'command: need 6 finite values, got {values!r}')
        prev = self._mode
        if prev == 'effort' and mode in ('position', 'velocity'):  # bumpless: from the state
            self._sp[:] = self._q
            self._qd_sp[:] = self._qd
        if mode == 'position':
            self._target = np.clip(v, self.lower, self.upper)
            self._traj = None
            self._mode = 'position'
            return self._target.copy()
        if mode == 'velocity':
            self._v_cmd = np.clip(v, -self.vmax, self.vmax)
            self._traj = None
            self._mode = 'velocity'
            return self._v_cmd.copy()
        if mode == 'effort':
            self._tau_cmd = np.clip(v, -self.effort_limit, self.effort_limit)
            self._effort_time = self.data.time
            self._traj = None
            self._mode = 'effort'
            return self._tau_cmd.copy()
        raise ValueError(f'command: unknown mode {mode!r} (position | velocity | effort)')

    def command_trajectory(self, points) -> None:
        """Follow ``points`` = [(t_from_now [s], q[6], qd[6] or None), ...] (times increasing).

        Cubic Hermite segments from the current set-point; a missing velocity is the mean of the
        neighbouring segment slopes (zero at a turning point and at the last point).
        """
        pts = sorted(((float(t), np.clip(np.asarray(q, float), self.lower, self.upper),
                       None if qd is None else np.asarray(qd, float)) for t, q, qd in points),
                     key=lambda p: p[0])
        if not pts:
            raise ValueError('command_trajectory: no points')
        for t, q, qd in pts:
            if not (math.isfinite(t) and q.shape == (6,) and np.all(np.isfinite(q))
                    and (qd is None or (qd.shape == (6,) and np.all(np.isfinite(qd))))):
                raise ValueError('command_trajectory: need finite times, q[6] and qd[6]/None')
        if self._mode == 'effort':
            self._sp[:] = self._q
            self._qd_sp[:] = self._qd
        now = self.data.time
        pts = [p for p in pts if p[0] > 1e-9] or [(self.dt, pts[-1][1], pts[-1][2])]
        times = np.array([now] + [now + p[0] for p in pts])
        if np.any(np.diff(times) <= 0):
            raise ValueError('command_trajectory: times must increase')
        qs = np.array([self._sp] + [p[1] for p in pts])
        vs = np.zeros_like(qs)
        vs[0] = np.clip(self._qd_sp, -self.vmax, self.vmax)
        slopes = np.diff(qs, axis=0) / np.diff(times)[:, None]
        for k, p in enumerate(pts, start=1):
            if p[2] is not None:
                vs[k] = np.clip(p[2], -self.vmax, self.vmax)
            elif k < len(pts):
                a, b = slopes[k - 1], slopes[k]
                vs[k] = np.where(a * b > 0, 0.5 * (a + b), 0.0)
        self._traj = (times, qs, vs, [0])
        self._target = qs[-1].copy()
        self._mode = 'trajectory'

    def command_gripper(self, opening: float) -> float:
        """Finger opening = left_finger_joint position [m], clamped to the URDF range; returns it."""
        o = float(opening)
        if not math.isfinite(o):
            raise ValueError(f'command_gripper: {opening!r} is not finite')
        self._g_target = min(max(o, self.gripper_range[0]), self.gripper_range[1])
        return self._g_target

    # ------------------------------------------------------------------ disturbances
    def apply_wrench(self, link: str, force, torque=(0, 0, 0), duration: float = 0.1,
                     frame: str = 'world') -> float:
        """Push ``link`` at its centre of mass for ``duration`` [s]; returns the onset sim time.

        ``force`` [N] and ``torque`` [N m] are expressed in ``frame``: 'world' (= base_link) or
        'link' (the link's own frame, turning with it). KeyError for an unknown link.
        """
        if link not in self._body_ids or link == 'world':
            raise KeyError(link)
        if frame not in ('world', 'link'):
            raise ValueError(f"apply_wrench: frame {frame!r} not in ('world', 'link')")
        w = np.concatenate([np.asarray(force, float), np.asarray(torque, float)])
        if w.shape != (6,) or not np.all(np.isfinite(w)):
            raise ValueError('apply_wrench: need finite force[3] and torque[3]')
        n = max(1, int(round(float(duration) / self.dt)))
        self._wrenches.append([self._body_ids[link], w, self.step_count + n, frame == 'link'])
        return self.time

    def set_tremor(self, amplitude: float, frequency_hz: float, joint: str | None = None) -> float:
        """Oscillating joint torque ``amplitude`` [N m] at ``frequency_hz`` on ``joint``.

        ``joint`` None: a fixed pattern over the three wrist joints (relative amplitudes 1, 0.7,
        0.5, phases 0, 120, 240 deg). Amplitude 0 turns it off. Returns the onset sim time.
        """
        amp, f = float(amplitude), float(frequency_hz)
        if not (math.isfinite(amp) and math.isfinite(f) and f >= 0):
            raise ValueError('set_tremor: amplitude and frequency must be finite, f >= 0')
        self._tremor_amp[:] = 0.0
        self._tremor_phase[:] = 0.0
        arm = list(self.robot.arm_joints)
        pattern = TREMOR_PATTERN if not joint else {joint: (1.0, 0.0)}
        for name, (rel, ph) in pattern.items():
            if name not in arm:
                raise KeyError(name)
            self._tremor_amp[arm.index(name)] = amp * rel
            self._tremor_phase[arm.index(name)] = ph
        self._tremor_omega = 2 * math.pi * f
        self._tremor_t0 = self.time
        self._tremor_on = amp != 0.0
        if not self._tremor_on:
            self.data.qfrc_applied[self._arm_d] = 0.0
        return self.time

    def set_base_vibration(self, amplitude: float, frequency_hz: float,
                           direction=(1.0, 0.0, 0.0)) -> float:
        """Shake the base (and table): acceleration ``amplitude`` [m/s^2] sin(2 pi f t) along
        ``direction`` (base_link). Felt by every moving body and by the IMU. 0 = off."""
        d = np.asarray(direction, float)
        nrm = np.linalg.norm(d)
        if not (math.isfinite(amplitude) and math.isfinite(frequency_hz) and nrm > 0):
            raise ValueError('set_base_vibration: need finite amplitude/frequency, a direction')
        self._vib_amp = float(amplitude) * d / nrm
        self._vib_omega = 2 * math.pi * float(frequency_hz)
        self._vib_t0 = self.time
        self._vib_on = bool(amplitude) and bool(frequency_hz)
        self._xfrc_dirty = True
        return self.time

    def set_imu_noise(self, accel_std: float = 0.0, gyro_std: float = 0.0,
                      accel_bias=(0, 0, 0), gyro_bias=(0, 0, 0)) -> None:
        """White noise std [m/s^2], [rad/s] and constant biases added to every IMU reading."""
        self._imu_noise = (float(accel_std), float(gyro_std))
        self._imu_bias = (np.asarray(accel_bias, float).copy(), np.asarray(gyro_bias, float).copy())

    # ------------------------------------------------------------------ stepping
    def step(self, n: int = 1) -> None:
        """Advance ``n`` physics steps of ``dt``: drives and disturbances act in each."""
        m, d = self.model, self.data
        for _ in range(n):
            mujoco.mj_step1(m, d)
            self._drive()
            if self._wrenches or self._xfrc_dirty or self._vib_on:
                self._apply_xfrc()
            if self._tremor_on:
                d.qfrc_applied[self._arm_d] = self._tremor_amp * np.sin(
                    self._tremor_omega * (d.time - self._tremor_t0) + self._tremor_phase)
            mujoco.mj_step2(m, d)
            self.step_count += 1

    def _drive(self):
        # Hot path (every 1 ms): in-place numpy on cached views, no allocations.
        d = self.data
        q, qd, sp, qd_sp = self._q, self._qd, self._sp, self._qd_sp
        t1, t2 = self._t1, self._t2
        mode = self._mode
        if mode == 'effort':
            if d.time - self._effort_time > self.effort_timeout:
                self.watchdog_trips += 1
                self._hold_here()
                mode = 'position'
            else:
                self._ctrl[:] = self._tau_cmd
        if mode == 'position':
            np.subtract(self._target, sp, out=t1)
            np.abs(t1, out=t2)
            if not self._profiling and (t2 <= self._vdt).all():
                # streaming / holding: follow the target directly
                np.multiply(t1, self._inv_dt, out=qd_sp)
                sp += t1
            else:  # a jump: profile there; hand back once the set-point can follow smoothly
                self._profiling = True
                if (t2 <= self._vdt).all() and (np.abs(
                        t1 * self._inv_dt - qd_sp) <= 10.0 * self._adt).all():
                    self._profiling = False
                    np.multiply(t1, self._inv_dt, out=qd_sp)
                    sp += t1
                else:
                    self._profile(t1, t2)
            kp, kd = self._kp, self._kd
        elif mode == 'velocity':
            # ramp toward the commanded velocity at the acceleration limit; stop at the range
            np.subtract(self._v_cmd, qd_sp, out=t1)
            np.minimum(np.maximum(t1, self._neg_adt, out=t1), self._adt, out=t1)
            qd_sp += t1
            np.multiply(qd_sp, self.dt, out=t1)
            sp += t1
            if np.any(sp < self.lower) or np.any(sp > self.upper):
                qd_sp[(sp < self.lower) | (sp > self.upper)] = 0.0
                np.clip(sp, self.lower, self.upper, out=sp)
            kp, kd = self._kp_v, self._kd_v
        elif mode == 'trajectory':
            self._traj_eval(d.time + self.dt)
            kp, kd = self._kp, self._kd
        if mode != 'effort':
            # inertia-scaled servo + coriolis (bias minus gravity, which the actuators already
            # compensate) + the URDF joint damping at the reference velocity. MuJoCo clamps
            # ctrl to the effort range and the total (with gravity) to the URDF effort limit.
            va = self._vec_arm
            np.subtract(sp, q, out=va)
            va *= kp
            np.subtract(qd_sp, qd, out=t2)
            t2 *= kd
            va += t2
            mujoco.mj_mulM(self.model, d, self._res, self._vec)
            ctrl = self._ctrl
            np.add(self._res_arm, self._bias, out=ctrl)
            ctrl -= self._gravcomp
            np.multiply(self.damping, qd_sp, out=t2)
            ctrl += t2
        # gripper: velocity-limited set-point, PD force clamped to the URDF effort
        gstep = self._g_vdt
        delta = min(max(self._g_target - self._g_sp, -gstep), gstep)
        self._g_sp += delta
        d.ctrl[self._act_grip] = (self._kp_g * (self._g_sp - d.qpos[self._grip_q])
                                  + self._kd_g * (delta * self._inv_dt - d.qvel[self._grip_d]))

    def _profile(self, e, abs_e):
        """Set-point move toward a far target: at most the velocity and acceleration limits,
        braking so that it stops at the target."""
        a = self.max_acceleration
        sp, qd_sp = self._sp, self._qd_sp
        v = np.sign(e) * np.minimum(self.vmax, np.sqrt(2.0 * a * abs_e))
        v = np.clip(v, qd_sp - a * self.dt, qd_sp + a * self.dt)
        step = v * self.dt
        over = (np.abs(step) > abs_e) & (step * e > 0)
        step[over] = e[over]
        qd_sp[:] = step * self._inv_dt
        sp += step

    def _hold_here(self):
        self._mode = 'position'
        self._target = self._q.copy()
        self._sp[:] = self._q
        self._qd_sp[:] = 0.0
        self._traj = None

    def _traj_eval(self, t):
        times, qs, vs, seg = self._traj
        i = seg[0]
        last = len(times) - 1
        while i < last - 1 and t > times[i + 1]:
            i += 1
        seg[0] = i
        sp, qd_sp = self._sp, self._qd_sp
        if t >= times[last]:
            q_ref, v_ref = qs[last], vs[last] * 0.0
            if t >= times[last] + self.dt:  # done: hold the last point
                self._mode = 'position'
                self._traj = None
        else:
            h = times[i + 1] - times[i]
            s = (t - times[i]) / h
            s2, s3 = s * s, s * s * s
            q_ref = ((2 * s3 - 3 * s2 + 1) * qs[i] + (s3 - 2 * s2 + s) * h * vs[i]
                     + (3 * s2 - 2 * s3) * qs[i + 1] + (s3 - s2) * h * vs[i + 1])
            v_ref = ((6 * s2 - 6 * s) * qs[i] + (3 * s2 - 4 * s + 1) * h * vs[i]
                     + (6 * s - 6 * s2) * qs[i + 1] + (3 * s2 - 2 * s) * h * vs[i + 1]) / h
        lim = self.vmax * self.dt
        new = np.clip(np.clip(q_ref, sp - lim, sp + lim), self.lower, self.upper)
        np.clip(v_ref, -self.vmax, self.vmax, out=qd_sp)
        sp[:] = new

    def _apply_xfrc(self):
        d = self.data
        xf = d.xfrc_applied
        xf[:] = 0.0
        self._xfrc_dirty = False
        if self._vib_on:
            a = self._vib_amp * math.sin(self._vib_omega * (d.time - self._vib_t0))
            xf[self._moving, :3] = -self._moving_mass[:, None] * a
            self._xfrc_dirty = True
        if self._wrenches:
            keep = []
            for w in self._wrenches:
                body, vec, end, local = w
                if self.step_count >= end:
                    continue
                keep.append(w)
                if local:
                    r = d.xmat[body].reshape(3, 3)
                    xf[body, :3] += r @ vec[:3]
                    xf[body, 3:] += r @ vec[3:]
                else:
                    xf[body] += vec
            self._wrenches[:] = keep
            self._xfrc_dirty = True  # clear next step

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
    def setpoint(self) -> np.ndarray:
        """The arm drive's current position set-point [rad] (copy)."""
        return self._sp.copy()

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
        if self._vib_on:
            a = self._vib_amp * math.sin(self._vib_omega * (self.data.time - self.dt - self._vib_t0))
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
