"""``neurovla bench tremor``: the cerebellum on the real DDS graph (sim + spinal + cerebellum).

Each run starts the three nodes as separate processes (simulated time, ``--speed`` sim seconds
per wall second; every node follows /clock). This process plays a VLA cortex: pose goals on
/cortex/goal_pose at 10 Hz along a multi-waypoint path over the table, with Gaussian position
noise and arrival jitter ("intention tremor"), timed on the simulation clock; the body adds an
oscillating torque on the wrist joints (``--tremor-nm`` at ``--tremor-hz``). It records
/joint_states and /imu/data at 1 kHz.

Runs, same seed and goals:
1. ``off``: the cerebellum bypassed (``smoothing: linear``: plain linear interpolation of the
   goals, no filtering, no cancellation) - the baseline;
2. ``on``: the cerebellum (goal shaping + adaptive tremor cancellation);
3. ``switch``: the cerebellum, the tremor frequency changing to ``--tremor-hz-2`` mid-way.

Metrics (``neurovla_ros.cerebellum.scenario``): ``jerk_reduction`` = 1 - RMS tcp jerk on/off
(tcp from the encoders through the URDF kinematics, low-passed at 30 Hz);
``tremor_band_db`` = 4-12 Hz IMU gyro power off/on [dB] once adapted; ``rmse_ratio`` = tcp
error against the intended (noise-free) path on/off; ``time_to_goal_ratio`` (last waypoint,
within 1.5 cm for 0.25 s); ``readapt_s`` = time after the switch until the IMU band RMS is back
below twice its pre-switch level. Writes bench_out/tremor.png (spectra, trajectories, the
re-adaptation) and bench_out/tremor.npz. The last stdout line is the JSON result.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

from ..cerebellum import scenario as sc
from .common import emit, out_dir

TARGETS = {'jerk_reduction': 0.90, 'tremor_band_db': 20.0, 'rmse_ratio': 1.1,
           'time_to_goal_ratio': 1.2, 'readapt_s': 2.0}


def log(msg: str) -> None:
    print(f'[bench tremor] {msg}', file=sys.stderr, flush=True)


def graph(domain, speed, tremor_nm, tremor_hz, bypass, reflex, seed):
    """sim + spinal + cerebellum as bringup starts them (``runner.NodeGraph``, no cortex),
    on sim time, in DDS ``domain``; logs in bench_out/tremor_<node>.log."""
    from ..runner import NodeGraph
    return NodeGraph({'use_sim_time': True}, skip=('cortex',), domain=domain,
                     log=os.path.join(out_dir(), 'tremor_{name}.log'), overrides={
                         'sim': {'speed': float(speed), 'camera_enabled': False, 'n_objects': 0,
                                 'seed': seed, 'tremor_amplitude': float(tremor_nm),
                                 'tremor_frequency_hz': float(tremor_hz)},
                         'spinal': {'reflex_enabled': bool(reflex)},
                         'cerebellum': {'smoothing': 'linear' if bypass
                                        else 'cerebellum'}}).start()


class Recorder:
    """The bench's ROS side: raw 1 kHz subscriptions, goal publisher, diagnostics."""

    def __init__(self, node, capacity: int):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped, WrenchStamped
        from sensor_msgs.msg import Imu, JointState

        from ..common.cdr import ImuReader, JointStateReader
        from ..common.rosutil import COMMAND_QOS, LATEST_QOS, SENSOR_QOS
        self.node = node
        self.js = JointStateReader()
        self.imu = ImuReader()
        self.t_js = np.zeros(capacity)
        self.q = np.zeros((capacity, 6))
        self.n_js = 0
        self.t_imu = np.zeros(capacity)
        self.gyro = np.zeros((capacity, 3))
        self.n_imu = 0
        self.refs = 0
        self.diag = {}
        self.diag_log = []
        self.switch_t = None
        self.recording = False
        self.sim_t = 0.0
        node.create_subscription(JointState, '/joint_states', self._on_js, SENSOR_QOS, raw=True)
        node.create_subscription(Imu, '/imu/data', self._on_imu, SENSOR_QOS, raw=True)
        node.create_subscription(JointState, '/cerebellum/reference', self._on_ref, LATEST_QOS,
                                 raw=True)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, COMMAND_QOS)
        node.create_subscription(WrenchStamped, '/sim/disturbance', self._on_dist, COMMAND_QOS)
        self.goal_pub = node.create_publisher(PoseStamped, '/cortex/goal_pose', COMMAND_QOS)
        self.PoseStamped = PoseStamped

    def _on_js(self, buf):
        t = self.js.read(buf)
        if t is None:
            return
        self.sim_t = t
        if self.recording and self.n_js < len(self.t_js):
            self.t_js[self.n_js] = t
            self.q[self.n_js] = self.js.position[:6]
            self.n_js += 1

    def _on_imu(self, buf):
        t = self.imu.read(buf)
        if t is not None and self.recording and self.n_imu < len(self.t_imu):
            self.t_imu[self.n_imu] = t
            self.gyro[self.n_imu] = self.imu.gyro
            self.n_imu += 1

    def _on_ref(self, _buf):
        self.refs += 1

    def _on_diag(self, msg):
        for s in msg.status:
            self.diag[s.name] = {kv.key: kv.value for kv in s.values} | {'_msg': s.message}
            if self.recording and s.name in ('cerebellum', 'spinal: controller'):
                self.diag_log.append((self.sim_t, s.name, s.message,
                                      self.diag[s.name].get('mode', ''),
                                      self.diag[s.name].get('canceller_resets', '')))

    def _on_dist(self, msg):
        if msg.header.frame_id.startswith('tremor'):
            st = msg.header.stamp
            self.switch_t = st.sec + st.nanosec * 1e-9

    def goal(self, position, quat):
        m = self.PoseStamped()
        m.header.frame_id = 'base_link'
        m.header.stamp.sec = int(self.sim_t)
        m.header.stamp.nanosec = int((self.sim_t % 1.0) * 1e9)
        m.pose.position.x, m.pose.position.y, m.pose.position.z = map(float, position)
        o = m.pose.orientation
        o.x, o.y, o.z, o.w = map(float, quat)
        self.goal_pub.publish(m)


def empty_domain(tries: int = 20):
    """A DDS domain (localhost) where nobody else is: (context, probe node, domain id).
    Other benchmarks and tests run on this machine at the same time."""
    import rclpy
    from rclpy.experimental import EventsExecutor
    from rclpy.node import Node
    rng = np.random.default_rng()
    for _ in range(tries):
        domain = int(rng.integers(100, 233))
        ctx = rclpy.Context()
        rclpy.init(context=ctx, domain_id=domain)
        node = Node('bench_tremor', context=ctx)
        ex = EventsExecutor(context=ctx)
        ex.add_node(node)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
        others = [n for n, _ in node.get_node_names_and_namespaces() if n != 'bench_tremor']
        ex.remove_node(node)
        if not others:
            return ctx, node, domain
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    raise RuntimeError('no free DDS domain found')


def run_once(name, scn, args, switch_hz=0.0):
    """One run of the scenario on a fresh graph; returns the recorded arrays and status."""
    import rclpy
    from rclpy.experimental import EventsExecutor
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    from ..robot.transforms import matrix_to_quat_xyzw
    from .. import robot
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    ctx, node, domain = empty_domain()
    nodes = graph(domain, args.speed, args.tremor_nm, args.tremor_hz, bypass=(name == 'off'),
                  reflex=args.spinal_reflex, seed=args.seed)
    ex = EventsExecutor(context=ctx)
    ex.add_node(node)
    rec = Recorder(node, int((scn.duration + 5) * 1000 * 1.2))
    quat = matrix_to_quat_xyzw(robot.load().fk(robot.load().home_pose())[:3, :3])
    wall0 = time.monotonic()
    try:
        def spin_until(pred, timeout):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if pred():
                    return True
                ex.spin_once(timeout_sec=0.01)
            return pred()

        nodes.wait_up(node, 90.0, spin=lambda: ex.spin_once(timeout_sec=0.05))
        ok = spin_until(lambda: rec.refs > 50 and rec.diag.get('spinal: controller', {})
                        .get('mode') == 'follow' and 'cerebellum' in rec.diag, 90.0)
        if node.count_publishers('/joint_states') != 1:
            raise RuntimeError(f'{name}: {node.count_publishers("/joint_states")} publishers '
                               f'of /joint_states in domain {domain}: not alone')
        if not ok or not nodes.alive():
            raise RuntimeError(f'{name}: the graph did not come up (spinal '
                               f'{rec.diag.get("spinal: controller", {}).get("mode")}, '
                               f'{rec.refs} references); logs in {out_dir()}/tremor_*.log')
        t_up = rec.sim_t
        spin_until(lambda: rec.sim_t >= t_up + 1.0, 30.0)
        t0 = rec.sim_t
        rec.recording = True
        cpu0 = list(nodes.cpu_seconds().values())     # sim, spinal, cerebellum
        goals = scn.goals()
        gi = 0
        switched = False
        client = AsyncParameterClient(node, 'sim') if switch_hz else None
        last_log = 0.0
        while rec.sim_t < t0 + scn.duration:
            s = rec.sim_t - t0
            while gi < len(goals) and goals[gi][0] <= s:
                rec.goal(goals[gi][1], quat)
                gi += 1
            if switch_hz and not switched and s >= scn.switch_time:
                client.set_parameters([Parameter('tremor_frequency_hz', value=switch_hz)])
                switched = True
            if s - last_log >= 2.0:
                last_log = s
                c = rec.diag.get('cerebellum', {})
                log(f'{name}: t {s:4.1f}/{scn.duration:.0f} s, {c.get("_msg", "")}')
            if not nodes.alive():
                raise RuntimeError(f'{name}: a node died; logs in {out_dir()}/tremor_*.log')
            ex.spin_once(timeout_sec=0.005)
        spin_until(lambda: False, 0.2)
        rec.recording = False
        cpu1 = list(nodes.cpu_seconds().values())
        sim_s = rec.sim_t - t0
        status = {
            'cerebellum': dict(rec.diag.get('cerebellum', {})),
            'spinal': dict(rec.diag.get('spinal: controller', {})),
            'cpu_share': [(b - a) / max(sim_s / args.speed, 1e-9) for a, b in zip(cpu0, cpu1)],
            'wall_s': time.monotonic() - wall0,
            'switch_t': (rec.switch_t - t0) if (switch_hz and rec.switch_t) else None,
            'diag_log': [(t - t0, *rest) for t, *rest in rec.diag_log],
        }
        n, m = rec.n_js, rec.n_imu
        return {'t': rec.t_js[:n] - t0, 'q': rec.q[:n].copy(), 't_imu': rec.t_imu[:m] - t0,
                'gyro': rec.gyro[:m].copy(), 'status': status}
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        nodes.stop()


def uniform(t, x, fs=1000.0):
    """Resample (t, x) onto a uniform grid (sim time, dropped samples interpolated)."""
    grid = np.arange(t[0], t[-1], 1.0 / fs)
    return grid, np.column_stack([np.interp(grid, t, x[:, i]) for i in range(x.shape[1])])


def metrics(scn, data, model, settle):
    t, q = uniform(data['t'], data['q'])
    ti, g = uniform(data['t_imu'], data['gyro'])
    p = np.array([model.fk(qq)[:3, 3] for qq in q])
    sel = t >= 1.0
    acc = np.diff(np.column_stack([sc.zero_phase_lowpass(p[sel][:, i], 1000.0, 30.0)
                                   for i in range(3)]), n=2, axis=0) * 1e6
    moving = (t >= scn.start) & (t <= scn.duration)
    want = scn.intended(t)
    return {
        't': t, 'p': p, 'ti': ti, 'g': g,
        'jerk': sc.rms_jerk(p[sel], 1000.0),
        'acc': float(np.sqrt(np.mean(np.sum(acc[100:-100] ** 2, axis=1)))),
        'band': sc.band_power(g[ti >= settle], 1000.0),
        'rmse': float(np.sqrt(np.mean(np.sum((p[moving] - want[moving]) ** 2, axis=1)))),
        'ttg': sc.time_to_goal_stay(t, p, scn.waypoints[-1], scn.last_segment_start, 0.015,
                                    0.25),
    }


def plot(path, scn, off, on, sw, switch_t):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(2, 2, figsize=(13, 8))
    for m, label in ((off, 'cerebellum off (plain interpolation)'), (on, 'cerebellum on')):
        f, psd = sc.welch(m['g'][m['ti'] >= 3.0], 1000.0, 2048)
        ax[0, 0].semilogy(f, psd, label=label)
    ax[0, 0].axvspan(4, 12, color='0.9')
    ax[0, 0].set(xlim=(0, 40), xlabel='frequency [Hz]', ylabel='gyro PSD [(rad/s)^2/Hz]',
                 title='IMU spectrum (4-12 Hz band shaded)')
    ax[0, 0].legend()
    t = on['t']
    want = scn.intended(t)
    for i, (c, axis) in enumerate(zip('rgb', 'xyz')):
        ax[0, 1].plot(t, want[:, i], c + ':', lw=1)
        ax[0, 1].plot(off['t'], off['p'][:, i], c, alpha=0.4, lw=0.8)
        ax[0, 1].plot(t, on['p'][:, i], c, lw=1.2, label=f'{axis}')
    ax[0, 1].set(xlabel='time [s]', ylabel='tcp [m]',
                 title='tcp: intended (dotted), off (faint), on (solid)')
    ax[0, 1].legend()
    for m, label in ((off, 'off'), (on, 'on')):
        r = sc.sliding_band_rms(m['g'], 1000.0)
        ax[1, 0].semilogy(m['ti'], r, label=label)
    ax[1, 0].set(xlabel='time [s]', ylabel='gyro 4-12 Hz RMS [rad/s] (0.3 s)',
                 title='tremor measured by the IMU')
    ax[1, 0].legend()
    if sw is not None:
        r = sc.sliding_band_rms(sw['g'], 1000.0)
        ax[1, 1].semilogy(sw['ti'], r)
        if switch_t is not None:
            ax[1, 1].axvline(switch_t, color='k', ls='--', label='frequency change')
            ax[1, 1].legend()
        ax[1, 1].set(xlabel='time [s]', ylabel='gyro 4-12 Hz RMS [rad/s] (0.3 s)',
                     title='re-adaptation after a tremor frequency change')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='neurovla bench tremor', description=__doc__.split('\n')[0])
    ap.add_argument('--speed', type=float, default=0.25,
                    help='sim seconds per wall second: the 1 kHz loops of sim + spinal + '
                         'cerebellum share two cores with everything else (0.25 keeps them on '
                         'time on a busy 2-core machine; a quiet one can take 0.5-1)')
    ap.add_argument('--tremor-nm', type=float, default=1.0, help='tremor torque [N m]')
    ap.add_argument('--tremor-hz', type=float, default=7.0, help='tremor frequency [Hz]')
    ap.add_argument('--tremor-hz-2', type=float, default=9.5,
                    help='tremor frequency after the switch (run 3) [Hz]')
    ap.add_argument('--noise-mm', type=float, default=4.0, help='goal position noise std [mm]')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--spinal-reflex', action='store_true',
                    help='keep the spinal collision reflex on (off: it would add events that '
                         'have nothing to do with the cerebellum)')
    ap.add_argument('--quick', action='store_true', help='one move instead of three')
    args = ap.parse_args(argv)
    from .. import robot
    model = robot.load()
    wp = sc.Scenario().waypoints[:2] if args.quick else sc.Scenario().waypoints
    scn = sc.Scenario(seed=args.seed, waypoints=wp, goal_noise=args.noise_mm * 1e-3,
                      tremor_amplitude=args.tremor_nm, tremor_hz=args.tremor_hz)
    scn_sw = sc.Scenario(seed=args.seed, waypoints=wp, goal_noise=args.noise_mm * 1e-3,
                         tremor_amplitude=args.tremor_nm, tremor_hz=args.tremor_hz,
                         tremor_hz_2=args.tremor_hz_2,
                         switch_time=round(0.5 * (scn.duration + 3.0), 1))
    log(f'scenario: {len(wp) - 1} moves, {scn.duration:.1f} s sim per run, speed {args.speed}, '
        f'tremor {args.tremor_nm} N m at {args.tremor_hz} Hz, goal noise {args.noise_mm} mm')
    runs = {}
    for name, s, hz2 in (('off', scn, 0.0), ('on', scn, 0.0),
                         ('switch', scn_sw, args.tremor_hz_2)):
        log(f'run {name} ...')
        runs[name] = run_once(name, s, args, hz2)
    settle = 3.0
    off = metrics(scn, runs['off'], model, settle)
    on = metrics(scn, runs['on'], model, settle)
    sw = metrics(scn_sw, runs['switch'], model, settle)
    switch_t = runs['switch']['status']['switch_t'] or scn_sw.switch_time
    readapt, info = sc.readapt_time(sw['ti'], sw['g'], 1000.0, switch_t)
    res = {
        'jerk_reduction': 1.0 - on['jerk'] / off['jerk'],
        'tremor_band_db': 10.0 * math.log10(off['band'] / on['band']),
        'rmse_ratio': on['rmse'] / off['rmse'],
        'time_to_goal_ratio': on['ttg'] / off['ttg'],
        'readapt_s': readapt,
        'acc_reduction': 1.0 - on['acc'] / off['acc'],
        'jerk_off': off['jerk'], 'jerk_on': on['jerk'],
        'band_power_off': off['band'], 'band_power_on': on['band'],
        'rmse_off_m': off['rmse'], 'rmse_on_m': on['rmse'],
        'time_to_goal_off_s': off['ttg'], 'time_to_goal_on_s': on['ttg'],
        'readapt_pre_rms': info['pre_rms'], 'readapt_peak_rms': info['peak_rms'],
        'tremor_hz': args.tremor_hz, 'tremor_hz_2': args.tremor_hz_2,
        'tremor_nm': args.tremor_nm, 'goal_noise_mm': args.noise_mm, 'speed': args.speed,
        'seed': args.seed,
    }
    for name in ('on', 'switch'):
        c = runs[name]['status']['cerebellum']
        res[f'{name}_tremor_frequency_hz'] = float(c.get('tremor_frequency_hz', 'nan'))
        res[f'{name}_canceller_resets'] = int(float(c.get('canceller_resets', -1)))
    c = runs['on']['status']['cerebellum']
    res['cerebellum_tick_us_p50'] = float(c.get('tick_us_p50', 'nan'))
    res['cerebellum_tick_us_p99'] = float(c.get('tick_us_p99', 'nan'))
    res['cpu_share_sim_spinal_cerebellum'] = [round(x, 3) for x in runs['on']['status']
                                              ['cpu_share']]
    res['spinal_reflex_events'] = sum(int(float(r['status']['spinal'].get('reflex_events', 0)))
                                      for r in runs.values())
    res['targets_met'] = bool(
        res['jerk_reduction'] >= TARGETS['jerk_reduction']
        and res['tremor_band_db'] >= TARGETS['tremor_band_db']
        and res['rmse_ratio'] <= TARGETS['rmse_ratio']
        and res['time_to_goal_ratio'] <= TARGETS['time_to_goal_ratio']
        and res['readapt_s'] <= TARGETS['readapt_s'])
    path = os.path.join(out_dir(), 'tremor.png')
    plot(path, scn, off, on, sw, switch_t)
    np.savez_compressed(os.path.join(out_dir(), 'tremor.npz'),
                        **{f'{k}_{f}': runs[k][f] for k in runs
                           for f in ('t', 'q', 't_imu', 'gyro')})
    res['plot'] = path
    log(f'jerk -{100 * res["jerk_reduction"]:.1f} %, tremor band {res["tremor_band_db"]:.1f} '
        f'dB, rmse x{res["rmse_ratio"]:.2f}, time to goal x{res["time_to_goal_ratio"]:.2f}, '
        f're-adaptation {res["readapt_s"]:.2f} s')
    emit(res)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
