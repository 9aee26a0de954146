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


def pct(values, q: float) -> float:
    """q-th percentile of ``values`` (NaN when empty), rounded for printing."""
    v = np.asarray(values, float)
    return float(np.percentile(v, q)) if v.size else float('nan')


def emit(result: dict) -> None:
    """Print the result as the last line of output: one JSON object."""
    clean = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}
    sys.stdout.flush()
    print(json.dumps(clean), flush=True)


def sim_with_spinal(bench_name: str, spinal_params: dict, speed: float = 1.0):
    """An in-process sim (no camera, no objects, slow IMU/wrench) and the spinal node in its
    own process, for the spinal benchmarks. Returns (spinal ``procs.Proc``, rclpy context,
    SimNode, spinal log path). ``spinal_params``: typed values (``graph.param_value``).
    ``speed`` < 1 runs in simulated time at that fraction of real time."""
    import rclpy
    from rclpy.parameter import Parameter

    from ..common import procs
    from ..common.rosutil import go_realtime
    from ..graph import param_args
    from ..sim.node import SimNode

    log_path = os.path.join(out_dir(), f'{bench_name}_spinal_node.log')
    proc = procs.Proc([sys.executable, '-m', 'neurovla_ros.spinal.node', '--ros-args',
                       *param_args(spinal_params)], 'spinal', log=log_path)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    sim = SimNode(context=ctx, parameter_overrides=[
        Parameter('camera_enabled', value=False), Parameter('n_objects', value=0),
        Parameter('imu_rate_hz', value=50.0), Parameter('wrench_rate_hz', value=50.0),
        *([] if speed == 1.0 else [Parameter('use_sim_time', value=True),
                                   Parameter('speed', value=float(speed))])])
    go_realtime(sim)   # this process is the body: the sim node's FIFO priority
    return proc, ctx, sim, log_path


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
    """Undo ``sim_with_spinal``: stop the spinal node (``procs.stop``), close the in-process
    sim and the bench's own ``node``, shut the context down."""
    import rclpy
    proc.stop()
    ex.remove_node(sim)
    ex.remove_node(node)
    sim.close()
    node.destroy_node()
    sim.destroy_node()
    rclpy.try_shutdown(context=ctx)
