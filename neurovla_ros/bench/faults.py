"""neurovla bench faults: the fault suite (issue 14), one row per fault, in the bringup graph.

The graph is bringup's full graph (``bench.common.graph_with_sim``: the sim with its camera in
this process, the spinal, cerebellum and cortex nodes as processes, real time), with the
nodes' /diagnostics raised to 10 Hz so that detection times have 0.1 s resolution (the latched
``spinal/safety`` topic is immediate). The cortex plans with its default backend; before each
row the bench names another object of the scene on ``cortex/instruction``, so the arm is
moving when the fault is injected ``lead_s`` later. The stop rows instead switch the cortex to
``dry_run`` and send a fast joint move (shoulder_pan, peak 2.4 rad/s) on ``cortex/joint_goal``.

The faults, their order and what the stack must do are defined in ``config/faults.yaml``. Per
row, from the body's state recorded at every physics step in this process:

* ``detected`` / ``detect_ms``: the first report matching the row's ``detect`` (a /diagnostics
  or ``spinal/safety`` status value) after the injection, and its delay, by the report's own
  stamp (a report made while this process was frozen keeps its time).
* ``stop_category``: the spinal's stop category reached (1 emergency, 2 protective, 0 none).
* ``standstill_ms``: hold/stop rows: from detection (stop rows: from the request) until the
  arm's speed, averaged over 50 ms, stays under 0.05 rad/s for 50 ms. ``vibration_rad_s``: the
  RMS of the speed around that average over the window (what the average hides).
* ``excursion_rad``: hold/stop rows: the largest joint move after standstill until the window
  ends (the held arm must stay put; an IMU outage: until the IMU is back, when the cerebellum
  resumes the motion by design); reject/ride rows: the largest tracking error
  |q - cerebellum reference| in the window (the motion goes on); body pauses: the same from
  0.5 s after the state returns (after the watchdog's hold and engage blend).
* ``outside_limits``: commands the sim refused as outside the URDF limits (NaN, range,
  velocity, effort) while no bench flood targeted the sim's own command topics, plus
  cerebellum reference samples outside the URDF position or velocity range (not counted while
  the bench floods that topic itself).
* ``alive``: the nodes alive at the end of the window (before any restart); ``recovered`` /
  ``recover_s``: after the fault ends (a killed node restarted as bringup starts it; a stop
  resumed by ``estop`` false and ``spinal/resume``; the watchdogs resume by themselves, as
  designed), reports made since then say the graph is back: spinal safety running and
  controller following, the cerebellum not holding and taking goals again.
* ``safe``: detected (unless ``ride``), nothing outside the limits, the excursion within
  0.05 rad (the spinal's standstill tolerance), and standstill reached for stop, kill and IMU
  rows.

Loss and delay between the cortex and the cerebellum and the policy-server rows are not in this
table: the server faults are ``neurovla bench cortex --remote-faults on`` (its own table).

JSON keys: faults, faults_safe, commands_outside_limits, max_excursion_rad,
estop_standstill_ms_p99 (over the emergency stop row's repeats), unrecovered, detected,
estop_speed_rad_s (the arm's speed at the estop), plus each row in ``bench_out/faults.json`` and
a timeline PNG per row (``bench_out/faults/<name>.png``: joint speed, tracking error, events).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np

from .common import (
    add_set_option,
    emit,
    graph_with_sim,
    out_dir,
    pct,
    private_graph,
    stop_sim_with_spinal,
    with_sets,
)

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, '..', '..', 'config', 'faults.yaml')
KINDS = ('body_pause', 'imu_pause', 'flood', 'goal', 'goal_flood', 'kill', 'cpu_hog', 'estop',
         'protective')
EXPECT = ('hold', 'stop', 'reject', 'ride')
STANDSTILL_RAD_S = 0.05      # the spinal brake's standstill velocity
STANDSTILL_HOLD_S = 0.05
EXCURSION_TOL = 0.05         # the spinal's standstill tolerance [rad]
DIAG_RATE_HZ = 10.0
SIM_COMMAND_TOPICS = ('forward_effort_controller/commands', 'gripper_controller/commands')


def log(msg: str) -> None:
    print(f'[bench faults] {msg}', file=sys.stderr, flush=True)


def load_table(path: str = TABLE) -> dict:
    """The fault table, checked: unique names, known kinds and expectations, a ``detect``
    wherever something must be detected."""
    import yaml
    with open(path) as f:
        table = yaml.safe_load(f)
    names = [r['name'] for r in table['faults']]
    if len(set(names)) != len(names):
        raise ValueError(f'{path}: duplicate fault names')
    for r in table['faults']:
        if r['kind'] not in KINDS or r['expect'] not in EXPECT:
            raise ValueError(f'{path}: {r["name"]}: kind {r["kind"]!r} / expect '
                             f'{r["expect"]!r} unknown')
        if r['expect'] != 'ride' and 'detect' not in r:
            raise ValueError(f'{path}: {r["name"]}: needs a detect rule')
    # a row with ``repeat: n`` runs n times (named name#1..n): a percentile needs samples
    table['faults'] = [dict(r, name=f'{r["name"]}#{i + 1}') if r.get('repeat', 1) > 1 else r
                       for r in table['faults'] for i in range(int(r.get('repeat', 1)))]
    return table


def matches(rule: dict, values: dict, before) -> bool:
    """Whether a status's ``values`` satisfy the row's ``detect`` rule (``before``: the key's
    value before the injection, for ``increases``)."""
    v = values.get(rule['key'])
    if v is None:
        return False
    if 'equals' in rule:
        return v == rule['equals']
    if 'contains' in rule:
        return rule['contains'] in str(v)
    if rule.get('increases'):
        try:
            return float(v) > float(before if before is not None else 0)
        except (TypeError, ValueError):
            return False
    raise ValueError(f'detect rule {rule} has no test')


def standstill_index(speed: np.ndarray, start: int, dt: float = 1e-3) -> int | None:
    """First index >= ``start`` from which every joint stays slower than the standstill speed
    for :data:`STANDSTILL_HOLD_S`, or None."""
    need = int(round(STANDSTILL_HOLD_S / dt))
    slow = speed[start:] < STANDSTILL_RAD_S
    run = 0
    for i, s in enumerate(slow):
        run = run + 1 if s else 0
        if run >= need:
            return start + i - need + 1
    return None


def smoothed(speed: np.ndarray, window: int = 50) -> np.ndarray:
    """``speed`` averaged over ``window`` steps (centred)."""
    if len(speed) < window:
        return speed.copy()
    return np.convolve(speed, np.ones(window) / window, mode='same')


def bad_messages(kind: str, arm: list[str]):
    """Serialized invalid messages of ``kind`` (NaN, inf, wrong length), cycled by a flood."""
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image, Imu, JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
    nan, inf = float('nan'), float('inf')
    out = []
    if kind == 'JointState':
        for pos, names in (([nan] * 6, arm), ([0.0] * 5 + [inf], arm), ([0.0] * 5, arm)):
            m = JointState(name=list(names), position=pos, velocity=[0.0] * len(pos),
                           effort=[0.0] * len(pos))
            out.append(m)
    elif kind == 'Imu':
        for bad in (nan, inf):
            m = Imu()
            m.header.frame_id = 'imu_link'
            m.orientation.w = 1.0
            m.angular_velocity.x = bad
            m.linear_acceleration.z = bad
            out.append(m)
        m = Imu()
        m.header.frame_id = 'imu_link'            # a zero quaternion: no orientation
        out.append(m)
    elif kind == 'PoseStamped':
        for p, q in (((nan, 0.0, 0.3), (0.0, 1.0, 0.0, 0.0)), ((0.45, inf, 0.3), (0, 1, 0, 0)),
                     ((0.45, 0.0, 0.3), (0.0, 0.0, 0.0, 0.0))):
            m = PoseStamped()
            m.header.frame_id = 'base_link'
            m.pose.position.x, m.pose.position.y, m.pose.position.z = p
            (m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
             m.pose.orientation.w) = (float(v) for v in q)
            out.append(m)
    elif kind == 'JointTrajectory':
        for pos in ([nan] * 6, [0.0] * 5 + [inf], [0.0] * 5):
            m = JointTrajectory(joint_names=list(arm))
            pt = JointTrajectoryPoint(positions=pos)
            pt.time_from_start.nanosec = 100_000_000
            m.points = [pt]
            out.append(m)
    elif kind == 'TwistStamped':
        for lin in ((nan, 0.0, 0.0), (inf, 0.0, 0.0)):
            m = TwistStamped()
            m.header.frame_id = 'base_link'
            m.twist.linear.x, m.twist.linear.y, m.twist.linear.z = lin
            out.append(m)
    elif kind == 'Float64MultiArray':
        out = [Float64MultiArray(data=d) for d in ([nan] * 6, [0.0] * 5 + [inf], [0.0] * 5,
                                                   [nan], [inf])]
    elif kind == 'Image':
        m = Image(height=240, width=320, encoding='rgb8', step=960)
        m.data = bytes(100)                       # far fewer bytes than step x height
        out = [m]
    else:
        raise ValueError(f'no invalid messages for type {kind}')
    return type(out[0]), [serialize_message(m) for m in out]


class Body:
    """The in-process sim's per-step hook: records the state (every step) and the cerebellum's
    reference (every 2nd step), and carries out the injections that act on the body."""

    def __init__(self, sim, node, model, seconds: float):
        from sensor_msgs.msg import JointState

        from ..common import cdr
        from ..common.rosutil import LatestSample
        self.sim, self.world = sim, sim.world
        n = int(seconds * 1000)
        self.n = n
        self.k = 0
        self.wall = np.zeros(n, np.int64)
        self.q = np.zeros((n, 6), np.float32)
        self.qd = np.zeros((n, 6), np.float32)
        self.ref = np.full((n, 6), np.nan, np.float32)
        self.ref_bad = 0
        lim = model.limits()
        self.lower, self.upper, self.vmax = lim['lower'], lim['upper'], lim['velocity']
        self._ref_sample = LatestSample(node, JointState, 'cerebellum/reference')
        self._reader = cdr.JointStateReader()
        self._arm = list(model.arm_joints)
        self._ref_idx = None
        self._last_ref = np.full(6, np.nan)
        self.pause_s = 0.0          # one-shot freeze of the body before the next step
        self.flood = None           # (publisher, [serialized], end step)
        self.flood_sent = 0
        self.flooding_reference = False   # the bench's own bad references are not the stack's

    def before_step(self) -> None:
        k = self.k
        w = self.world
        if k < self.n:
            self.wall[k] = time.monotonic_ns()
            self.q[k] = w.data.qpos[:6]
            self.qd[k] = w.data.qvel[:6]
            if k % 2 == 0 and not self.flooding_reference:
                self._take_reference()
            self.ref[k] = self._last_ref
            self.k = k + 1
        if self.pause_s:
            time.sleep(self.pause_s)
            self.pause_s = 0.0
        fl = self.flood
        if fl is not None:
            pub, msgs, end = fl
            if k >= end:
                self.flood = None
            else:
                pub.publish(msgs[k % len(msgs)])
                self.flood_sent += 1

    def _take_reference(self) -> None:
        buf = self._ref_sample.take()
        if buf is None or self._reader.read(buf) is None:
            return
        rd = self._reader
        if self._ref_idx is None:
            try:
                self._ref_idx = [rd.names.index(j) for j in self._arm]
            except ValueError:
                return
        if len(rd.position) < 6:
            return
        q = rd.position[self._ref_idx]
        qd = rd.velocity[self._ref_idx] if len(rd.velocity) >= 6 else np.zeros(6)
        if (np.any(q < self.lower - 1e-6) or np.any(q > self.upper + 1e-6)
                or np.any(np.abs(qd) > self.vmax + 1e-6) or not np.all(np.isfinite(q))):
            self.ref_bad += 1
        self._last_ref = q

    def index_at(self, wall_ns: int) -> int:
        """The recorded step at (or just after) the monotonic time ``wall_ns``."""
        return int(min(np.searchsorted(self.wall[:self.k], wall_ns), max(self.k - 1, 0)))

    def speed(self, a: int, b: int) -> np.ndarray:
        return np.abs(self.qd[a:b]).max(axis=1)


class Events:
    """Every status from /diagnostics and ``spinal/safety``, with its arrival time."""

    def __init__(self, node):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        from ..common.rosutil import LATCHED_QOS, diagnostic_values
        self.items: list[tuple[int, str, dict, str]] = []   # (mono ns, status, values, message)
        self.offset_ns = time.time_ns() - time.monotonic_ns()
        self.lock = threading.Lock()
        self._values = diagnostic_values

        def on(msg):
            # the sender's stamp (system clock) on this process's monotonic clock: a report
            # made while this process was frozen (a body pause) keeps its own time
            st = msg.header.stamp
            t = st.sec * 1_000_000_000 + st.nanosec - self.offset_ns
            with self.lock:
                for st in msg.status:
                    self.items.append((t, st.name, self._values(st), st.message))
        node.create_subscription(DiagnosticArray, '/diagnostics', on, QoSProfile(
            depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE))
        # latched, and deep enough to keep every change while this process is frozen (a body
        # pause): the trip and the recovery both arrive, not just the newest
        node.create_subscription(DiagnosticArray, 'spinal/safety', on, QoSProfile(
            depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
            durability=LATCHED_QOS.durability))

    def latest(self, status: str, after_ns: int = 0) -> dict:
        """The newest values of ``status`` (reported after ``after_ns``), or {}."""
        with self.lock:
            for t, name, values, _ in reversed(self.items):
                if name == status:
                    return values if t > after_ns else {}
        return {}

    def oldest(self, status: str, after_ns: int) -> dict:
        with self.lock:
            for t, name, values, _ in self.items:
                if name == status and t > after_ns:
                    return values
        return {}

    def first(self, rule: dict, after_ns: int, before) -> int | None:
        with self.lock:
            for t, name, values, _ in self.items:
                if t >= after_ns and name == rule['status'] and matches(rule, values, before):
                    return t
        return None


class Suite:
    """Runs the rows (a thread of its own; the sim loop runs in the main thread)."""

    def __init__(self, table, nodes, sim, node, body, events, model, rng):
        from geometry_msgs.msg import PoseStamped
        from rclpy.parameter_client import AsyncParameterClient
        from std_msgs.msg import Bool, String
        from std_srvs.srv import Trigger
        from trajectory_msgs.msg import JointTrajectory

        from ..common.rosutil import COMMAND_QOS, LATCHED_QOS
        self.t, self.nodes, self.sim, self.node = table, nodes, sim, node
        self.body, self.events, self.model, self.rng = body, events, model, rng
        self.arm = list(model.arm_joints)
        self.pub_instruction = node.create_publisher(String, 'cortex/instruction', COMMAND_QOS)
        self.pub_pose = node.create_publisher(PoseStamped, 'cortex/goal_pose', COMMAND_QOS)
        self.pub_traj = node.create_publisher(JointTrajectory, 'cortex/joint_goal', COMMAND_QOS)
        self.pub_estop = node.create_publisher(Bool, 'estop', LATCHED_QOS)
        self.stop_cli = node.create_client(Trigger, 'spinal/stop')
        self.resume_cli = node.create_client(Trigger, 'spinal/resume')
        self.cortex_params = AsyncParameterClient(node, 'cortex')
        self.objects = [f'{o["colour"]} {o["shape"]}' for o in sim.world.objects()]
        from ..cerebellum.params import PARAMS as CEREBELLUM_PARAMS
        from ..common.params import default_of
        self.top_speed = (default_of(CEREBELLUM_PARAMS, 'velocity_scale')
                          * float(body.vmax[0]))   # the fastest reference the cerebellum gives
        self.rows: list[dict] = []
        self.sim_rejections = []           # (mono ns, kind) of every command the sim refused
        self.flooding_sim = False
        self.done = False
        self.error = None
        self._wrap_sim_warn()

    def _wrap_sim_warn(self) -> None:
        warn = self.sim._warn

        def counted(kind, msg):
            if not self.flooding_sim:
                self.sim_rejections.append((time.monotonic_ns(), kind, msg))
            warn(kind, msg)
        self.sim._warn = counted

    # ---- helpers (this thread; the main thread spins the executor)
    def wait(self, fut, timeout=5.0):
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.005)
        return fut.result() if fut.done() else None

    def call(self, client, timeout=5.0):
        from std_srvs.srv import Trigger
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        return self.wait(client.call_async(Trigger.Request()), timeout)

    def set_cortex(self, **values) -> None:
        from rclpy.parameter import Parameter
        self.cortex_params.wait_for_services(5.0)
        self.wait(self.cortex_params.set_parameters(
            [Parameter(k, value=v) for k, v in values.items()]))

    def instruct(self, i: int) -> str:
        from std_msgs.msg import String
        text = f'touch the {self.objects[i % len(self.objects)]}'
        self.pub_instruction.publish(String(data=text))
        return text

    def fast_move(self) -> float:
        """A fast shoulder_pan move (cosine, 1.2 rad in 1.2 s: a peak of 1.57 rad/s, the
        cerebellum's speed limit); returns its peak speed."""
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
        q0 = np.array(self.body.q[self.body.k - 1], float)
        lo, hi = self.body.lower[0], self.body.upper[0]
        d = 1.2 if q0[0] + 1.2 < hi - 0.1 else -1.2
        if not lo + 0.1 < q0[0] + d < hi - 0.1:
            d = -d
        T, n = 1.2, 60
        msg = JointTrajectory(joint_names=self.arm)
        for i in range(1, n + 1):
            s = i / n
            q = q0.copy()
            q[0] += d * (1 - math.cos(math.pi * s)) / 2
            pt = JointTrajectoryPoint(positions=q.tolist())
            t = s * T
            pt.time_from_start.sec, pt.time_from_start.nanosec = int(t), int((t % 1) * 1e9)
            msg.points.append(pt)
        self.pub_traj.publish(msg)
        return abs(d) * math.pi / (2 * T)

    def counters(self) -> dict:
        return {s: self.events.latest(s) for s in ('cerebellum', 'spinal: controller',
                                                   'spinal: safety', 'sim: physics',
                                                   'cortex: planner')}

    def normal(self, since_ns: int) -> bool:
        """Reports made since ``since_ns`` say the graph is back: spinal running and following,
        the cerebellum not holding and taking goals (its count grew between two reports)."""
        ev = self.events
        saf = ev.latest('spinal: safety', since_ns)
        ctl = ev.latest('spinal: controller', since_ns)
        cb, cb0 = ev.latest('cerebellum', since_ns), ev.oldest('cerebellum', since_ns)
        return (saf.get('stop') == 'run' and saf.get('watchdog_tripped') is False
                and ctl.get('mode') == 'follow' and cb.get('holding') is False
                and (cb.get('goals_accepted') or 0) > (cb0.get('goals_accepted') or 0)
                and self.nodes.alive())

    # ---- the rows
    def run(self) -> None:
        try:
            for i, row in enumerate(self.t['faults']):
                log(f'row {i + 1}/{len(self.t["faults"])}: {row["name"]}')
                self.rows.append(self.row(i, row))
                r = self.rows[-1]
                log(f'  detected {r["detected"]} in {r["detect_ms"]:.0f} ms, safe {r["safe"]}, '
                    f'recovered {r["recovered"]} in {r["recover_s"]:.1f} s')
        except Exception as e:  # noqa: BLE001 - reported with the rows so far
            import traceback
            self.error = traceback.format_exc()
            log(f'suite stopped: {e}')
        finally:
            self.done = True

    def row(self, i: int, row: dict) -> dict:
        body, kind = self.body, row['kind']
        lead = float(self.t['lead_s'])
        window = float(row.get('window_s', self.t['window_s']))
        stop_row = kind in ('estop', 'protective')
        peak = None
        if stop_row:
            self.set_cortex(dry_run=True)
            time.sleep(0.5)
            peak = self.fast_move()
            end = time.monotonic() + 1.5          # at the top speed the reference allows
            while time.monotonic() < end and abs(body.qd[body.k - 1, 0]) < 0.9 * self.top_speed:
                time.sleep(0.001)
        else:
            self.instruct(i + 1)
            time.sleep(lead)
        before = self.counters()
        rej0 = len(self.sim_rejections)
        ref_bad0 = body.ref_bad
        t0 = time.monotonic_ns()
        k0 = body.k
        end_fault = self.inject(row, t0)
        time.sleep(max(0.0, window - (time.monotonic_ns() - t0) * 1e-9))
        k_end = body.k
        alive = [p.name for p in self.nodes.procs if p.poll() is None]
        rule = row.get('detect')
        t_det = None
        if rule is not None:
            base = before[rule['status']].get(rule['key'])
            t_det = self.events.first(rule, t0, base)
        detected = t_det is not None
        k_det = body.index_at(t_det) if detected else None
        speed = body.speed(0, k_end)
        slow = smoothed(speed)          # the arm's motion, its 20-30 Hz vibration averaged out
        r = {'name': row['name'], 'kind': kind, 'expect': row['expect'],
             'detected': detected if rule is not None else None,
             'detect_ms': (t_det - t0) * 1e-6 if detected else float('nan'),
             'speed_at_fault_rad_s': float(speed[max(k0 - 1, 0)]) if k0 else float('nan')}
        # the safe state
        standstill_ms, excursion = float('nan'), float('nan')
        if row['expect'] in ('hold', 'stop') and kind != 'body_pause':
            start = k0 if stop_row else (k_det if detected else k0)
            # an IMU outage holds while it lasts: the cerebellum resumes the motion after it
            k_hold = body.index_at(t0 + int(row['ms'] * 1e6)) if kind == 'imu_pause' else k_end
            ks = standstill_index(slow[:k_hold], start)
            if ks is not None:
                standstill_ms = (ks - start) * 1.0
                excursion = float(np.abs(body.q[ks:k_hold] - body.q[ks]).max())
        else:
            # the arm on its reference: reject/ride rows over the window, body pauses from
            # 0.5 s after the state returns (after the watchdog's hold and engage blend)
            a = body.index_at(t0 + int((row['ms'] + 500) * 1e6)) if kind == 'body_pause' else k0
            err = np.abs(body.q[a:k_end] - body.ref[a:k_end])
            excursion = float(np.nanmax(err)) if np.isfinite(err).any() else float('nan')
        r['vibration_rad_s'] = float(np.sqrt(np.mean((speed[k0:k_end] - slow[k0:k_end]) ** 2)))
        r['standstill_ms'] = standstill_ms
        r['excursion_rad'] = excursion
        safety = self.events.latest('spinal: safety')
        r['stop_category'] = int(safety.get('stop_category') or 0) if stop_row else 0
        r['outside_limits'] = (len(self.sim_rejections) - rej0) + (body.ref_bad - ref_bad0)
        r['alive'] = alive
        if stop_row:
            r['peak_speed_rad_s'] = peak
            r['estop_speed_rad_s'] = r['speed_at_fault_rad_s']
        # recovery
        t_rec0 = time.monotonic()
        self.recover(row, end_fault)
        since = time.monotonic_ns()
        deadline = time.monotonic() + float(self.t['recover_timeout_s'])
        if stop_row:
            self.set_cortex(dry_run=False)
        self.instruct(i + 2)
        recovered = False
        while time.monotonic() < deadline:
            if self.normal(since):
                recovered = True
                break
            time.sleep(0.05)
        r['recovered'] = recovered
        if not recovered:        # what the graph said instead
            ev = self.events
            r['recover_state'] = {
                'spinal_stop': ev.latest('spinal: safety', since).get('stop'),
                'spinal_watchdog': ev.latest('spinal: safety', since).get('watchdog_tripped'),
                'spinal_mode': ev.latest('spinal: controller', since).get('mode'),
                'cerebellum_holding': ev.latest('cerebellum', since).get('holding'),
                'cerebellum_goals': (ev.oldest('cerebellum', since).get('goals_accepted'),
                                     ev.latest('cerebellum', since).get('goals_accepted')),
                'dead': [p.name for p in self.nodes.dead()]}
        r['recover_s'] = time.monotonic() - t_rec0 if recovered else float('nan')
        # safe: detected (or nothing to detect), within limits, no excursion, standstill where
        # it is the safe state
        needs_standstill = row['expect'] == 'stop' or kind in ('kill', 'imu_pause')
        must_detect = rule is not None and row['expect'] != 'ride'
        r['safe'] = bool((not must_detect or detected) and r['outside_limits'] == 0
                         and np.isfinite(excursion) and excursion <= EXCURSION_TOL
                         and (not needs_standstill or np.isfinite(standstill_ms)))
        r['steps'] = (k0, k_end)
        return r

    def inject(self, row: dict, t0: int):
        kind, body = row['kind'], self.body
        if kind == 'body_pause':
            body.pause_s = row['ms'] * 1e-3
        elif kind == 'imu_pause':
            every = self.sim._imu_every
            self.sim._imu_every = 10 ** 12
            time.sleep(row['ms'] * 1e-3)
            self.sim._imu_every = every
        elif kind == 'flood':
            msg_type, msgs = bad_messages(row['type'], self.arm)
            from ..common.rosutil import COMMAND_QOS
            pub = self.node.create_publisher(msg_type, row['topic'], COMMAND_QOS)
            time.sleep(0.3)                                       # matched
            self.flooding_sim = row['topic'] in SIM_COMMAND_TOPICS
            body.flooding_reference = row['topic'] == 'cerebellum/reference'
            n = int(float(self.t['flood_s']) * 1000)
            body.flood = (pub, msgs, body.k + n)
            while body.flood is not None:
                time.sleep(0.01)
            time.sleep(0.1)
            self.flooding_sim = body.flooding_reference = False
            return pub
        elif kind == 'goal':
            self.bad_goal(row)
        elif kind == 'goal_flood':
            self.goal_flood()
        elif kind == 'kill':
            import signal
            next(p for p in self.nodes.procs if p.name == row['node']).signal(signal.SIGKILL)
        elif kind == 'cpu_hog':
            hogs = [subprocess.Popen([sys.executable, '-c', 'while True: pass'])
                    for _ in range(os.cpu_count() or 2)]
            time.sleep(float(row['seconds']))
            for h in hogs:
                h.kill()
                h.wait()
        elif kind == 'estop':
            from std_msgs.msg import Bool
            self.pub_estop.publish(Bool(data=True))
        elif kind == 'protective':
            self.call(self.stop_cli)
        return None

    def bad_goal(self, row: dict) -> None:
        from geometry_msgs.msg import PoseStamped
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
        if row['goal'] == 'pose':
            m = PoseStamped()
            m.header.frame_id = 'base_link'
            m.pose.position.x, m.pose.position.y, m.pose.position.z = (
                float(v) for v in row['position'])
            m.pose.orientation.y, m.pose.orientation.w = 1.0, 0.0     # tool down
            self.pub_pose.publish(m)
        else:
            q = np.array(self.body.q[self.body.k - 1], float) + np.asarray(row['offset'], float)
            m = JointTrajectory(joint_names=self.arm)
            pt = JointTrajectoryPoint(positions=q.tolist())
            pt.time_from_start.sec = 1
            m.points = [pt]
            self.pub_traj.publish(m)

    def goal_flood(self) -> None:
        """Valid pose goals at 1 kHz for flood_s: the tcp's pose now, jittered by 2 mm."""
        from geometry_msgs.msg import PoseStamped

        from ..robot.transforms import matrix_to_quat_xyzw
        pose = self.model.fk(np.array(self.body.q[self.body.k - 1], float))
        qx = matrix_to_quat_xyzw(pose[:3, :3])
        m = PoseStamped()
        m.header.frame_id = 'base_link'
        (m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
         m.pose.orientation.w) = (float(v) for v in qx)
        end = time.monotonic() + float(self.t['flood_s'])
        due = time.monotonic()
        while time.monotonic() < end:
            p = pose[:3, 3] + self.rng.normal(0.0, 0.002, 3)
            m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in p)
            self.pub_pose.publish(m)
            due += 1e-3
            time.sleep(max(0.0, due - time.monotonic()))

    def recover(self, row: dict, flood_pub) -> None:
        kind = row['kind']
        if flood_pub is not None:
            self.node.destroy_publisher(flood_pub)
        if kind == 'kill':
            log(f'  restarting {row["node"]}')
            self.nodes.restart(row['node'])
        elif kind == 'estop':
            from std_msgs.msg import Bool
            self.pub_estop.publish(Bool(data=False))
            time.sleep(0.1)
            self.call(self.resume_cli)
        elif kind == 'protective':
            self.call(self.resume_cli)


def plot_row(r: dict, body: Body, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    a, b = r['steps']
    a0 = max(0, a - 500)
    t = (np.arange(a0, b) - a) * 1e-3
    fig, ax = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True)
    ax[0].plot(t, np.abs(body.qd[a0:b]).max(axis=1), lw=0.8)
    ax[0].axhline(STANDSTILL_RAD_S, color='grey', ls=':', lw=0.8)
    ax[0].set_ylabel('max joint speed\n[rad/s]')
    err = np.abs(body.q[a0:b] - body.ref[a0:b]).max(axis=1)
    ax[1].plot(t, err, lw=0.8, color='C1')
    ax[1].set_ylabel('|q - reference|\nmax [rad]')
    ax[1].set_xlabel('time from injection [s]')
    for x in ax:
        x.axvline(0.0, color='C3', lw=1.0, label='injected')
        if np.isfinite(r['detect_ms']):
            x.axvline(r['detect_ms'] * 1e-3, color='C2', lw=1.0, ls='--', label='detected')
    ax[0].legend(loc='upper right', fontsize=8)
    ax[0].set_title(f'{r["name"]}: safe {r["safe"]}, recovered {r["recovered"]}, '
                    f'excursion {r["excursion_rad"]:.4f} rad', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='neurovla bench faults', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--table', default=TABLE, help='the fault table (YAML)')
    ap.add_argument('--only', default='', help='comma-separated row names, without #n '
                                               '(default: all)')
    add_set_option(ap)
    args = ap.parse_args(argv)
    table = load_table(args.table)
    if args.only:
        keep = set(args.only.split(','))
        unknown = keep - {r['name'].partition('#')[0] for r in table['faults']}
        if unknown:
            raise SystemExit(f'unknown rows: {sorted(unknown)}')
        table['faults'] = [r for r in table['faults'] if r['name'].partition('#')[0] in keep]
    private_graph()
    import rclpy
    from rclpy.experimental import EventsExecutor

    from .. import robot
    rate = {'diagnostics_rate_hz': DIAG_RATE_HZ}
    overrides = with_sets({'sim': dict(rate), 'cerebellum': dict(rate), 'cortex': dict(rate),
                           'spinal': {'diagnostics_period': 1.0 / DIAG_RATE_HZ}}, args.set)
    t_start = time.monotonic()
    log(f'starting the full graph (overrides {overrides})')
    nodes, ctx, sim = graph_with_sim('faults', overrides)
    node = rclpy.create_node('bench_faults', context=ctx)
    model = robot.load()
    rows_s = len(table['faults']) * (table['window_s'] + table['lead_s'] + 8) + 600
    body = Body(sim, node, model, rows_s)
    events = Events(node)
    suite = Suite(table, nodes, sim, node, body, events, model,
                  np.random.default_rng(table['seed']))
    world = sim.world
    step = world.step

    def stepped(n_steps=1):
        body.before_step()
        step(n_steps)
        if suite.done:
            sim.stop()
    ex = EventsExecutor(context=ctx)
    ex.add_node(sim)
    ex.add_node(node)
    try:
        nodes.wait_up(node, 120.0, spin=lambda: sim.run(duration=0.2, executor=ex))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:     # up: following, taking the cortex's goals
            sim.run(duration=0.5, executor=ex)
            if (events.latest('spinal: controller').get('mode') == 'follow'
                    and (events.latest('cerebellum').get('goals_accepted') or 0) > 0):
                break
        else:
            raise RuntimeError(f'the graph did not come up; logs: {nodes.logs()}')
        log(f'graph up after {time.monotonic() - t_start:.0f} s; objects {suite.objects}')
        world.step = stepped
        threading.Thread(target=suite.run, name='faults', daemon=True).start()
        sim.run(duration=None, executor=ex)
    finally:
        world.step = step
        stop_sim_with_spinal(nodes, ctx, sim, node, ex)
    rows = suite.rows
    d = out_dir()
    os.makedirs(os.path.join(d, 'faults'), exist_ok=True)
    for r in rows:
        plot_row(r, body, os.path.join(d, 'faults', f'{r["name"]}.png'))
    k = body.k
    np.savez_compressed(os.path.join(d, 'faults_state.npz'), mono_ns=body.wall[:k],
                        q=body.q[:k], qd=body.qd[:k], ref=body.ref[:k])
    with open(os.path.join(d, 'faults.json'), 'w') as f:
        json.dump(rows, f, indent=1, default=str)
    if suite.error:
        log(suite.error)
    est = [r for r in rows if r['kind'] == 'estop']
    res = {
        'faults': len(rows),
        'faults_in_table': len(table['faults']),
        'faults_safe': sum(r['safe'] for r in rows),
        'detected': sum(bool(r['detected']) for r in rows if r['detected'] is not None),
        'to_detect': sum(r['detected'] is not None for r in rows),
        'commands_outside_limits': int(sum(r['outside_limits'] for r in rows)),
        'max_excursion_rad': max((r['excursion_rad'] for r in rows
                                  if np.isfinite(r['excursion_rad'])), default=float('nan')),
        'estop_standstill_ms_p99': pct([r['standstill_ms'] for r in est], 99),
        'estop_speed_rad_s': est[0]['estop_speed_rad_s'] if est else float('nan'),
        'unrecovered': sum(not r['recovered'] for r in rows),
        'unsafe': [r['name'] for r in rows if not r['safe']],
        'not_recovered': [r['name'] for r in rows if not r['recovered']],
        'loss_delay_rows': 'not in this table',
        'server_rows': 'neurovla bench cortex --remote-faults on',
        'diagnostics_rate_hz': DIAG_RATE_HZ,
        'wall_s': time.monotonic() - t_start,
    }
    res['all_targets_met'] = bool(
        res['faults'] == res['faults_in_table'] and res['faults_safe'] == res['faults']
        and res['commands_outside_limits'] == 0 and res['unrecovered'] == 0
        and res['estop_standstill_ms_p99'] <= 200.0)
    emit(res)
    return 0 if suite.error is None else 1


if __name__ == '__main__':
    raise SystemExit(main())
