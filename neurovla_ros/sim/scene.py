"""The world around the arm as a MuJoCo model: the URDF arm plus what a URDF cannot say.

ROS-free. :func:`build_spec` turns the arm (``robot.urdf_xml()`` through ``mujoco.MjSpec``; there
is no second copy of the arm) into the simulated scene: torque motors with the URDF effort limits
(gravity compensated through them), the drives' armature from the robot model, IMU and wrist
force/torque sensors, cameras on the URDF's camera frames with the fields of view of its Gazebo
sensors, lights, a table (top at z = 0 of base_link) and coloured objects (:func:`draw_objects`,
placed by :func:`place_objects`). :mod:`.world` steps it; the camera process renders a copy.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import mujoco
import numpy as np

from ..robot.model import GRIPPER_JOINT

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
CAMERAS = ('scene_camera', 'wrist_camera')
DEFAULT_HFOV = {'scene_camera': 1.047, 'wrist_camera': 1.2}  # [rad], used if the URDF lacks one


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


def draw_objects(rng, n: int) -> list[dict]:
    """``n`` objects of distinct colours, random shapes and sizes (name, colour, shape, half
    extents [m], rgba), drawn from ``rng``."""
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


def build_spec(robot, urdf: str, objects: list[dict], width: int, height: int,
               sleep: bool = True, gravity_compensation: bool = True):
    """The MjSpec of the world: the arm of ``urdf`` (``robot``: its RobotModel) with drives,
    sensors, cameras, lights, the table and ``objects`` (free bodies, placed by
    :func:`place_objects`). ``gravity_compensation=False`` leaves the actuators' gravity
    compensation out (the servo-bus emulator, whose servos carry the arm themselves)."""
    cam_specs = camera_specs(urdf)
    spec = mujoco.MjSpec.from_string(urdf)
    spec.modelname = 'neurovla_world'
    spec.option.timestep = DT
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    if sleep:  # objects at rest sleep (halves the step cost); the arm never does
        spec.option.enableflags |= mujoco.mjtEnableBit.mjENBL_SLEEP
    arm = robot.arm_joints
    gripper = GRIPPER_JOINT
    # every robot body: gravity compensated through its joints' actuators; no self-collision
    for body in spec.bodies:
        if body.name == 'world':
            continue
        body.gravcomp = 1.0 if gravity_compensation else 0.0
        for g in body.geoms:
            g.contype, g.conaffinity = ARM_CONTYPE, ARM_CONAFFINITY
    armature = dict(zip(arm, robot.armature()))
    for j in spec.joints:
        j.actgravcomp = gravity_compensation
        if j.name in armature:  # reflected motor inertia of the drive (robot model)
            j.armature = armature[j.name]
    for name in (*arm, gripper):
        eff = robot.joints[name].effort
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
    aspect = height / width
    for cam in CAMERAS:
        hfov = cam_specs[cam]['hfov']
        fovy = 2.0 * math.degrees(math.atan(math.tan(hfov / 2.0) * aspect))
        spec.body(f'{cam}_optical_frame').add_camera(name=cam, quat=[0, 1, 0, 0], fovy=fovy)
    # lights, headlight, offscreen buffer
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.35, 0.35, 0.35]
    spec.visual.global_.offwidth = max(640, width)
    spec.visual.global_.offheight = max(480, height)
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
    for o in objects:
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


def place_objects(data, rng, objects: list[dict], qadr) -> None:
    """Put ``objects`` (free joints at ``qadr`` in ``data.qpos``) on the table at random
    places ``OBJECT_MIN_GAP`` apart, cubes at a random yaw."""
    d = data
    placed = []
    for o, qa in zip(objects, qadr):
        for _ in range(1000):
            p = np.array([rng.uniform(*OBJECT_X), rng.uniform(*OBJECT_Y)])
            if all(np.linalg.norm(p - other) >= OBJECT_MIN_GAP for other in placed):
                break
        placed.append(p)
        yaw = rng.uniform(-math.pi, math.pi) if o['shape'] == 'cube' else 0.0
        d.qpos[qa:qa + 3] = (p[0], p[1], o['half'][2])
        d.qpos[qa + 3:qa + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
