"""``neurovla calibrate``: measure a servo arm's mounting and write a calibrated hardware file.

With torque off on every servo (nothing moves by itself), the user is asked to

1. put the arm in its zero pose (every joint at 0 rad as the URDF defines it: the pose rviz
   shows with all sliders at 0) -> ``zero_ticks`` per joint;
2. move every joint through its whole range -> ``min_ticks`` / ``max_ticks`` (what was read);
3. close the gripper, then open it -> ``closed_ticks`` / ``open_ticks``.

Each step ends with Enter. The servos are checked first (IDs, models) like the bridge does;
``direction`` stays as the starting file says (it is how the servo was mounted, not something a
pose can tell). The result is the starting file with those fields replaced (``--out``).
Prompts go to stdout, so a test (or a script) can drive it through stdin.
"""
from __future__ import annotations

import sys
import threading
import time

from . import config
from .bridge import check_servos
from .bus import Bus, BusLost
from .emulator import default_link

MIN_RANGE_TICKS = 100       # a joint that moved less than this was not moved through its range


def _read_ticks(bus: Bus, tries: int = 20) -> list[int] | None:
    for _ in range(tries):
        replies = bus.sync_read()
        if all(r.ok for r in replies):
            return [bus.field(r, 'present_position') for r in replies]
    return None


def _ask(text: str) -> None:
    print(text, flush=True)
    if sys.stdin.readline() == '':
        raise EOFError('input closed')


def run(cfg: config.HardwareConfig, port: str) -> dict:
    """The interactive part: returns the mounting ``{joint: {field: ticks}}``."""
    bus = Bus(cfg, port)
    bus.open()
    try:
        problem = check_servos(bus, cfg)
        if problem:
            raise RuntimeError(problem)
        for d in cfg.drives:
            bus.write(d.servo_id, 'torque_enable', 0)
        names = [d.joint for d in cfg.drives]
        _ask('1/3 torque is off. Put the arm in its zero pose (every joint at 0 rad as in the '
             'URDF), then press Enter')
        zero = _read_ticks(bus)
        if zero is None:
            raise RuntimeError('no complete read of the servos')
        print('    zero: ' + ', '.join(f'{n} {t}' for n, t in zip(names, zero)), flush=True)
        lo, hi = list(zero), list(zero)
        stop = threading.Event()

        def track():
            while not stop.is_set():
                ticks = _read_ticks(bus, 1)
                if ticks is not None:
                    for i, t in enumerate(ticks):
                        lo[i], hi[i] = min(lo[i], t), max(hi[i], t)
                time.sleep(0.005)
        th = threading.Thread(target=track, daemon=True)
        th.start()
        try:
            _ask('2/3 move every joint slowly through its whole range, then press Enter')
        finally:
            stop.set()
            th.join(timeout=2.0)
        out = {}
        short = []
        for i, d in enumerate(cfg.arm):
            if hi[i] - lo[i] < MIN_RANGE_TICKS:
                short.append(f'{d.joint} ({hi[i] - lo[i]} ticks)')
            out[d.joint] = {'zero_ticks': zero[i], 'min_ticks': lo[i], 'max_ticks': hi[i]}
        if short:
            raise RuntimeError('not moved through a range: ' + ', '.join(short))
        g = cfg.gripper
        if g is not None:
            _ask('3/3 close the gripper fully, then press Enter')
            closed = _read_ticks(bus)
            _ask('    now open it fully, then press Enter')
            opened = _read_ticks(bus)
            if closed is None or opened is None:
                raise RuntimeError('no complete read of the servos')
            closed, opened = closed[len(cfg.arm)], opened[len(cfg.arm)]
            if abs(opened - closed) < MIN_RANGE_TICKS:
                raise RuntimeError(f'gripper: open {opened} and closed {closed} ticks are '
                                   'too close')
            out[g.joint] = {'closed_ticks': closed, 'open_ticks': opened}
        return out
    finally:
        bus.close()


def main(opts) -> int:
    try:
        cfg = config.load(opts.config or None, opts.body)
        port = opts.port or cfg.port
        if port == 'emulator':
            port = default_link()
        mounting = run(cfg, port)
        config.save_mounting(cfg.source, opts.out, mounting)
        config.load(opts.out, opts.body)           # what was written must load
    except (config.ConfigError, RuntimeError, BusLost, EOFError) as e:
        print(f'neurovla calibrate: {e}', file=sys.stderr)
        return 1
    print(f'wrote {opts.out}', flush=True)
    return 0
