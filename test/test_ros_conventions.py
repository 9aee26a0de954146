"""How the nodes behave under the ROS 2 conventions a user's tools rely on (issue 20).

Each node runs in its own process over real DDS, started as launch_ros and the pip runner
start it (``--ros-args -r __node:=NAME``).
"""
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import spin_until

from neurovla_ros import graph

NODES = ('sim', 'spinal', 'cerebellum', 'cortex')


def _start(ros_process, name, params=None):
    """The node as the pip runner starts it (the launch passes the same arguments)."""
    spec = next(s for s in graph.NODES if s.name == name)
    return ros_process(spec.module, params=params,
                       ros_args=graph.ros_arguments(spec, graph.resolve())[1:])


def _wait_for_names(node, wanted, timeout=60.0):
    def names():
        return [n for n, _ in node.get_node_names_and_namespaces()]
    spin_until(node, lambda: all(w in names() for w in wanted), timeout)
    time.sleep(1.0)                     # every helper node of the processes is discovered too
    spin_until(node, lambda: False, 0.5)
    return names()


def test_every_node_name_is_unique(ros_process, rclpy_node):
    for name in NODES:
        _start(ros_process, name)
    names = _wait_for_names(rclpy_node, NODES)
    for name in NODES:
        assert names.count(name) == 1, f'{name} appears {names.count(name)} times: {names}'


@pytest.mark.parametrize('delay, second', [(0.1, signal.SIGINT), (0.4, signal.SIGINT),
                                           (0.2, signal.SIGTERM)])
def test_a_second_signal_during_shutdown_ends_every_node_cleanly(ros_process, rclpy_node,
                                                                  delay, second):
    """Ctrl-C in a terminal reaches every process of the group; launch then forwards SIGINT
    to each node (and escalates to SIGTERM): "already stopping", exit 0, no traceback."""
    procs = {name: _start(ros_process, name) for name in NODES}
    _wait_for_names(rclpy_node, NODES)
    for p in procs.values():
        os.killpg(p.pid, signal.SIGINT)     # the terminal: the whole process group
    time.sleep(delay)
    for p in procs.values():
        if p.poll() is None:
            os.kill(p.pid, second)
    for name, p in procs.items():
        p.wait(20)
        out = p.output()
        assert p.returncode == 0, f'{name} exit {p.returncode}:\n{out[-2000:]}'
        assert 'Traceback' not in out, f'{name}:\n{out[-2000:]}'


def test_bad_launch_arguments_are_refused_before_any_node_starts():
    with pytest.raises(ValueError, match='cortex_backend'):
        graph.launch_plan({'cortex_backend': 'bogus'})
    # every parameter a launch argument sets offers the parameter's own choices
    for spec in graph.NODES:
        schema = {p.name: p for p in graph.schemas([spec]).get(spec.name, [])}
        for param, arg in spec.arg_params.items():
            if not schema[param].choices:
                continue
            if callable(arg):     # a value that follows from the arguments: one of the choices
                assert {arg(graph.resolve({'body': b})) for b in graph.BODIES} <= {
                    None, *schema[param].choices}
            else:
                assert set(graph.ARGS_BY_NAME[arg].choices) == {'', *schema[param].choices}
    cli = subprocess.run([sys.executable, '-m', 'neurovla_ros.cli', 'bringup',
                          '--cortex-backend', 'bogus', '--duration', '1'],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 2 and 'bogus' in cli.stderr
    assert 'starting' not in cli.stdout


def test_a_bad_parameter_ends_a_node_with_one_line(ros_process):
    p = ros_process('neurovla_ros.spinal.node', params={'reference_timeout': -1.0},
                    ros_args=['-r', '__node:=spinal'])
    p.wait(60)
    out = p.output()
    assert p.returncode == 1, out
    assert 'Traceback' not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and 'reference_timeout' in lines[0], out


GLOBAL_TOPICS = {'/diagnostics', '/rosout', '/parameter_events', '/clock'}


def test_two_stacks_in_two_namespaces_share_a_domain(ros_process, rclpy_node):
    stacks = {'/arm1': NODES, '/arm2': ('sim', 'spinal')}
    for ns, names in stacks.items():
        args = graph.resolve({'namespace': ns.strip('/')})
        for name in names:
            spec = next(s for s in graph.NODES if s.name == name)
            ros_process(spec.module, ros_args=graph.ros_arguments(spec, args)[1:])
    node = rclpy_node

    def everything_up():
        have = set(node.get_node_names_and_namespaces())
        return all((n, ns) in have for ns, names in stacks.items() for n in names)
    assert spin_until(node, everything_up, 60.0), node.get_node_names_and_namespaces()
    spin_until(node, lambda: False, 2.0)
    for ns, names in stacks.items():
        for name in names:
            topics = {t for t, _ in node.get_publisher_names_and_types_by_node(name, ns)
                      + node.get_subscriber_names_and_types_by_node(name, ns)}
            stray = {t for t in topics if not t.startswith(ns + '/')} - GLOBAL_TOPICS
            assert not stray, f'{ns}/{name} uses global names {stray}'
    # each spinal layer reads its own arm and commands it; each sim publishes only its own
    for ns in stacks:
        pubs = node.get_publishers_info_by_topic(f'{ns}/joint_states')
        assert [(p.node_name, p.node_namespace) for p in pubs] == [('sim', ns)]
        subs = node.get_subscriptions_info_by_topic(f'{ns}/forward_effort_controller/commands')
        assert ('sim', ns) in [(s.node_name, s.node_namespace) for s in subs]
    assert not node.get_publishers_info_by_topic('/joint_states')
