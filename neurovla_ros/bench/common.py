"""Shared benchmark helpers: percentiles, output folder, the final JSON line."""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def out_dir(path: str = 'bench_out') -> str:
    os.makedirs(path, exist_ok=True)
    return path


def private_graph(domain_base: int = 100, domains: int = 100, cap_torch: bool = True) -> str:
    """A DDS domain of this bench's own (from its pid; a ROS_DOMAIN_ID exported in the shell
    is overridden), discovery on this host only, torch capped to one thread: a bench never
    mixes with a running stack or a test. Returns the domain."""
    os.environ['ROS_DOMAIN_ID'] = str(domain_base + os.getpid() % domains)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    if cap_torch:
        from ..common.rosutil import cap_torch_threads
        cap_torch_threads()
    return os.environ['ROS_DOMAIN_ID']


def add_speed_option(ap, default: float = 1.0, what: str = 'body') -> None:
    ap.add_argument('--speed', type=float, default=default,
                    help=f'{what} speed (sim seconds per wall second); 1 = real time, < 1 gives '
                         'a loaded machine slack')


def add_set_option(ap) -> None:
    ap.add_argument('--set', action='append', default=[], metavar='NODE.PARAM=VALUE',
                    help='a parameter override (YAML value), e.g. spinal.stop_deceleration=20')


def with_sets(overrides: dict, items) -> dict:
    """``overrides`` ({node: {param: value}}) with each ``--set node.param=value`` added."""
    import yaml
    out = {k: dict(v) for k, v in overrides.items()}
    for item in items:
        key, eq, value = item.partition('=')
        name, dot, param = key.partition('.')
        if not (eq and dot and name and param):
            raise SystemExit(f'--set {item!r}: expected NODE.PARAM=VALUE')
        out.setdefault(name, {})[param] = yaml.safe_load(value)
    return out


def pct(values, q: float) -> float:
    """q-th percentile of ``values`` (NaN when empty), rounded for printing."""
    v = np.asarray(values, float)
    return float(np.percentile(v, q)) if v.size else float('nan')


def emit(result: dict) -> None:
    """Print the result as the last line of output: one JSON object."""
    clean = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}
    sys.stdout.flush()
    print(json.dumps(clean), flush=True)


MINIMAL_SIM = {'camera_enabled': False, 'n_objects': 0, 'imu_rate_hz': 50.0,
               'wrench_rate_hz': 50.0}    # the spinal benches' body: no camera, slow IMU/wrench


def graph_with_sim(bench_name: str, overrides: dict | None = None, only=None,
                   speed: float = 1.0, log_name: str = '{bench}_{name}.log',
                   sim_time_for_all: bool = True, args: dict | None = None):
    """The bringup's graph (``runner.NodeGraph``) with the sim in this process, for benches
    that drive the body themselves: the other nodes (``only``: just these) are started first,
    their output in bench_out/``log_name``; then the ``SimNode`` is built with the arguments
    bringup gives it and takes its FIFO priority (this process is the body). ``overrides``:
    ``{node: {parameter: typed value}}``. ``speed`` < 1 runs every node on sim time at that
    fraction of real time (``sim_time_for_all`` False: only the sim; the others keep the wall
    clock and take no /clock stream). ``args``: further bringup arguments (e.g. ``{'body':
    'dynamixel', 'port': 'emulator'}``). Returns (NodeGraph, rclpy context, SimNode)."""
    import rclpy

    from ..common.rosutil import go_realtime
    from ..runner import NodeGraph
    from ..sim.node import SimNode

    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    slow = speed != 1.0
    if slow:
        overrides.setdefault('sim', {}).update(use_sim_time=True, speed=float(speed))
    nodes = NodeGraph({**(args or {}), 'headless': True,
                       'use_sim_time': slow and sim_time_for_all},
                      overrides=overrides,
                      only=only, in_process=('sim',),
                      log=os.path.join(out_dir(), log_name.format(bench=bench_name,
                                                                  name='{name}')))
    nodes.start()
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        sim = SimNode(context=ctx, cli_args=nodes.cli_args('sim'))
    except BaseException:
        nodes.stop()
        rclpy.try_shutdown(context=ctx)
        raise
    go_realtime(sim)
    return nodes, ctx, sim


def sim_with_spinal(bench_name: str, spinal_params: dict, speed: float = 1.0):
    """An in-process sim (no camera, no objects, slow IMU/wrench: :data:`MINIMAL_SIM`) and the
    spinal node in its own process (:func:`graph_with_sim`), for the spinal benchmarks. Returns
    (spinal ``procs.Proc``, rclpy context, SimNode, spinal log path). ``spinal_params``: typed
    values. ``speed`` < 1 runs in simulated time at that fraction of real time."""
    nodes, ctx, sim = graph_with_sim(bench_name, {'sim': MINIMAL_SIM, 'spinal': spinal_params},
                                     only=('spinal',), speed=speed,
                                     log_name='{bench}_{name}_node.log',
                                     sim_time_for_all=False)
    proc = nodes.procs[0]
    return proc, ctx, sim, proc.log


class ReferenceStream:
    """The spinal reference as the cerebellum sends it (serialized in place, published raw), for
    benches that stream it from the physics loop: write ``q``/``qd``, then ``publish()``."""

    def __init__(self, node, arm):
        from sensor_msgs.msg import JointState

        from ..common.rosutil import SENSOR_QOS, joint_state_template
        self.pub = node.create_publisher(JointState, '/cerebellum/reference', SENSOR_QOS)
        self.msg = joint_state_template(arm)
        self.q, self.qd, eff = self.msg.views('position', 'velocity', 'effort')
        eff[:] = 0.0

    def publish(self) -> None:
        self.msg.set_stamp(time.time_ns())
        self.pub.publish(self.msg.tobytes())


_WAKE_PROBE = """
import json, sys, time
from neurovla_ros.common import realtime
realtime.make_realtime(int(sys.argv[1]))
n, late = int(float(sys.argv[2]) * 1000), []
due = time.monotonic_ns() + 1_000_000
for _ in range(n):
    rem = due - time.monotonic_ns()
    if rem > 0:
        time.sleep(rem * 1e-9)
    late.append(time.monotonic_ns() - due)
    due += 1_000_000
late.sort()
q = lambda f: late[min(len(late) - 1, int(f * len(late)))] * 1e-6
print(json.dumps({'p50': q(0.5), 'p99': q(0.99), 'p999': q(0.999), 'max': late[-1] * 1e-6}))
"""


def platform_wake_ms(seconds: float = 5.0, priority: int = 0) -> dict:
    """The machine's own floor, measured in the same run: how late a thread sleeping to 1 ms
    deadlines (its own process, at FIFO ``priority``) wakes up, ms: p50, p99, p999, max.
    Every hop between nodes waits for wake-ups like these."""
    import subprocess
    out = subprocess.run([sys.executable, '-c', _WAKE_PROBE, str(priority), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 60)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {}


def stop_sim_with_spinal(proc, ctx, sim, node, ex) -> None:
    """Undo ``sim_with_spinal`` / ``graph_with_sim``: stop the nodes (``proc``: the spinal's
    ``procs.Proc`` or the ``NodeGraph``; SIGINT, SIGTERM, SIGKILL), close the in-process sim
    and the bench's own ``node``, shut the context down."""
    import rclpy
    proc.stop()
    ex.remove_node(sim)
    ex.remove_node(node)
    sim.close()
    node.destroy_node()
    sim.destroy_node()
    rclpy.try_shutdown(context=ctx)
