"""``neurovla bench tremor``: the cerebellum in the graph a user runs, against the smoothing a
user would run instead.

Graph (``--graph full``, the default): what ``neurovla bringup`` starts (``runner.NodeGraph``:
each node in its own process on the packaged parameters file) - the sim (camera on, objects on
the table), spinal, cerebellum and the cortex planning on the camera images in ``dry_run``
(plans and diagnostics, no goals: it loads the machine as in a bringup while this process
plays the VLA) - at ``--speed 1`` (real time on the wall clock, as a bringup; below 1 every
node follows /clock). ``--graph minimal``: sim (no camera, no objects) + spinal + cerebellum,
the setting of the earlier benchmark. The spinal reflex is off unless ``--spinal-reflex`` (a
withdrawal would end a run's motion; reflexes are ``bench reflex``'s subject).

Per seed (``--seeds``; none of them a tuning seed): a scenario drawn from the seed
(:meth:`neurovla_ros.cerebellum.scenario.Scenario.draw`: the tcp path, the tremor's frequency,
amplitude and joint pattern, the goal noise), played as pose goals on /cortex/goal_pose at
10 Hz with Gaussian noise and arrival jitter, timed on the clock of /joint_states. Runs, each
from the same start (sim reset, then a fresh cerebellum process), same goals, same limits:

1. ``linear``: ``smoothing: linear`` - plain linear interpolation of the goals;
2. ``ruckig``: ``smoothing: ruckig`` - the goals through a Butterworth low-pass, then Ruckig
   re-targeted every tick with the cerebellum's velocity, acceleration and jerk limits (what
   MoveIt Servo's smoothing does); its cut-off ``ruckig_lowpass_hz`` tuned by ``--tune`` on
   ``TUNING_SEEDS`` for the lowest jerk at a tracking error no worse than the cerebellum's;
3. ``shaping``: the cerebellum with its tremor canceller off (``tremor_enabled: false``);
4. ``cerebellum``: everything on;
5. ``switch``: the cerebellum, the tremor frequency changing half-way (re-adaptation).

Metrics per seed (:mod:`neurovla_ros.cerebellum.scenario`): RMS tcp jerk (tcp from the
encoders through the URDF kinematics, low-passed at 30 Hz), tracking RMSE against the intended
(noise-free) path, time to the last waypoint (within 1.5 cm for 0.25 s), 4-12 Hz IMU gyro
power once adapted (after 3 s), re-adaptation time after the switch (IMU band RMS back below
twice its pre-switch level); the cerebellum's tick p99 over the run (its /diagnostics) and the
share of 1 ms physics steps that received a spinal command. Ratios: ``jerk_vs_ruckig``,
``rmse_vs_ruckig``, ``time_to_goal_vs_ruckig`` (cerebellum / ruckig), ``jerk_reduction``
(1 - cerebellum / linear), ``tremor_band_db_vs_shaping`` (shaping / cerebellum in dB). The
JSON (last stdout line, also bench_out/tremor_<graph>.json) holds the median over seeds and,
for the first four ratios, the worst seed (``*_worst``), the per-seed figures, the targets and
whether they are met. bench_out/tremor_<graph>.png: the four runs' spectra, tcp trajectories
and tremor level for the first seed, the re-adaptation, every seed's ratios.
``--write-docs JSON...`` copies such JSON files to docs/measured/ and renders them into
docs/cerebellum.md's "Last measured" (a test checks that the two agree).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from ..cerebellum import scenario as sc
from .common import emit, out_dir

DEFAULT_SEEDS = (1, 2, 3, 4, 5)
TUNING_SEEDS = (101, 102, 103)      # --tune only: never reported
RUNS = {   # run -> cerebellum parameters
    'linear': {'smoothing': 'linear'},
    'ruckig': {'smoothing': 'ruckig'},
    'shaping': {'smoothing': 'cerebellum', 'tremor_enabled': False},
    'cerebellum': {'smoothing': 'cerebellum', 'tremor_enabled': True},
}
# key -> (target, 'max' | 'min'): the median over seeds must be at most / at least the target
TARGETS = {'jerk_vs_ruckig': (0.5, 'max'), 'rmse_vs_ruckig': (1.1, 'max'),
           'tremor_band_db_vs_shaping': (20.0, 'min'), 'jerk_reduction': (0.90, 'min'),
           'time_to_goal_vs_ruckig': (1.2, 'max'), 'readapt_s': (2.0, 'max'),
           'cerebellum_tick_us_p99': (300.0, 'max'), 'spinal_on_time_fraction': (0.99, 'min')}
WORST = ('jerk_vs_ruckig', 'rmse_vs_ruckig', 'jerk_reduction', 'tremor_band_db_vs_shaping')
SETTLE = 3.0            # [s] the canceller has adapted: the band power is measured after it
HOMING = 2.5            # [s] after a run: goals at the home tcp, not recorded
RECORDER_PRIORITY = 30  # FIFO: above the cortex (20) and the camera, below the control loops
TRIES = 2               # a run that recorded too little (the machine was starved) is re-run
DOCS_BEGIN = '<!-- bench tremor: begin (neurovla bench tremor --write-docs) -->'
DOCS_END = '<!-- bench tremor: end -->'


def log(msg: str) -> None:
    print(f'[bench tremor] {msg}', file=sys.stderr, flush=True)


class Graph:
    """The nodes as bringup starts them (``runner.NodeGraph``: the packaged parameters file,
    plus the bench's overrides), each in its own process group: the body and the brain but the
    cerebellum once, the cerebellum afresh for each run (:meth:`start_cerebellum`)."""

    def __init__(self, domain: int, kind: str, speed: float, seed: int, reflex: bool):
        from ..runner import NodeGraph
        values = {'headless': True, 'use_sim_time': speed != 1.0}
        log = os.path.join(out_dir(), 'tremor_{name}.log')
        self._graph = lambda only, overrides: NodeGraph(
            values, overrides=overrides, only=only, domain=domain, log=log, log_mode='a')
        sim = {'seed': seed, 'tremor_amplitude': 0.0}
        if speed != 1.0:
            sim['speed'] = float(speed)
        if kind == 'minimal':
            sim.update(camera_enabled=False, n_objects=0)
        overrides = {'sim': sim, 'spinal': {'reflex_enabled': reflex}}
        if kind == 'full':
            overrides['cortex'] = {'dry_run': True}
        self.body = self._graph(tuple(overrides), overrides).start()
        self.cerebellum = None

    def start_cerebellum(self, params: dict) -> None:
        self.cerebellum = self._graph(('cerebellum',), {'cerebellum': params}).start()

    def stop_cerebellum(self) -> None:
        if self.cerebellum is not None:
            self.cerebellum.stop()
            self.cerebellum = None

    def _graphs(self):
        return [g for g in (self.body, self.cerebellum) if g is not None]

    def dead(self) -> list[str]:
        return [p.name for g in self._graphs() for p in g.dead()]

    def alive(self) -> bool:
        return not self.dead()

    def names(self) -> list[str]:
        return [n for g in self._graphs() for n in g.names]

    def cpu_seconds(self) -> dict[str, float]:
        return {k: v for g in self._graphs() for k, v in g.cpu_seconds().items()}

    def stop(self) -> None:
        self.stop_cerebellum()
        self.body.stop()


class Recorder:
    """The bench's ROS side: raw 1 kHz subscriptions, goal publisher, diagnostics, the sim's
    reset service and parameters."""

    def __init__(self, node, capacity: int):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped, WrenchStamped
        from rclpy.parameter_client import AsyncParameterClient
        from sensor_msgs.msg import Imu, JointState
        from std_srvs.srv import Trigger

        from ..common.cdr import ImuReader, JointStateReader
        from ..common.rosutil import COMMAND_QOS, SENSOR_QOS
        self.node = node
        self.js = JointStateReader()
        self.imu = ImuReader()
        self.t_js = np.zeros(capacity)
        self.q = np.zeros((capacity, 6))
        self.t_imu = np.zeros(capacity)
        self.gyro = np.zeros((capacity, 3))
        self.n_js = self.n_imu = 0
        self.diag: dict[str, dict] = {}
        self.sim_diag: list[tuple] = []       # (steps, accepted commands, watchdog trips)
        self.switch_t = None
        self.recording = False
        self.sim_t = 0.0
        node.create_subscription(JointState, 'joint_states', self._on_js, SENSOR_QOS, raw=True)
        node.create_subscription(Imu, 'imu/data', self._on_imu, SENSOR_QOS, raw=True)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, COMMAND_QOS)
        node.create_subscription(WrenchStamped, 'sim/disturbance', self._on_dist, COMMAND_QOS)
        self.goal_pub = node.create_publisher(PoseStamped, 'cortex/goal_pose', COMMAND_QOS)
        self.PoseStamped = PoseStamped
        self.reset_client = node.create_client(Trigger, 'sim/reset')
        self.Trigger = Trigger
        self.sim_params = AsyncParameterClient(node, 'sim')

    def start(self) -> None:
        """A new run: empty buffers, no cerebellum seen yet."""
        self.n_js = self.n_imu = 0
        self.diag.pop('cerebellum', None)
        self.sim_diag.clear()
        self.switch_t = None

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

    def _on_diag(self, msg):
        for s in msg.status:
            d = self.diag[s.name] = {kv.key: kv.value for kv in s.values} | {'_msg': s.message}
            if self.recording and s.name == 'sim: physics':
                self.sim_diag.append((int(d['steps']), int(d['accepted_commands']),
                                      int(d['effort_watchdog_trips'])))

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


class Bench:
    """One graph for the whole benchmark; :meth:`run` plays one scenario with one setting."""

    def __init__(self, args, capacity_s: float):
        from rclpy.experimental import EventsExecutor

        from .. import robot
        from ..common import realtime
        from ..robot.transforms import matrix_to_quat_xyzw
        os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        self.args = args
        self.ctx, self.node, self.domain = empty_domain()
        self.graph = Graph(self.domain, args.graph, args.speed, args.seeds[0], args.spinal_reflex)
        self.ex = EventsExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.rec = Recorder(self.node, int(capacity_s * 1000 * 1.2))
        # the recorder must not lose samples to the cortex's inference; it cannot take time
        # from the sim, spinal or cerebellum loops (all above it)
        problem = realtime.make_realtime(RECORDER_PRIORITY)
        if problem:
            log(problem)
        self.retries: list[str] = []
        model = robot.load()
        self.quat = matrix_to_quat_xyzw(model.fk(model.home_pose())[:3, :3])
        try:
            self._wait_for_graph()
        except BaseException:
            self.close()
            raise

    def spin_until(self, pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            self.ex.spin_once(timeout_sec=0.01)
        return pred()

    def _check_alive(self, what: str) -> None:
        dead = self.graph.dead()
        if dead:
            raise RuntimeError(f'{what}: {dead} died; logs in {out_dir()}/tremor_*.log')

    def _wait_for_graph(self) -> None:
        rec, t0 = self.rec, time.monotonic()
        need = ['sim: physics', 'spinal: controller']
        if self.args.graph == 'full':
            need.append('cortex: planner')
        ok = self.spin_until(lambda: all(n in rec.diag for n in need) or not self.graph.alive(),
                             180.0)
        self._check_alive('start-up')
        if not ok:
            raise RuntimeError(f'the graph did not come up: {sorted(rec.diag)}; logs in '
                               f'{out_dir()}/tremor_*.log')
        if self.node.count_publishers('joint_states') != 1:
            raise RuntimeError(f'{self.node.count_publishers("joint_states")} publishers of '
                               f'/joint_states in domain {self.domain}: not alone')
        log(f'graph {self.args.graph} up after {time.monotonic() - t0:.0f} s (domain '
            f'{self.domain}): {", ".join(self.graph.names())}')

    def _call(self, future, what: str):
        if not self.spin_until(future.done, 15.0):
            raise RuntimeError(f'{what}: no answer')
        return future.result()

    def _set_sim(self, **params) -> None:
        from rclpy.parameter import Parameter
        res = self._call(self.rec.sim_params.set_parameters(
            [Parameter(k, value=v) for k, v in params.items()]), 'sim parameters')
        bad = [r.reason for r in res.results if not r.successful]
        if bad:
            raise RuntimeError(f'sim parameters refused: {bad}')

    def measure(self, name: str, scn: sc.Scenario, params: dict, model) -> tuple[dict, dict]:
        """:meth:`run`, then :func:`metrics`; a run that recorded too little is run again
        (up to ``TRIES`` in all; each retry is listed in ``retries``). (data, metrics)."""
        for attempt in range(TRIES):
            data = self.run(name, scn, params)
            try:
                return data, metrics(scn, data, model)
            except ShortRecording as e:
                self.retries.append(f'seed {scn.seed} {name}: {e}')
                log(f'{name}: {e}' + ('; again' if attempt + 1 < TRIES else ''))
                if attempt + 1 == TRIES:
                    raise

    def run(self, name: str, scn: sc.Scenario, params: dict) -> dict:
        """``scn`` with the cerebellum ``params``: sim reset, tremor on, a fresh cerebellum,
        the goals (and the frequency switch, if any); the recorded arrays and statuses."""
        rec, g = self.rec, self.graph
        rec.start()
        if not self.rec.reset_client.wait_for_service(timeout_sec=10.0):
            raise RuntimeError('/sim/reset not available')
        self._call(rec.reset_client.call_async(rec.Trigger.Request()), 'sim reset')
        self._set_sim(tremor_amplitude=float(scn.tremor_amplitude),
                      tremor_frequency_hz=float(scn.tremor_hz), tremor_joint=scn.tremor_joint)
        wall0 = time.monotonic()
        g.start_cerebellum(params)
        try:
            # up: it ticks (its diagnostics; the bench adds no reader of the reference, which
            # would make each publish dearer than in a bringup) and the spinal layer follows
            ok = self.spin_until(lambda: float(rec.diag.get('cerebellum', {}).get(
                'ticks_total', 0)) > 50 and rec.diag.get('spinal: controller', {}).get(
                'mode') == 'follow' or not g.alive(), 90.0)
            self._check_alive(name)
            if not ok:
                raise RuntimeError(f'{name}: the cerebellum did not come up '
                                   f'({rec.diag.get("cerebellum")}); logs in '
                                   f'{out_dir()}/tremor_*.log')
            t_up = rec.sim_t
            self.spin_until(lambda: rec.sim_t >= t_up + 1.0, 30.0)
            t0 = rec.sim_t
            cpu0 = g.cpu_seconds()
            rec.recording = True
            goals, gi, switched, last_log = scn.goals(), 0, False, 0.0
            while rec.sim_t < t0 + scn.duration:
                s = rec.sim_t - t0
                while gi < len(goals) and goals[gi][0] <= s:
                    rec.goal(goals[gi][1], self.quat)
                    gi += 1
                if scn.tremor_hz_2 and not switched and s >= scn.switch_time:
                    rec.sim_params.set_parameters(
                        [self._param('tremor_frequency_hz', float(scn.tremor_hz_2))])
                    switched = True
                if s - last_log >= 4.0:
                    last_log = s
                    log(f'  {name}: t {s:4.1f}/{scn.duration:.0f} s, '
                        f'{rec.diag.get("cerebellum", {}).get("_msg", "")}')
                self._check_alive(name)
                self.ex.spin_once(timeout_sec=0.005)
            self.spin_until(lambda: False, 0.6)    # the last diagnostics of the window
            rec.recording = False
            cpu1 = g.cpu_seconds()
            status = {'cerebellum': dict(rec.diag.get('cerebellum', {})),
                      'spinal': dict(rec.diag.get('spinal: controller', {})),
                      'sim_diag': list(rec.sim_diag),
                      'cpu_share': {k: (cpu1[k] - cpu0[k]) / max(scn.duration / self.args.speed,
                                                                1e-9) for k in cpu0},
                      'switch_t': (rec.switch_t - t0) if (scn.tremor_hz_2 and rec.switch_t)
                      else None}
            # back home (not recorded), so that the next run starts where this one did
            home, t_end = sc.HOME_TCP, rec.sim_t
            next_goal = t_end
            while rec.sim_t < t_end + HOMING and g.alive():
                if rec.sim_t >= next_goal:
                    rec.goal(home, self.quat)
                    next_goal += 0.1
                self.ex.spin_once(timeout_sec=0.005)
        finally:
            rec.recording = False
            g.stop_cerebellum()
        status['wall_s'] = time.monotonic() - wall0
        n, m = rec.n_js, rec.n_imu
        return {'t': rec.t_js[:n] - t0, 'q': rec.q[:n].copy(), 't_imu': rec.t_imu[:m] - t0,
                'gyro': rec.gyro[:m].copy(), 'status': status}

    @staticmethod
    def _param(name, value):
        from rclpy.parameter import Parameter
        return Parameter(name, value=value)

    def close(self) -> None:
        import rclpy
        try:
            self.node.destroy_node()
            rclpy.try_shutdown(context=self.ctx)
        finally:
            self.graph.stop()


# ---------------------------------------------------------------- metrics
class ShortRecording(RuntimeError):
    """A run recorded far fewer samples than it lasted (the bench's process was starved)."""


def uniform(t, x, fs=1000.0):
    """Resample (t, x) onto a uniform grid (sim time, dropped samples interpolated)."""
    grid = np.arange(t[0], t[-1], 1.0 / fs)
    return grid, np.column_stack([np.interp(grid, t, x[:, i]) for i in range(x.shape[1])])


def metrics(scn: sc.Scenario, data: dict, model) -> dict:
    """One run's figures (see the module docstring) and its resampled signals."""
    from .cortex import spinal_on_time
    need = 0.9 * scn.duration * 1000.0
    if len(data['t']) < need or len(data['t_imu']) < need:
        raise ShortRecording(f'{len(data["t"])} joint states and {len(data["t_imu"])} IMU '
                             f'samples recorded in {scn.duration:g} s')
    t, q = uniform(data['t'], data['q'])
    ti, g = uniform(data['t_imu'], data['gyro'])
    p = sc.tcp_positions(model, q)
    moving = (t >= scn.start) & (t <= scn.duration)
    want = scn.intended(t)
    adapted = (ti >= SETTLE) & (ti < (scn.switch_time if scn.tremor_hz_2 else math.inf))
    st = data['status']
    c = st['cerebellum']
    on_time = spinal_on_time([(0, *s) for s in st['sim_diag']])
    return {
        't': t, 'p': p, 'ti': ti, 'g': g,
        'jerk': sc.rms_jerk(p[t >= 1.0], 1000.0),
        'rmse': float(np.sqrt(np.mean(np.sum((p[moving] - want[moving]) ** 2, axis=1)))),
        'band': sc.band_power(g[adapted], 1000.0),
        'ttg': sc.time_to_goal_stay(t, p, scn.waypoints[-1], scn.last_segment_start, 0.015,
                                    0.25),
        'tick_us_p99': float(c.get('tick_us_p99', 'nan')),
        'tick_us_p50': float(c.get('tick_us_p50', 'nan')),
        'after_tick_us_p99': float(c.get('after_tick_us_p99', 'nan')),
        'compiled_tick': c.get('compiled_tick') == 'true',
        'tremor_frequency_hz': float(c.get('tremor_frequency_hz', 'nan')),
        'canceller_resets': int(float(c.get('canceller_resets', -1))),
        'goals_rejected': int(float(c.get('goals_rejected', -1))),
        'on_time': on_time['fraction'] if on_time['fraction'] is not None else float('nan'),
        'watchdog_trips': on_time['watchdog_trips'],
        'reflex_events': int(float(st['spinal'].get('reflex_events', 0))),
        'cpu_share': {k: round(v, 3) for k, v in st['cpu_share'].items()},
    }


def seed_figures(m: dict, scn: sc.Scenario, switch: dict | None) -> dict:
    """The ratios of one seed from the runs' metrics ``m`` (name -> metrics)."""
    cb, rk, lin, sh = m['cerebellum'], m['ruckig'], m['linear'], m['shaping']
    out = {'seed': scn.seed, 'tremor_hz': scn.tremor_hz, 'tremor_nm': scn.tremor_amplitude,
           'tremor_joint': scn.tremor_joint or 'wrist',
           'jerk_vs_ruckig': cb['jerk'] / rk['jerk'], 'rmse_vs_ruckig': cb['rmse'] / rk['rmse'],
           'jerk_reduction': 1.0 - cb['jerk'] / lin['jerk'],
           'tremor_band_db_vs_shaping': 10.0 * math.log10(sh['band'] / cb['band']),
           'time_to_goal_vs_ruckig': cb['ttg'] / rk['ttg'],
           'cerebellum_tick_us_p99': cb['tick_us_p99'], 'spinal_on_time_fraction': cb['on_time']}
    for name, r in m.items():
        for k in ('jerk', 'rmse', 'band', 'ttg'):
            out[f'{name}_{k}'] = r[k]
    if switch is not None:
        readapt, info = sc.readapt_time(switch['ti'], switch['g'], 1000.0, switch['switch_t'])
        out.update(readapt_s=readapt, tremor_hz_2=scn.tremor_hz_2,
                   switch_tremor_frequency_hz=switch['tremor_frequency_hz'],
                   readapt_pre_rms=info['pre_rms'], readapt_peak_rms=info['peak_rms'])
    return out


def summary(per_seed: list[dict], keys) -> dict:
    """Median over seeds of ``keys``; ``*_worst`` for :data:`WORST`. A seed without a figure
    (NaN: e.g. a tremor never re-adapted to) counts as the worst value in the median (+inf
    where the target is a maximum, -inf where it is a minimum), its worst is NaN, and
    ``*_failed_seeds`` lists such seeds."""
    out = {}
    for k in keys:
        rows = [s for s in per_seed if k in s]
        v = np.array([s[k] for s in rows], float)
        if not v.size:
            continue
        bad = k not in TARGETS or TARGETS[k][1] == 'max'
        failed = ~np.isfinite(v)
        med = float(np.median(np.where(failed, np.inf if bad else -np.inf, v)))
        out[k] = med if math.isfinite(med) else float('nan')
        if failed.any():
            out[f'{k}_failed_seeds'] = [s.get('seed') for s, f in zip(rows, failed) if f]
        if k in WORST:
            out[f'{k}_worst'] = (float('nan') if failed.any()
                                 else float(v.max() if bad else v.min()))
    return out


def targets_met(res: dict) -> dict:
    met = {}
    for k, (target, kind) in TARGETS.items():
        v = res.get(k, float('nan'))
        met[k] = bool(math.isfinite(v) and (v <= target if kind == 'max' else v >= target))
    return met


# ---------------------------------------------------------------- plot
def plot(path: str, scn: sc.Scenario, m: dict, switch: dict | None, per_seed: list[dict]):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    colours = {'linear': 'tab:gray', 'ruckig': 'tab:orange', 'shaping': 'tab:blue',
               'cerebellum': 'tab:green'}
    fig, ax = plt.subplots(2, 3, figsize=(17, 9))
    for name, r in m.items():
        f, psd = sc.welch(r['g'][r['ti'] >= SETTLE], 1000.0, 2048)
        ax[0, 0].semilogy(f, psd, colours[name], label=name)
    ax[0, 0].axvspan(4, 12, color='0.92')
    ax[0, 0].set(xlim=(0, 40), xlabel='frequency [Hz]', ylabel='gyro PSD [(rad/s)^2/Hz]',
                 title=f'seed {scn.seed}: IMU spectrum after {SETTLE:g} s (4-12 Hz shaded)')
    ax[0, 0].legend()
    t = m['cerebellum']['t']
    want = scn.intended(t)
    for i, axis in enumerate('xyz'):
        a = ax[0, 1] if i < 2 else ax[1, 0]
        a.plot(t, want[:, i], 'k:', lw=1)
        for name, r in m.items():
            a.plot(r['t'], r['p'][:, i], colours[name], lw=0.9,
                   label=name if i != 1 else None)
    ax[0, 1].set(xlabel='time [s]', ylabel='tcp x, y [m]', title='tcp: intended (dotted)')
    ax[0, 1].legend()
    ax[1, 0].set(xlabel='time [s]', ylabel='tcp z [m]', title='tcp z')
    for name, r in m.items():
        ax[0, 2].semilogy(r['ti'], sc.sliding_band_rms(r['g'], 1000.0), colours[name],
                          lw=0.9, label=name)
    ax[0, 2].set(xlabel='time [s]', ylabel='gyro 4-12 Hz RMS [rad/s] (0.3 s)',
                 title='tremor measured by the IMU')
    ax[0, 2].legend()
    if switch is not None:
        ax[1, 1].semilogy(switch['ti'], sc.sliding_band_rms(switch['g'], 1000.0), 'tab:green')
        ax[1, 1].axvline(switch['switch_t'], color='k', ls='--',
                         label=f'{scn.tremor_hz:g} -> {scn.tremor_hz_2:g} Hz')
        ax[1, 1].legend()
        ax[1, 1].set(xlabel='time [s]', ylabel='gyro 4-12 Hz RMS [rad/s] (0.3 s)',
                     title='cerebellum: re-adaptation after a frequency change')
    seeds = [s['seed'] for s in per_seed]
    x = np.arange(len(seeds))
    for i, (k, lab) in enumerate((('jerk_vs_ruckig', 'jerk / ruckig'),
                                  ('rmse_vs_ruckig', 'rmse / ruckig'),
                                  ('time_to_goal_vs_ruckig', 'time to goal / ruckig'))):
        ax[1, 2].bar(x + 0.25 * (i - 1), [s[k] for s in per_seed], 0.25, label=lab)
    ax[1, 2].axhline(1.0, color='k', lw=0.6)
    ax[1, 2].set_xticks(x, [str(s) for s in seeds])
    ax[1, 2].set(xlabel='seed', ylabel='cerebellum / ruckig', title='every seed')
    ax[1, 2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- docs
def docs_section(results: list[dict]) -> str:
    """docs/cerebellum.md's "Last measured" section from bench JSON results: one table, the
    graphs side by side (median over seeds, worst seed, target met)."""
    def num(v):
        return '' if v is None else f'{v:.4g}'
    lines = [DOCS_BEGIN, '']
    for r in results:
        lines.append(f'- `neurovla bench tremor --graph {r["graph"]} --speed {r["speed"]:g}`: '
                     f'{r.get("date", "")}, seeds {", ".join(map(str, r["seeds"]))}, ruckig '
                     f'cut-off {r.get("ruckig_lowpass_hz", float("nan")):g} Hz'
                     + (f', {r["wall_s"] / 60:.1f} min' if 'wall_s' in r else ''))
    head = ['figure', 'target']
    for r in results:
        head += [f'{r["graph"]}: median', f'{r["graph"]}: worst seed', f'{r["graph"]}: met']
    lines += ['', '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for k, (target, kind) in TARGETS.items():
        row = [f'`{k}`', f'{"<=" if kind == "max" else ">="} {target:g}']
        for r in results:
            failed = r.get(f'{k}_failed_seeds')
            worst = num(r.get(f'{k}_worst'))
            if failed:
                worst = (worst + ' ' if worst not in ('', 'nan') else '') + \
                    f'none on seed {", ".join(map(str, failed))}'
            row += [num(r.get(k, float('nan'))), worst,
                    'yes' if r.get('targets_met', {}).get(k) else '**no**']
        lines.append('| ' + ' | '.join(row) + ' |')
    lines += ['', DOCS_END]
    return '\n'.join(lines)


def write_docs(paths: list[str], root: str) -> None:
    """Copy bench JSON results to docs/measured/tremor_<graph>.json and render them (full graph
    first) into docs/cerebellum.md between the markers."""
    results = sorted((json.load(open(p)) for p in paths), key=lambda r: r['graph'] != 'full')
    os.makedirs(os.path.join(root, 'docs', 'measured'), exist_ok=True)
    for r in results:
        with open(os.path.join(root, 'docs', 'measured', f'tremor_{r["graph"]}.json'), 'w') as f:
            json.dump(r, f, indent=1, default=float)
            f.write('\n')
    doc = os.path.join(root, 'docs', 'cerebellum.md')
    text = open(doc, encoding='utf-8').read()
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise SystemExit(f'{doc}: no "{DOCS_BEGIN}" ... "{DOCS_END}" markers')
    head, rest = text.split(DOCS_BEGIN, 1)
    tail = rest.split(DOCS_END, 1)[1]
    with open(doc, 'w', encoding='utf-8') as f:
        f.write(head + docs_section(results) + tail)
    print(f'wrote {doc} and docs/measured/ from {", ".join(paths)}')


# ---------------------------------------------------------------- main
def parse(argv=None):
    ap = argparse.ArgumentParser(prog='neurovla bench tremor', description=__doc__.split('\n')[0])
    ap.add_argument('--graph', choices=('full', 'minimal'), default='full',
                    help='full: the bringup graph (sim with camera and objects, spinal, '
                         'cerebellum, cortex in dry run); minimal: sim (no camera, no objects), '
                         'spinal, cerebellum')
    ap.add_argument('--speed', type=float, default=1.0,
                    help='sim seconds per wall second; 1 = real time on the wall clock (as a '
                         'bringup), < 1 = every node on /clock')
    ap.add_argument('--seeds', type=lambda s: tuple(int(x) for x in s.split(',')),
                    default=DEFAULT_SEEDS, help='scenario seeds, comma-separated (not '
                    f'{",".join(map(str, TUNING_SEEDS))}: those are for --tune)')
    ap.add_argument('--noise-mm', type=float, default=4.0, help='goal position noise std [mm]')
    ap.add_argument('--no-switch', action='store_true', help='skip the frequency-switch runs')
    ap.add_argument('--spinal-reflex', action='store_true',
                    help='keep the spinal collision reflex on (off: a withdrawal would end a '
                         "run's motion)")
    ap.add_argument('--tune', action='store_true',
                    help=f'tune ruckig_lowpass_hz on the tuning seeds {TUNING_SEEDS}: the '
                         'cut-off with the lowest jerk at a tracking error no worse than the '
                         "cerebellum's (none: the one that tracks best)")
    ap.add_argument('--cutoffs', type=lambda s: [float(x) for x in s.split(',')],
                    default=[0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0], help='--tune: cut-offs [Hz]')
    ap.add_argument('--write-docs', nargs='+', metavar='JSON',
                    help='render these bench JSON files into docs/cerebellum.md and exit')
    args = ap.parse_args(argv)
    if args.tune:
        args.seeds = TUNING_SEEDS
    elif set(args.seeds) & set(TUNING_SEEDS):
        ap.error(f'--seeds {args.seeds}: {sorted(set(args.seeds) & set(TUNING_SEEDS))} '
                 f'are tuning seeds (--tune); report on other seeds')
    if args.speed <= 0:
        ap.error('--speed must be > 0')
    return args


def default_cutoff() -> float:
    from ..cerebellum.params import CerebellumConfig
    return CerebellumConfig().ruckig_lowpass_hz


def tune(bench: Bench, args, model) -> dict:
    """The ruckig cut-off: lowest median jerk over the tuning seeds at a median RMSE no worse
    than the cerebellum's; where no cut-off tracks that well, the one with the lowest RMSE."""
    rows = {}
    for seed in args.seeds:
        scn = sc.Scenario.draw(seed, goal_noise=args.noise_mm * 1e-3)
        log(f'tuning seed {seed}: cerebellum')
        rows.setdefault('cerebellum', []).append(
            bench.measure('cerebellum', scn, RUNS['cerebellum'], model)[1])
        for fc in args.cutoffs:
            log(f'tuning seed {seed}: ruckig at {fc:g} Hz')
            rows.setdefault(fc, []).append(bench.measure(
                f'ruckig {fc:g} Hz', scn, {**RUNS['ruckig'], 'ruckig_lowpass_hz': fc}, model)[1])
    med = {k: {'jerk': float(np.median([r['jerk'] for r in v])),
               'rmse': float(np.median([r['rmse'] for r in v])),
               'ttg': float(np.median([r['ttg'] for r in v]))} for k, v in rows.items()}
    ok = [fc for fc in args.cutoffs if med[fc]['rmse'] <= med['cerebellum']['rmse']]
    # none tracks as well as the cerebellum: the one that tracks best (a user would not give
    # up more tracking for smoothness than the filter must)
    best = (min(ok, key=lambda fc: med[fc]['jerk']) if ok
            else min(args.cutoffs, key=lambda fc: med[fc]['rmse']))
    return {'tune': True, 'graph': args.graph, 'speed': args.speed, 'seeds': list(args.seeds),
            'cerebellum': med['cerebellum'],
            'ruckig': {f'{fc:g}': med[fc] for fc in args.cutoffs},
            'ruckig_lowpass_hz': best, 'rmse_no_worse_than_cerebellum': bool(ok),
            'retries': list(bench.retries)}


def main(argv=None) -> int:
    args = parse(argv)
    if args.write_docs:
        write_docs(args.write_docs, os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))))
        return 0
    from .. import robot
    model = robot.load()
    scns = {s: sc.Scenario.draw(s, switch=False, goal_noise=args.noise_mm * 1e-3)
            for s in args.seeds}
    longest = max(s.duration for s in scns.values()) + 5.0
    log(f'graph {args.graph}, speed {args.speed:g}, seeds {list(args.seeds)}, '
        f'{"tuning" if args.tune else "runs " + ", ".join([*RUNS, "switch"][:5 - args.no_switch])}')
    wall0 = time.monotonic()
    bench = Bench(args, longest)
    try:
        if args.tune:
            res = tune(bench, args, model)
            log(f'ruckig_lowpass_hz {res["ruckig_lowpass_hz"]:g} Hz')
            emit(res)
            return 0
        per_seed, first, raw = [], None, {}
        for seed, scn in scns.items():
            log(f'seed {seed}: tremor {scn.tremor_amplitude:g} N m at {scn.tremor_hz:g} Hz on '
                f'{scn.tremor_joint or "the wrist pattern"}, {len(scn.waypoints) - 1} moves')
            m = {}
            for name, params in RUNS.items():
                log(f'seed {seed}: {name}')
                data, m[name] = bench.measure(name, scn, params, model)
                raw.update({f's{seed}_{name}_{k}': data[k] for k in ('t', 'q', 't_imu', 'gyro')})
            sw = None
            if not args.no_switch:
                scn_sw = sc.Scenario.draw(seed, switch=True, goal_noise=args.noise_mm * 1e-3)
                log(f'seed {seed}: switch {scn_sw.tremor_hz:g} -> {scn_sw.tremor_hz_2:g} Hz at '
                    f'{scn_sw.switch_time:g} s')
                data, sw = bench.measure('switch', scn_sw, RUNS['cerebellum'], model)
                raw.update({f's{seed}_switch_{k}': data[k] for k in ('t', 'q', 't_imu', 'gyro')})
                sw['switch_t'] = data['status']['switch_t'] or scn_sw.switch_time
            fig = seed_figures(m, scn_sw if sw is not None else scn, sw)
            fig['runs'] = {name: {k: r[k] for k in ('jerk', 'rmse', 'band', 'ttg', 'tick_us_p50',
                                                    'tick_us_p99', 'after_tick_us_p99', 'on_time',
                                                    'watchdog_trips', 'tremor_frequency_hz',
                                                    'canceller_resets', 'goals_rejected',
                                                    'reflex_events', 'cpu_share',
                                                    'compiled_tick')}
                           for name, r in m.items()}
            per_seed.append(fig)
            log(f'seed {seed}: jerk/ruckig {fig["jerk_vs_ruckig"]:.3f}, rmse/ruckig '
                f'{fig["rmse_vs_ruckig"]:.3f}, band {fig["tremor_band_db_vs_shaping"]:.1f} dB, '
                f'jerk -{100 * fig["jerk_reduction"]:.1f} %, ttg/ruckig '
                f'{fig["time_to_goal_vs_ruckig"]:.2f}, readapt {fig.get("readapt_s", math.nan):.2f}'
                f' s, tick p99 {fig["cerebellum_tick_us_p99"]:.0f} us')
            if first is None:
                first = (scn_sw if sw is not None else scn, m, sw)
    finally:
        bench.close()
    res = {'speed': args.speed, 'graph': args.graph, 'seeds': list(args.seeds),
           'date': time.strftime('%Y-%m-%d'), 'ruckig_lowpass_hz': default_cutoff(),
           'goal_noise_mm': args.noise_mm, 'spinal_reflex': args.spinal_reflex}
    res.update(summary(per_seed, TARGETS))
    res['wall_s'] = time.monotonic() - wall0      # the whole benchmark, graph start included
    cpu = [r['runs']['cerebellum']['cpu_share'] for r in per_seed]
    res['cpu_share_cerebellum_run'] = {k: float(np.median([c[k] for c in cpu])) for k in cpu[0]}
    res['compiled_tick'] = all(r['runs']['cerebellum']['compiled_tick'] for r in per_seed)
    res['retries'] = bench.retries       # runs re-run after recording too little
    res['per_seed'] = per_seed
    res['targets'] = {k: t for k, (t, _) in TARGETS.items()}
    res['targets_met'] = targets_met(res)
    res['all_targets_met'] = all(res['targets_met'].values())
    path = os.path.join(out_dir(), f'tremor_{args.graph}.png')
    plot(path, *first, per_seed)
    res['plot'] = path
    np.savez_compressed(os.path.join(out_dir(), f'tremor_{args.graph}.npz'), **raw)
    res['json'] = os.path.join(out_dir(), f'tremor_{args.graph}.json')
    with open(res['json'], 'w') as f:
        json.dump(res, f, indent=1, default=float)
    log(', '.join(f'{k} {res.get(k, math.nan):.4g}' for k in TARGETS))
    emit({k: v for k, v in res.items() if k != 'per_seed'})   # per seed: in the JSON file
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
