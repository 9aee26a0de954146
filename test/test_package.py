"""Package plumbing: package.xml, setup files, launch files, the graph mapping, generated
parameter files, the CLI, and the rule that only node (node.py, *_node.py), runner, bench and
CLI modules import rclpy."""
import ast
import importlib
import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

from neurovla_ros import cli, graph, robot

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(REPO, 'neurovla_ros')
ALL_CONTROLLERS = set(graph.GZ_CONTROLLERS_ACTIVE) | set(graph.GZ_CONTROLLERS_INACTIVE)
COMBOS = [dict(sim=s, headless=h) for s in ('mujoco', 'gazebo', 'none') for h in (False, True)]


def read(rel):
    with open(os.path.join(REPO, rel), encoding='utf-8') as f:
        return f.read()


def exec_depends(env=None):
    """exec_depends of package.xml whose condition holds in ``env`` (None: all of them).
    Conditions are of the form ``$VAR == value`` / ``$VAR != value``, as rosdep evaluates."""
    root = ET.fromstring(read('package.xml'))
    out = set()
    for e in root.findall('exec_depend'):
        cond = e.get('condition')
        if cond and env is not None:
            var, op, value = cond.split()
            holds = env.get(var.lstrip('$'), '') == value
            if holds != (op == '=='):
                continue
        out.add(e.text)
    return out


def controllers_yaml():
    return yaml.safe_load(read('config/controllers.yaml'))


# ---------------------------------------------------------------- package files
def test_package_xml_is_format3_ament_python_with_the_ros_deps():
    root = ET.fromstring(read('package.xml'))
    assert root.get('format') == '3'
    assert root.find('name').text == 'neurovla'
    assert root.find('export/build_type').text == 'ament_python'
    assert {'rclpy', 'std_msgs', 'sensor_msgs', 'geometry_msgs', 'trajectory_msgs',
            'diagnostic_msgs', 'launch', 'launch_ros', 'xacro'} <= exec_depends()
    assert 'liburdfdom-tools' in {e.text for e in root.findall('test_depend')}
    # used by the code: rcl_interfaces (parameter descriptors), ament_index_python (launch)
    assert {'rcl_interfaces', 'ament_index_python'} <= exec_depends()


def test_gazebo_and_rviz_are_optional_dependencies():
    mujoco_plan = {a.kwargs.get('package') for a in graph.launch_plan({'headless': 'true'})}
    default = exec_depends({})
    assert mujoco_plan - {'neurovla'} <= default
    assert 'rviz2' in default and not set(graph.GAZEBO_PACKAGES) & default
    assert 'rviz2' not in exec_depends({'NEUROVLA_HEADLESS': '1'})
    gazebo = exec_depends({'NEUROVLA_GAZEBO': '1'})
    assert {a.kwargs.get('package') or a.package
            for a in graph.launch_plan({'sim': 'gazebo'})} - {'neurovla'} <= gazebo
    # without the optional packages: no rviz2; sim:=gazebo says what to install
    plan = graph.launch_plan({}, installed=lambda p: p != 'rviz2')
    assert 'rviz2' not in {a.kwargs.get('package') for a in plan}
    with pytest.raises(ValueError, match='NEUROVLA_GAZEBO=1 rosdep'):
        graph.launch_plan({'sim': 'gazebo'}, installed=lambda p: p not in graph.GAZEBO_PACKAGES)


def test_every_package_the_launch_starts_is_an_exec_depend():
    used = {a.kwargs['package'] if a.kind == 'node' else a.package
            for combo in COMBOS for a in graph.launch_plan(combo)} - {'neurovla'}
    assert used == {'robot_state_publisher', 'rviz2', 'ros_gz_sim', 'ros_gz_bridge',
                    'controller_manager'}
    assert used <= exec_depends()
    cm = controllers_yaml()['controller_manager']['ros__parameters']
    plugin_pkgs = {v['type'].split('/')[0] for v in cm.values() if isinstance(v, dict)}
    assert plugin_pkgs <= exec_depends() | {'forward_command_controller'}
    assert 'forward_command_controller' in exec_depends()


def test_setup_cfg_installs_scripts_where_ros2_run_looks():
    text = read('setup.cfg')
    assert 'script_dir=$base/lib/neurovla' in text
    assert 'install_scripts=$base/lib/neurovla' in text
    assert os.path.isfile(os.path.join(REPO, 'resource', 'neurovla'))


def test_setup_py_data_files_and_console_scripts(monkeypatch):
    from distutils.core import run_setup

    import setuptools  # noqa: F401 - provides distutils
    monkeypatch.chdir(REPO)
    dist = run_setup('setup.py', stop_after='config')
    files = {dst: set(srcs) for dst, srcs in dist.data_files}
    assert files['share/ament_index/resource_index/packages'] == {'resource/neurovla'}
    assert 'package.xml' in files['share/neurovla']
    assert {'launch/bringup', 'launch/bringup.launch.py'} <= files['share/neurovla/launch']
    assert 'urdf/neurovla_arm.urdf.xacro' in files['share/neurovla/urdf']
    assert {'config/neurovla.yaml', 'config/controllers.yaml',
            'config/neurovla.rviz'} <= files['share/neurovla/config']
    scripts = dict(s.replace(' ', '').split('=') for s in dist.entry_points['console_scripts'])
    assert scripts['neurovla'] == 'neurovla_ros.cli:main'
    for spec in graph.NODES:
        assert scripts.get(spec.executable) == spec.module + ':main', spec


# ---------------------------------------------------------------- launch files
def _calls(tree):
    return {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}


def test_bringup_launch_py_maps_over_the_graph():
    tree = ast.parse(read('launch/bringup.launch.py'))
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               for a in n.names}
    assert ('neurovla_ros', 'graph') in imports
    assert {('launch.actions', 'DeclareLaunchArgument'), ('launch.actions', 'OpaqueFunction'),
            ('launch_ros.actions', 'Node')} <= imports
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert 'generate_launch_description' in funcs
    calls = _calls(tree)
    assert {'graph.launch_plan', 'DeclareLaunchArgument', 'OpaqueFunction', 'Node',
            'IncludeLaunchDescription', 'LaunchConfiguration'} <= calls
    assert 'graph.LAUNCH_ARGS' in ast.unparse(tree)


def test_bringup_without_extension_loads_the_same_file_and_is_tried_as_python():
    """ros2 launch tries XML, then YAML, then Python for a name without extension."""
    text = read('launch/bringup')
    tree = ast.parse(text)
    assert "'bringup.launch.py'" in text
    assert any(isinstance(n, ast.Assign) and n.targets[0].id == 'generate_launch_description'
               for n in tree.body)
    with pytest.raises(ET.ParseError):
        ET.fromstring(text)
    try:
        as_yaml = yaml.safe_load(text)
    except yaml.YAMLError:
        as_yaml = None
    assert not (isinstance(as_yaml, dict) and len(as_yaml) == 1)  # launch_yaml needs one root


# ---------------------------------------------------------------- the graph
def test_launch_args_are_the_documented_ones():
    assert [a.name for a in graph.LAUNCH_ARGS] == [
        'body', 'sim', 'port', 'use_sim_time', 'headless', 'params_file', 'instruction',
        'cortex_backend', 'namespace', 'relay', 'relay_loss', 'relay_delay_s', 'show_plan']
    for a in graph.LAUNCH_ARGS:
        assert a.description and (not a.choices or a.default in a.choices)


def test_resolve_fills_defaults_and_refuses_bad_values():
    args = graph.resolve({'headless': True})
    assert args['sim'] == 'mujoco' and args['headless'] == 'true'
    with pytest.raises(ValueError, match='sim'):
        graph.resolve({'sim': 'webots'})
    with pytest.raises(ValueError, match='unknown launch argument'):
        graph.resolve({'simulator': 'mujoco'})


def test_body_takes_sim_as_its_older_name():
    assert graph.resolve({})['body'] == 'mujoco'
    assert graph.resolve({'sim': 'none'})['body'] == 'none'
    assert graph.resolve({'body': 'dynamixel'})['body'] == 'dynamixel'
    with pytest.raises(ValueError, match='disagree'):
        graph.resolve({'body': 'feetech', 'sim': 'gazebo'})
    with pytest.raises(ValueError, match='body'):
        graph.resolve({'body': 'webots'})


def test_servo_bodies_start_the_bridge_and_on_the_emulator_the_sim_plays_the_servos():
    def started(values):
        args = graph.resolve(values)
        return {s.name: graph.forwarded_params(s, args) for s in graph.nodes(args)}
    real = started({'body': 'dynamixel', 'port': '/dev/ttyUSB0'})
    assert 'sim' not in real
    assert real['hardware'] == {'protocol': 'dynamixel', 'port': '/dev/ttyUSB0'}
    assert real['spinal'] == {}                         # effort: the default interface
    emu = started({'body': 'feetech', 'port': 'emulator'})
    assert emu['sim'] == {'servo_bus': 'feetech'}
    assert emu['hardware'] == {'protocol': 'feetech', 'port': 'emulator',   # a shared CPU
                               'reply_margin_ms': graph.EMULATOR_REPLY_MARGIN_MS}
    assert emu['spinal'] == {'command_interface': 'position'}   # position-only servos
    sim = started({})
    assert 'hardware' not in sim and sim['sim'] == {}
    spinal = next(s for s in graph.NODES if s.name == 'spinal')
    cmd = graph.ros_arguments(spinal, graph.resolve({'body': 'feetech'}))
    assert "command_interface:='position'" in cmd


def test_use_sim_time_follows_gazebo_unless_set():
    assert graph.use_sim_time(graph.resolve({'sim': 'gazebo'}))
    assert not graph.use_sim_time(graph.resolve({'sim': 'mujoco'}))
    assert graph.use_sim_time(graph.resolve({'sim': 'mujoco', 'use_sim_time': 'true'}))
    assert not graph.use_sim_time(graph.resolve({'sim': 'gazebo', 'use_sim_time': 'false'}))


def test_node_specs_are_consistent():
    names = [s.name for s in graph.NODES]
    assert len(names) == len(set(names))
    for spec in graph.NODES:
        rel = spec.module.replace('.', '/') + '.py'
        assert os.path.isfile(os.path.join(REPO, rel)), rel
        if spec.params_module:
            mod = importlib.import_module(spec.params_module)
            assert mod.NODE_NAME == spec.name
        for arg, values in spec.enabled_when.items():
            assert set(values) <= set(graph.ARGS_BY_NAME[arg].choices)
        assert {a for a in spec.arg_params.values() if not callable(a)} <= set(graph.ARGS_BY_NAME)
        for src, dst in spec.remappings:
            assert src and dst
    assert 'sim' in names


def _by_exe(plan):
    return {a.kwargs['executable']: a for a in plan if a.kind == 'node'}


def test_mujoco_plan_with_gui():
    plan = graph.launch_plan({'sim': 'mujoco'})
    exes = _by_exe(plan)
    assert set(exes) == {'robot_state_publisher', 'rviz2'} | {
        s.executable for s in graph.nodes(graph.resolve({'sim': 'mujoco'}))}
    assert not [a for a in plan if a.kind == 'include']
    desc = exes['robot_state_publisher'].kwargs['parameters'][0]['robot_description']
    assert '<robot name="neurovla_arm"' in desc and 'mock_components/GenericSystem' in desc
    rviz_cfg = exes['rviz2'].kwargs['arguments'][1]
    assert os.path.isfile(rviz_cfg) and yaml.safe_load(open(rviz_cfg))['Visualization Manager']
    sim = exes['sim_node'].kwargs
    assert sim['package'] == 'neurovla' and sim['name'] == 'sim'
    assert sim['parameters'] == [graph.default_params_file(), {'use_sim_time': False}]
    assert graph.default_params_file() == os.path.join(REPO, 'config', 'neurovla.yaml')


def test_headless_drops_rviz_and_sim_none_drops_the_body():
    assert 'rviz2' not in _by_exe(graph.launch_plan({'sim': 'mujoco', 'headless': True}))
    exes = _by_exe(graph.launch_plan({'sim': 'none', 'headless': True}))
    assert 'sim_node' not in exes and 'create' not in exes and 'robot_state_publisher' in exes


def test_gazebo_plan():
    plan = graph.launch_plan({'sim': 'gazebo', 'headless': True})
    (inc,) = [a for a in plan if a.kind == 'include']
    assert (inc.package, inc.file) == ('ros_gz_sim', 'launch/gz_sim.launch.py')
    assert '-s' in inc.kwargs['gz_args'].split() and 'empty.sdf' in inc.kwargs['gz_args']
    nodes = [a.kwargs for a in plan if a.kind == 'node']
    exes = [n['executable'] for n in nodes]
    assert 'sim_node' not in exes and 'rviz2' not in exes
    assert all(n['parameters'][-1]['use_sim_time'] is True for n in nodes)
    desc = nodes[exes.index('robot_state_publisher')]['parameters'][0]['robot_description']
    controllers_file = os.path.join(REPO, 'config', 'controllers.yaml')
    assert 'gz_ros2_control/GazeboSimSystem' in desc and controllers_file in desc
    spawn = nodes[exes.index('create')]['arguments']
    assert spawn[spawn.index('-topic') + 1] == 'robot_description'
    bridge = nodes[exes.index('parameter_bridge')]['arguments']
    assert {b.split('@')[0] for b in bridge} >= {'/clock', '/imu/data', '/camera/image_raw',
                                                 '/camera/camera_info'}
    spawners = [n['arguments'] for n in nodes if n['executable'] == 'spawner']
    spawned = {c for args in spawners for c in args if not c.startswith('-') and '/' not in c
               and not c.isdigit()}
    assert spawned == ALL_CONTROLLERS
    inactive = {c for args in spawners if '--inactive' in args for c in args} & ALL_CONTROLLERS
    assert inactive == set(graph.GZ_CONTROLLERS_INACTIVE)
    assert all(args[args.index('--param-file') + 1] == controllers_file for args in spawners)
    gui = graph.launch_plan({'sim': 'gazebo'})
    assert '-s' not in [a for a in gui if a.kind == 'include'][0].kwargs['gz_args'].split()


def _command_topics(action) -> set[str]:
    """The ros2_control command topics a neurovla node of the plan publishes: the literal
    ``*_controller/*`` topics of its module's create_publisher calls, and the spinal node's
    command topic from its parameters (the file, then the plan's overrides)."""
    from neurovla_ros.spinal.params import command_topic
    kw = action.kwargs
    (spec,) = [s for s in graph.NODES if s.name == kw['name']]
    src = ast.parse(open(importlib.util.find_spec(spec.module).origin).read())
    topics = {c.args[1].value for c in ast.walk(src) if isinstance(c, ast.Call)
              and getattr(c.func, 'attr', '') == 'create_publisher' and len(c.args) > 1
              and isinstance(c.args[1], ast.Constant) and '_controller/' in c.args[1].value}
    if spec.name == 'spinal':
        with open(kw['parameters'][0]) as f:
            p = {**yaml.safe_load(f)['spinal']['ros__parameters'], **kw['parameters'][1]}
        topics.add(command_topic(p['command_topic'], p['command_interface']))
    return topics


@pytest.mark.parametrize('args', [{'sim': 'gazebo'}, {'body': 'gazebo', 'headless': True}])
def test_gazebo_commands_go_to_active_controllers(args):
    """Every neurovla command topic of the Gazebo plan belongs to a controller that the plan
    spawns active, defined in config/controllers.yaml, of the interface the node commands
    (issue 20 item 8: the spinal node's effort commands once went to an inactive controller)."""
    plan = graph.launch_plan(args)
    cfg = controllers_yaml()
    defined = {k for k, v in cfg['controller_manager']['ros__parameters'].items()
               if isinstance(v, dict)}
    spawners = [a.kwargs['arguments'] for a in plan if a.kind == 'node'
                and a.kwargs['executable'] == 'spawner']
    active = {c for s in spawners if '--inactive' not in s for c in s} & defined
    ours = [a for a in plan if a.kind == 'node' and a.kwargs['package'] == 'neurovla']
    topics = {t for a in ours for t in _command_topics(a)}
    assert {'forward_position_controller/commands', 'gripper_controller/commands'} <= topics
    for t in topics:
        controller, leaf = t.split('/')
        assert leaf == 'commands' and controller in active, (t, sorted(active))
        if controller.startswith('forward_'):
            assert cfg[controller]['ros__parameters']['interface_name'] == \
                controller.split('_')[1]
    spinal = [a for a in ours if a.kwargs['name'] == 'spinal'][0]
    assert spinal.kwargs['parameters'][1]['command_interface'] == 'position'
    # the MuJoCo body keeps the effort interface (the sim compensates gravity)
    mj = [a for a in graph.launch_plan({'body': 'mujoco'}) if a.kind == 'node'
          and a.kwargs.get('name') == 'spinal']
    assert _command_topics(mj[0]) == {'forward_effort_controller/commands'}


def test_controllers_yaml_matches_the_urdf():
    cfg = controllers_yaml()
    cm = cfg['controller_manager']['ros__parameters']
    assert {k for k, v in cm.items() if isinstance(v, dict)} == ALL_CONTROLLERS
    arm = list(robot.ARM_JOINTS)
    for name, iface in (('forward_position_controller', 'position'),
                        ('forward_velocity_controller', 'velocity'),
                        ('forward_effort_controller', 'effort')):
        assert cfg[name]['ros__parameters'] == {'joints': arm, 'interface_name': iface}
    assert cfg['joint_trajectory_controller']['ros__parameters']['joints'] == arm
    assert cfg['gripper_controller']['ros__parameters']['joints'] == ['left_finger_joint']
    assert cfg['imu_sensor_broadcaster']['ros__parameters']['sensor_name'] == 'imu_sensor'


class Wrapped(str):
    """Stands in for launch_ros' ParameterValue(value_type=str) in the hook test."""


def test_string_hook_and_launch_arg_forwarding():
    spec = graph.NodeSpec('brain', 'brain_node', 'neurovla_ros.brain.node',
                          remappings=(('/in', '/joint_states'),),
                          arg_params={'instruction': 'instruction', 'backend': 'cortex_backend'})
    args = graph.resolve({'instruction': "put the cube in the bowl, don't drop it"})
    params = graph.node_parameters(spec, args, str_value=Wrapped)
    assert params[1] == {'use_sim_time': False,
                         'instruction': "put the cube in the bowl, don't drop it"}
    assert isinstance(params[1]['instruction'], Wrapped)  # empty cortex_backend not forwarded
    ros_args = graph.ros_arguments(spec, args)
    assert ros_args[:6] == ['--ros-args', '-r', '__node:=brain', '--params-file',
                            graph.default_params_file(), '-p']
    assert "instruction:='put the cube in the bowl, don''t drop it'" in ros_args
    assert ros_args[-2:] == ['-r', '/in:=/joint_states']
    plan = graph.launch_plan({}, str_value=Wrapped)
    rsp = _by_exe(plan)['robot_state_publisher'].kwargs['parameters'][0]
    assert isinstance(rsp['robot_description'], Wrapped)


def test_an_openpi_cortex_turns_the_sims_wrist_camera_on():
    sim = next(s for s in graph.NODES if s.name == 'sim')
    for backend, want in (('openpi', True), ('local', None), ('', None)):
        args = graph.resolve({'cortex_backend': backend})
        assert graph.forwarded_params(sim, args).get('wrist_camera_enabled') is want
    params = graph.node_parameters(sim, graph.resolve({'cortex_backend': 'openpi'}),
                                   str_value=Wrapped)
    assert params[1]['wrist_camera_enabled'] is True       # a bool, not a wrapped string
    assert 'wrist_camera_enabled:=true' in graph.ros_arguments(
        sim, graph.resolve({'cortex_backend': 'openpi'}))


def test_forwarded_string_values_stay_strings_in_rcl():
    """`-p name:=value` is parsed as YAML by rcl: the quoting keeps 'true' and '42' strings."""
    import rclpy
    from rclpy.node import Node
    spec = graph.NodeSpec('probe', 'x', 'x', arg_params={'instruction': 'instruction'})
    for text in ('true', "42 it's"):
        ctx = rclpy.Context()
        rclpy.init(args=graph.ros_arguments(spec, graph.resolve({'instruction': text})),
                   context=ctx)
        try:
            node = Node('renamed_by_the_args', context=ctx)
            assert node.get_name() == 'probe'
            assert node.declare_parameter('instruction', '').value == text
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=ctx)
    # typed overrides (the benchmarks' graphs): each keeps its type and wins over the rest
    overrides = {'backend': 'x', 'flag': True, 'rate': 2.5, 'whole': 1.0, 'count': 4,
                 'numbers': [0.5, 1.5], 'empty': '', 'yes': 'yes'}
    ctx = rclpy.Context()
    rclpy.init(args=graph.ros_arguments(spec, graph.resolve(), overrides), context=ctx)
    try:
        node = Node('probe', context=ctx)
        for name, value in overrides.items():
            got = node.declare_parameter(name, type(value)() if name != 'numbers'
                                         else [0.0]).value
            assert got == value and type(got) is type(value), (name, got)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
    with pytest.raises(TypeError):
        graph.param_value({'a': 1})


def test_pip_mode_commands():
    args = graph.resolve({})
    (sim,) = [s for s in graph.nodes(args, pip_only=True) if s.name == 'sim']
    cmd = graph.command(sim, args, python='py')
    assert cmd == ['py', '-m', 'neurovla_ros.sim.node', '--ros-args', '-r', '__node:=sim',
                   '--params-file', graph.default_params_file(), '-p', 'use_sim_time:=false']


# ---------------------------------------------------------------- parameters + CLI
def test_generated_parameter_files_are_up_to_date():
    stale = [rel for rel, _have, _want in cli.stale_files()]
    assert not stale, f'{stale} out of date: run `neurovla params --write`'
    assert list(graph.schemas()) == [s.name for s in graph.NODES if s.params_module]
    cfg = yaml.safe_load(read('config/neurovla.yaml'))
    for name, params in graph.schemas().items():
        assert cfg[name]['ros__parameters'] == {p.name: p.default for p in params}


def test_cli_params_prints_and_checks(capsys):
    assert cli.main(['params', '--yaml']) == 0
    assert capsys.readouterr().out == read('config/neurovla.yaml')
    assert cli.main(['params', '--markdown']) == 0
    assert capsys.readouterr().out == read('docs/parameters.md')
    assert cli.main(['params', '--check']) == 0


def test_cli_bench_and_train_list_what_exists(capsys):
    assert cli.main(['bench', 'no_such_bench']) == 2
    err = capsys.readouterr().err
    assert "unknown bench 'no_such_bench'" in err and 'available:' in err
    assert 'common' not in cli.benchmarks()
    for name in cli.benchmarks():
        assert hasattr(importlib.import_module(f'neurovla_ros.bench.{name}'), 'main'), name
    assert cli.main(['train']) == 2
    for name in cli.trainables():
        assert os.path.isfile(os.path.join(PKG, name, 'train.py'))


def test_cli_refuses_gazebo_in_pip_mode(capsys):
    assert cli.main(['bringup', '--sim', 'gazebo']) == 2
    assert 'ros2 launch neurovla bringup sim:=gazebo' in capsys.readouterr().err


# ---------------------------------------------------------------- rclpy only at the edges
def _allowed_rclpy(rel):
    return (os.path.basename(rel) == 'node.py' or rel.endswith('_node.py')
            or rel.startswith('bench/')
            or rel in ('common/rosutil.py', 'runner.py', 'cli.py'))


def test_core_modules_never_import_rclpy():
    offenders = []
    for dirpath, _dirs, files in os.walk(PKG):
        for fn in files:
            if not fn.endswith('.py'):
                continue
            path = os.path.join(dirpath, fn)
            rel = os.path.relpath(path, PKG).replace(os.sep, '/')
            if _allowed_rclpy(rel):
                continue
            tree = ast.parse(open(path, encoding='utf-8').read(), path)
            for n in ast.walk(tree):
                mods = ([a.name for a in n.names] if isinstance(n, ast.Import)
                        else [n.module or ''] if isinstance(n, ast.ImportFrom) else [])
                if any(m == 'rclpy' or m.startswith('rclpy.') for m in mods):
                    offenders.append(f'{rel}:{n.lineno}')
    assert not offenders, ('rclpy imported outside node.py/*_node.py/rosutil/runner/cli/bench: '
                           f'{offenders}')
    assert not _allowed_rclpy('graph.py') and not _allowed_rclpy('cortex/policy.py')


def test_show_plan_prints_what_a_launch_starts_and_starts_nothing():
    res = subprocess.run([sys.executable, '-m', 'neurovla_ros.cli', 'bringup', '--show-plan',
                          '--sim', 'gazebo', '--cortex-backend', 'scripted'],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for spec in graph.nodes(graph.resolve({'sim': 'gazebo'})):
        assert f'node neurovla/{spec.executable} (name {spec.name})' in out
    assert 'node neurovla/sim_node' not in out           # Gazebo is the body
    assert 'include ros_gz_sim/launch/gz_sim.launch.py' in out
    assert "param backend: 'scripted'" in out
    assert 'robot_description: <' in out                 # the URDF by its size
    assert graph.ARGS_BY_NAME['show_plan'].choices == ('true', 'false')


def test_relay_is_off_by_default_and_relay_true_routes_the_cortex_through_it():
    default = graph.launch_plan({'headless': True})
    assert 'relay_node' not in _by_exe(default)
    assert not _by_exe(default)['cortex_node'].kwargs['remappings']
    plan = _by_exe(graph.launch_plan({'headless': True, 'relay': True, 'relay_loss': '0.1',
                                      'relay_delay_s': '0.05', 'namespace': 'arm1'}))
    relay = plan['relay_node'].kwargs
    assert relay['name'] == 'relay' and relay['namespace'] == '/arm1'
    assert relay['parameters'][1] == {'use_sim_time': False, 'loss': 0.1, 'delay_s': 0.05}
    from neurovla_ros.relay.params import TOPICS
    remaps = plan['cortex_node'].kwargs['remappings']
    assert remaps == [(t, 'relay_in/' + t) for t in (e.split('@')[0] for e in TOPICS)]
    assert [t.split('@')[0] for t in TOPICS] == ['cortex/goal_pose', 'cortex/joint_goal',
                                                 'gripper_controller/commands']
    for name in ('sim_node', 'spinal_node', 'cerebellum_node'):     # the body side unchanged
        assert plan[name].kwargs['remappings'] == []
    spec = next(s for s in graph.NODES if s.name == 'cortex')
    args = graph.resolve({'relay': 'true'})
    assert graph.ros_arguments(spec, args)[-6:] == [
        a for src, dst in remaps for a in ('-r', f'{src}:={dst}')]
    for bad in ({'relay_loss': '1.5'}, {'relay_loss': 'lots'}, {'relay_delay_s': '-1'}):
        with pytest.raises(ValueError, match='launch argument relay_'):
            graph.launch_plan({'relay': 'true', **bad})


def test_show_plan_with_relay_shows_the_remaps():
    res = subprocess.run([sys.executable, '-m', 'neurovla_ros.cli', 'bringup', '--show-plan',
                          '--headless', 'relay:=true', 'relay_loss:=0.3',
                          'relay_delay_s:=0.2'], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert 'node neurovla/relay_node (name relay)' in out
    assert 'param loss: 0.3' in out and 'param delay_s: 0.2' in out
    for t in ('cortex/goal_pose', 'cortex/joint_goal', 'gripper_controller/commands'):
        assert f'remap {t} -> relay_in/{t}' in out
    bad = subprocess.run([sys.executable, '-m', 'neurovla_ros.cli', 'bringup', '--show-plan',
                          'relay:=maybe'], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "relay:='maybe' is not one of" in bad.stderr
