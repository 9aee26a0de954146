"""The ``neurovla`` command.

    neurovla bringup [--body mujoco|dynamixel|feetech|none] [--port P|emulator] [--headless]
                     [--duration S] ... [ARG:=VALUE ...]  run the graph (pip mode)
    neurovla calibrate --body dynamixel|feetech [--port P] --out FILE   measure an arm's mounting
    neurovla params [--yaml | --markdown | --write | --check]              parameter files
    neurovla teleop [--speed M/S] [--turn RAD/S] ...   move the tool from the keyboard
    neurovla bench NAME [args...]       neurovla_ros.bench.NAME.main(argv)
    neurovla train NAME [args...]       neurovla_ros.NAME.train.main(argv)
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import pkgutil
import sys

from . import graph

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG_DIR = os.path.join(REPO, 'neurovla_ros')
GENERATED = (('config/neurovla.yaml', 'yaml'), ('docs/parameters.md', 'markdown'))


# ---------------------------------------------------------------- bringup
def _bringup(opts) -> int:
    body = opts.body or opts.sim
    if opts.port and body not in graph.SERVO_BODIES:
        print(f'neurovla bringup: --port is for a servo-bus body ({", ".join(graph.SERVO_BODIES)})'
              f', not {body}', file=sys.stderr)
        return 2
    values = {'body': body, 'port': opts.port, 'headless': opts.headless,
              'use_sim_time': 'true' if opts.use_sim_time else 'auto',
              'params_file': os.path.abspath(opts.params_file) if opts.params_file else '',
              'instruction': opts.instruction, 'cortex_backend': opts.cortex_backend,
              'namespace': opts.namespace}
    for a in opts.assignments:          # ros2 launch style: relay:=true relay_loss:=0.1
        name, sep, value = a.partition(':=')
        if not sep:
            print(f'neurovla bringup: {a!r} is not NAME:=VALUE', file=sys.stderr)
            return 2
        values[name] = value
    try:
        plan = graph.launch_plan(values)    # checks every argument
    except ValueError as e:
        print(f'neurovla bringup: {e}', file=sys.stderr)
        return 2
    if opts.show_plan:      # what `ros2 launch neurovla bringup` starts for these arguments
        print(graph.format_plan(plan))
        return 0
    if body == 'gazebo':
        print('neurovla bringup: Gazebo needs a ROS 2 install with ros_gz and gz_ros2_control: '
              'ros2 launch neurovla bringup sim:=gazebo', file=sys.stderr)
        return 2
    if opts.params_file and not os.path.isfile(opts.params_file):
        print(f'neurovla bringup: no such parameters file: {opts.params_file}', file=sys.stderr)
        return 2
    from . import runner
    only = [n for n in opts.only.split(',') if n] if opts.only else None
    return runner.run(values, duration=opts.duration, startup_timeout=opts.startup_timeout,
                      stop_timeout=opts.stop_timeout, only=only)


# ---------------------------------------------------------------- params
def generated(kind: str) -> str:
    """``config/neurovla.yaml`` (kind ``yaml``) or ``docs/parameters.md`` (``markdown``)."""
    from .common.params import to_markdown, to_yaml
    return (to_yaml if kind == 'yaml' else to_markdown)(graph.schemas())


def stale_files(root: str = REPO) -> list[tuple[str, str, str]]:
    """``(path, committed, generated)`` for every generated file that is out of date."""
    out = []
    for rel, kind in GENERATED:
        path = os.path.join(root, rel)
        have = open(path, encoding='utf-8').read() if os.path.isfile(path) else ''
        want = generated(kind)
        if have != want:
            out.append((rel, have, want))
    return out


def _params(opts) -> int:
    if opts.check or opts.write:
        if not os.path.isdir(os.path.join(REPO, 'config')):
            print(f'neurovla params: no source tree at {REPO}', file=sys.stderr)
            return 2
        stale = stale_files()
        if opts.write:
            for rel, _have, want in stale:
                os.makedirs(os.path.dirname(os.path.join(REPO, rel)), exist_ok=True)
                with open(os.path.join(REPO, rel), 'w', encoding='utf-8') as f:
                    f.write(want)
                print(f'wrote {rel}')
            if not stale:
                print('parameter files are up to date')
            return 0
        for rel, have, want in stale:
            sys.stdout.writelines(difflib.unified_diff(
                have.splitlines(True), want.splitlines(True), rel, rel + ' (generated)'))
        if stale:
            print(f'\nout of date: {", ".join(r for r, _, _ in stale)}; '
                  'regenerate with `neurovla params --write`', file=sys.stderr)
            return 1
        print('parameter files are up to date')
        return 0
    sys.stdout.write(generated('markdown' if opts.markdown else 'yaml'))
    return 0


# ---------------------------------------------------------------- bench / train
def benchmarks() -> list[str]:
    from . import bench
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                  if not m.ispkg and m.name != 'common' and not m.name.startswith('_'))


def trainables() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([PKG_DIR])
                  if m.ispkg and os.path.isfile(os.path.join(PKG_DIR, m.name, 'train.py')))


def _dispatch(kind: str, name: str | None, argv: list[str], available: list[str],
              module: str) -> int:
    if name not in available:
        if name:
            print(f'neurovla {kind}: unknown {kind} {name!r}', file=sys.stderr)
        print(f'available: {", ".join(available) or "(none yet)"}', file=sys.stderr)
        return 2
    result = importlib.import_module(module.format(name)).main(argv)
    return int(result or 0)


# ---------------------------------------------------------------- parser
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='neurovla', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='VLA cortex, adaptive cerebellum and spiking spinal layer for a robot arm '
                    'on ROS 2.' + __doc__.split('command.', 1)[1].rstrip())
    sub = p.add_subparsers(dest='command', required=True)

    b = sub.add_parser('bringup', help='run the graph (pip mode: each node in its own process)')
    b.add_argument('--body', default='', choices=graph.BODIES,
                   help='mujoco (the sim node), dynamixel / feetech (a servo-bus arm through '
                        'the hardware node), none; gazebo: only with ros2 launch on a ROS 2 '
                        'install (default: mujoco)')
    b.add_argument('--sim', default=graph.ARGS_BY_NAME['sim'].default,
                   choices=graph.ARGS_BY_NAME['sim'].choices, help='older name of --body')
    b.add_argument('--port', default='',
                   help='serial port of a servo-bus body (/dev/ttyUSB0, ...); "emulator": the '
                        'servo-bus emulator behind a pty (default: the hardware file\'s)')
    b.add_argument('--use-sim-time', action='store_true', help='nodes follow /clock')
    b.add_argument('--headless', action='store_true', help='no GUI')
    b.add_argument('--params-file', default='',
                   help='ROS 2 parameters file (default: the packaged config/neurovla.yaml)')
    b.add_argument('--duration', type=float, default=None,
                   help='stop after S seconds with every node up, then print a summary '
                        '(default: run until Ctrl-C)')
    b.add_argument('--instruction', default='', help='task instruction for the cortex')
    b.add_argument('--cortex-backend', default='', help='cortex policy backend',
                   choices=graph.ARGS_BY_NAME['cortex_backend'].choices)
    b.add_argument('--namespace', default='',
                   help='ROS namespace of the whole stack (two arms on one graph)')
    b.add_argument('--show-plan', action='store_true',
                   help='print what `ros2 launch neurovla bringup` with these arguments starts '
                        '(also for --sim gazebo) and exit')
    b.add_argument('--only', default='', metavar='NODE[,NODE]',
                   help='start only these nodes of the graph (e.g. --only sim)')
    b.add_argument('--startup-timeout', type=float, default=90.0,
                   help='seconds for every node to appear on the graph [s]')
    b.add_argument('--stop-timeout', type=float, default=10.0,
                   help='seconds a node gets after SIGINT before SIGTERM/SIGKILL [s]')
    b.add_argument('assignments', nargs='*', metavar='ARG:=VALUE',
                   help='launch arguments as `ros2 launch neurovla bringup` takes them (e.g. '
                        'relay:=true relay_loss:=0.1 relay_delay_s:=0.05); they win over the '
                        'options above')
    b.set_defaults(func=_bringup)

    c = sub.add_parser('calibrate', help='measure a servo arm\'s zero offsets and ranges, '
                                         'write a hardware file')
    c.add_argument('--body', required=True, choices=graph.SERVO_BODIES)
    c.add_argument('--config', default='', help='hardware file to start from (default: the '
                                                'packaged config/hardware_<body>.yaml)')
    c.add_argument('--port', default='', help='serial port (default: the file\'s)')
    c.add_argument('--out', required=True, help='the calibrated hardware file to write')
    c.set_defaults(func=lambda o: importlib.import_module(
        'neurovla_ros.hardware.calibrate').main(o))

    pp = sub.add_parser('params', help='config/neurovla.yaml and docs/parameters.md '
                                       'from the node schemas')
    g = pp.add_mutually_exclusive_group()
    g.add_argument('--yaml', action='store_true', help='print the parameters file (default)')
    g.add_argument('--markdown', action='store_true', help='print the parameter docs')
    g.add_argument('--write', action='store_true', help='regenerate both files in the source tree')
    g.add_argument('--check', action='store_true',
                   help='exit 1 (with a diff) if the committed files are out of date')
    pp.set_defaults(func=_params)

    # `neurovla teleop ...` goes to the tool's own parser (main); listed here for the help
    sub.add_parser('teleop', help='move the tool from the keyboard (teleop_twist_keyboard '
                                  'keys; `neurovla teleop -h` lists them)')

    for kind, module, avail in (('bench', 'neurovla_ros.bench.{}', benchmarks),
                                ('train', 'neurovla_ros.{}.train', trainables)):
        s = sub.add_parser(kind, help=f'run {module.format("NAME")}.main(args)')
        s.add_argument('name', nargs='?', help='one of: ' + ', '.join(avail()))
        s.add_argument('args', nargs=argparse.REMAINDER, help=f'passed to the {kind}')
        s.set_defaults(func=lambda o, k=kind, m=module, a=avail: _dispatch(k, o.name, o.args,
                                                                             a(), m))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['teleop']:
        from .keyboard import node
        return node.main(argv[1:])
    opts = parser().parse_args(argv)
    return opts.func(opts)


if __name__ == '__main__':
    sys.exit(main())
