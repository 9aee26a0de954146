"""``neurovla bench bus``: the serial-bus body's loop rate and its faults, on the emulated bus.

The bridge (:class:`~neurovla_ros.hardware.bridge.Bridge`, the loop the ``hardware`` node runs:
one sync read of every servo, one sync write of every goal) against the servo-bus emulator on a
real pty, through the official SDKs, six arm servos plus the gripper, with the packaged hardware
files: Feetech STS3215 at 1 Mbaud, Dynamixel XM430 (Protocol 2.0) at 4 Mbaud, return delay 0.

1. Rate: for each protocol, with no USB latency and again with the 16 ms latency step (an FTDI
   adapter's default timer), the bridge cycles as fast as it can for ``--seconds`` while holding
   the arm (a position command each cycle): ``cycle_hz`` (cycles / wall time), ``cycle_ms_p50``
   / ``p99`` (sync read + sync write, every cycle counted), the wire time the emulator's timing
   model allows for that cycle (``wire_limit_hz`` = 1 / :func:`emulator.cycle_wire_s`) and the
   share ``cycle_hz / wire_limit_hz``. The baseline a user would otherwise run is LeRobot's
   loop (30-60 Hz, its read alone ~1.7 ms): not run here (not installed), quoted in the issue.
2. Faults: every fault the emulator injects, on each protocol; run-time faults while the bridge
   runs (detected = it left ``running``; stop reached = protective stop, torque-off or the
   reconnect loop; recovered = ``running`` again after the fault is cleared, through ``resume``
   where a stop needs it), start-up faults (duplicate ID, wrong model) before the start
   (detected = a config error naming the ID with nothing energised; recovered = it starts once
   fixed). A case is safe when detected, stopped and recovered with no goal beyond the URDF
   limits on the wire (the emulator judges each goal write).

The reflex through the bus (``bench reflex --body dynamixel``) is not part of this bench.
Writes bench_out/bus.png (cycle time histograms) and bench_out/bus_faults.json; the last
stdout line is the JSON result.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from .common import emit, out_dir, pct

RATE_CASES = (('feetech', 0.0), ('dynamixel', 0.0), ('feetech', 16.0), ('dynamixel', 16.0))
RUN_FAULTS = (('drop', {}), ('truncate', {}), ('bad_crc', {}), ('wrong_id', {}),
              ('slow', {'value': 0.05}), ('silent', {}), ('hw_error', {'value': 0x20}),
              ('vanish', {'duration': 1.0}))
START_FAULTS = (('duplicate_id', {}), ('model', {'value': 1030}))


def _rig(proto: str, folder: str, latency_ms: float = 0.0, faults=()):
    from .. import robot
    from ..hardware import bridge as br
    from ..hardware import config, emulator
    cfg = config.load(None, proto)
    emu = emulator.Standalone(cfg, link=os.path.join(folder, f'{proto}.pty'),
                              q0=robot.load().home_pose(), usb_latency_s=latency_ms * 1e-3)
    for kind, kw in faults:
        emu.bus.inject(kind, ids=[3], **kw)
    link = emu.start()
    b = br.Bridge(cfg, link, br.BridgeOptions(reconnect_s=0.1, latency_ms=latency_ms or None))
    return b, emu, cfg


def _loop(b, seconds: float, until=None, hold=None, paced_hz: float = 0.0) -> list[float]:
    """The bridge's cycle (read, command, write) for ``seconds`` or until ``until(b)``;
    ``paced_hz`` 0 = back to back. Returns each cycle's duration [s]."""
    times = []
    end = time.monotonic() + seconds
    due = time.monotonic()
    while time.monotonic() < end:
        t0 = time.perf_counter()
        now = time.monotonic()
        b.read(now)
        if hold is not None and b.fresh and b.accepting():
            b.command_position(hold, now)
        b.write(now)
        times.append(time.perf_counter() - t0)
        if until is not None and until(b):
            break
        if paced_hz:
            due += 1.0 / paced_hz
            rem = due - time.monotonic()
            if rem > 0:
                time.sleep(rem)
    return times


def _close(b, emu) -> int:
    if b.torque_on:
        b._disable_all()
    b.close()
    outside = emu.bus.outside_limits
    emu.close()
    return outside


def rate_case(proto: str, latency_ms: float, seconds: float, folder: str) -> dict:
    from ..hardware import bridge as br
    from ..hardware import emulator
    b, emu, cfg = _rig(proto, folder, latency_ms)
    try:
        _loop(b, 10.0, lambda b: b.state == br.RUNNING, paced_hz=200.0)
        if b.state != br.RUNNING:
            raise RuntimeError(f'{proto}: the bridge did not start: {b.reason}')
        hold = b.q[:6].copy()
        t0 = time.perf_counter()
        times = _loop(b, seconds, hold=hold)
        wall = time.perf_counter() - t0
        failures = b.read_failures
    finally:
        outside = _close(b, emu)
    limit = 1.0 / emulator.cycle_wire_s(cfg, latency_ms * 1e-3)
    hz = len(times) / wall
    return {'protocol': proto, 'baud': cfg.baud, 'usb_latency_ms': latency_ms,
            'cycles': len(times), 'cycle_hz': hz, 'cycle_ms_p50': pct(times, 50) * 1e3,
            'cycle_ms_p99': pct(times, 99) * 1e3, 'wire_limit_hz': limit,
            'share_of_wire_limit': hz / limit, 'read_failures': failures,
            'commands_outside_limits': outside, 'times': times}


def fault_case(proto: str, kind: str, kw: dict, startup: bool, folder: str) -> dict:
    from ..hardware import bridge as br

    def torque(emu):
        return [s.table['torque_enable'] for s in emu.bus.servos]

    def running(b):
        return b.state == br.RUNNING
    b, emu, _ = _rig(proto, folder, faults=[(kind, kw)] if startup else ())
    out = {'protocol': proto, 'fault': kind, 'startup': startup}
    try:
        if startup:
            _loop(b, 1.5, paced_hz=200.0)
            out['detected'] = b.state == br.CONFIG_ERROR and 'ID 3' in b.reason
            out['stop_reached'] = not any(torque(emu)) and not b.torque_on  # nothing energised
        else:
            _loop(b, 10.0, running, paced_hz=200.0)
            if not running(b):
                raise RuntimeError(f'{proto}: the bridge did not start: {b.reason}')
            hold = b.q[:6].copy()
            emu.bus.inject(kind, ids=[3], **kw)
            t0 = time.monotonic()
            _loop(b, 2.0, lambda b: not running(b), hold=hold, paced_hz=200.0)
            out['detect_s'] = time.monotonic() - t0
            out['detected'] = not running(b)
            out['stop_reached'] = b.state in (br.PROTECTIVE_STOP, br.TORQUE_OFF, br.CONNECTING)
        out['state'], out['reason'] = b.state, b.reason
        emu.bus.clear()
        t0 = time.monotonic()
        end = t0 + 8.0
        while not running(b) and time.monotonic() < end:
            _loop(b, 0.2, running, paced_hz=200.0)
            if b.state in (br.PROTECTIVE_STOP, br.TORQUE_OFF):
                b.resume(time.monotonic())
        out['recovered'] = running(b)
        out['recover_s'] = time.monotonic() - t0
    finally:
        out['commands_outside_limits'] = _close(b, emu)
    out['safe'] = bool(out['detected'] and out['stop_reached'] and out['recovered']
                       and out['commands_outside_limits'] == 0)
    return out


def plot(rates: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(rates), figsize=(4 * len(rates), 3.2))
    for ax, r in zip(np.atleast_1d(axes), rates):
        ax.hist(np.asarray(r['times']) * 1e3, bins=60)
        ax.axvline(1e3 / r['wire_limit_hz'], color='r', ls='--', label='wire limit')
        ax.set_title(f'{r["protocol"]} {r["baud"] / 1e6:g} Mbaud, USB {r["usb_latency_ms"]:g} ms',
                     fontsize=9)
        ax.set_xlabel('cycle [ms]')
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='neurovla bench bus', description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--seconds', type=float, default=5.0, help='rate run per case [s]')
    a = ap.parse_args(argv)
    out = out_dir()
    rates, faults = [], []
    with tempfile.TemporaryDirectory(prefix='neurovla-bus-') as folder:
        for proto, lat in RATE_CASES:
            r = rate_case(proto, lat, a.seconds, folder)
            rates.append(r)
            print(f'{proto} usb {lat:g} ms: {r["cycle_hz"]:.1f} Hz (p50 {r["cycle_ms_p50"]:.3f} '
                  f'ms, p99 {r["cycle_ms_p99"]:.3f} ms), wire limit {r["wire_limit_hz"]:.1f} Hz',
                  flush=True)
        for proto in ('dynamixel', 'feetech'):
            for startup, cases in ((False, RUN_FAULTS), (True, START_FAULTS)):
                for kind, kw in cases:
                    f = fault_case(proto, kind, kw, startup, folder)
                    faults.append(f)
                    print(f'{proto} {kind}: {"safe" if f["safe"] else "UNSAFE"} ({f["state"]}: '
                          f'{f["reason"]})', flush=True)
    plot(rates, os.path.join(out, 'bus.png'))
    with open(os.path.join(out, 'bus_faults.json'), 'w') as fh:
        json.dump(faults, fh, indent=1)
    res: dict = {}
    for r in rates:
        key = r['protocol'] + ('' if r['usb_latency_ms'] == 0 else '_usb16')
        for k in ('cycle_hz', 'cycle_ms_p50', 'cycle_ms_p99', 'wire_limit_hz'):
            res[f'{key}_{k}'] = r[k]
        res[f'{key}_share_of_wire_limit'] = r['share_of_wire_limit']
    res['bus_faults'] = len(faults)
    res['bus_faults_safe'] = sum(f['safe'] for f in faults)
    res['commands_outside_limits'] = (sum(f['commands_outside_limits'] for f in faults)
                                      + sum(r['commands_outside_limits'] for r in rates))
    res['read_failures_in_rate_runs'] = sum(r['read_failures'] for r in rates)
    emit(res)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
