"""``neurovla teleop``: move the tool from the keyboard (a terminal tool, teleop_twist_keyboard's
keys: :mod:`.keys`).

Interfaces
    /teleop/twist [geometry_msgs/TwistStamped]   at ``--rate`` (30 Hz) while a key is held,
                                                 one zero twist on release
    /gripper_controller/commands [std_msgs/Float64MultiArray]  ``g``: open / close
    /joint_states [sensor_msgs/JointState]       the finger opening, taken when ``g`` is pressed

Needs a terminal (it reads single key presses); Ctrl-C quits.
"""
from __future__ import annotations

import argparse
import math
import os
import select
import signal
import sys
import termios
import time
import tty

import rclpy
from sensor_msgs.msg import JointState

from .. import robot
from ..common.cdr import JointStateReader
from ..common.rosutil import LatestSample, TeleopCommands, decoder
from .keys import HELP, KeyState


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='neurovla teleop',
                                description='Move the tool from the keyboard '
                                            '(teleop_twist_keyboard keys).',
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=HELP)
    p.add_argument('--speed', type=float, default=0.05, help='tool speed [m/s] (default 0.05)')
    p.add_argument('--turn', type=float, default=0.3, help='tool turn rate [rad/s] (default 0.3)')
    p.add_argument('--rate', type=float, default=30.0,
                   help='twist rate while a key is held [Hz] (default 30)')
    p.add_argument('--first-hold', type=float, default=0.7,
                   help='a key counts as held this long after its first character [s]')
    p.add_argument('--namespace', default='',
                   help="the stack's ROS namespace (bringup's --namespace); default none")
    p.add_argument('--repeat-hold', type=float, default=0.15,
                   help='... and this long after each auto-repeat [s]')
    return p


class KeyboardTeleop:
    def __init__(self, node, opts):
        self.node = node
        self.keys = KeyState(opts.speed, opts.turn, first_hold=opts.first_hold,
                             repeat_hold=opts.repeat_hold)
        self.period = 1.0 / opts.rate
        self.cmd = TeleopCommands(node)
        self.model = robot.load()
        self._joints = LatestSample(node, JointState, 'joint_states')
        self._js = JointStateReader(decoder(JointState))
        self.opening = None            # the last finger opening seen [m]
        self.sent = 0
        self.note = ''

    def _gripper(self) -> None:
        buf = self._joints.take()
        if buf is not None and self._js.read(buf) is not None:
            names = list(self._js.names)
            if robot.GRIPPER_JOINT in names:
                self.opening = float(self._js.position[names.index(robot.GRIPPER_JOINT)])
        m = self.model
        mid = 0.5 * (m.gripper_open + m.gripper_closed)
        width = m.gripper_open if self.opening is None or self.opening < mid else m.gripper_closed
        self.cmd.gripper(width)
        self.opening = width
        self.note = f'gripper -> {width * 1000:.0f} mm'

    def key(self, ch: str, now: float) -> bool:
        """Handle one key; False to quit."""
        ev = self.keys.press(ch, now)
        if ev.kind == 'gripper':
            self._gripper()
        elif ev.kind == 'unknown':
            self.note = f'key {ch!r} does nothing'
        elif ev.kind in ('frame', 'speed', 'stop'):
            self.note = ''
        return ev.kind != 'quit'

    def tick(self, now: float) -> None:
        tw = self.keys.twist(now)
        if tw is not None:
            self.cmd.twist(*tw, frame=self.keys.frame)
            self.sent += 1

    def line(self) -> str:
        return f'{self.keys.status()}  sent {self.sent}  {self.note}'

    def close(self) -> None:
        self._joints.destroy()


LIMITS = {'speed': (0.001, 0.25), 'turn': (0.01, 1.0), 'rate': (30.0, 100.0),
          'first_hold': (0.05, 2.0), 'repeat_hold': (0.05, 1.0)}   # [low, high]


def main(argv=None) -> int:
    p = parser()
    opts = p.parse_args(argv)
    for name, (lo, hi) in LIMITS.items():
        v = getattr(opts, name)
        if not lo <= v <= hi:           # NaN fails too
            p.error(f'--{name.replace("_", "-")} {v}: must be in [{lo:g}, {hi:g}]')
    if not os.isatty(sys.stdin.fileno()):
        print('neurovla teleop: needs a terminal (stdin is not a tty)', file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, lambda *_: None)   # raw mode: Ctrl-C arrives as a key
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # the terminal restored on the way
    rclpy.init(args=['--ros-args'])
    node = rclpy.create_node('teleop_keyboard', namespace=opts.namespace.strip('/') or None)
    tool = KeyboardTeleop(node, opts)
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    out = sys.stdout
    out.write(HELP.replace('\n', '\r\n') + '\r\n\r\n')
    try:
        tty.setraw(fd)
        running, t_next, shown = True, time.monotonic(), ''
        while running and rclpy.ok():
            now = time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, t_next - now))
            if ready:
                for ch in os.read(fd, 64).decode(errors='replace'):
                    running = running and tool.key(ch, time.monotonic())
            now = time.monotonic()
            if now >= t_next:
                tool.tick(now)
                # the next slot on the fixed grid: late (a busy machine), the missed slots
                # are skipped (no burst) and the rate stays the grid's (no drift)
                t_next += tool.period * (math.floor((now - t_next) / tool.period) + 1)
            line = tool.line()
            if line != shown:
                out.write('\r\x1b[K' + line)
                out.flush()
                shown = line
        tool.keys.press(' ', time.monotonic())   # a zero twist on the way out if moving
        tool.tick(time.monotonic())
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        out.write('\n')
        tool.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
