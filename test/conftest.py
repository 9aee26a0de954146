"""Test isolation for real DDS: a unique ROS_DOMAIN_ID per test run, localhost discovery only.

Fixtures: ``ros_process`` starts a node module in its own process (real DDS between
processes) and stops it at the end of the test; ``rclpy_node`` gives an initialised probe node.
"""
import os
import sys
import time

import pytest

os.environ['ROS_DOMAIN_ID'] = str(1 + os.getpid() % 200)
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('MUJOCO_GL', 'egl')
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ['HF_HUB_OFFLINE'] = '1'

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# command-line tools the tests run -> the Debian package (debian-packages.txt) that has it
DEBIAN_TOOLS = {'check_urdf': 'liburdfdom-tools', 'ip': 'iproute2'}


def tool(name: str) -> str:
    """Path of a command-line tool; a test fails naming its Debian package when it is missing."""
    import shutil
    path = shutil.which(name)
    if path is None:
        pytest.fail(f'{name} is not installed: `sudo apt-get install {DEBIAN_TOOLS[name]}` '
                    '(bash setup.sh installs it when run as root)', pytrace=False)
    return path


@pytest.fixture
def ros_process():
    """start(module, params={}, args=[], ros_args=[]) -> ``procs.Proc`` running ``python -m
    module *args --ros-args *ros_args -p ...`` (typed parameter values); all are stopped at the
    end of the test."""
    from neurovla_ros.common import procs
    from neurovla_ros.graph import param_args
    started = []

    def start(module, params=None, args=(), env=None, ros_args=()):
        cmd = [sys.executable, '-m', module, *args, '--ros-args', *ros_args,
               *param_args(params or {})]
        p = procs.Proc(cmd, module.split('.')[-2], cwd=REPO, env={**os.environ, **(env or {})},
                       tail=200)
        started.append(p)
        return p

    yield start
    procs.stop(started)


@pytest.fixture
def rclpy_node():
    """An initialised rclpy context and a probe node; spin it with ``spin_until``."""
    import rclpy
    from rclpy.node import Node
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = Node('test_probe', context=ctx)
    yield node
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def spin_until(node, predicate, timeout=10.0):
    """Spin ``node`` (EventsExecutor, spin_once) until ``predicate()`` or timeout; return it."""
    from rclpy.experimental import EventsExecutor
    ex = EventsExecutor(context=node.context)
    ex.add_node(node)
    try:
        return spin_executor_until(ex, predicate, timeout)
    finally:
        ex.remove_node(node)


def spin_executor_until(executor, predicate, timeout: float, step: float = 0.02) -> bool:
    """``executor.spin_once`` until ``predicate()`` or timeout; return it. (A test that keeps
    one executor for its whole run: a message that arrives while no executor holds the node,
    between ``spin_until`` calls, can be missed by the EventsExecutor.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step)
    return bool(predicate())


def run_bench(tmp_path, args, timeout: float) -> tuple[str, dict]:
    """``neurovla bench ARGS`` as a user runs it, in ``tmp_path`` (its bench_out/ there): the
    output, and the JSON line it ends with (the run must succeed)."""
    import json

    from neurovla_ros.common import procs
    log = tmp_path / 'bench.log'
    p = procs.Proc([sys.executable, '-m', 'neurovla_ros.cli', 'bench', *args], 'bench',
                   log=str(log), cwd=str(tmp_path), env={**os.environ, 'PYTHONPATH': REPO})
    try:
        rc = p.wait(timeout)
    finally:
        procs.stop([p])
    text = log.read_text()
    assert rc == 0, text[-4000:]
    return text, json.loads(text.strip().splitlines()[-1])
