"""Pip-mode runner (`neurovla bringup`) with the real nodes over real DDS, one process each."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from neurovla_ros import graph
from neurovla_ros.common.procs import running
from neurovla_ros.runner import NodeGraph

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRINGUP = [sys.executable, '-m', 'neurovla_ros.cli', 'bringup', '--headless']
SIM_ONLY = ('--only', 'sim')  # the process-handling tests need one real node, not the brain


def start(tmp_path, *args):
    """The runner in the background; its stdout/stderr go to files (read with ``output``)."""
    out = open(tmp_path / 'stdout.txt', 'w')
    err = open(tmp_path / 'stderr.txt', 'w')
    proc = subprocess.Popen([*BRINGUP, *args], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=err, start_new_session=True)
    proc.files = (out, err)
    return proc


def output(tmp_path):
    return (tmp_path / 'stdout.txt').read_text(), (tmp_path / 'stderr.txt').read_text()


def finish(proc, timeout):
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:  # the test failed: leave nothing behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for f in proc.files:
            f.close()


def wait_until_up(proc, tmp_path, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _out, err = output(tmp_path)
        if re.search(r'all \d+ node\(s\) up', err):
            return [int(p) for p in re.findall(r'started \S+ \(pid (\d+)\)', err)]
        assert proc.poll() is None, f'runner ended early:\n{err}'
        time.sleep(0.2)
    raise AssertionError(f'nodes not up after {timeout} s:\n{output(tmp_path)[1]}')


def descendants(pid):
    """Every process below ``pid`` (from /proc)."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                stat = open(f'/proc/{entry}/stat').read()
            except OSError:
                continue
            ppid = int(stat.rsplit(')', 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def wait_gone(pids, timeout):
    """The processes of ``pids`` still alive after ``timeout`` [s], described."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(running(p) for p in pids):
        time.sleep(0.1)
    left = {}
    for p in pids:
        if running(p):
            try:
                left[p] = open(f'/proc/{p}/cmdline').read().replace('\0', ' ')[:200]
            except OSError:
                continue
    return left


def kill(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def summary(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_bringup_runs_for_the_duration_and_prints_a_summary(tmp_path):
    t0 = time.monotonic()
    proc = start(tmp_path, '--duration', '5')
    rc = finish(proc, timeout=120)
    out, err = output(tmp_path)
    assert rc == 0, out[-3000:] + err[-3000:]
    s = summary(out)
    assert s['ok'] and s['ended'] == 'duration' and s['ran_s'] >= 5.0
    assert time.monotonic() - t0 >= 5.0
    expected = {n.name for n in graph.nodes(graph.resolve({'headless': True}), pip_only=True)}
    assert set(s['nodes']) == expected and 'sim' in expected
    for name, node in s['nodes'].items():
        assert node['alive'], name
        assert node['exit_code'] == 0, (name, err[-3000:])
    values = {k: v for st in s['nodes']['sim']['diagnostics'].values()
              for k, v in st['values'].items()}
    assert 'real_time_factor' in values, s['nodes']['sim']
    assert 0.05 < values['real_time_factor'] < 1.5  # a running sim, even on a loaded 2-core VM
    assert '=== neurovla summary: ran' in out and 'real_time_factor' in out


def _invalid_sim_params(tmp_path):
    """The packaged parameters file with one sim parameter above its maximum."""
    from neurovla_ros.sim import params as sim_params
    bad = next(p for p in sim_params.PARAMS if p.max is not None and not p.read_only
               and isinstance(p.default, (int, float)) and not isinstance(p.default, bool))
    value = type(bad.default)(bad.max + abs(bad.max) + 1)
    cfg = yaml.safe_load(open(graph.default_params_file()))
    cfg['sim']['ros__parameters'][bad.name] = value
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(cfg))
    return path, bad.name


def test_a_node_that_dies_is_reported_and_fails_the_run(tmp_path):
    path, name = _invalid_sim_params(tmp_path)
    proc = start(tmp_path, *SIM_ONLY, '--duration', '30', '--params-file', str(path))
    rc = finish(proc, timeout=120)
    out, err = output(tmp_path)
    assert rc == 1, out[-3000:] + err[-3000:]
    assert re.search(r'node sim \(pid \d+\) died with exit code', err), err[-3000:]
    tail = err.split('last output lines of sim:', 1)[1]
    assert name in tail  # the reason is among the reported lines
    s = summary(out)
    assert not s['ok'] and s['ended'] == 'node died: sim'
    assert not s['nodes']['sim']['alive']


def test_sigint_stops_every_node_cleanly(tmp_path):
    proc = start(tmp_path, *SIM_ONLY)
    pids = wait_until_up(proc, tmp_path)
    tree = descendants(proc.pid)
    assert set(pids) <= set(tree) and pids
    os.kill(proc.pid, signal.SIGINT)
    rc = finish(proc, timeout=60)
    out, err = output(tmp_path)
    assert rc == 0, out[-3000:] + err[-3000:]
    s = summary(out)
    assert s['ended'] == 'interrupted'
    assert all(n['exit_code'] == 0 for n in s['nodes'].values()), s  # they honoured SIGINT
    assert 'still running' not in err  # no escalation to SIGTERM/SIGKILL was needed
    left = wait_gone(tree, 5.0)
    kill(left)
    assert not left, (left, err[-3000:])


def test_the_runner_publishes_the_robot_description_for_late_joiners(tmp_path):
    """/robot_description (transient local), as robot_state_publisher on a ROS install."""
    import rclpy
    from conftest import spin_until
    from std_msgs.msg import String

    from neurovla_ros import robot
    from neurovla_ros.common.rosutil import LATCHED_QOS
    proc = start(tmp_path, *SIM_ONLY)
    try:
        wait_until_up(proc, tmp_path)
        time.sleep(1.0)                        # published well before this subscriber exists
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        node = rclpy.create_node('description_probe', context=ctx)
        got = []
        node.create_subscription(String, '/robot_description', got.append, LATCHED_QOS)
        try:
            assert spin_until(node, lambda: got, 20.0), 'no /robot_description'
        finally:
            node.destroy_node()
            rclpy.try_shutdown(context=ctx)
        assert got[0].data == robot.urdf_xml()
        assert set(robot.ARM_JOINTS) <= set(robot.RobotModel.from_urdf(got[0].data).joints)
    finally:
        os.kill(proc.pid, signal.SIGINT)
        assert finish(proc, timeout=60) == 0


def test_nodes_die_with_a_killed_runner(tmp_path):
    proc = start(tmp_path, *SIM_ONLY)
    pids = wait_until_up(proc, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: the kernel signals the nodes
    finish(proc, timeout=10)
    left = wait_gone(pids, 20.0)
    kill(left)
    assert not left, (left, output(tmp_path)[1][-3000:])


def test_diagnostics_are_grouped_by_node_and_none_are_lost():
    from neurovla_ros.runner import OTHER, group_statuses

    def st(hw):
        return {'level': 'OK', 'message': '', 'hardware_id': hw, 'values': {}}
    latest = {'sim: physics': st('sim'), '/spinal/reflex': st(''), 'controller': st('spinal'),
              'simulator: x': st('arm'), 'cortex: planner': st('')}
    g = group_statuses(latest, ['sim', 'spinal'])
    assert set(g['sim']) == {'sim: physics'}
    assert set(g['spinal']) == {'/spinal/reflex', 'controller'}
    assert set(g[OTHER]) == {'simulator: x', 'cortex: planner'}
    assert OTHER not in group_statuses({'sim: physics': st('')}, ['sim'])


def test_only_refuses_a_node_the_graph_does_not_start(capsys):
    from neurovla_ros import cli
    assert cli.main(['bringup', '--sim', 'none', '--only', 'sim']) == 2
    assert '--only sim: not among the nodes' in capsys.readouterr().err


# ---------------------------------------------------------------- the graph, for benchmarks
def test_node_graph_is_the_bringup_graph_with_overrides_and_choices():
    args = {'headless': True}
    g = NodeGraph(args, overrides={'sim': {'seed': 3, 'tremor_amplitude': 1.0},
                                   'cortex': {'dry_run': True}})
    specs = graph.nodes(graph.resolve(args), pip_only=True)
    assert g.names == [s.name for s in specs]
    for spec in specs:       # bringup's command line, the overrides after it (they win)
        base = graph.command(spec, graph.resolve(args))
        cmd = g.command(spec)
        assert cmd[:len(base)] == base
        extra = {'sim': ['-p', 'seed:=3', '-p', 'tremor_amplitude:=1.0'],
                 'cortex': ['-p', 'dry_run:=true']}.get(spec.name, [])
        assert cmd[len(base):] == extra
    g = NodeGraph(args, skip=('cortex',), in_process=('sim',), overrides={'sim': {'seed': 3}})
    assert g.names == ['spinal', 'cerebellum']
    assert g.cli_args('sim') == graph.ros_arguments(specs[0], graph.resolve(args),
                                                    {'seed': 3})
    assert NodeGraph(args, only=['sim']).names == ['sim']
    wrapped = NodeGraph(args, only=['sim'], prefix=['ip', 'netns', 'exec', 'host_b'])
    assert wrapped.command(specs[0]) == ['ip', 'netns', 'exec', 'host_b',
                                         *graph.command(specs[0], graph.resolve(args))]
    assert NodeGraph({**args, 'relay': 'true'}).names == ['sim', 'spinal', 'cerebellum',
                                                          'cortex', 'relay']
    for bad in ({'only': ['brain']}, {'skip': ['brain']}, {'in_process': ['brain']},
                {'overrides': {'brain': {}}}):
        with pytest.raises(ValueError, match='brain: not among the nodes'):
            NodeGraph(args, **bad)


def test_node_graph_starts_waits_until_up_and_stops(tmp_path, rclpy_node):
    """One real node (the sim, its overrides applied) with its log and CPU time."""
    from conftest import spin_until
    from rcl_interfaces.srv import GetParameters
    nodes = NodeGraph({'headless': True}, only=['sim'], log=str(tmp_path / '{name}.log'),
                      overrides={'sim': {'camera_enabled': False, 'n_objects': 0, 'seed': 3}})
    with nodes:
        assert nodes.missing(rclpy_node) == ['sim']
        assert nodes.wait_up(rclpy_node, 90.0) >= 0.0
        assert nodes.alive() and nodes.missing(rclpy_node) == []
        cli = rclpy_node.create_client(GetParameters, '/sim/get_parameters')
        assert cli.wait_for_service(timeout_sec=20.0)
        fut = cli.call_async(GetParameters.Request(names=['seed', 'n_objects',
                                                          'camera_enabled']))
        assert spin_until(rclpy_node, fut.done, 20.0)
        seed, n_objects, camera = fut.result().values
        assert (seed.integer_value, n_objects.integer_value, camera.bool_value) == (3, 0, False)
        assert nodes.cpu_seconds()['sim'] > 0.0
    assert nodes.dead() == nodes.procs and nodes.procs[0].returncode == 0
    assert nodes.logs() == {'sim': str(tmp_path / 'sim.log')}
    assert 'MuJoCo world' in (tmp_path / 'sim.log').read_text()


def test_node_graph_reports_a_node_that_dies(tmp_path, rclpy_node):
    path, name = _invalid_sim_params(tmp_path)
    nodes = NodeGraph({'headless': True, 'params_file': str(path)}, only=['sim'])
    with nodes, pytest.raises(RuntimeError, match='sim died') as err:
        nodes.wait_up(rclpy_node, 90.0)
    assert name in str(err.value)       # with its last output lines


def test_an_in_process_node_gets_the_bringup_arguments(tmp_path):
    """A node the caller runs itself (a bench's SimNode) reads the same parameters file and
    overrides as its process would."""
    import rclpy

    from neurovla_ros.sim.node import SimNode
    cfg = yaml.safe_load(open(graph.default_params_file()))
    cfg['sim']['ros__parameters']['imu_rate_hz'] = 123.0
    path = tmp_path / 'p.yaml'
    path.write_text(yaml.safe_dump(cfg))
    nodes = NodeGraph({'params_file': str(path)}, in_process=('sim',),
                      overrides={'sim': {'seed': 3, 'camera_enabled': False}})
    assert 'sim' not in nodes.names
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        sim = SimNode(context=ctx, cli_args=nodes.cli_args('sim'))
        try:
            assert sim.get_name() == 'sim'
            assert (sim.p.imu_rate_hz, sim.p.seed, sim.p.camera_enabled) == (123.0, 3, False)
        finally:
            sim.close()
            sim.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
