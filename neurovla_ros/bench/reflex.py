"""``neurovla bench reflex``: collision reflexes of the spinal node over the real DDS graph.

The body (SimNode) runs in this process, the spinal node in its own; they talk over DDS as in
the deployed graph. This process also streams the reference (a JointState every 1 ms, sent from
the physics loop) and injects the collisions directly into the physics, so it knows exactly
in which step each push starts (``command_hooks`` tell when each command reaches the body).

1. ``--free-s`` seconds of fast free motion (random minimum-jerk moves up to 80 % of the
   velocity limits, no contact): every reflex event is a false trigger.
2. ``--collisions`` pushes during motion: each cycle moves from home to a random reachable
   pose; at a random time in the move a random link (upper arm .. gripper) is pushed for
   0.1 s by 30-80 N in a random direction (for the two long links: across the link; a draw
   that would load no joint above 2x its base threshold, e.g. a push along the arm's axis,
   which joint torques cannot sense, is redrawn and counted). After the withdrawal the bench
   calls /spinal/reset and streams a return to home.

Latency = wall time from the start of the physics step where the push begins to the moment the
body receives the first withdrawal command (identified exactly: the event on /spinal/reflex
carries that command's values). detect = onset to the spinal's detection (wall clock).
``latency_over_2ms`` counts the collisions above the 2 ms goal. ``platform_wake_ms_*``: the
machine's own floor in the same run (how late a FIFO thread sleeping to 1 ms deadlines wakes;
every hop of the reflex waits for such wake-ups), measured before the graph starts.
Writes bench_out/reflex.png (an in-process replay of one collision at 1 ms resolution: force,
detection, command, joint motion and the spike raster; plus the live latency histogram).
bench_out/reflex_collisions.json lists every collision (link, force, joints, the sample that
detected it: 1 = the first state after the push began, detect and latency). The last stdout line
is the JSON result.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

import numpy as np

from ..common.procs import cpu_seconds
from .common import (ReferenceStream, add_speed_option, emit, out_dir, pct, platform_wake_ms,
                     private_graph, sim_with_spinal, stop_sim_with_spinal)

LINKS = ('upper_arm_link', 'forearm_link', 'wrist_1_link', 'wrist_2_link', 'wrist_3_link',
         'gripper_base_link')
LONG_LINKS = ('upper_arm_link', 'forearm_link')     # pushed across their long (z) axis
THRESHOLDS = np.array([3.0, 3.0, 3.0, 2.0, 2.0, 2.0])  # the spinal defaults [N m]
PUSH_S = 0.1
PERCEPTIBLE = 2.0   # a push must load some joint with >= 2x its base threshold


def log(msg: str) -> None:
    print(f'[bench reflex] {msg}', file=sys.stderr, flush=True)


def body_jacobian(world, link):
    import mujoco
    jacp = np.zeros((3, world.model.nv))
    mujoco.mj_jacBodyCom(world.model, world.data, jacp, None, world.model.body(link).id)
    return jacp[:, :6]


def draw_push(rng, world):
    """A random perceptible push on a random link at the current state: (link, force, redraws)."""
    redraws = 0
    while True:
        link = LINKS[int(rng.integers(len(LINKS)))]
        d = rng.normal(size=3)
        if link in LONG_LINKS:
            axis = world.data.xmat[world.model.body(link).id].reshape(3, 3)[:, 2]
            d -= axis * np.dot(d, axis)
        force = d / np.linalg.norm(d) * rng.uniform(30.0, 80.0)
        tau = body_jacobian(world, link).T @ force
        if np.max(np.abs(tau) / THRESHOLDS) >= PERCEPTIBLE:
            return link, force, redraws
        redraws += 1


def min_jerk_segment(q0, q1, duration, dt=1e-3):
    from ..spinal.reflex import min_jerk
    n = max(1, int(round(duration / dt)))
    s = np.array([min_jerk((i + 1) / n) for i in range(n)])
    delta = np.asarray(q1) - np.asarray(q0)
    return q0 + np.outer(s[:, 0], delta), np.outer(s[:, 1], delta) / duration


class Scenario:
    """Reference stream + collision schedule, advanced once per physics step (sim thread)."""

    def __init__(self, rng, world, model, free_s, n_collisions, reset_client, warmup_s=3.0):
        from ..spinal.motion import random_motion
        self.rng, self.world, self.model = rng, world, model
        self.home = model.home_pose()
        self.n_collisions = n_collisions
        self.reset_client = reset_client
        self.ref_q = self.home.copy()
        self.ref_qd = np.zeros(6)
        self.segment = None          # (q (n, 6), qd (n, 6)), index
        self.seg_i = 0
        self.phase = 'warmup'
        self.phase_end = int(warmup_s * 1000)
        self.free = random_motion(rng, free_s, speed=0.8)
        self.free_steps = 0
        self.collisions = []         # dicts
        self.current = None
        self.redraws = 0
        self.false_events = []
        self.done = False
        self.k = 0

    # ---- reference segments ----
    def _start(self, q, qd):
        self.segment, self.seg_i = (q, qd), 0

    def _advance_reference(self):
        if self.segment is None:
            self.ref_qd[:] = 0.0
            return True
        q, qd = self.segment
        if self.seg_i < len(q):
            self.ref_q[:] = q[self.seg_i]
            self.ref_qd[:] = qd[self.seg_i]
            self.seg_i += 1
            return False
        self.segment = None
        self.ref_qd[:] = 0.0
        return True

    # ---- per step (before the physics step) ----
    def before_step(self):
        k = self.k = self.world.step_count
        w = self.world
        seg_done = self._advance_reference()
        if self.phase == 'warmup' and k >= self.phase_end:
            self.phase = 'free'
            self._start(*self.free)
            log(f'free motion: {len(self.free[0]) / 1000:.0f} s')
        elif self.phase == 'free':
            self.free_steps += 1
            if seg_done:
                self.phase = 'return'
                self._start(*min_jerk_segment(self.ref_q.copy(), self.home, 1.5))
        elif self.phase == 'return' and seg_done:
            if len(self.collisions) >= self.n_collisions:
                self.done = True
                return
            self._new_cycle()
        elif self.phase == 'move':
            c = self.current
            if k == c['onset_step']:
                link, force, redraws = draw_push(self.rng, w)
                self.redraws += redraws
                c.update(link=link, force=force, onset_time=w.time,
                         com0=w.data.xipos[w.model.body(link).id].copy())
                w.apply_wrench(link, force, duration=PUSH_S)
                c['onset_wall_ns'] = time.time_ns()      # the pushed step runs right now
                self.phase = 'wait'
        elif self.phase == 'wait':
            c = self.current
            if c.get('event') is not None:
                self.phase = 'withdrawing'
                c['release_step'] = k + 400            # withdrawal 0.25 s + hold
            elif (k > c['onset_step'] + int((PUSH_S + 0.15) * 1000)
                  and time.time_ns() > c['onset_wall_ns'] + int((PUSH_S + 0.15) * 1e9)):
                c['missed'] = True
                self._recover()
        elif self.phase == 'withdrawing' and k >= self.current['release_step']:
            c = self.current
            com = w.data.xipos[w.model.body(c['link']).id]
            c['withdrawn_m'] = float(np.dot(com - c['com0'], c['force'] / np.linalg.norm(
                c['force'])))
            self._recover()

    def _new_cycle(self):
        from ..spinal.motion import waypoint
        target = waypoint(self.rng, self.model)
        duration = float(self.rng.uniform(0.5, 0.9))
        self._start(*min_jerk_segment(self.ref_q.copy(), target, duration))
        onset = self.k + int(self.rng.uniform(0.15, 0.7) * duration * 1000)
        self.current = {'onset_step': onset, 'event': None, 'missed': False}
        self.collisions.append(self.current)
        self.phase = 'move'

    def _recover(self):
        from std_srvs.srv import Trigger
        self.reset_client.call_async(Trigger.Request())
        q_now = self.world.joint_state()[0][:6].copy()
        self.ref_q[:] = q_now
        self._start(*min_jerk_segment(q_now, self.home, 1.0))
        self.phase = 'return'
        if len(self.collisions) % 10 == 0:
            log(f'{len(self.collisions)}/{self.n_collisions} collisions')

    # ---- reflex events (executor callback, same thread) ----
    def on_event(self, values: dict, arrival_ns: int):
        if values.get('event') != 'collision':
            return
        wall_ns = int(float(values['detection_wall_time']) * 1e9)
        c = self.current
        if (self.phase in ('wait', 'withdrawing') and c is not None and c.get('event') is None
                and wall_ns >= c['onset_wall_ns'] - 1_000_000):
            c['event'] = values
            c['detect_wall_ns'] = wall_ns
            c['command'] = np.array([float(values[f'command.{n}'])
                                     for n in self.model.arm_joints])
        else:
            self.false_events.append({'phase': self.phase, 'values': values})


def collision_record(c: dict, sim) -> dict:
    """One collision for the log: where it was, and where its time went."""
    r = {'link': c.get('link'), 'force_n': np.round(c['force'], 3).tolist() if 'force' in c
         else None, 'onset_step': c['onset_step'], 'missed': c.get('missed', False)}
    ev = c.get('event')
    if ev is not None:
        onset_stamp = sim.stamp_ns(c['onset_step'] + 1) * 1e-9   # the first state with the push
        r.update(joints=ev.get('joints'),
                 detect_samples=int(round((float(ev['detection_time']) - onset_stamp) * 1e3)) + 1,
                 detect_ms=(c['detect_wall_ns'] - c['onset_wall_ns']) * 1e-6,
                 latency_ms=c.get('latency_ms'), latency_steps=c.get('latency_steps'))
    return r


def replay(seed, link, force, out_png, latencies, detects, result):
    """One collision in process at 1 ms resolution for the figure (force, detection, command,
    joints, spikes)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from ..sim.world import World
    from ..spinal.controller import SpinalConfig, SpinalController
    from ..spinal.motion import waypoint

    rng = np.random.default_rng(seed)
    world = World(seed=seed, n_objects=0)
    ctrl = SpinalController(cfg=SpinalConfig(quiet_time=0.0), record=True)
    model = ctrl.model
    home = model.home_pose()
    q_seg, qd_seg = min_jerk_segment(home, waypoint(rng, model), 0.7)
    world.reset(q=home)
    n, onset_k = 900, 500
    log_t, log_f, log_tau, log_q, raster, det_k = [], [], [], [], [], None
    body = world.model.body(link).id
    push_dir = np.asarray(force, float) / np.linalg.norm(force)
    log_x = []
    for k in range(n):
        i = min(k, len(q_seg) - 1) if k >= 200 else 0
        q_des = home if k < 200 else q_seg[i]
        qd_des = np.zeros(6) if k < 200 else qd_seg[i]
        t = world.time
        ctrl.set_reference(q_des, qd_des, now=t)
        q, qd, eff = world.joint_state()
        tau = ctrl.step(q, qd, eff, t, 1e-3, t)
        if ctrl.last_event is not None and det_k is None:
            det_k = k
        ctrl.after_tick(q, qd, eff, 1e-3)
        world.command('effort', tau)
        if k == onset_k:
            world.apply_wrench(link, force, duration=PUSH_S)
        pushing = onset_k <= k < onset_k + int(PUSH_S * 1000)
        world.step()
        log_t.append(k)
        log_f.append(np.linalg.norm(force) if pushing else 0.0)
        log_tau.append(list(tau))
        log_q.append(q[:6].copy())
        log_x.append(float(np.dot(world.data.xipos[body], push_dir)))
        raster.append((ctrl.net.tick_spikes > 0).T.reshape(-1).copy())
    t = (np.array(log_t) - onset_k) * 1e-3 * 1e3       # ms from onset
    q = np.array(log_q)
    fig, ax = plt.subplots(5, 1, figsize=(10, 12), sharex=False,
                           gridspec_kw={'height_ratios': [1, 1.2, 1.2, 2.2, 1.2]})
    sel = (t >= -150) & (t <= 350)
    ax[0].plot(t[sel], np.array(log_f)[sel], 'k')
    ax[0].set_ylabel('push [N]')
    ax[0].set_title(f'in-process replay: {np.linalg.norm(force):.0f} N on {link} during a move')
    for a in ax[:4]:
        a.axvline(0, color='r', lw=0.8, ls='--')
        if det_k is not None:
            a.axvline((det_k - onset_k), color='m', lw=0.8)
        a.set_xlim(-150, 350)
    ax[1].plot(t[sel], np.array(log_tau)[sel])
    ax[1].set_ylabel('command [N m]')
    ax[2].plot(t[sel], (q - q[onset_k])[sel])
    ax[2].set_ylabel('joint - joint at onset [rad]')
    x = (np.array(log_x) - log_x[onset_k]) * 1e3
    tw = ax[2].twinx()
    tw.plot(t[sel], x[sel], 'k--', lw=1.5)
    tw.set_ylabel('pushed link along the push [mm] (dashed)')
    r = np.array(raster)
    ks, ns = np.nonzero(r[sel])
    ax[3].scatter(t[sel][ks], ns, s=2, c='k', marker='s', linewidths=0)
    ax[3].set_ylabel('neuron (48 per joint)')
    ax[3].set_xlabel('time from push onset [ms]  (red: onset, magenta: detection)')
    for j in range(1, 6):
        ax[3].axhline(j * 48, color='0.7', lw=0.5)
    if len(latencies):
        ax[4].hist(np.array(latencies), bins=40, alpha=0.7, label='onset -> withdrawal command '
                   'at the body (live, DDS)')
        ax[4].hist(np.array(detects), bins=40, alpha=0.7, label='onset -> detection (live)')
        ax[4].set_xlabel('[ms]')
        ax[4].legend(fontsize=8)
        ax[4].set_title(f"live over DDS: latency p50 {result['latency_ms_p50']:.2f} ms, p99 "
                        f"{result['latency_ms_p99']:.2f} ms, {result['collisions']} collisions, "
                        f"{result['misses']} missed, {result['false_triggers']} false triggers",
                        fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='neurovla bench reflex', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--collisions', type=int, default=150,
                    help='pushes during motion (>= 100 so that the p99 is not just the maximum)')
    ap.add_argument('--free-s', type=float, default=62.0, help='fast free motion [s]')
    ap.add_argument('--seed', type=int, default=0)
    add_speed_option(ap)
    args = ap.parse_args(argv)
    speed = args.speed
    private_graph()

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.experimental import EventsExecutor
    from std_srvs.srv import Trigger

    from .. import robot
    from ..common.params import default_of
    from ..common.rosutil import COMMAND_QOS
    from ..spinal.params import PARAMS as SPINAL_PARAMS

    log('the machine alone: wake-up lateness of a 1 ms FIFO sleep loop (5 s)')
    wake = platform_wake_ms(5.0, default_of(SPINAL_PARAMS, 'realtime_priority'))

    proc, ctx, sim, log_path = sim_with_spinal('reflex', {'quiet_time': 0.0}, speed)
    node = rclpy.create_node('bench_reflex', context=ctx)
    model = robot.load()
    world = sim.world
    rng = np.random.default_rng(args.seed)
    reset = node.create_client(Trigger, '/spinal/reset')
    sc = Scenario(rng, world, model, args.free_s, args.collisions, reset)
    ref = ReferenceStream(node, model.arm_joints)
    arrivals = collections.deque(maxlen=4000)    # (wall ns, step, values)

    def hook(kind, k, t, values):
        if kind == 'effort':
            arrivals.append((time.time_ns(), k, values))
    sim.command_hooks.append(hook)

    def on_reflex(msg):
        now = time.time_ns()
        for st in msg.status:
            sc.on_event({kv.key: kv.value for kv in st.values}, now)
    node.create_subscription(DiagnosticArray, '/spinal/reflex', on_reflex, COMMAND_QOS)
    step, publish = world.step, sim._publish

    def scenario_step(n_steps=1):
        sc.before_step()
        step(n_steps)
        if sc.done or proc.poll() is not None:
            sim.stop()

    def publish_state_then_reference():
        publish()                 # /joint_states first: the spinal's latency path
        ref.q[:] = sc.ref_q
        ref.qd[:] = sc.ref_qd
        ref.publish()
    ex = EventsExecutor(context=ctx)
    ex.add_node(sim)
    ex.add_node(node)
    latencies, detects = [], []
    t_start = time.monotonic()
    try:
        log('waiting for the spinal node')
        deadline = time.monotonic() + 60
        while not arrivals and time.monotonic() < deadline and proc.poll() is None:
            sim.run(duration=0.5, executor=ex)
        if not arrivals:
            raise RuntimeError(f'no commands from the spinal node (log: {log_path})')
        def match_commands():
            """Find the body's arrival of each event's first withdrawal command (exact values)."""
            now = time.time_ns()
            for c in sc.collisions:
                if c.get('event') is None or 'matched' in c:
                    continue
                onset = c['onset_wall_ns']
                for wall_ns, k, values in reversed(arrivals):   # newest first, down to onset
                    if wall_ns < onset:
                        break
                    if np.array_equal(values, c['command']):
                        c['latency_ms'] = (wall_ns - onset) * 1e-6
                        c['latency_steps'] = k - c['onset_step']
                        c['matched'] = True
                if 'matched' not in c and now - onset > 3e9:     # never seen: give up
                    c['matched'] = False
        node.create_timer(0.1, match_commands)
        world.step = scenario_step
        sim._publish = publish_state_then_reference
        cpu0, spinal0, wall0 = cpu_seconds(), cpu_seconds(proc.pid), time.monotonic()
        sim.run(duration=None, executor=ex)
        span = time.monotonic() - wall0
        cpu = {'bench_process_cpu': (cpu_seconds() - cpu0) / span,
               'spinal_process_cpu': (cpu_seconds(proc.pid) - spinal0) / span}
        for _ in range(20):
            ex.spin_once(timeout_sec=0.01)
        match_commands()
    finally:
        world.step = step
        sim._publish = publish
        sim_stats = {'sim_lateness_ms_p99': pct(sim.lateness_s() * 1e3, 99),
                     'sim_overruns': sim.overruns, 'sim_resyncs': sim.resyncs}
        stop_sim_with_spinal(proc, ctx, sim, node, ex)
    cols = sc.collisions
    detected = [c for c in cols if c.get('event') is not None]
    latencies = [c['latency_ms'] for c in detected if 'latency_ms' in c]
    detects = [(c['detect_wall_ns'] - c['onset_wall_ns']) * 1e-6 for c in detected]
    withdrawn = [c['withdrawn_m'] for c in detected if 'withdrawn_m' in c]
    res = {
        'collisions': len(cols), 'misses': sum(1 for c in cols if c.get('missed')),
        'false_triggers': len(sc.false_events),
        'latency_ms_p50': pct(latencies, 50), 'latency_ms_p99': pct(latencies, 99),
        'latency_ms_max': float(max(latencies)) if latencies else float('nan'),
        'latency_over_2ms': sum(1 for v in latencies if v > 2.0),
        'detect_ms_p50': pct(detects, 50), 'detect_ms_p99': pct(detects, 99),
        'detect_ms_max': float(max(detects)) if detects else float('nan'),
        'latency_steps_p99': pct([c['latency_steps'] for c in detected if 'latency_steps' in c],
                                 99),
        'commands_unmatched': len(detected) - len(latencies),
        'free_motion_s': sc.free_steps * 1e-3,
        'push_redraws': sc.redraws,
        'withdrawn_along_push_mm_p50': pct(np.array(withdrawn) * 1e3, 50),
        'wall_s': time.monotonic() - t_start, 'speed': speed, **sim_stats, **cpu,
        **{f'platform_wake_ms_{k}': v for k, v in wake.items()},
    }
    if sc.false_events:
        log(f"false triggers: {[(e['phase'], e['values'].get('joints')) for e in sc.false_events]}")
    log(f"{res['collisions']} collisions, {res['misses']} missed, {res['false_triggers']} false "
        f"triggers in {res['free_motion_s']:.0f} s of free motion + the cycles; latency p50/p99/"
        f"max {res['latency_ms_p50']:.2f}/{res['latency_ms_p99']:.2f}/"
        f"{res['latency_ms_max']:.2f} ms")
    log_path = os.path.join(out_dir(), 'reflex_collisions.json')
    with open(log_path, 'w') as f:
        json.dump([collision_record(c, sim) for c in cols], f, indent=0)
    res['collision_log'] = log_path
    png = os.path.join(out_dir(), 'reflex.png')
    first = detected[0] if detected else {'link': 'forearm_link', 'force': np.array([0, 0, 50.0])}
    replay(args.seed, first['link'], first['force'], png, latencies, detects, res)
    res['plot'] = png
    emit(res)
    return 0


if __name__ == '__main__':
    sys.exit(main())
