"""``neurovla bench sim``: rates, real-time factor and /joint_states latency of the sim node.

Three runs, each with the publisher in its own process and this process subscribing over DDS:

1. baseline: a bare rclpy publisher of JointState at 1 kHz (absolute deadlines, the same
   EventsExecutor wait as the sim) - what rclpy + DDS give on this machine right now;
2. the sim node in real time (camera on, stamps = wall clock just before publish): rates of
   /joint_states, /imu/data, one-way latency, real-time factor, lateness, and the camera rate
   seen by an image consumer in a fourth process (normal scheduler, like the cortex); then the
   same without the camera (what rendering and image traffic cost the 1 kHz path);
3. the sim node with use_sim_time and speed 0 (camera off): how much faster than real time.

Targets: /joint_states and /imu/data >= 990 Hz, latency p99 <= 1 ms. Plots go to bench_out/,
the last line of stdout is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time

import numpy as np

from ..common import procs, realtime
from ..common.params import default_of
from ..robot.model import STATE_JOINTS
from ..sim.params import PARAMS as SIM_PARAMS
from ..spinal.params import PARAMS as SPINAL_PARAMS
from .common import emit, out_dir, pct, private_graph

# the recorder stands for a control node: it runs at the spinal node's priority
SIM_PRIORITY, CONSUMER_PRIORITY = (default_of(params, 'realtime_priority')
                                   for params in (SIM_PARAMS, SPINAL_PARAMS))



def log(msg: str) -> None:
    print(f'[bench sim] {msg}', file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the baseline publisher
def baseline_publisher(duration: float) -> None:
    """A bare 1 kHz JointState publisher: the floor any rclpy node can reach here."""
    import rclpy
    from rclpy.experimental import EventsExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import JointState

    from ..common.rosutil import SENSOR_QOS
    rclpy.init()
    node = Node('bench_baseline_publisher')
    pub = node.create_publisher(JointState, '/joint_states', SENSOR_QOS)
    realtime.make_realtime(SIM_PRIORITY)  # as the sim node does by default
    ex = EventsExecutor()
    ex.add_node(node)
    msg = JointState()
    msg.name = list(STATE_JOINTS)
    msg.position = [0.0] * 8
    msg.velocity = [0.0] * 8
    msg.effort = [0.0] * 8
    period = 1_000_000
    start = time.monotonic_ns()
    k = 0
    try:
        while rclpy.ok() and time.monotonic_ns() - start < duration * 1e9:
            k += 1
            due = start + k * period
            rem = due - time.monotonic_ns()
            while rem > 0:
                ex.spin_once(timeout_sec=rem * 1e-9)
                rem = due - time.monotonic_ns()
            msg.position[0] = k * 1e-3
            now = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
            pub.publish(msg)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def image_consumer(warmup: float, seconds: float) -> None:
    """Stands for the cortex: a process on the normal scheduler taking every camera image as the
    cortex does (read in place from the serialized bytes). Prints one JSON line: images
    received in ``seconds`` after ``warmup`` from the first."""
    import rclpy
    from rclpy.experimental import EventsExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from ..common.cdr import ImageReader
    rclpy.init()
    node = Node('bench_image_consumer')
    times = []
    reader = ImageReader()

    def on_image(buf: bytes) -> None:
        if reader.read(buf) is not None and len(reader.data) == reader.step * reader.height > 0:
            if not times:
                print('first image', flush=True)     # the bench opens its window after this
            times.append(time.monotonic())
    node.create_subscription(Image, '/camera/image_raw', on_image,
                             QoSProfile(depth=2, reliability=ReliabilityPolicy.BEST_EFFORT),
                             raw=True)
    ex = EventsExecutor()
    ex.add_node(node)
    end = time.monotonic() + 90.0
    while rclpy.ok() and time.monotonic() < end:
        ex.spin_once(timeout_sec=0.05)
        if times and time.monotonic() > times[0] + warmup + seconds:
            break
    t0 = times[0] + warmup if times else 0.0
    n = sum(1 for t in times if t0 <= t < t0 + seconds)
    print(json.dumps({'camera_hz': n / seconds}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


# ---------------------------------------------------------------- measuring
class Recorder:
    """Receive times and stamps of the sim's streams, in this (another) process."""

    def __init__(self, node, streams: bool = True):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Imu, JointState
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.js, self.imu, self.diag = [], [], []
        self.on = False
        if streams:  # not in the fast run: a subscriber at several kHz would slow the sim
            # serialized messages: only the stamp is read (like the cerebellum's readers)
            node.create_subscription(JointState, '/joint_states', self._js, qos, raw=True)
            node.create_subscription(Imu, '/imu/data', self._imu, qos, raw=True)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._diag, 10)

    def _js(self, m: bytes):
        now = time.time_ns()
        if self.on:   # CDR: 4-byte encapsulation header, then header.stamp (int32, uint32)
            sec, nsec = struct.unpack_from('<iI', m, 4)
            self.js.append((now, sec * 1_000_000_000 + nsec))

    def _imu(self, m):
        if self.on:
            self.imu.append(time.monotonic_ns())

    def _diag(self, m):
        for st in m.status:
            if st.hardware_id.endswith('sim'):
                vals = {kv.key: kv.value for kv in st.values}
                self.diag.append((time.monotonic(), vals))

    def clear(self):
        self.js.clear(), self.imu.clear()


def spin_for(node, seconds: float, until=None) -> bool:
    from rclpy.experimental import EventsExecutor
    ex = EventsExecutor(context=node.context)
    ex.add_node(node)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if until is not None and until():
                return True
            ex.spin_once(timeout_sec=0.05)
        return until is None or bool(until())
    finally:
        ex.remove_node(node)


def measure(node, rec: Recorder, proc, seconds: float, warmup: float, what: str,
            camera: bool) -> dict:
    """Wait for the first message, warm up, then record ``seconds`` of traffic; with the
    camera, an image consumer in its own process (like the cortex) counts the frames. The
    window opens once the consumer has its first image: a subscriber joining the graph (its
    start-up and DDS discovery) is a transient, not the steady state measured here."""
    log(f'{what}: waiting for /joint_states ...')
    consumer = procs.Proc(
        [sys.executable, '-m', 'neurovla_ros.bench.sim', '--image-consumer',
         f'{warmup + 1.0},{seconds}'], 'image-consumer') if camera else None
    try:
        rec.on = True
        if not spin_for(node, 60.0, until=lambda: bool(rec.js)):
            raise RuntimeError(f'{what}: no /joint_states within 60 s (bench_out logs)')
        if consumer is not None and not spin_for(
                node, 60.0, until=lambda: 'first image' in consumer.lines):
            raise RuntimeError(f'{what}: the image consumer got no image within 60 s')
        spin_for(node, warmup)
        rec.clear()
        log(f'{what}: measuring {seconds:g} s ...')
        t0 = time.monotonic()
        rec.diag.clear()
        spin_for(node, seconds)
        wall = time.monotonic() - t0
        rec.on = False
        if proc.poll() is not None:
            raise RuntimeError(f'{what}: the publisher exited with {proc.returncode}')
        camera_hz = 0.0
        if consumer is not None:
            consumer.wait(120)
            consumer.drain()
            out = [x for x in consumer.lines if x.startswith('{"camera_hz"')]
            camera_hz = json.loads(out[-1])['camera_hz'] if out else 0.0
    finally:
        if consumer is not None:
            consumer.stop()
    js = np.array(rec.js, dtype=np.int64).reshape(-1, 2)
    lat_ms = (js[:, 0] - js[:, 1]) / 1e6
    return {'t0': t0, 'wall': wall, 'js_hz': len(js) / wall, 'imu_hz': len(rec.imu) / wall,
            'camera_hz': camera_hz, 'lat_ms': lat_ms,
            'recv_s': (js[:, 0] - js[0, 0]) / 1e9 if len(js) else np.zeros(0)}


def rtf_from_diag(diag: list, since: float) -> float:
    """Sim seconds per wall second between the first and last diagnostics after ``since``."""
    d = [(t, float(v['sim_time'])) for t, v in diag if t >= since and 'sim_time' in v]
    if len(d) < 2:
        return float('nan')
    return (d[-1][1] - d[0][1]) / (d[-1][0] - d[0][0])


def plot(base: dict, sim: dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    hi = max(pct(base['lat_ms'], 99.5), pct(sim['lat_ms'], 99.5), 0.5)
    bins = np.linspace(0, hi, 60)
    ax[0].hist(base['lat_ms'], bins, alpha=0.6, label='bare rclpy publisher')
    ax[0].hist(sim['lat_ms'], bins, alpha=0.6, label='sim node')
    ax[0].set_xlabel('/joint_states one-way latency [ms]')
    ax[0].set_ylabel('messages')
    ax[0].set_yscale('log')
    ax[0].legend()
    for d, name in ((base, 'bare rclpy publisher'), (sim, 'sim node')):
        if len(d['recv_s']) > 1:
            ax[1].plot(d['recv_s'][1:], np.diff(d['recv_s']) * 1e3, '.', ms=2, label=name)
    ax[1].set_xlabel('time [s]')
    ax[1].set_ylabel('/joint_states inter-arrival [ms]')
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='neurovla bench sim', description=__doc__.split('\n')[0])
    ap.add_argument('--seconds', type=float, default=10.0, help='measurement window per run [s]')
    ap.add_argument('--warmup', type=float, default=2.0, help='settling time before it [s]')
    ap.add_argument('--no-camera', action='store_true', help='real-time run without the camera')
    ap.add_argument('--baseline-publisher', type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument('--image-consumer', default=None, help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.baseline_publisher is not None:
        baseline_publisher(opts.baseline_publisher)
        return 0
    if opts.image_consumer is not None:
        image_consumer(*map(float, opts.image_consumer.split(',')))
        return 0

    # a private DDS domain: never mix with a running stack or a test
    private_graph(200, 30, cap_torch=False)
    out = out_dir()
    log(f'ROS_DOMAIN_ID={os.environ["ROS_DOMAIN_ID"]}, output in {out}/')
    import rclpy
    from rclpy.node import Node
    py = sys.executable
    node_cmd = [py, '-m', 'neurovla_ros.sim.node', '--ros-args']
    run_len = opts.seconds + opts.warmup + 30

    runs = [('baseline', [py, '-m', 'neurovla_ros.bench.sim', '--baseline-publisher',
                          str(run_len)], False),
            ('realtime', node_cmd + ['-p', 'stamp_source:=publish', '-p',
                                     f'camera_enabled:={"false" if opts.no_camera else "true"}'],
             not opts.no_camera)]
    if not opts.no_camera:  # what rendering costs the 1 kHz loop
        runs.append(('realtime_no_camera', node_cmd + ['-p', 'stamp_source:=publish',
                                                       '-p', 'camera_enabled:=false'], False))
    runs.append(('fast', node_cmd + ['-p', 'use_sim_time:=true', '-p', 'speed:=0.0',
                                     '-p', 'camera_enabled:=false'], False))
    results = {}
    for what, cmd, camera in runs:
        rclpy.init()
        node = Node(f'bench_sim_{what}')
        rec = Recorder(node, streams=what != 'fast')
        # like a control node: real-time once its DDS threads exist, the start-up heap frozen
        problem = realtime.make_realtime(CONSUMER_PRIORITY)
        if problem:
            log(problem)
        proc = procs.Proc(cmd, what, log=os.path.join(out, f'bench_sim_{what}.log'))
        try:
            if what == 'fast':  # sim time: only the clock speed matters (diagnostics)
                log('fast: waiting for diagnostics ...')
                if not spin_for(node, 60.0, until=lambda: bool(rec.diag)):
                    raise RuntimeError('fast: no diagnostics within 60 s')
                t0 = time.monotonic()
                spin_for(node, opts.seconds / 2 + 1.0)
                results[what] = {'rtf': rtf_from_diag(rec.diag, t0)}
            else:
                results[what] = measure(node, rec, proc, opts.seconds, opts.warmup, what, camera)
                results[what]['rtf'] = rtf_from_diag(rec.diag, results[what]['t0'])
                results[what]['diag'] = rec.diag[-1][1] if rec.diag else {}
            r = results[what]
            log(f'{what}: ' + ', '.join(f'{k} {v:.4g}' for k, v in r.items()
                                       if isinstance(v, float)))
        finally:
            proc.stop()
            node.destroy_node()
            rclpy.try_shutdown()

    base, sim, fast = results['baseline'], results['realtime'], results['fast']
    nocam = results.get('realtime_no_camera', {})
    png = os.path.join(out, 'bench_sim_latency.png')
    plot(base, sim, png)
    log(f'plot: {png}')
    diag = sim.get('diag', {})
    p99, b99 = pct(sim['lat_ms'], 99), pct(base['lat_ms'], 99)
    emit({
        'bench': 'sim',
        'real_time_factor': sim['rtf'],
        'joint_states_hz': sim['js_hz'],
        'imu_hz': sim['imu_hz'],
        'camera_hz': sim['camera_hz'],
        'js_latency_ms_p50': pct(sim['lat_ms'], 50),
        'js_latency_ms_p99': p99,
        'js_latency_ms_max': float(np.max(sim['lat_ms'])) if len(sim['lat_ms']) else float('nan'),
        'baseline_js_hz': base['js_hz'],
        'baseline_js_latency_ms_p50': pct(base['lat_ms'], 50),
        'baseline_js_latency_ms_p99': b99,
        'js_latency_p99_ratio': p99 / b99 if b99 > 0 else float('nan'),
        'js_hz_ratio': sim['js_hz'] / base['js_hz'] if base['js_hz'] else float('nan'),
        'step_overruns': int(diag.get('step_overruns', -1)),
        'lateness_p99_ms': float(diag.get('lateness_p99_ms', 'nan')),
        'joint_states_hz_no_camera': nocam.get('js_hz', float('nan')),
        'js_latency_ms_p99_no_camera': pct(nocam['lat_ms'], 99) if nocam else float('nan'),
        'camera_js_hz_ratio': (sim['js_hz'] / nocam['js_hz']) if nocam else float('nan'),
        'fast_real_time_factor': fast['rtf'],
        'targets_met': bool(sim['js_hz'] >= 990 and sim['imu_hz'] >= 990 and p99 <= 1.0),
        'seconds': opts.seconds,
        'plot': png,
    })
    return 0


if __name__ == '__main__':
    sys.exit(main())
