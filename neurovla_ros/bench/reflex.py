"""``neurovla bench reflex``: collision reflexes of the spinal node in the graph a user runs.

``--graph full`` (the default) is the bringup's graph (``runner.NodeGraph``, the packaged
parameters): the body (SimNode, camera on, objects on the table, IMU and wrench at 1 kHz) in
this process, spinal, cerebellum and cortex in their own; the cortex plans on the camera images
in ``dry_run`` (its load on the machine, no goals of its own). The bench plays the cortex: its
motion goes to the cerebellum as tcp goal poses on /cortex/goal_pose at the cortex's goal rate,
with the tremor scenario's goal noise, and the cerebellum's reference drives the spinal layer.
``--body dynamixel`` (or ``feetech``) puts the emulated servo bus between the body and the
brain, as ``neurovla bringup --body dynamixel --port emulator`` does: the sim's servos answer
on a pty, the ``hardware`` node drives them through the official SDK and publishes
/joint_states, and a withdrawal command reaches the body as a goal write on the bus (matched to
the spinal's command within half a register unit). ``--graph minimal`` is the setting the bench
had before: sim (no camera, no objects, IMU and wrench at 50 Hz) and spinal only, the reference
streamed by the bench from the physics loop.
The bench injects the pushes directly into the physics, so it knows exactly in which step
each one starts (``command_hooks`` tell when each command reaches the body).

1. ``--false-trigger-s`` seconds of fast free motion (random minimum-jerk moves up to 80 % of
   the velocity limits, no contact) with the tremor scenario's tremor in the body
   (``cerebellum.scenario.Scenario``: 1 N m at 7 Hz over the wrist joints): every reflex event
   is a false trigger.
2. Pushes during motion, every one counted: ``--collisions`` in the force range 30-80 N and
   ``--weak`` from 2 to 30 N (log-uniform, down to below every joint's threshold), in random
   order. Each cycle moves from home to a random reachable pose; at a random time in the move a
   random link (upper arm .. gripper) is pushed at its centre of mass for 0.1 s in a random
   direction. While it lasts the bench takes the joint torque the push exerts (``J^T F``) in
   every step; its peak over each joint's base threshold is the push's *excess*. A push with
   excess < 1 (e.g. along a link's axis, or too weak) loads no joint above its threshold:
   ``undetectable_by_joint_torque``. After the withdrawal the bench calls /spinal/reset and
   returns home.

Latency = wall time from the start of the physics step where the push begins to the moment the
body receives the first withdrawal command (identified exactly: the event on /spinal/reflex
carries that command's values); over every detected push. detect = onset to the spinal's
detection (wall clock). ``misses``: pushes with excess >= 2 not detected within 0.25 s.
``detection_rate_by_excess``: detected / pushes per excess bin; ``half_detection_force_n``: the
force at which half are detected (logistic fit in log force over every push).
``platform_wake_ms_*``: the machine's own floor in the same run (how late a FIFO thread sleeping
to 1 ms deadlines wakes; every hop of the reflex waits for such wake-ups), measured before the
graph starts. Writes bench_out/reflex.png (an in-process replay of one collision at 1 ms
resolution: force, detection, command, joint motion and the spike raster; plus the live latency
histogram) and bench_out/reflex_detection.png (detection against excess and force).
bench_out/reflex_collisions.json lists every push (link, force, excess, joints, the sample that
detected it: 1 = the first state after the push began, detect and latency; on a bus body
``superseded`` > 0 when the withdrawal's first command never reached the bus because the next
one came in before the bridge's write, and the latency is that of the one that did);
bench_out/reflex_false_triggers.json every false trigger (the event, the body's state then: joint
velocities, actuator, tremor and constraint torques, contacts; one while the graph comes up
counts too, phase ``warmup``); its reflex is reset after 0.4 s so the run goes on. The last
stdout line is the JSON result.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import sys
import time

import numpy as np

from ..common.procs import cpu_seconds
from .common import (
    MINIMAL_SIM,
    ReferenceStream,
    add_set_option,
    add_speed_option,
    emit,
    graph_with_sim,
    out_dir,
    pct,
    platform_wake_ms,
    private_graph,
    stop_sim_with_spinal,
    with_sets,
)

LINKS = ('upper_arm_link', 'forearm_link', 'wrist_1_link', 'wrist_2_link', 'wrist_3_link',
         'gripper_base_link')
PUSH_S = 0.1
FORCE_N = (30.0, 80.0)     # the force range of the pushes
WEAK_N = (2.0, 30.0)       # the sweep below it (log-uniform)
EXCESS_BINS = (('<1x', 0.0, 1.0), ('1-1.5x', 1.0, 1.5), ('1.5-2x', 1.5, 2.0),
               ('>2x', 2.0, math.inf))
MISS_EXCESS = 2.0          # a push of at least this excess must be detected
DETECT_WINDOW_S = PUSH_S + 0.15
SUPERSEDE_WINDOW_S = 0.05  # bus body: a withdrawal's commands after its first that may match
RELEASE_STEPS = 400        # after a detection: withdrawal 0.25 s + hold, then reset
GRAPHS = ('full', 'minimal')
BODIES = ('sim', 'dynamixel', 'feetech')


def log(msg: str) -> None:
    print(f'[bench reflex] {msg}', file=sys.stderr, flush=True)


def base_thresholds() -> np.ndarray:
    """The spinal's collision thresholds per arm joint [N m] (its parameter defaults)."""
    from ..common.params import default_of
    from ..spinal.params import PARAMS
    return np.array([default_of(PARAMS, 'reflex_threshold_arm')] * 3
                    + [default_of(PARAMS, 'reflex_threshold_wrist')] * 3)


def body_jacobian(world, link):
    import mujoco
    jacp = np.zeros((3, world.model.nv))
    mujoco.mj_jacBodyCom(world.model, world.data, jacp, None, world.model.body(link).id)
    return jacp[:, :6]


def excess(world, link, force, thresholds) -> float:
    """The largest joint torque a force at ``link``'s centre of mass exerts now, over each
    joint's threshold."""
    return float(np.max(np.abs(body_jacobian(world, link).T @ force) / thresholds))


def draw_push(rng, magnitude: float):
    """A push of ``magnitude`` [N] on a random link in a random direction: (link, force)."""
    link = LINKS[int(rng.integers(len(LINKS)))]
    d = rng.normal(size=3)
    return link, d / np.linalg.norm(d) * magnitude


def push_forces(rng, strong: int, weak: int) -> list[float]:
    """Magnitudes [N] of every push, in random order: ``strong`` in :data:`FORCE_N`, ``weak``
    log-uniform in :data:`WEAK_N`."""
    f = np.concatenate([rng.uniform(*FORCE_N, strong),
                        np.exp(rng.uniform(*np.log(WEAK_N), weak))])
    return rng.permutation(f).tolist()


def min_jerk_segment(q0, q1, duration, dt=1e-3):
    from ..spinal.reflex import min_jerk
    n = max(1, int(round(duration / dt)))
    s = np.array([min_jerk((i + 1) / n) for i in range(n)])
    delta = np.asarray(q1) - np.asarray(q0)
    return q0 + np.outer(s[:, 0], delta), np.outer(s[:, 1], delta) / duration


class Scenario:
    """Reference motion + push schedule, advanced once per physics step (sim thread).

    ``set_tremor(amplitude, frequency)`` turns the body's tremor on for the free motion and off
    after it."""

    def __init__(self, rng, world, model, free_s, forces, reset_client, thresholds,
                 tremor=(0.0, 0.0), set_tremor=None, warmup_s=3.0):
        from ..spinal.motion import random_motion
        self.rng, self.world, self.model = rng, world, model
        self.home = model.home_pose()
        self.forces = list(forces)
        self.reset_client = reset_client
        self.thresholds = thresholds
        self.tremor, self.set_tremor = tremor, set_tremor
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
        self.push_steps = int(round(PUSH_S * 1000))
        self.false_events = []
        self.false_reset_step = None  # a false trigger's reflex is reset then (the run goes on)
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

    def release_false_trigger(self, k: int) -> None:
        """Reset the reflex a false trigger fired, ``RELEASE_STEPS`` after it (at step k)."""
        if self.false_reset_step is not None and k >= self.false_reset_step:
            from std_srvs.srv import Trigger
            self.false_reset_step = None
            self.reset_client.call_async(Trigger.Request())

    # ---- per step (before the physics step) ----
    def before_step(self):
        k = self.k = self.world.step_count
        w = self.world
        seg_done = self._advance_reference()
        self.release_false_trigger(k)
        c = self.current
        if c is not None and 'link' in c and k < c['onset_step'] + self.push_steps:
            c['excess'] = max(c['excess'], excess(w, c['link'], c['force'], self.thresholds))
        if self.phase == 'warmup' and k >= self.phase_end:
            self.phase = 'free'
            self._start(*self.free)
            if self.set_tremor is not None:
                self.set_tremor(*self.tremor)
            log(f'free motion: {len(self.free[0]) / 1000:.0f} s, tremor {self.tremor[0]:g} N m '
                f'at {self.tremor[1]:g} Hz')
        elif self.phase == 'free':
            self.free_steps += 1
            if seg_done:
                if self.set_tremor is not None:
                    self.set_tremor(0.0, self.tremor[1])
                self.phase = 'return'
                self._start(*min_jerk_segment(self.ref_q.copy(), self.home, 1.5))
        elif self.phase == 'return' and seg_done:
            if len(self.collisions) >= len(self.forces):
                self.done = True
                return
            self._new_cycle()
        elif self.phase == 'move':
            if k == c['onset_step']:
                link, force = draw_push(self.rng, c['force_n'])
                c.update(link=link, force=force, onset_time=w.time,
                         excess_onset=excess(w, link, force, self.thresholds),
                         com0=w.data.xipos[w.model.body(link).id].copy())
                c['excess'] = c['excess_onset']
                w.apply_wrench(link, force, duration=PUSH_S)
                c['onset_wall_ns'] = time.time_ns()      # the pushed step runs right now
                self.phase = 'wait'
        elif self.phase == 'wait':
            if c.get('event') is not None:
                self.phase = 'withdrawing'
                c['release_step'] = k + RELEASE_STEPS
            elif (k > c['onset_step'] + int(DETECT_WINDOW_S * 1000)
                  and time.time_ns() > c['onset_wall_ns'] + int(DETECT_WINDOW_S * 1e9)):
                c['missed'] = True
                self._recover()
        elif self.phase == 'withdrawing' and k >= c['release_step']:
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
        self.current = {'onset_step': onset, 'force_n': self.forces[len(self.collisions)],
                        'event': None, 'missed': False}
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
            log(f'{len(self.collisions)}/{len(self.forces)} pushes')

    # ---- reflex events (executor callback, same thread) ----
    def on_event(self, values: dict):
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
        else:           # with the body's state then, for the log
            w = self.world
            self.false_events.append({
                'phase': self.phase, 'step': self.k, 'values': values,
                'ref_q': self.ref_q.tolist(), 'q': w.data.qpos[:6].tolist(),
                'qd': w.data.qvel[:6].tolist(),
                'actuator_torque': w.data.qfrc_actuator[:6].tolist(),
                'tremor_torque': w.data.qfrc_applied[:6].tolist(),
                'constraint_torque': w.data.qfrc_constraint[:6].tolist(),     # limits, contacts
                'contacts': [[w.model.body(w.model.geom_bodyid[g]).name for g in (c.geom1, c.geom2)]
                             for c in w.data.contact[:w.data.ncon]]})
            if self.phase not in ('wait', 'withdrawing'):
                self.false_reset_step = self.k + RELEASE_STEPS


class GoalFeed:
    """The bench's motion as the cortex sends goals: every ``1 / rate_hz`` s the tcp pose of the
    scenario's reference (URDF kinematics) as a geometry_msgs/PoseStamped in base_link on
    /cortex/goal_pose, its position with Gaussian noise of ``noise_m`` per axis."""

    def __init__(self, node, model, sc: Scenario, rate_hz: float, noise_m: float, rng):
        from geometry_msgs.msg import PoseStamped

        from ..common.rosutil import COMMAND_QOS
        from ..robot.transforms import matrix_to_quat_xyzw
        self.quat = matrix_to_quat_xyzw
        self.model, self.sc, self.noise, self.rng = model, sc, noise_m, rng
        self.node = node
        self.pub = node.create_publisher(PoseStamped, '/cortex/goal_pose', COMMAND_QOS)
        self.msg = PoseStamped()
        self.msg.header.frame_id = 'base_link'
        self.sent = 0
        self.active = False     # set once the graph is up: goals before then are not the bench's
        node.create_timer(1.0 / rate_hz, self.send)

    def send(self) -> None:
        if not self.active:
            return
        pose = self.model.fk(self.sc.ref_q)
        p = pose[:3, 3] + self.rng.normal(0.0, self.noise, 3)
        q = self.quat(pose[:3, :3])
        m = self.msg
        m.header.stamp = self.node.get_clock().now().to_msg()
        pos, o = m.pose.position, m.pose.orientation
        pos.x, pos.y, pos.z = (float(v) for v in p)
        o.x, o.y, o.z, o.w = (float(v) for v in q)
        self.pub.publish(m)
        self.sent += 1


def collision_record(c: dict, sim) -> dict:
    """One push for the log: where it was, how much it loaded the joints, where its time went."""
    r = {'link': c.get('link'), 'force_n': float(c['force_n']),
         'force': np.round(c['force'], 3).tolist() if 'force' in c else None,
         'excess': c.get('excess'), 'excess_onset': c.get('excess_onset'),
         'onset_step': c['onset_step'], 'detected': c.get('event') is not None}
    ev = c.get('event')
    if ev is not None:
        onset_stamp = sim.stamp_ns(c['onset_step'] + 1) * 1e-9   # the first state with the push
        r.update(joints=ev.get('joints'),
                 detect_samples=int(round((float(ev['detection_time']) - onset_stamp) * 1e3)) + 1,
                 detect_ms=(c['detect_wall_ns'] - c['onset_wall_ns']) * 1e-6,
                 latency_ms=c.get('latency_ms'), latency_steps=c.get('latency_steps'),
                 superseded=c.get('superseded'))
    return r


def half_point(force, detected) -> float:
    """The force where a logistic fit of detection against log force crosses 0.5 [N]; NaN when
    the pushes do not bracket it (all detected, none, or no rise with force)."""
    x = np.log(np.asarray(force, float))
    y = np.asarray(detected, float)
    if len(x) < 2 or y.min() == y.max():
        return float('nan')
    xm, xs = x.mean(), max(x.std(), 1e-9)
    z = np.column_stack([np.ones_like(x), (x - xm) / xs])
    w = np.zeros(2)
    for _ in range(100):             # Newton on the log-likelihood, a small ridge for safety
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        h = z.T @ (z * (p * (1 - p))[:, None]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(h, z.T @ (y - p) - 1e-6 * w)
        w += step
        if np.max(np.abs(step)) < 1e-10:
            break
    if w[1] <= 0:
        return float('nan')
    return float(np.exp(xm - xs * w[0] / w[1]))


def by_excess(cols) -> tuple[dict, dict]:
    """Detection rate and push count per excess bin (rate None for an empty bin)."""
    rates, counts = {}, {}
    for name, lo, hi in EXCESS_BINS:
        sel = [c for c in cols if lo <= c.get('excess', 0.0) < hi]
        counts[name] = len(sel)
        rates[name] = (sum(1 for c in sel if c.get('event') is not None) / len(sel)
                       if sel else None)
    return rates, counts


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


def detection_figure(cols, out_png, result) -> None:
    """Detection against each push's excess and force (bench_out/reflex_detection.png)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    ex = np.array([c['excess'] for c in cols])
    fn = np.array([c['force_n'] for c in cols])
    hit = np.array([c.get('event') is not None for c in cols])
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    if len(cols):
        ax[0].scatter(fn[hit], ex[hit], s=12, c='tab:green', label='detected')
        ax[0].scatter(fn[~hit], ex[~hit], s=16, c='tab:red', marker='x', label='not detected')
    ax[0].set_xscale('log')
    ax[0].set_yscale('log')
    ax[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for v in (1.0, 1.5, 2.0):
        ax[0].axhline(v, color='0.6', lw=0.8, ls='--')
    hf = result['half_detection_force_n']
    if math.isfinite(hf):
        ax[0].axvline(hf, color='m', lw=0.8, label=f'half detected: {hf:.1f} N')
    ax[0].set_xlabel('push force [N]')
    ax[0].set_ylabel('peak joint torque / threshold')
    if len(cols):
        ax[0].legend(fontsize=8)
    names = [b[0] for b in EXCESS_BINS]
    rates = [result['detection_rate_by_excess'][n] for n in names]
    counts = [result['pushes_by_excess'][n] for n in names]
    ax[1].bar(names, [r if r is not None else 0.0 for r in rates], color='tab:blue')
    for i, (r, n) in enumerate(zip(rates, counts)):
        ax[1].text(i, (r or 0.0) + 0.02, f'{"-" if r is None else f"{r:.2f}"} (n={n})',
                   ha='center', fontsize=8)
    ax[1].set_ylim(0, 1.15)
    ax[1].set_xlabel('peak joint torque / threshold')
    ax[1].set_ylabel('detected fraction')
    ax[1].set_title(f"graph {result['graph']}: {result['collisions']} pushes, "
                    f"{result['misses']} missed above 2x, "
                    f"{result['undetectable_by_joint_torque']} load no joint", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def start_graph(graph: str, speed: float, body: str = 'sim', sets=()):
    """The bench's graph (module docstring): (NodeGraph, rclpy context, SimNode); ``sets``:
    ``--set`` overrides."""
    overrides = with_sets({'spinal': {'quiet_time': 0.0}}, sets)   # the bench resets the reflex
    if graph == 'minimal':
        return graph_with_sim('reflex', {**overrides, 'sim': MINIMAL_SIM}, only=('spinal',),
                              speed=speed, sim_time_for_all=False)
    bus = {} if body == 'sim' else {'body': body, 'port': 'emulator'}
    return graph_with_sim('reflex', {**overrides, 'cortex': {'dry_run': True}}, speed=speed,
                          args=bus)


def bus_arrivals(bus, arm, arrivals) -> np.ndarray:
    """Record each goal write on the emulated bus as the joint command it encodes in
    ``arrivals`` (wall ns, step, values): on the current interface the torque minus the gravity
    term the hardware bridge adds (:func:`hardware.bridge.Bridge._gravity`: at the positions it
    last read, which the servos' tables keep), on the position interface the position. Returns
    the tolerance of a match per joint: half a register unit."""
    from ..robot.dynamics import ArmDynamics
    current = bus.cfg.interface == 'current'
    drives = {s.servo_id: s.drive for s in bus.servos if not s.drive.gripper}
    col = {sid: arm.index(d.joint) for sid, d in drives.items()}
    tol = np.zeros(len(arm))
    for sid, d in drives.items():
        tol[col[sid]] = (0.5 * d.model.current_unit * d.torque_constant if current
                         else 0.5 * abs(d.scale())) + 1e-9
    dyn = ArmDynamics() if current else None
    read = np.zeros(8)           # /joint_states order, the finger twice as the bridge has it
    values = np.full(len(arm), np.nan)

    def hook(wall_ns, step, _now, written):
        for sid, regs in written.items():
            d = drives.get(sid)
            if d is not None and current and 'goal_current' in regs:
                values[col[sid]] = d.effort(regs['goal_current'])
            elif d is not None and 'goal_position' in regs:
                values[col[sid]] = d.to_joint(regs['goal_position'])
        out = values.copy()
        if current:
            for s in bus.servos:
                if s.table.read_position is not None:
                    q = s.drive.to_joint(s.table.read_position)
                    if s.drive.gripper:
                        read[6] = read[7] = q
                    else:
                        read[col[s.servo_id]] = q
            dyn.set_state(read)
            out -= dyn.bias()[:len(arm)]
        arrivals.append((wall_ns, step, out))
    bus.goal_hooks.append(hook)
    return tol


def main(argv=None) -> int:
    from ..cerebellum.scenario import Scenario as TremorScenario
    from ..common.params import default_of
    from ..cortex.params import PARAMS as CORTEX_PARAMS
    tremor_scn = TremorScenario()
    ap = argparse.ArgumentParser(prog='neurovla bench reflex', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--graph', choices=GRAPHS, default='full',
                    help='full: the bringup graph; minimal: sim + spinal only (the old setting)')
    ap.add_argument('--collisions', type=int, default=150,
                    help=f'pushes of {FORCE_N[0]:g}-{FORCE_N[1]:g} N during motion (>= 100 so '
                         'that the p99 is not just the maximum)')
    ap.add_argument('--weak', type=int, default=100,
                    help=f'weaker pushes, {WEAK_N[0]:g}-{WEAK_N[1]:g} N (log-uniform)')
    ap.add_argument('--false-trigger-s', type=float, default=300.0,
                    help='fast free motion with tremor, no contact [s]')
    ap.add_argument('--tremor-nm', type=float, default=tremor_scn.tremor_amplitude,
                    help='tremor during the free motion [N m] (the tremor scenario\'s)')
    ap.add_argument('--tremor-hz', type=float, default=tremor_scn.tremor_hz,
                    help='tremor frequency [Hz]')
    ap.add_argument('--body', choices=BODIES, default='sim',
                    help='sim: the simulator commanded directly; dynamixel / feetech: through '
                         'the emulated servo bus and the hardware node (full graph, real time)')
    ap.add_argument('--seed', type=int, default=0)
    add_speed_option(ap)
    add_set_option(ap)
    args = ap.parse_args(argv)
    speed = args.speed
    if args.body != 'sim' and (args.graph != 'full' or speed != 1.0):
        ap.error('--body with a bus runs the full graph in real time (the bus has no sim time)')
    private_graph()

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.experimental import EventsExecutor
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    from .. import robot
    from ..common.rosutil import COMMAND_QOS
    from ..runner import Diagnostics
    from ..spinal.params import PARAMS as SPINAL_PARAMS

    log('the machine alone: wake-up lateness of a 1 ms FIFO sleep loop (5 s)')
    wake = platform_wake_ms(5.0, default_of(SPINAL_PARAMS, 'realtime_priority'))

    full = args.graph == 'full'
    log(f'graph {args.graph}: starting')
    nodes, ctx, sim = start_graph(args.graph, speed, args.body, args.set)
    node = rclpy.create_node('bench_reflex', context=ctx)
    model = robot.load()
    world = sim.world
    rng = np.random.default_rng(args.seed)
    reset = node.create_client(Trigger, '/spinal/reset')
    forces = push_forces(rng, args.collisions, args.weak)

    def set_tremor(amplitude, frequency):
        sim.set_parameters([Parameter('tremor_amplitude', value=float(amplitude)),
                            Parameter('tremor_frequency_hz', value=float(frequency))])
    sc = Scenario(rng, world, model, args.false_trigger_s, forces, reset, base_thresholds(),
                  (args.tremor_nm, args.tremor_hz), set_tremor)
    feed = ref = None
    if full:
        feed = GoalFeed(node, model, sc, default_of(CORTEX_PARAMS, 'goal_rate_hz'),
                        tremor_scn.goal_noise, np.random.default_rng([args.seed, 1]))
    else:
        ref = ReferenceStream(node, model.arm_joints)
    diags = Diagnostics(node)
    arrivals = collections.deque(maxlen=4000)    # (wall ns, step, values); the bus appends
    # from its own thread: read a copy

    spinal_cmds = None
    if sim.bus is not None:
        match_tol = bus_arrivals(sim.bus, list(model.arm_joints), arrivals)
        from std_msgs.msg import Float64MultiArray

        from ..spinal.params import command_topic
        spinal_cmds = collections.deque(maxlen=20000)   # (wall ns, CDR) as the spinal sent them
        node.create_subscription(
            Float64MultiArray,
            command_topic('', 'effort' if sim.bus.cfg.interface == 'current' else 'position'),
            lambda raw: spinal_cmds.append((time.time_ns(), raw)), COMMAND_QOS, raw=True)
    else:
        match_tol = 0.0

        def hook(kind, k, t, values):
            if kind == 'effort':
                arrivals.append((time.time_ns(), k, values))
        sim.command_hooks.append(hook)

    def on_reflex(msg):
        for st in msg.status:
            sc.on_event({kv.key: kv.value for kv in st.values})
    node.create_subscription(DiagnosticArray, '/spinal/reflex', on_reflex, COMMAND_QOS)
    step, publish = world.step, sim._publish

    def scenario_step(n_steps=1):
        sc.before_step()
        step(n_steps)
        if sc.done or not nodes.alive():
            sim.stop()

    def publish_state_then_reference():
        publish()                 # /joint_states first: the spinal's latency path
        ref.q[:] = sc.ref_q
        ref.qd[:] = sc.ref_qd
        ref.publish()
    ex = EventsExecutor(context=ctx)
    ex.add_node(sim)
    ex.add_node(node)
    t_start = time.monotonic()

    def value(status: str, key: str):
        return diags.latest.get(status, {}).get('values', {}).get(key)

    def ready() -> bool:
        if not arrivals or value('spinal: controller', 'mode') != 'follow':
            return False
        return not full or ((value('cortex: planner', 'plans') or 0) >= 1
                            and value('cerebellum', 'mode') == 'cerebellum')
    try:
        log('waiting for the nodes')
        if not full:
            sim._publish = publish_state_then_reference
        nodes.wait_up(node, 120.0, spin=lambda: sim.run(duration=0.2, executor=ex))
        deadline = time.monotonic() + 120
        while not ready() and time.monotonic() < deadline and nodes.alive():
            sim.run(duration=0.5, executor=ex)
            sc.release_false_trigger(world.step_count)   # one while waiting counts too
        if not ready():
            raise RuntimeError(
                f'the graph did not come up (commands {bool(arrivals)}, spinal '
                f'{value("spinal: controller", "mode")}, cortex plans '
                f'{value("cortex: planner", "plans")}, dead '
                f'{[p.name for p in nodes.dead()]}, {len(sc.false_events)} reflexes while '
                f'waiting, hardware {value("hardware: bus", "state")} watchdog re-arms '
                f'{value("hardware: bus", "watchdog_rearms")}); logs: {nodes.logs()}')
        log(f'graph {args.graph} up after {time.monotonic() - t_start:.0f} s: '
            f'{", ".join(nodes.names)} and the sim in this process')
        if feed is not None:
            feed.active = True

        def withdrawal_commands(c) -> list:
            """The event's first withdrawal command, and on a bus body the spinal's commands
            that followed it (:data:`SUPERSEDE_WINDOW_S`): the bridge writes the newest answer
            it has, so a first command that came in with the next one never reaches the bus."""
            first = c['command']
            if spinal_cmds is None:
                return [first]
            from rclpy.serialization import deserialize_message
            from std_msgs.msg import Float64MultiArray
            out, t_first = [first], None
            for wall_ns, raw in list(spinal_cmds):
                if wall_ns < c['onset_wall_ns']:
                    continue
                v = np.array(deserialize_message(raw, Float64MultiArray).data, float)
                if t_first is None:
                    if v.shape == first.shape and np.all(np.abs(v - first) <= 1e-9):
                        t_first = wall_ns
                elif wall_ns - t_first <= SUPERSEDE_WINDOW_S * 1e9:
                    out.append(v)
                else:
                    break
            return out

        def match_commands():
            """Find the body's first arrival of each event's withdrawal (exact values): its first
            command, or on a bus body one of the commands after it when that one was
            superseded (counted in ``superseded``)."""
            now = time.time_ns()
            for c in sc.collisions:
                if c.get('event') is None or 'matched' in c:
                    continue
                onset = c['onset_wall_ns']
                cands = withdrawal_commands(c)
                for wall_ns, k, values in list(arrivals):       # oldest first, from onset
                    if wall_ns < onset:
                        continue
                    hit = [j for j, v in enumerate(cands)
                           if np.all(np.abs(values - v) <= match_tol)]
                    if hit:
                        c['latency_ms'] = (wall_ns - onset) * 1e-6
                        c['latency_steps'] = k - c['onset_step']
                        c['superseded'] = hit[0]
                        c['matched'] = True
                        break
                if 'matched' not in c and now - onset > 3e9:     # never seen: give up
                    c['matched'] = False
        node.create_timer(0.1, match_commands)
        sc.phase_end = world.step_count + 3000       # warm-up: 3 s at home, then the motion
        world.step = scenario_step
        cpu0, nodes0, wall0 = cpu_seconds(), nodes.cpu_seconds(), time.monotonic()
        sim.run(duration=None, executor=ex)
        span = time.monotonic() - wall0
        cpu = {'bench_process_cpu': (cpu_seconds() - cpu0) / span,
               **{f'{n}_process_cpu': (v - nodes0[n]) / span
                  for n, v in nodes.cpu_seconds().items()}}
        for _ in range(20):
            ex.spin_once(timeout_sec=0.01)
        match_commands()
        dead = [f'{p.name} (exit {p.returncode})' for p in nodes.dead()]
        if dead:
            raise RuntimeError(f'{", ".join(dead)} died during the run; logs: {nodes.logs()}')
    finally:
        world.step = step
        sim._publish = publish
        sim_stats = {'sim_lateness_ms_p99': pct(sim.lateness_s() * 1e3, 99),
                     'sim_overruns': sim.overruns, 'sim_resyncs': sim.resyncs}
        status = {k: dict(v['values']) for k, v in diags.latest.items()}
        stop_sim_with_spinal(nodes, ctx, sim, node, ex)
    cols = [c for c in sc.collisions if 'link' in c]
    detected = [c for c in cols if c.get('event') is not None]
    latencies = [c['latency_ms'] for c in detected if 'latency_ms' in c]
    strong = [c['latency_ms'] for c in detected
              if 'latency_ms' in c and c['excess'] >= MISS_EXCESS]
    detects = [(c['detect_wall_ns'] - c['onset_wall_ns']) * 1e-6 for c in detected]
    withdrawn = [c['withdrawn_m'] for c in detected if 'withdrawn_m' in c]
    rates, counts = by_excess(cols)
    cortex = status.get('cortex: planner', {})
    cereb = status.get('cerebellum', {})
    spinal = status.get('spinal: controller', {})
    res = {
        'graph': args.graph, 'body': args.body,
        'collisions': len(cols),
        'collisions_in_force_range': sum(1 for c in cols if c['force_n'] >= FORCE_N[0]),
        'misses': sum(1 for c in cols if c['excess'] >= MISS_EXCESS and c.get('event') is None),
        'false_triggers': len(sc.false_events),
        'latency_ms_p50': pct(latencies, 50), 'latency_ms_p99': pct(latencies, 99),
        'latency_ms_max': float(max(latencies)) if latencies else float('nan'),
        'latency_over_2ms': sum(1 for v in latencies if v > 2.0),
        'latency_ms_p99_above_2x': pct(strong, 99),
        'detect_ms_p50': pct(detects, 50), 'detect_ms_p99': pct(detects, 99),
        'detect_ms_max': float(max(detects)) if detects else float('nan'),
        'latency_steps_p99': pct([c['latency_steps'] for c in detected if 'latency_steps' in c],
                                 99),
        'commands_unmatched': len(detected) - len(latencies),
        'first_commands_superseded': sum(1 for c in detected if c.get('superseded', 0) > 0),
        'detection_rate_by_excess': rates, 'pushes_by_excess': counts,
        'undetectable_by_joint_torque': counts['<1x'],
        'half_detection_force_n': half_point([c['force_n'] for c in cols],
                                             [c.get('event') is not None for c in cols]),
        'false_trigger_s': sc.free_steps * 1e-3,
        'tremor_nm': args.tremor_nm, 'tremor_hz': args.tremor_hz,
        'withdrawn_along_push_mm_p50': pct(np.array(withdrawn) * 1e3, 50),
        'wall_s': time.monotonic() - t_start, 'speed': speed, **sim_stats, **cpu,
        'spinal_tick_us_p99': spinal.get('tick_us_p99'), 'spinal_tick_hz': spinal.get('tick_hz'),
        **({'goals_sent': feed.sent, 'cerebellum_goals_accepted': cereb.get('goals_accepted'),
            'cerebellum_goals_rejected': cereb.get('goals_rejected'),
            'cerebellum_goals_rejected_not_ready': cereb.get('goals_rejected_not_ready'),
            'cerebellum_last_rejection': cereb.get('last_rejection', ''),
            'cerebellum_tick_us_p99': cereb.get('tick_us_p99'),
            'cortex_plans': cortex.get('plans'),
            'cortex_goals_published': cortex.get('goals_published'),
            'cortex_infer_ms_p50': cortex.get('infer_ms_p50')} if full else {}),
        **{f'platform_wake_ms_{k}': v for k, v in wake.items()},
    }
    if args.body != 'sim':
        res[f'reflex_latency_ms_p99_{args.body}'] = res['latency_ms_p99']
        res['hardware'] = {k: status.get('hardware: bus', {}).get(k) for k in
                           ('state', 'cycle_hz', 'reads', 'commands', 'read_failures')}
    if sc.false_events:
        log(f"false triggers: {[(e['phase'], e['values'].get('joints')) for e in sc.false_events]}")
    log(f"{res['collisions']} pushes ({res['misses']} missed above {MISS_EXCESS:g}x, "
        f"{res['undetectable_by_joint_torque']} loading no joint above its threshold), "
        f"{res['false_triggers']} false triggers in {res['false_trigger_s']:.0f} s of free motion "
        f"+ the start-up and the cycles; latency p50/p99/max {res['latency_ms_p50']:.2f}/"
        f"{res['latency_ms_p99']:.2f}/{res['latency_ms_max']:.2f} ms")
    log_path = os.path.join(out_dir(), 'reflex_collisions.json')
    with open(log_path, 'w') as f:
        json.dump([collision_record(c, sim) for c in cols], f, indent=0)
    res['collision_log'] = log_path
    res['false_trigger_log'] = os.path.join(out_dir(), 'reflex_false_triggers.json')
    with open(res['false_trigger_log'], 'w') as f:
        json.dump(sc.false_events, f, indent=0)
    png = os.path.join(out_dir(), 'reflex.png')
    first = detected[0] if detected else {'link': 'forearm_link', 'force': np.array([0, 0, 50.0])}
    replay(args.seed, first['link'], first['force'], png, latencies, detects, res)
    res['plot'] = png
    res['plot_detection'] = os.path.join(out_dir(), 'reflex_detection.png')
    detection_figure(cols, res['plot_detection'], res)
    emit(res)
    return 0


if __name__ == '__main__':
    sys.exit(main())
