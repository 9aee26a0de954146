"""``neurovla bench cortex``: the whole brain in the MuJoCo sim over real DDS, held-out episodes.

Per backend (``local`` = neurovla's VLA, then ``scripted`` = the baseline, same worlds, same
layouts, same instructions), per held-out world seed: the sim, spinal, cerebellum and cortex
nodes run as separate processes; each episode re-places the objects (sim ``~/reset``), names one
object with a held-out phrasing (targets with colour-shape combinations never trained on when the
world has one) and waits up to 15 s. Success = the tcp (fk of /joint_states) within 3 cm of the
named object's top centre (sim ``~/objects``) and still (moved < 5 mm) for 0.5 s.

Also measured: cortex inference latency (its own /diagnostics, plus offline on rendered scenes),
the goal rate on /cortex/goal_pose, the spinal layer's on-time fraction while the cortex runs
(from the sim's /diagnostics: effort commands that reached the body per 1 ms physics step),
and the protocol overhead of both remote clients against a local test server in another process
(round trip with a 320x240 image minus the server's own work).

Without a cerebellum node in the tree the arm cannot execute goals: then the planning is scored
instead (the published goal within 3 cm horizontally of the object centre) and the JSON says
``"execution": "planning-only"``.

Progress on stderr, plots in bench_out/, one JSON line last on stdout.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

from ..cortex.task import STILL_MOTION, STILL_TIME, SUCCESS_RADIUS
from .common import emit, out_dir, pct, private_graph

EPISODE_TIMEOUT = 15.0    # [s]


def log(msg: str) -> None:
    print(f'[bench cortex] {msg}', file=sys.stderr, flush=True)


def parse(argv):
    p = argparse.ArgumentParser(prog='neurovla bench cortex', description=__doc__.split('\n')[0])
    p.add_argument('--episodes', type=int, default=50, help='held-out episodes per backend')
    p.add_argument('--per-world', type=int, default=5, help='episodes per world seed')
    p.add_argument('--backends', default='local,scripted')
    p.add_argument('--timeout', type=float, default=EPISODE_TIMEOUT)
    p.add_argument('--protocol-calls', type=int, default=300)
    p.add_argument('--offline-scenes', type=int, default=100)
    p.add_argument('--skip-stack', action='store_true', help='protocol + offline parts only')
    p.add_argument('--remote-only', action='store_true',
                   help='the remote backends\' part only: protocol overhead and the fault '
                        'table (no closed-loop episodes, no offline scenes; ~2 min)')
    p.add_argument('--remote-faults', choices=('on', 'off'), default='on',
                   help='the remote backends\' fault table in the bringup graph '
                        '(bench/_cortex_faults.py)')
    p.add_argument('--seeds', default='', help='comma-separated world seeds (default: the first '
                   'held-out worlds with a held-out colour-shape object)')
    p.add_argument('--speed', type=float, default=1.0,
                   help='sim speed; 1 = real time (wall clock), otherwise every node runs on '
                        'sim time (/clock) at this many sim seconds per wall second')
    return p.parse_args(argv)


# ---------------------------------------------------------------- protocol overhead
def protocol_overhead(calls: int) -> tuple[dict, dict]:
    """Client round trip (request sent to reply parsed) against a do-nothing server in another
    process, per backend and layout (``<backend>_<layout>``), minus the server's own time where
    it reports one (openpi's ``server_timing.infer_ms``: its input transforms and policy):
    NeuroVLA with one 320x240 view, openpi's layouts with their two 224x224 images. Returns
    (overhead [ms] per key, observation preparation [ms] per key: the openpi backend building
    its layout's map, the two images resized with padding, before the request)."""
    from .. import robot
    from ..cortex.backends import OpenpiBackend
    from ..cortex.clients import NeuroVLAClient
    from ..cortex.core import Observation
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    model = robot.load()
    q = model.home_pose()
    sample = Observation('touch the red cube', img, 0.0, None, q, np.array([0.04, 0.04]), 0.0,
                         model.fk(q), wrist_image=img, wrist_image_age=0.0)
    out, prep = {}, {}
    for key, proto, layout in (('neurovla-server_neurovla', 'neurovla', ''),
                               ('openpi_libero', 'openpi', 'libero'),
                               ('openpi_droid', 'openpi', 'droid')):
        srv = subprocess.Popen([sys.executable, '-m', 'neurovla_ros.cortex.testservers',
                                '--protocol', proto, '--layout', layout or 'libero'],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            port = int(srv.stdout.readline().split()[1])
            uri = f'ws://127.0.0.1:{port}'
            times, prep_ms = [], []
            if proto == 'neurovla':
                c = NeuroVLAClient(uri, reply_timeout=5.0)
                states = np.zeros((1, 16, 8), np.float32)

                def call():
                    t0 = time.perf_counter()
                    c.infer([[img]], ['touch the red cube'], states)
                    return 0.0, (time.perf_counter() - t0) * 1e3
            else:
                backend = OpenpiBackend(uri, layout=layout,
                                        client_options={'reply_timeout': 5.0})
                c = backend.client

                def call():
                    t0 = time.perf_counter()
                    observation = backend.observation(sample)
                    t1 = time.perf_counter()
                    reply = c.infer(observation)
                    dt = (time.perf_counter() - t1) * 1e3
                    return (t1 - t0) * 1e3, dt - float(reply['server_timing']['infer_ms'])
            for k in range(calls + 20):
                p_ms, o_ms = call()
                if k >= 20:              # warm-up excluded
                    times.append(o_ms)
                    prep_ms.append(p_ms)
            c.close()
            out[key] = np.asarray(times)
            log(f'protocol {key}: overhead p50 {np.median(times):.2f} ms, '
                f'p99 {np.percentile(times, 99):.2f} ms; observation prepared in '
                f'{np.median(prep_ms):.2f} ms p50')
            if proto != 'neurovla':
                prep[key] = np.asarray(prep_ms)
        finally:
            srv.stdin.close()
            srv.wait(timeout=10)
    return out, prep


# ---------------------------------------------------------------- offline inference
def offline_inference(n: int) -> dict:
    """Local-model latency (1 thread) and planning error on rendered held-out scenes, next to
    the scripted baseline on the same scenes (no ROS, no arm motion)."""
    import torch

    from ..cortex import data as D
    from ..cortex import language
    from ..cortex.backends import CHECKPOINT
    from ..cortex.camera import Camera
    from ..cortex.model import NeuroVLAModel, locate
    from ..cortex.scripted import ScriptedLocator
    torch.set_num_threads(1)
    scenes = D.generate(n, heldout=True, seed=4242, scenes_per_world=10, repaint=False)
    model = NeuroVLAModel.from_pretrained(CHECKPOINT).eval()
    model.freeze_for_inference()        # as the cortex runs it
    cam = Camera.from_info(scenes['k'], 320, 240)
    loc = ScriptedLocator(cam)
    top, left, ch, cw = D.CROP
    rng = np.random.default_rng(1)
    ms, err_local, err_scripted = [], [], []
    for i in range(n):
        j, text = D.instruction_for(scenes, i, rng, heldout=True)
        img = np.zeros((240, 320, 3), np.uint8)
        img[top:top + ch, left:left + cw] = scenes['images'][i]
        t0 = time.perf_counter()
        c, _ = locate(model, [img], [text], cam)
        ms.append((time.perf_counter() - t0) * 1e3)
        true = scenes['position'][i, j, :2]
        err_local.append(np.linalg.norm(c[0, :2] - true))
        cs, _, _ = loc.locate(img, language.parse(text), scenes['q'][i])
        err_scripted.append(np.inf if cs is None else np.linalg.norm(cs[:2] - true))
    return {'ms': np.asarray(ms), 'local': np.asarray(err_local),
            'scripted': np.asarray(err_scripted)}


# ---------------------------------------------------------------- the stack
def stack(nodes: list[str], overrides: dict, speed: float = 1.0):
    """The bringup's ``nodes`` (``runner.NodeGraph``) with parameter ``overrides``, on sim time
    when ``speed`` is not 1, in this bench's DDS domain; logs appended to
    bench_out/cortex_<node>.log."""
    from ..runner import NodeGraph
    return NodeGraph({'use_sim_time': speed != 1.0}, overrides=overrides, only=nodes,
                     log=os.path.join(out_dir(), 'cortex_{name}.log'), log_mode='a').start()


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def heldout_worlds(count: int, start: int = 5_000_000) -> list[int]:
    """World seeds (never used in training) whose layout has a held-out colour-shape object."""
    from ..cortex.data import HELDOUT_COMBOS
    from ..sim.world import World
    seeds, s = [], start
    while len(seeds) < count:
        w = World(seed=s, n_objects=4, cameras=False)
        if any((o['colour'], o['shape']) in HELDOUT_COMBOS for o in w.objects()):
            seeds.append(s)
        s += 1
    return seeds


class Probe:
    """The bench's own node: instruction publisher, sim reset client, state listeners."""

    def __init__(self, context, sim_time: bool = False):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.experimental import EventsExecutor
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String
        from std_srvs.srv import Trigger
        from visualization_msgs.msg import MarkerArray

        from .. import robot
        from ..common.rosutil import COMMAND_QOS, SENSOR_QOS, LatestSample
        from ..sim.node import LATCHED_QOS
        self.sim_time = sim_time
        self.node = Node('bench_cortex', context=context, parameter_overrides=[
            Parameter('use_sim_time', value=sim_time)])
        self.ex = EventsExecutor(context=context)
        self.ex.add_node(self.node)
        self.model = robot.load()
        self.js = None
        self.objects = None
        self.goals: list = []
        self.diag: dict[str, dict] = {}
        self.levels: dict[str, int] = {}     # status name -> its latest level (0 OK .. 3)
        self.diag_log: list = []
        n = self.node
        # the arm pose is read at 10 Hz: taken when needed, not delivered 1000 times a second
        # (the probe's own load would slow the graph it measures)
        self._js_latest = LatestSample(n, JointState, '/joint_states')
        self._decode_js = lambda buf: deserialize_message(buf, JointState)
        n.create_subscription(MarkerArray, '/sim/objects', self._on_objects, LATCHED_QOS)
        n.create_subscription(PoseStamped, '/cortex/goal_pose', self._on_goal, COMMAND_QOS)
        n.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, SENSOR_QOS)
        self.pub_instr = n.create_publisher(String, '/cortex/instruction', COMMAND_QOS)
        self.pub_goal = n.create_publisher(PoseStamped, '/cortex/goal_pose', COMMAND_QOS)
        self.reset_client = n.create_client(Trigger, '/sim/reset')
        self._String, self._PoseStamped, self._Trigger = String, PoseStamped, Trigger

    def _take_js(self) -> None:
        buf = self._js_latest.take()
        if buf is not None:
            self.js = self._decode_js(buf)

    def now(self) -> float:
        """Seconds on the clock the nodes run on (sim time when the sim publishes /clock)."""
        if self.sim_time:
            return self.node.get_clock().now().nanoseconds * 1e-9
        return time.monotonic()

    def _on_objects(self, msg):
        self.objects = [{'name': m.text, 'position': np.array([m.pose.position.x,
                                                               m.pose.position.y,
                                                               m.pose.position.z]),
                         'size': np.array([m.scale.x, m.scale.y, m.scale.z])}
                        for m in msg.markers]

    def _on_goal(self, msg):
        p = msg.pose.position
        self.goals.append((self.now(), np.array([p.x, p.y, p.z])))

    def _on_diag(self, msg):
        for st in msg.status:
            vals = {kv.key: kv.value for kv in st.values}
            self.diag[st.name] = vals
            self.levels[st.name] = st.level[0] if isinstance(st.level, bytes) else int(st.level)
            self.diag_log.append((time.monotonic(), st.name, vals))

    def spin(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until is not None and until():
                return True
            self.ex.spin_once(timeout_sec=0.01)
        return bool(until()) if until is not None else True

    def tcp(self):
        self._take_js()
        if self.js is None:
            return None
        names = list(self.js.name)
        q = [self.js.position[names.index(j)] for j in self.model.arm_joints]
        return self.model.fk(q)[:3, 3]

    def instruct(self, text: str) -> None:
        self.pub_instr.publish(self._String(data=text))

    def reset_sim(self, tries: int = 3, timeout: float = 10.0) -> bool:
        for _ in range(tries):       # a loaded machine can take a while to answer
            if not self.reset_client.wait_for_service(timeout_sec=timeout):
                continue
            fut = self.reset_client.call_async(self._Trigger.Request())
            self.spin(timeout, until=fut.done)
            if fut.done() and fut.result().success:
                return True
        return False

    def go_home(self, timeout: float = 6.0) -> bool:
        """Publish the home tcp pose as the goal until the arm is there and still."""
        from ..robot.transforms import matrix_to_quat_xyzw
        home = self.model.fk(self.model.home_pose())
        msg = self._PoseStamped()
        msg.header.frame_id = 'base_link'
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = home[:3, 3]
        (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z,
         msg.pose.orientation.w) = matrix_to_quat_xyzw(home[:3, :3])
        end = self.now() + timeout
        while self.now() < end:
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.pub_goal.publish(msg)
            self.spin(0.1)
            t = self.tcp()
            if t is not None and np.linalg.norm(t - home[:3, 3]) < 0.01:
                return True
        return False

    def close(self):
        self._js_latest.destroy()
        self.ex.remove_node(self.node)
        self.node.destroy_node()


def run_episode(probe: Probe, target: dict, text: str, timeout: float, execute: bool) -> dict:
    """Instruct, then watch the tcp (or the published goal) until success or timeout.

    The named object is followed through the sim's ``~/objects`` (it may be pushed); a trace
    (every 0.1 s: time, tcp, latest goal, object top centre) is kept for the episode log.
    """
    name = target['name']

    def top_centre():
        for o in probe.objects or ():
            if o['name'] == name:
                return o['position'] + np.array([0, 0, o['size'][2] / 2])
        return target['position'] + np.array([0, 0, target['size'][2] / 2])
    probe.goals.clear()
    t0 = probe.now()
    probe.instruct(text)
    inside_since, track, trace = None, [], []
    first_goal = None
    result = None
    while probe.now() - t0 < timeout:
        probe.spin(0.02)
        now = probe.now()
        goal_point = top_centre()
        if probe.goals and first_goal is None:
            first_goal = probe.goals[0][0] - t0
        tcp = probe.tcp()
        if not trace or now - t0 - trace[-1][0] >= 0.1:
            trace.append([now - t0, None if tcp is None else tcp.tolist(),
                          probe.goals[-1][1].tolist() if probe.goals else None,
                          goal_point.tolist()])
        if execute:
            if tcp is None:
                continue
            p = tcp
            dist = float(np.linalg.norm(p - goal_point))
        else:
            if not probe.goals:
                continue
            p = probe.goals[-1][1]
            dist = float(np.linalg.norm(p[:2] - goal_point[:2]))
        track.append((now, p))
        if dist <= SUCCESS_RADIUS:
            inside_since = inside_since or now
            window = [q for t, q in track if t >= now - STILL_TIME]
            moved = max(np.linalg.norm(q - p) for q in window)
            if now - inside_since >= STILL_TIME and moved < STILL_MOTION:
                result = {'success': True, 'time': now - t0, 'distance': dist}
                break
        else:
            inside_since = None
    if result is None:
        goal_point = top_centre()
        p = probe.tcp() if execute else (probe.goals[-1][1] if probe.goals else None)
        dist = float('inf') if p is None else float(np.linalg.norm(
            (p - goal_point) if execute else (p[:2] - goal_point[:2])))
        result = {'success': False, 'time': timeout, 'distance': dist}
    result.update(first_goal_s=first_goal, goals=len(probe.goals), duration=probe.now() - t0,
                  trace=trace)
    return result


def stack_phase(backend: str, seeds: list[int], episodes: int, per_world: int, timeout: float,
                context, speed: float = 1.0) -> dict:
    """All episodes of one cortex backend; returns per-episode results and node statistics."""
    from ..cortex import language
    from ..cortex.data import HELDOUT_COMBOS
    execute = available('neurovla_ros.cerebellum.node') and available('neurovla_ros.spinal.node')
    results, diags, spinal, aborted = [], [], [], []
    rng = np.random.default_rng(7)
    done = 0
    for seed in seeds:
        if done >= episodes:
            break
        sim_time = speed != 1.0
        nodes = stack(['sim', 'spinal', 'cerebellum', 'cortex'] if execute else ['sim', 'cortex'],
                      {'sim': {'seed': seed, 'n_objects': 4,
                               **({'speed': float(speed)} if sim_time else {})},
                       'cortex': {'backend': backend, 'instruction': ''}}, speed)
        probe = Probe(context, sim_time=sim_time)
        try:
            nodes.wait_up(probe.node, 150.0, spin=lambda: probe.spin(0.05))
            ok = probe.spin(150.0, until=lambda: probe.tcp() is not None and probe.objects and any(
                k.startswith('cortex') for k in probe.diag))
            dead = [f'{p.name} (exit {p.returncode})' for p in nodes.dead()]
            if not ok or dead:
                raise RuntimeError(f'stack did not come up (dead: {dead}, joint states: '
                                   f'{probe.js is not None}, objects: {bool(probe.objects)}, '
                                   f'diagnostics from {sorted(probe.diag)})')
            for k in range(min(per_world, episodes - done)):
                if k > 0 or execute:
                    probe.instruct('')
                    if execute:
                        probe.go_home()
                    probe.objects = None
                    if not probe.reset_sim():
                        raise RuntimeError('sim ~/reset failed')
                    probe.spin(5.0, until=lambda: probe.objects is not None)
                    probe.spin(0.5)
                objs = probe.objects
                parsed = [tuple(o['name'].split()) for o in objs]
                special = [i for i, c in enumerate(parsed) if c in HELDOUT_COMBOS]
                ti = int(rng.choice(special)) if special else int(rng.integers(len(objs)))
                described = [{'colour': c, 'shape': s} for c, s in parsed]
                text = language.describe(ti, described, rng, heldout=True)
                diag_mark = len(probe.diag_log)
                r = run_episode(probe, objs[ti], text, timeout, execute)
                r.update(seed=seed, instruction=text, target=objs[ti]['name'],
                         heldout_combo=parsed[ti] in HELDOUT_COMBOS)
                results.append(r)
                done += 1
                for t, name, vals in probe.diag_log[diag_mark:]:
                    if name.startswith('sim') and 'accepted_commands' in vals:
                        spinal.append((len(results), int(vals['steps']),
                                       int(vals['accepted_commands']),
                                       int(vals['effort_watchdog_trips'])))
                log(f'{backend} ep {done}/{episodes} seed {seed}: '
                    f'{"OK  " if r["success"] else "MISS"} {r["time"]:.1f} s '
                    f'd={r["distance"] * 100:.1f} cm  "{text}"')
            diags.append({k: v for k, v in probe.diag.items() if k.startswith('cortex')})
        except RuntimeError as e:     # the stack, not the policy, failed: next world
            log(f'{backend}: world {seed} aborted after {done} episodes: {e}')
            aborted.append({'seed': seed, 'error': str(e), 'episodes_done': done})
        finally:
            probe.close()
            nodes.stop()
    return {'results': results, 'cortex_diag': diags, 'spinal': spinal, 'execute': execute,
            'aborted': aborted}


def spinal_on_time(samples: list) -> dict:
    """From the sim's /diagnostics during episodes: commands that reached the body per 1 ms
    physics step (the spinal layer answers every /joint_states sample with one effort command;
    the cortex's gripper command is sent only on change), and effort-watchdog trips (50 ms
    without a command)."""
    frac, steps, trips = [], 0, 0
    for a, b in zip(samples, samples[1:]):
        if a[0] != b[0] or b[1] <= a[1]:
            continue                      # different episodes or a sim restart
        ds = b[1] - a[1]
        frac.append((min(1.0, (b[2] - a[2]) / ds), ds))
        trips += max(0, b[3] - a[3])
        steps += ds
    if not frac:
        return {'fraction': None, 'watchdog_trips': None}
    f = np.array(frac)
    return {'fraction': float((f[:, 0] * f[:, 1]).sum() / f[:, 1].sum()),
            'watchdog_trips': trips, 'steps': steps}


def plots(phases: dict, offline: dict | None, proto: dict | None) -> str:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for name, ph in phases.items():
        d = [min(r['distance'], 0.3) * 100 for r in ph['results']]
        ax[0].hist(d, bins=30, range=(0, 30), alpha=0.6, label=name)
        t = sorted(r['time'] for r in ph['results'] if r['success'])
        n = max(1, len(ph['results']))
        ax[1].step(t, np.arange(1, len(t) + 1) / n, where='post', label=name)
    ax[0].axvline(SUCCESS_RADIUS * 100, color='k', ls='--')
    ax[0].set(xlabel='final distance to the object [cm]', ylabel='episodes',
              title='closed loop, held-out episodes')
    ax[1].set(xlabel='time [s]', ylabel='success rate', title='success within time')
    if phases:
        ax[0].legend()
        ax[1].legend()
    if offline is not None:
        ax[2].hist(offline['ms'], bins=30, alpha=0.7, label='local VLA inference [ms]')
    if proto:
        for k, v in proto.items():
            ax[2].hist(v, bins=30, alpha=0.7, label=f'{k} protocol overhead [ms]')
    ax[2].set(xlabel='ms', title='latency')
    ax[2].legend()
    fig.tight_layout()
    path = os.path.join(out_dir(), 'cortex.png')
    fig.savefig(path, dpi=90)
    return path


def main(argv=None) -> int:
    args = parse(argv)
    os.environ['HF_HUB_OFFLINE'] = '1'
    private_graph()
    result: dict = {'bench': 'cortex'}
    for name in ('sim', 'spinal', 'cerebellum', 'cortex'):   # node logs of this run only
        path = os.path.join(out_dir(), f'cortex_{name}.log')
        if os.path.exists(path):
            os.remove(path)
    proto, prep = protocol_overhead(args.protocol_calls) if args.protocol_calls > 0 else ({}, {})
    for k, v in proto.items():
        result[f'protocol_overhead_ms_p50_{k.replace("-", "_")}'] = pct(v, 50)
        result[f'protocol_overhead_ms_p99_{k.replace("-", "_")}'] = pct(v, 99)
    for k, v in prep.items():
        result[f'observation_prep_ms_p50_{k}'] = pct(v, 50)
    if proto:
        result['protocol_overhead_ms_p50'] = max(pct(v, 50) for v in proto.values())
    off = None
    if args.offline_scenes > 0 and not args.remote_only:
        log('offline: local VLA vs scripted on rendered held-out scenes')
        off = offline_inference(args.offline_scenes)
        result['offline_infer_ms_p50'] = pct(off['ms'], 50)
        result['offline_infer_ms_p99'] = pct(off['ms'], 99)
        result['offline_within_3cm_local'] = float(np.mean(off['local'] < SUCCESS_RADIUS))
        result['offline_within_3cm_scripted'] = float(np.mean(off['scripted'] < SUCCESS_RADIUS))
    phases = {}
    if not args.skip_stack:
        import rclpy
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        try:
            backends = [] if args.remote_only else args.backends.split(',')
            n_worlds = -(-args.episodes // args.per_world)
            seeds = ([int(x) for x in args.seeds.split(',')] if args.seeds
                     else heldout_worlds(n_worlds + 4) if backends   # spares for aborted worlds
                     else [])
            for backend in backends:
                log(f'closed loop: backend {backend}, {args.episodes} episodes')
                phases[backend] = stack_phase(backend, seeds, args.episodes, args.per_world,
                                              args.timeout, ctx, args.speed)
        finally:
            rclpy.try_shutdown(context=ctx)
        if args.remote_faults == 'on':
            from ._cortex_faults import fault_table, summary
            ctx = rclpy.Context()
            rclpy.init(context=ctx)
            try:
                rows = fault_table(ctx)
            finally:
                rclpy.try_shutdown(context=ctx)
            result.update(summary(rows))
            result['remote_fault_log'] = os.path.join(out_dir(), 'cortex_remote_faults.json')
            with open(result['remote_fault_log'], 'w', encoding='utf-8') as f:
                json.dump(rows, f, indent=1)
        for backend, ph in phases.items():
            res = ph['results']
            key = 'success_rate' if backend == 'local' else f'{backend}_success_rate'
            result[key] = float(np.mean([r['success'] for r in res])) if res else None
            result[f'{backend}_episodes'] = len(res)
            result[f'{backend}_aborted_worlds'] = len(ph['aborted'])
            result[f'{backend}_time_to_success_s_p50'] = pct(
                [r['time'] for r in res if r['success']], 50)
            result[f'{backend}_final_distance_cm_p50'] = pct(
                [min(r['distance'], 1.0) * 100 for r in res], 50)
            goals = sum(r['goals'] for r in res)
            dur = sum(r['duration'] for r in res)
            result[f'{backend}_goal_rate_hz'] = goals / dur if dur else None
            ms = [float(d[k]['infer_ms_p50']) for d in ph['cortex_diag'] for k in d
                  if 'infer_ms_p50' in d[k]]
            ms99 = [float(d[k]['infer_ms_p99']) for d in ph['cortex_diag'] for k in d
                    if 'infer_ms_p99' in d[k]]
            result[f'{backend}_infer_ms_p50'] = pct(ms, 50)
            cpu = [float(d[k]['infer_cpu_ms_p50']) for d in ph['cortex_diag'] for k in d
                   if 'infer_cpu_ms_p50' in d[k]]
            result[f'{backend}_infer_cpu_ms_p50'] = pct(cpu, 50)
            result[f'{backend}_infer_ms_p99'] = max(ms99) if ms99 else None
            sp = spinal_on_time(ph['spinal']) if ph['execute'] else {'fraction': None}
            result[f'{backend}_spinal_on_time_fraction'] = sp['fraction']
            result[f'{backend}_effort_watchdog_trips'] = sp.get('watchdog_trips')
            result['execution'] = 'closed-loop' if ph['execute'] else 'planning-only'
        if 'local' in phases:
            result['infer_ms_p50'] = result['local_infer_ms_p50']
            result['infer_ms_p99'] = result['local_infer_ms_p99']
            result['infer_cpu_ms_p50'] = result['local_infer_cpu_ms_p50']
            result['goal_rate_hz'] = result['local_goal_rate_hz']
            result['spinal_on_time_fraction'] = result['local_spinal_on_time_fraction']
        if 'local' in phases and 'scripted' in phases:
            result['success_ratio_vs_scripted'] = (
                result['success_rate'] / result['scripted_success_rate']
                if result['scripted_success_rate'] else None)
    result['sim_speed'] = args.speed
    result['plot'] = plots(phases, off, proto)
    log_path = os.path.join(out_dir(), 'cortex_episodes.json')
    with open(log_path, 'w', encoding='utf-8') as f:
        json.dump({b: ph['results'] for b, ph in phases.items()}, f)
    result['episode_log'] = log_path
    emit(result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
