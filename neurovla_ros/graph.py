"""The neurovla ROS graph, described once.

ROS-free. ``launch/bringup.launch.py`` (``ros2 launch neurovla bringup``) and the pip-mode
runner (``neurovla bringup``, :mod:`neurovla_ros.runner`) both map over this description, so
the two ways of starting the stack cannot drift apart:

* :data:`LAUNCH_ARGS` - the launch arguments (``body`` with its alias ``sim``, ``port``,
  ``use_sim_time``, ``headless``, ``params_file``, ``instruction``, ``cortex_backend``,
  ``namespace``, ``relay``, ...);
* :data:`NODES` - the neurovla nodes (one :class:`NodeSpec` each);
* :func:`launch_plan` - everything ``ros2 launch`` starts, as plain data (:class:`Action`):
  the neurovla nodes plus, on a ROS 2 install, robot_state_publisher, rviz2 and the Gazebo
  pieces (gz sim, spawn, ros2_control spawners, ros_gz_bridge);
* :func:`ros_arguments` - the ``--ros-args`` a node gets in pip mode;
* :func:`schemas` - every node's parameter schema (``config/neurovla.yaml``,
  ``docs/parameters.md``).
"""
from __future__ import annotations

import importlib
import numbers
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

from .cortex.params import BACKENDS
from .relay.params import IN_PREFIX as RELAY_IN
from .relay.params import TOPICS as RELAY_TOPICS

PACKAGE = 'neurovla'


@dataclass(frozen=True)
class LaunchArg:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


BODIES = ('mujoco', 'dynamixel', 'feetech', 'gazebo', 'none')
SERVO_BODIES = ('dynamixel', 'feetech')
# Bodies the spinal node commands with positions: position-only servos (Feetech STS), and
# Gazebo, whose active arm controller is forward_position_controller and which adds no gravity
# compensation to effort commands (the spinal network's torques sit on top of one).
POSITION_BODIES = ('feetech', 'gazebo')
# The emulated servos answer from the sim node's Python thread, on the CPU the whole graph
# shares: a reply may come this late [ms] before the bridge counts it lost (a real servo answers
# in its own hardware time: the hardware node's reply_margin_ms default).
EMULATOR_REPLY_MARGIN_MS = 40.0
LAUNCH_ARGS: tuple[LaunchArg, ...] = (
    LaunchArg('body', '', 'Body: the embedded MuJoCo simulator node (mujoco), a serial-bus servo '
              'arm through the hardware node (dynamixel, feetech), Gazebo (ROS 2 install with '
              'ros_gz + gz_ros2_control only) or none (an external body); empty = the value of '
              'sim', ('', *BODIES)),
    LaunchArg('sim', 'mujoco', 'The body, older name (mujoco | gazebo | none); used when body '
              'is empty', ('mujoco', 'gazebo', 'none')),
    LaunchArg('port', '', 'Serial port of a servo-bus body (e.g. /dev/ttyUSB0); "emulator" '
              'starts the servo-bus emulator (the MuJoCo arm behind a pty) and connects to it; '
              'empty = the hardware file\'s'),
    LaunchArg('use_sim_time', 'auto', 'Nodes follow /clock; auto = true with Gazebo, else false',
              ('auto', 'true', 'false')),
    LaunchArg('headless', 'false', 'No GUI: no rviz2, Gazebo runs server-only',
              ('true', 'false')),
    LaunchArg('params_file', '', 'ROS 2 parameters file for the neurovla nodes; '
              'empty = the packaged config/neurovla.yaml'),
    LaunchArg('instruction', '', 'Task instruction for the cortex; empty = the parameters file'),
    LaunchArg('cortex_backend', '', 'Cortex policy backend; empty = the parameters file',
              ('', *BACKENDS)),
    LaunchArg('namespace', '', 'ROS namespace of the whole stack (e.g. arm1: /arm1/joint_states, '
              '/arm1/cerebellum/reference, ...), so several arms share a graph; empty = none'),
    LaunchArg('relay', 'false', 'Start the loss/delay relay and route the cortex\'s goals and '
              'gripper commands through it (relay_in/...): message loss and delay between the '
              'cortex and the body side where the kernel has no netem', ('true', 'false')),
    LaunchArg('relay_loss', '', 'Relay: initial message loss probability 0..1; empty = the '
              'parameters file'),
    LaunchArg('relay_delay_s', '', 'Relay: initial delay [s] 0..5; empty = the parameters file'),
    LaunchArg('show_plan', 'false', 'Print what this launch would start (every node with its '
              'parameters, remappings and arguments) and start nothing', ('true', 'false')),
)
ARGS_BY_NAME = {a.name: a for a in LAUNCH_ARGS}


@dataclass(frozen=True)
class NodeSpec:
    """One neurovla node.

    ``name`` is the node name and its key in the parameters file; ``executable`` the console
    script (``lib/neurovla/<executable>`` on a ROS install); ``module`` what pip mode runs with
    ``python -m``; ``params_module`` a ROS-free module with ``NODE_NAME`` and ``PARAMS``.
    ``enabled_when`` maps launch arguments to the values that enable the node (empty: always);
    ``enabled_if``, a function of the resolved arguments, must hold as well.
    ``arg_params`` maps node parameters to a launch argument, whose value, when not empty,
    overrides the parameters file, or to a function of the resolved arguments, whose value, when
    not None, does (a parameter that follows from the arguments). ``pip``: whether pip mode (no
    ROS install) can run it.
    """
    name: str
    executable: str
    module: str
    params_module: str | None = None
    enabled_when: dict[str, tuple[str, ...]] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    arg_params: dict[str, str | Callable[[dict], object]] = field(default_factory=dict)
    pip: bool = True
    enabled_if: Callable[[dict], bool] | None = None


def _emulated(args: dict) -> bool:
    """A servo-bus body on the emulator: the sim node plays the servos."""
    return args['body'] in SERVO_BODIES and args['port'] == 'emulator'


NODES: list[NodeSpec] = [
    # ---- body ----
    NodeSpec('sim', 'sim_node', 'neurovla_ros.sim.node', 'neurovla_ros.sim.params',
             enabled_if=lambda a: a['body'] == 'mujoco' or _emulated(a),
             arg_params={'servo_bus': lambda a: a['body'] if _emulated(a) else None,
                         # openpi's layouts send a wrist view
                         'wrist_camera_enabled':
                             lambda a: a['cortex_backend'] == 'openpi' or None}),
    NodeSpec('hardware', 'hardware_node', 'neurovla_ros.hardware.node',
             'neurovla_ros.hardware.params', enabled_when={'body': SERVO_BODIES},
             arg_params={'protocol': lambda a: a['body'] if a['body'] in SERVO_BODIES else None,
                         'port': 'port',
                         'reply_margin_ms': lambda a: EMULATOR_REPLY_MARGIN_MS
                         if a['port'] == 'emulator' else None}),
    # ---- brain: one NodeSpec line per node, added by its owner, e.g.
    NodeSpec('spinal', 'spinal_node', 'neurovla_ros.spinal.node', 'neurovla_ros.spinal.params',
             arg_params={'command_interface': lambda a: 'position'
                         if a['body'] in POSITION_BODIES else None}),
    NodeSpec('cerebellum', 'cerebellum_node', 'neurovla_ros.cerebellum.node',
             'neurovla_ros.cerebellum.params'),
    NodeSpec('cortex', 'cortex_node', 'neurovla_ros.cortex.node', 'neurovla_ros.cortex.params',
             arg_params={'instruction': 'instruction', 'backend': 'cortex_backend'}),
    NodeSpec('relay', 'relay_node', 'neurovla_ros.relay.node', 'neurovla_ros.relay.params',
             enabled_when={'relay': ('true',)},
             arg_params={'loss': 'relay_loss', 'delay_s': 'relay_delay_s'}),
    # ---- teleop and seeing the robot ----
    NodeSpec('teleop_markers', 'teleop_markers_node', 'neurovla_ros.markers.node',
             'neurovla_ros.markers.params', enabled_when={'headless': ('false',)}, pip=False),
    NodeSpec('ui', 'ui_node', 'neurovla_ros.ui.node', 'neurovla_ros.ui.params',
             enabled_when={'headless': ('false',)}),
]
# relay:=true: the cortex's outputs go to the relay, which publishes them under their own names
RELAYED = {'cortex': tuple((t, RELAY_IN + t) for t in (e.split('@')[0] for e in RELAY_TOPICS))}


# Gazebo (sim:=gazebo): ros2_control controllers, spawned active / inactive (forward command
# controllers of the same joints exclude each other; switch with `ros2 control switch_controllers`).
GZ_CONTROLLERS_ACTIVE = ('joint_state_broadcaster', 'imu_sensor_broadcaster',
                         'forward_position_controller', 'gripper_controller')
GZ_CONTROLLERS_INACTIVE = ('forward_velocity_controller', 'forward_effort_controller',
                           'joint_trajectory_controller')
# ros_gz_bridge: ROS topic @ ROS type [ gz type  (gz -> ROS)
GZ_BRIDGE = (
    '/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock',
    '/imu/data@sensor_msgs/msg/Imu[gz.msgs.IMU',
    '/camera/image_raw@sensor_msgs/msg/Image[gz.msgs.Image',
    '/camera/camera_info@sensor_msgs/msg/CameraInfo[gz.msgs.CameraInfo',
    '/wrist_camera/image_raw@sensor_msgs/msg/Image[gz.msgs.Image',
    '/wrist_camera/camera_info@sensor_msgs/msg/CameraInfo[gz.msgs.CameraInfo',
)
ROBOT_NAME = 'neurovla_arm'


# ---------------------------------------------------------------- data files
def data_file(folder: str, name: str) -> str:
    """Path of a package data file (``config/...``): source tree first, then the installs."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(here, '..', folder)]
    try:  # colcon install: the ament index
        from ament_index_python.packages import get_package_share_directory
        candidates.append(os.path.join(get_package_share_directory(PACKAGE), folder))
    except Exception:  # noqa: BLE001 - not on a ROS install / package not indexed
        pass
    candidates.append(os.path.join(sys.prefix, 'share', PACKAGE, folder))
    for c in candidates:
        if os.path.isfile(os.path.join(c, name)):
            return os.path.abspath(os.path.join(c, name))
    raise FileNotFoundError(f'{folder}/{name} not found in any of {candidates}')


def default_params_file() -> str:
    return data_file('config', 'neurovla.yaml')


# ---------------------------------------------------------------- arguments
def resolve(values: dict | None = None) -> dict[str, str]:
    """All launch arguments as strings: defaults filled in, choices checked.

    Raises ValueError naming the argument and the bad value.
    """
    out = {a.name: a.default for a in LAUNCH_ARGS}
    for k, v in (values or {}).items():
        if k not in ARGS_BY_NAME:
            raise ValueError(f'unknown launch argument {k!r}; known: {list(ARGS_BY_NAME)}')
        v = ('true' if v else 'false') if isinstance(v, bool) else ('' if v is None else str(v))
        choices = ARGS_BY_NAME[k].choices
        if choices and v not in choices:
            raise ValueError(f'launch argument {k}:={v!r} is not one of {list(choices)}')
        out[k] = v
    if out['body'] and out['sim'] != ARGS_BY_NAME['sim'].default and out['sim'] != out['body']:
        raise ValueError(f'launch arguments body:={out["body"]} and sim:={out["sim"]} disagree '
                         '(sim is the older name of body)')
    out['body'] = out['body'] or out['sim']
    return out


def namespace(args: dict) -> str:
    """The stack's namespace as an absolute name ('' for none)."""
    ns = args['namespace'].strip('/')
    return '/' + ns if ns else ''


def use_sim_time(args: dict) -> bool:
    mode = args['use_sim_time']
    return mode == 'true' or (mode == 'auto' and args['body'] == 'gazebo')


def params_file(args: dict) -> str:
    return args['params_file'] or default_params_file()


def enabled(spec: NodeSpec, args: dict) -> bool:
    return (all(args[k] in values for k, values in spec.enabled_when.items())
            and (spec.enabled_if is None or spec.enabled_if(args)))


def nodes(args: dict, pip_only: bool = False) -> list[NodeSpec]:
    """The neurovla nodes these launch arguments start."""
    return [s for s in NODES if enabled(s, args) and (s.pip or not pip_only)]


def remappings(spec: NodeSpec, args: dict) -> list[tuple[str, str]]:
    """The node's remappings: its own, and with ``relay:=true`` the cortex's outputs to the
    relay's inputs (:data:`RELAYED`)."""
    return [*spec.remappings, *(RELAYED.get(spec.name, ()) if args['relay'] == 'true' else ())]


def _arg_value(spec: NodeSpec, param: str, arg: str, text: str):
    """A launch argument's text as the value of the node parameter it sets: typed as the
    schema's default and checked; ValueError naming the argument."""
    if not spec.params_module:
        return text
    p = next((p for p in importlib.import_module(spec.params_module).PARAMS
              if p.name == param), None)
    if p is None or isinstance(p.default, str):
        return text
    try:
        if isinstance(p.default, bool) and text not in ('true', 'false'):
            raise ValueError('expected true or false')
        value = text == 'true' if isinstance(p.default, bool) else type(p.default)(text)
        p.check(value)
    except ValueError as e:
        raise ValueError(f'launch argument {arg}:={text!r}: {e}') from None
    return value


def forwarded_params(spec: NodeSpec, args: dict) -> dict:
    """Node parameters set from the launch arguments (``arg_params``): a non-empty argument
    (typed as the node's schema says), or a function of the arguments that gives a value (not
    None)."""
    out = {}
    for p, a in spec.arg_params.items():
        v = a(args) if callable(a) else (_arg_value(spec, p, a, args[a]) if args[a] != ''
                                         else None)
        if v is not None:
            out[p] = v
    return out


def node_parameters(spec: NodeSpec, args: dict, str_value: Callable = str) -> list:
    """``parameters=`` of launch_ros' Node: the parameters file, then the overrides."""
    overrides = {'use_sim_time': use_sim_time(args)}
    overrides.update({k: str_value(v) if isinstance(v, str) else v
                      for k, v in forwarded_params(spec, args).items()})
    return [params_file(args), overrides]


def param_value(v) -> str:
    """A parameter value as the YAML of ``-p name:=value``, keeping its type: a string stays
    a string (quoted), a bool is true/false, a list a YAML list."""
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, (list, tuple)):
        return '[' + ', '.join(param_value(x) for x in v) + ']'
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return repr(float(v))
    raise TypeError(f'parameter value {v!r}: not a bool, number, string or list')


def param_args(params: dict) -> list[str]:
    """``-p name:=value`` for each of ``params`` (typed Python values, see :func:`param_value`)."""
    return [a for k, v in params.items() for a in ('-p', f'{k}:={param_value(v)}')]


def ros_arguments(spec: NodeSpec, args: dict, overrides: dict | None = None) -> list[str]:
    """``--ros-args ...`` for ``python -m <module>`` in pip mode (same content as the launch);
    ``overrides`` (parameter -> value) come last, so they win over the file and the launch
    arguments."""
    ns = ['-r', f'__ns:={namespace(args)}'] if namespace(args) else []
    out = ['--ros-args', '-r', f'__node:={spec.name}', *ns, '--params-file', params_file(args),
           *param_args({'use_sim_time': use_sim_time(args), **forwarded_params(spec, args),
                        **(overrides or {})})]
    for src, dst in remappings(spec, args):
        out += ['-r', f'{src}:={dst}']
    return out


def command(spec: NodeSpec, args: dict, python: str = sys.executable,
            overrides: dict | None = None) -> list[str]:
    """The pip-mode command line of a node (``overrides``: see :func:`ros_arguments`)."""
    return [python, '-m', spec.module, *ros_arguments(spec, args, overrides)]


# ---------------------------------------------------------------- ros2 launch
@dataclass(frozen=True)
class Action:
    """One thing ``ros2 launch`` starts, as plain data.

    kind ``node``: ``launch_ros.actions.Node(**kwargs)``;
    kind ``include``: ``IncludeLaunchDescription`` of ``share/<package>/<file>`` with
    ``kwargs`` as its launch arguments.
    """
    kind: str
    kwargs: dict
    package: str = ''
    file: str = ''


def _node(package: str, executable: str, **kw) -> Action:
    return Action('node', {'package': package, 'executable': executable, 'output': 'screen', **kw})


GAZEBO_PACKAGES = ('ros_gz_sim', 'ros_gz_bridge', 'gz_ros2_control', 'controller_manager')


def launch_plan(values: dict | None = None, str_value: Callable = str,
                installed: Callable[[str], bool] = lambda package: True) -> list[Action]:
    """Everything ``ros2 launch neurovla bringup`` starts for these launch arguments.

    ``str_value`` wraps string parameter values so that launch_ros keeps them strings
    (the launch file passes ``lambda v: ParameterValue(v, value_type=str)``). ``installed``
    tells whether an optional package is there (package.xml's conditional dependencies):
    without rviz2 the plan has no rviz2; ``sim:=gazebo`` without the Gazebo packages is an
    error that names the rosdep line.
    """
    args = resolve(values)
    sim_time = use_sim_time(args)
    gazebo = args['body'] == 'gazebo'
    headless = args['headless'] == 'true' or not installed('rviz2')
    missing = [p for p in GAZEBO_PACKAGES if gazebo and not installed(p)]
    if missing:
        raise ValueError(f'sim:=gazebo needs {", ".join(missing)}: NEUROVLA_GAZEBO=1 rosdep '
                         'install --from-paths src -y --ignore-src')
    plan: list[Action] = []

    from . import robot  # xacro: only needed for a launch, not for pip mode
    controllers = data_file('config', 'controllers.yaml') if gazebo else ''
    description = robot.urdf_xml(sim_gazebo=gazebo, controllers_file=controllers)
    plan.append(_node('robot_state_publisher', 'robot_state_publisher',
                      name='robot_state_publisher',
                      parameters=[{'robot_description': str_value(description),
                                   'use_sim_time': sim_time}]))
    if not headless:
        plan.append(_node('rviz2', 'rviz2', name='rviz2',
                          arguments=['-d', data_file('config', 'neurovla.rviz')],
                          parameters=[{'use_sim_time': sim_time}]))
    if gazebo:
        gz_args = '-r -s --headless-rendering empty.sdf' if headless else '-r empty.sdf'
        plan.append(Action('include', {'gz_args': gz_args, 'on_exit_shutdown': 'true'},
                           package='ros_gz_sim', file='launch/gz_sim.launch.py'))
        plan.append(_node('ros_gz_sim', 'create', name='spawn_' + ROBOT_NAME,
                          arguments=['-topic', 'robot_description', '-name', ROBOT_NAME],
                          parameters=[{'use_sim_time': sim_time}]))
        plan.append(_node('ros_gz_bridge', 'parameter_bridge', name='gz_bridge',
                          arguments=list(GZ_BRIDGE), parameters=[{'use_sim_time': sim_time}]))
        for names, extra in ((GZ_CONTROLLERS_ACTIVE, []),
                             (GZ_CONTROLLERS_INACTIVE, ['--inactive'])):
            plan.append(_node('controller_manager', 'spawner',
                              arguments=[*names, *extra, '--param-file', controllers,
                                         '--controller-manager-timeout', '120'],
                              parameters=[{'use_sim_time': sim_time}]))
    for spec in nodes(args):
        plan.append(_node(PACKAGE, spec.executable, name=spec.name, namespace=namespace(args),
                          parameters=node_parameters(spec, args, str_value),
                          remappings=remappings(spec, args),
                          # plain lines in the launch log: no tty (no colour codes), unbuffered
                          additional_env={'PYTHONUNBUFFERED': '1'}))
    return plan


def format_plan(plan: list[Action]) -> str:
    """The plan as text, one block per action (``show_plan:=true``, ``neurovla bringup
    --show-plan``); a long string value (the URDF) is shown by its size."""
    def value(v):
        v = getattr(v, 'value', v)          # launch_ros ParameterValue
        if isinstance(v, str) and len(v) > 120:
            return f'<{len(v)} characters>'
        return repr(v)

    lines = []
    for a in plan:
        kw = dict(a.kwargs)
        if a.kind == 'include':
            lines.append(f'include {a.package}/{a.file}')
            lines += [f'    {k}:={v}' for k, v in kw.items()]
            continue
        lines.append(f'node {kw.pop("package")}/{kw.pop("executable")}'
                     + (f' (name {kw.pop("name")})' if 'name' in kw else ''))
        for prm in kw.pop('parameters', []):
            if isinstance(prm, dict):
                lines += [f'    param {k}: {value(v)}' for k, v in prm.items()]
            else:
                lines.append(f'    params file {prm}')
        lines += [f'    remap {src} -> {dst}' for src, dst in kw.pop('remappings', [])]
        if kw.get('arguments'):
            lines.append('    arguments ' + ' '.join(map(str, kw.pop('arguments'))))
        lines += [f'    {k}: {v}' for k, v in kw.items() if k != 'output']
    return '\n'.join(lines)


# ---------------------------------------------------------------- parameters
def schemas(specs=None) -> dict:
    """``{node name: PARAMS}`` for every node with a parameter schema, in graph order."""
    out = {}
    for spec in NODES if specs is None else specs:
        if spec.params_module:
            out[spec.name] = list(importlib.import_module(spec.params_module).PARAMS)
    return out
