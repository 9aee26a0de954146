"""The arm as its URDF describes it: joints, limits, drives, home pose, kinematics. ROS-free.

The URDF (xacro, ``urdf/``) is the single source of truth: the MuJoCo world, the limits every
command is clamped to, the drive properties (``urdf/drives.yaml``, written by the xacro into
each joint's ``<ros2_control>`` entry) and the kinematics of every layer are read from it, once
(:func:`load`). Dynamics: :mod:`.dynamics`; inverse kinematics: :mod:`.ik`; rotations:
:mod:`.transforms`.
"""
from __future__ import annotations

import functools
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from .transforms import axis_angle_matrix, rpy_matrix

XACRO_NAME = 'neurovla_arm.urdf.xacro'
ARM_JOINTS = ('shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint',
              'wrist_1_joint', 'wrist_2_joint', 'wrist_3_joint')
GRIPPER_JOINT = 'left_finger_joint'          # the commanded finger (opening [m])
FINGER_JOINTS = (GRIPPER_JOINT, 'right_finger_joint')   # the right one mimics the left
STATE_JOINTS = (*ARM_JOINTS, *FINGER_JOINTS)  # the /joint_states order


def urdf_dir() -> str:
    """Directory holding the xacro: the source tree, or share/neurovla/urdf when installed."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, '..', '..', 'urdf')]
    try:  # installed with colcon: use the ament index
        from ament_index_python.packages import get_package_share_directory
        candidates.append(os.path.join(get_package_share_directory('neurovla'), 'urdf'))
    except Exception:  # noqa: BLE001 - not on a ROS install
        pass
    candidates.append(os.path.join(sys.prefix, 'share', 'neurovla', 'urdf'))
    for c in candidates:
        if os.path.isfile(os.path.join(c, XACRO_NAME)):
            return os.path.abspath(c)
    raise FileNotFoundError(f'{XACRO_NAME} not found in any of {candidates}')


@functools.lru_cache(maxsize=8)
def urdf_xml(sim_gazebo: bool = False, controllers_file: str = '') -> str:
    """The expanded URDF (xacro processed) as an XML string."""
    import xacro
    doc = xacro.process_file(os.path.join(urdf_dir(), XACRO_NAME), mappings={
        'sim_gazebo': 'true' if sim_gazebo else 'false', 'controllers_file': controllers_file})
    return doc.toxml()


@dataclass(frozen=True)
class Joint:
    name: str
    type: str                 # revolute | prismatic | fixed | continuous
    parent: str
    child: str
    xyz: np.ndarray
    rpy: np.ndarray
    axis: np.ndarray
    lower: float = -np.inf    # [rad] or [m]
    upper: float = np.inf
    velocity: float = np.inf  # [rad/s] or [m/s]
    effort: float = np.inf    # [N m] or [N]
    damping: float = 0.0      # [N m s/rad]
    friction: float = 0.0     # [N m]
    mimic: str | None = None

    @property
    def origin(self) -> np.ndarray:
        t = np.eye(4)
        t[:3, :3] = rpy_matrix(self.rpy)
        t[:3, 3] = self.xyz
        return t

    def motion(self, value: float) -> np.ndarray:
        """4x4 motion of the joint at ``value`` [rad] or [m] (along or about its axis)."""
        m = np.eye(4)
        if self.type == 'prismatic':
            m[:3, 3] = self.axis * value
        elif self.type != 'fixed':
            m[:3, :3] = axis_angle_matrix(self.axis, value)
        return m


@dataclass(frozen=True)
class Visual:
    """One ``<visual>`` of a link: ``shape`` box (``size`` x, y, z [m]) or cylinder
    (``size`` radius, length [m]; along z), ``origin`` in the link frame, ``rgba``."""
    shape: str
    size: tuple[float, ...]
    origin: np.ndarray
    rgba: tuple[float, float, float, float] = (0.7, 0.7, 0.7, 1.0)


def _visuals(root) -> dict[str, list[Visual]]:
    out: dict[str, list[Visual]] = {}
    for ln in root.findall('link'):
        for v in ln.findall('visual'):
            geom = v.find('geometry')
            shape = geom[0] if geom is not None and len(geom) else None
            if shape is None or shape.tag not in ('box', 'cylinder'):
                continue            # the arm is boxes and cylinders; other shapes are not drawn
            size = (_floats(shape.get('size'), [0, 0, 0]) if shape.tag == 'box' else
                    np.array([float(shape.get('radius')), float(shape.get('length'))]))
            org = v.find('origin')
            t = np.eye(4)
            t[:3, :3] = rpy_matrix(_floats(org.get('rpy') if org is not None else None, [0, 0, 0]))
            t[:3, 3] = _floats(org.get('xyz') if org is not None else None, [0, 0, 0])
            color = v.find('material/color')
            rgba = tuple(_floats(color.get('rgba'), [0.7, 0.7, 0.7, 1.0])) if color is not None \
                else (0.7, 0.7, 0.7, 1.0)
            out.setdefault(ln.get('name'), []).append(
                Visual(shape.tag, tuple(float(x) for x in size), t, rgba))
    return out


def _floats(text, default):
    return np.array([float(v) for v in text.split()]) if text else np.array(default, float)


@dataclass
class RobotModel:
    """Joints and links of the URDF, plus kinematics of the arm chain."""
    joints: dict[str, Joint]
    home: dict[str, float]
    link_mass: dict[str, float] = field(default_factory=dict)
    drives: dict[str, dict[str, float]] = field(default_factory=dict)  # joint -> property
    visuals: dict[str, list[Visual]] = field(default_factory=dict)     # link -> its shapes
    arm_joints: tuple[str, ...] = ARM_JOINTS

    @classmethod
    def from_urdf(cls, xml: str) -> 'RobotModel':
        root = ET.fromstring(xml)
        joints = {}
        for j in root.findall('joint'):
            lim, dyn, mim = j.find('limit'), j.find('dynamics'), j.find('mimic')
            org = j.find('origin')
            ax = j.find('axis')
            kw = {}
            if lim is not None:
                kw.update({k: float(lim.get(k)) for k in ('lower', 'upper', 'velocity', 'effort')
                           if lim.get(k) is not None})
            if dyn is not None:
                kw.update({k: float(dyn.get(k)) for k in ('damping', 'friction')
                           if dyn.get(k) is not None})
            joints[j.get('name')] = Joint(
                name=j.get('name'), type=j.get('type'),
                parent=j.find('parent').get('link'), child=j.find('child').get('link'),
                xyz=_floats(org.get('xyz') if org is not None else None, [0, 0, 0]),
                rpy=_floats(org.get('rpy') if org is not None else None, [0, 0, 0]),
                axis=_floats(ax.get('xyz') if ax is not None else None, [1, 0, 0]),
                mimic=mim.get('joint') if mim is not None else None, **kw)
        home, drives = {}, {}
        for cj in root.iter('ros2_control'):
            for j in cj.findall('joint'):
                for si in j.findall('state_interface'):
                    p = si.find("param[@name='initial_value']")
                    if si.get('name') == 'position' and p is not None:
                        home[j.get('name')] = float(p.text)
                props = {p.get('name'): float(p.text) for p in j.findall('param')
                         if p.get('name') == 'armature'}
                if props:
                    drives[j.get('name')] = props
        mass = {ln.get('name'): float(ln.find('inertial/mass').get('value'))
                for ln in root.findall('link') if ln.find('inertial/mass') is not None}
        return cls(joints=joints, home=home, link_mass=mass, drives=drives,
                   visuals=_visuals(root))

    # ---- joints and limits ----
    @property
    def actuated(self) -> list[str]:
        """Moving joints that are not mimics, in URDF order (the /joint_states order)."""
        return [n for n, j in self.joints.items() if j.type != 'fixed' and j.mimic is None]

    @property
    def moving(self) -> list[str]:
        return [n for n, j in self.joints.items() if j.type != 'fixed']

    def limits(self, names=None) -> dict[str, np.ndarray]:
        """Arrays of lower, upper, velocity, effort limits for ``names`` (default: the arm)."""
        names = list(names or self.arm_joints)
        return {k: np.array([getattr(self.joints[n], k) for n in names])
                for k in ('lower', 'upper', 'velocity', 'effort', 'damping', 'friction')}

    def home_pose(self, names=None) -> np.ndarray:
        return np.array([self.home.get(n, 0.0) for n in (names or self.arm_joints)])

    def armature(self, names=None) -> np.ndarray:
        """Reflected drive inertia [kg m^2] of ``names`` (default: the arm), from drives.yaml."""
        return np.array([self.drives.get(n, {}).get('armature', 0.0)
                         for n in (names or self.arm_joints)])

    @property
    def gripper_open(self) -> float:
        """Finger opening of the open gripper [m] (the finger joint's upper limit)."""
        return float(self.joints[GRIPPER_JOINT].upper)

    @property
    def gripper_closed(self) -> float:
        return float(self.joints[GRIPPER_JOINT].lower)

    # ---- kinematics ----
    def chain(self, tip: str, base: str = 'base_link') -> list[Joint]:
        """Joints from ``base`` to link ``tip``, base first."""
        by_child = {j.child: j for j in self.joints.values()}
        out, link = [], tip
        while link != base:
            if link not in by_child:
                raise KeyError(f'link {tip!r} is not below {base!r}')
            j = by_child[link]
            out.append(j)
            link = j.parent
        return out[::-1]

    def fk(self, q, tip: str = 'tcp_link', base: str = 'base_link') -> np.ndarray:
        """4x4 pose of ``tip`` in ``base`` for arm joint positions ``q`` (arm_joints order)."""
        return self.fk_all(q, tip, base)[0]

    def fk_all(self, q, tip='tcp_link', base='base_link'):
        """Pose of ``tip`` and, for each arm joint on the chain, its world axis and origin."""
        qd = dict(zip(self.arm_joints, np.asarray(q, float)))
        t = np.eye(4)
        axes, points, names = [], [], []
        for j in self.chain(tip, base):
            t = t @ j.origin
            if j.type in ('revolute', 'continuous', 'prismatic'):
                v = qd.get(j.name, self.home.get(j.name, 0.0))
                if j.name in qd:
                    axes.append(t[:3, :3] @ j.axis)
                    points.append(t[:3, 3].copy())
                    names.append(j.name)
                t = t @ j.motion(v)
        return t, axes, points, names

    def link_poses(self, positions: dict, base: str = 'base_link') -> dict[str, np.ndarray]:
        """4x4 pose in ``base`` of every link below it, for joint ``positions`` (name ->
        value; a joint not given is at home; a mimic joint takes its joint's value: the
        URDF's finger mimic has multiplier 1, offset 0)."""
        children: dict[str, list[Joint]] = {}
        for j in self.joints.values():
            children.setdefault(j.parent, []).append(j)
        out, todo = {base: np.eye(4)}, [base]
        while todo:
            link = todo.pop()
            for j in children.get(link, ()):
                t = out[link] @ j.origin
                if j.type != 'fixed':
                    name = j.mimic or j.name
                    t = t @ j.motion(positions.get(name, self.home.get(name, 0.0)))
                out[j.child] = t
                todo.append(j.child)
        return out

    def pose_and_jacobian(self, q, tip: str = 'tcp_link', base: str = 'base_link'):
        """4x4 pose of ``tip`` in ``base`` and its 6 x n geometric Jacobian (linear; angular)
        w.r.t. the arm joints, from one forward pass."""
        t, axes, points, names = self.fk_all(q, tip, base)
        jac = np.zeros((6, len(self.arm_joints)))
        if names:
            idx = [self.arm_joints.index(n) for n in names]
            a = np.array(axes).T                 # (3, k)
            d = t[:3, 3, None] - np.array(points).T
            jac[:3, idx] = (a[1] * d[2] - a[2] * d[1], a[2] * d[0] - a[0] * d[2],
                            a[0] * d[1] - a[1] * d[0])   # axis x (tip - joint), all at once
            jac[3:, idx] = a
        return t, jac

    def jacobian(self, q, tip: str = 'tcp_link', base: str = 'base_link') -> np.ndarray:
        """6 x n geometric Jacobian (linear; angular) of ``tip`` w.r.t. the arm joints."""
        return self.pose_and_jacobian(q, tip, base)[1]


@functools.lru_cache(maxsize=1)
def load() -> RobotModel:
    """The robot model of the installed URDF (cached)."""
    return RobotModel.from_urdf(urdf_xml())
