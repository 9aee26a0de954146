"""``neurovla bench spinal``: the spiking joint controller against a classical PD, and live.

1. In process, lock-step with the MuJoCo body (exactly comparable): the same fast random
   reference is tracked by the spinal controller (spiking network + limits), by the PD baseline
   with the same model-derived gains, and by PD + model feed-forward (the network's teacher).
   Tracking RMSE over the moving samples, controller step time, firing rates at rest and in
   motion, synaptic operations and the energy estimate.
2. Live, real time: the sim (SimNode, in this process) and the spinal node (its own process)
   over DDS for ``--live-s`` seconds of the same kind of motion. ``tick_hz`` = commands the
   body received per second; ``on_time_fraction`` = share of the 1 ms physics periods in which
   a fresh command arrived (the periods without one: ``missed_periods_single``, alone, and
   ``missed_periods_in_streaks``, in streaks of two or more, the longest ``missed_streak_max``:
   a stall of the machine and the body's catch-up after it); the live tracking RMSE and the
   node's own tick timing. Before it,
   ``platform_wake_ms_*``: how late a FIFO thread sleeping to 1 ms deadlines wakes on this
   machine (the floor under every hop).

The motions come from motion streams of their own (``motion.motion_rng``: ``bench`` in
process, ``bench_live`` live), never from the training's (``train``, ``train_check``):
``heldout`` is true when none of their waypoints is among those of the motions the committed
weights were trained and checked on (recomputed from the weights' meta). The headline is
``ratio_to_pdff``, the network against PD + feed-forward, the teacher it imitates;
``ratio_to_pd`` is against PD alone.

Writes bench_out/spinal.png; the last stdout line is the JSON result.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .common import (
    ReferenceStream,
    add_speed_option,
    emit,
    out_dir,
    pct,
    platform_wake_ms,
    private_graph,
    sim_with_spinal,
    stop_sim_with_spinal,
)


def log(msg: str) -> None:
    print(f'[bench spinal] {msg}', file=sys.stderr, flush=True)


def motions(seconds: float, live_s: float, seed: int):
    """The bench's reference motions (q, qd): in process, live (None for ``live_s`` 0), and
    every waypoint they were drawn through (N, 6)."""
    from ..spinal.motion import motion_rng, random_motion
    points = []
    inproc = random_motion(motion_rng('bench', seed), seconds, waypoints=points)
    live = (random_motion(motion_rng('bench_live', seed), live_s, waypoints=points)
            if live_s > 0 else None)
    return inproc, live, np.array(points)


def heldout(points, meta: dict) -> tuple[bool, int | None]:
    """(held out, shared waypoints): whether no waypoint of the bench is among those of the
    training that wrote the weights' ``meta``; the count is None where the meta does not
    record its motions (then not held out: unknown)."""
    from ..spinal.motion import shared_waypoints
    from ..spinal.train import training_waypoints
    train = training_waypoints(meta)
    if train is None:
        return False, None
    shared = shared_waypoints(points, train)
    return shared == 0, shared


def in_process(motion, seed: int):
    from ..sim.world import World
    from ..spinal.controller import SpinalConfig, SpinalController
    from ..spinal.evaluate import NetworkPolicy, pd_policy, rmse, rollout, teacher_policy
    from ..spinal.motion import moving_mask

    world = World(seed=seed, n_objects=0)
    ctrl = SpinalController(cfg=SpinalConfig())
    q_ref, qd_ref = motion
    seconds = len(q_ref) * 1e-3
    mask = moving_mask(qd_ref)
    pol = NetworkPolicy(ctrl, timing=True)
    ctrl.set_reference(q_ref[0], qd_ref[0], now=world.time)
    ctrl.mode = 'follow'
    ctrl.reset_stats()
    t0 = time.perf_counter()
    out_net = rollout(world, q_ref, qd_ref, pol)
    log(f'spiking controller: {seconds:.0f} s of motion in {time.perf_counter() - t0:.1f} s')
    rest, motion = ctrl.firing_rates()
    sops = ctrl.net.sops_per_s()
    # the same controller tick in numpy (the reference code) vs in C, on identical inputs
    step_us = {}
    for compiled in (True, False):
        c = SpinalController(cfg=SpinalConfig(), compiled=compiled)
        c.mode, us = 'follow', []
        for k in range(min(5000, len(q_ref))):
            q8 = np.r_[q_ref[k], c.model.gripper_open, c.model.gripper_open] + 0.01
            qd8 = np.r_[qd_ref[k], 0.0, 0.0]
            c.set_reference(q_ref[k], qd_ref[k], now=k * 1e-3)
            t1 = time.perf_counter()
            c.step(q8, qd8, None, k * 1e-3, 1e-3, k * 1e-3)
            us.append((time.perf_counter() - t1) * 1e6)
        step_us[compiled] = us
    out_pd = rollout(world, q_ref, qd_ref, pd_policy(ctrl.gains))
    out_ff = rollout(world, q_ref, qd_ref, teacher_policy(ctrl.gains))
    res = {
        'tracking_rmse_rad': rmse(out_net['err'], mask),
        'pd_tracking_rmse_rad': rmse(out_pd['err'], mask),
        'pdff_tracking_rmse_rad': rmse(out_ff['err'], mask),
        'step_us_p50': pct(pol.step_us, 50), 'step_us_p99': pct(pol.step_us, 99),
        'compiled': ctrl.compiled,
        'numpy_step_us_p50': pct(step_us[False], 50), 'numpy_step_us_p99': pct(step_us[False], 99),
        'c_vs_numpy_step_p50': pct(step_us[True], 50) / pct(step_us[False], 50),
        'firing_rate_rest': rest, 'firing_rate_motion': motion, 'sops_per_s': sops,
        'rest_fraction': ctrl.rest_ticks / max(1, ctrl.rest_ticks + ctrl.motion_ticks),
        'neurons': ctrl.net.n_neurons,
    }
    joints = {'net': np.sqrt(np.mean(out_net['err'][mask] ** 2, 0)),
              'pd': np.sqrt(np.mean(out_pd['err'][mask] ** 2, 0)),
              'pdff': np.sqrt(np.mean(out_ff['err'][mask] ** 2, 0))}
    traces = {'t': np.arange(len(q_ref)) * 1e-3, 'q_ref': q_ref, 'net': out_net['q'],
              'pdff': out_ff['q'], 'mask': mask}
    return res, joints, traces


def live(motion, speed: float = 1.0):
    """SimNode here + spinal node process over DDS along ``motion`` (q, qd); returns live
    figures."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.experimental import EventsExecutor

    from ..common.rosutil import COMMAND_QOS

    proc, ctx, sim, log_path = sim_with_spinal('spinal', {'diagnostics_period': 1.0}, speed)
    node = rclpy.create_node('bench_spinal', context=ctx)
    ref = ReferenceStream(node, sim.world.robot.arm_joints)
    diag = []

    def on_diag(msg):
        for st in msg.status:
            if st.name == 'spinal: controller':
                diag.append({kv.key: kv.value for kv in st.values})
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, COMMAND_QOS)
    ex = EventsExecutor(context=ctx)
    ex.add_node(sim)
    ex.add_node(node)

    world = sim.world
    q_ref, qd_ref = motion
    n = len(q_ref)
    seconds = n * 1e-3
    state = {'k0': None, 'err': np.zeros((n, 6)), 'filled': np.zeros(n, bool)}
    arrivals = []

    def hook(kind, k, t, values):
        if kind == 'effort':
            arrivals.append(k)
    sim.command_hooks.append(hook)
    publish = sim._publish

    def publish_state_then_reference():
        publish()                 # /joint_states first: the spinal's latency path
        k0 = state['k0']
        if k0 is None:
            return
        i = world.step_count - k0
        if 0 <= i < n:
            state['err'][i] = q_ref[i] - world.joint_state()[0][:6]
            state['filled'][i] = True
            j = min(i + 1, n - 1)
            ref.q[:] = q_ref[j]
            ref.qd[:] = qd_ref[j]
            ref.publish()
        elif i >= n:
            sim.stop()
    sim._publish = publish_state_then_reference

    try:
        log('live: waiting for the spinal node')
        t_wait = time.monotonic() + 60
        while not arrivals and time.monotonic() < t_wait:
            sim.run(duration=0.5, executor=ex)
        if not arrivals:
            raise RuntimeError(f'no commands from the spinal node (log: {log_path})')
        sim.run(duration=1.0, executor=ex)     # settle
        state['k0'] = world.step_count
        arrivals.clear()
        diag.clear()
        log(f'live: {seconds:.0f} s of motion over DDS')
        sim.run(duration=seconds / speed + 10, executor=ex)
        k_end = world.step_count
        for _ in range(30):                    # one more diagnostics period
            ex.spin_once(timeout_sec=0.05)
    finally:
        sim._publish = publish
        stop_sim_with_spinal(proc, ctx, sim, node, ex)
    k0 = state['k0']
    steps = max(1, k_end - k0)
    arr = np.array([k for k in arrivals if k0 <= k < k_end])
    on_time = len(np.unique(arr)) / steps if arr.size else 0.0
    missed = np.ones(steps, bool)
    missed[np.unique(arr) - k0] = False
    edges = np.diff(np.r_[0, missed.astype(np.int8), 0])
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)   # lengths of miss streaks
    filled = state['filled']
    mask = filled & (np.max(np.abs(qd_ref), 1) > 0.05)
    err = state['err'][mask]
    d = [x for x in diag if 'tick_hz' in x]

    def dval(key):
        return float(np.median([float(x[key]) for x in d])) if d else float('nan')
    return {'tick_hz': len(arr) / (steps * 1e-3), 'on_time_fraction': on_time,
            'missed_periods_single': int(np.sum(runs == 1)),
            'missed_periods_in_streaks': int(np.sum(runs[runs > 1])),
            'missed_streak_max': int(runs.max()) if runs.size else 0,
            'live_s': steps * 1e-3,
            'live_tracking_rmse_rad': float(np.sqrt(np.mean(err ** 2))) if len(err) else
            float('nan'),
            'live_node_tick_us_p50': dval('tick_us_p50'),
            'live_node_tick_us_p99': dval('tick_us_p99'),
            'live_reflex_events': dval('reflex_events') if d else float('nan'),
            'live_modes': ','.join(x.get('mode', '?') for x in d)}


def plot(path, traces, joints, res):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    t = traces['t']
    sel = slice(0, min(len(t), 4000))
    for j, c in ((0, 'C0'), (4, 'C1')):
        ax[0].plot(t[sel], (traces['q_ref'] - traces['net'])[sel, j] * 1e3, c, lw=1,
                   label=f'joint {j} spiking')
        ax[0].plot(t[sel], (traces['q_ref'] - traces['pdff'])[sel, j] * 1e3, c + '--', lw=0.8,
                   label=f'joint {j} PD + feed-forward')
    ax[0].set_xlabel('time [s]')
    ax[0].set_ylabel('tracking error [mrad]')
    ax[0].legend(fontsize=7)
    x = np.arange(6)
    for i, (k, lab) in enumerate((('net', 'spiking'), ('pd', 'PD'), ('pdff', 'PD + feed-forward'))):
        ax[1].bar(x + (i - 1) * 0.27, joints[k] * 1e3, 0.27, label=lab)
    ax[1].set_xlabel('joint')
    ax[1].set_ylabel('tracking RMSE while moving [mrad]')
    ax[1].set_title(f"spiking {res['tracking_rmse_rad'] * 1e3:.3f} mrad, PD + feed-forward "
                    f"{res['pdff_tracking_rmse_rad'] * 1e3:.3f}, PD "
                    f"{res['pd_tracking_rmse_rad'] * 1e3:.3f} mrad; firing rest "
                    f"{res['firing_rate_rest']:.2f} Hz, motion {res['firing_rate_motion']:.1f} Hz",
                    fontsize=9)
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog='neurovla bench spinal', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--seconds', type=float, default=30.0, help='in-process motion [s]')
    ap.add_argument('--live-s', type=float, default=30.0, help='live DDS motion [s]; 0 = skip')
    ap.add_argument('--seed', type=int, default=0,
                    help="the bench's motions (streams of their own: never a training motion)")
    add_speed_option(ap, what='live body')
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    private_graph()
    from ..common import realtime
    from ..common.params import default_of
    from ..spinal.lif import NetParams
    from ..spinal.params import LOIHI_J_PER_SOP, PARAMS
    # the controller is timed as the node runs it: at the node's FIFO priority
    prio = default_of(PARAMS, 'realtime_priority')
    problem = realtime.make_realtime(prio)
    if problem:
        log(problem)

    motion, live_motion, points = motions(args.seconds, args.live_s, args.seed)
    is_heldout, shared = heldout(points, NetParams.load().meta)
    log(f'motions: {len(points)} waypoints, held out: {is_heldout} ({shared} shared with the '
        f"weights' training motions)")
    res, joints, traces = in_process(motion, args.seed)
    res['heldout'] = is_heldout
    res['shared_waypoints'] = shared
    res['realtime_priority'] = realtime.current_priority()
    res['energy_w'] = res['sops_per_s'] * LOIHI_J_PER_SOP
    res['energy_uw'] = res['energy_w'] * 1e6
    res['energy_pj_per_sop'] = LOIHI_J_PER_SOP * 1e12
    res['ratio_to_pdff'] = res['tracking_rmse_rad'] / res['pdff_tracking_rmse_rad']
    res['ratio_to_pd'] = res['tracking_rmse_rad'] / res['pd_tracking_rmse_rad']
    res['rest_to_motion_firing'] = res['firing_rate_rest'] / max(1e-12, res['firing_rate_motion'])
    log(f"tracking RMSE spiking {res['tracking_rmse_rad'] * 1e3:.3f} mrad, PD+FF "
        f"{res['pdff_tracking_rmse_rad'] * 1e3:.3f}, PD {res['pd_tracking_rmse_rad'] * 1e3:.3f}"
        f" (ratio to PD+FF {res['ratio_to_pdff']:.3f}, to PD {res['ratio_to_pd']:.3f}); step "
        f"p50/p99 {res['step_us_p50']:.1f}/{res['step_us_p99']:.1f} us")
    if args.live_s > 0:
        log('the machine alone: wake-up lateness of a 1 ms FIFO sleep loop (5 s)')
        res.update({f'platform_wake_ms_{k}': v for k, v in platform_wake_ms(5.0, prio).items()})
        res.update(live(live_motion, args.speed))
        res['live_speed'] = args.speed
        log(f"live: {res['tick_hz']:.1f} commands/s, on time {res['on_time_fraction']:.4f}, "
            f"tracking {res['live_tracking_rmse_rad'] * 1e3:.3f} mrad")
    path = os.path.join(out_dir(), 'spinal.png')
    plot(path, traces, joints, res)
    res['plot'] = path
    emit(res)
    return 0


if __name__ == '__main__':
    sys.exit(main())
