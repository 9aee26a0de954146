"""Key bindings and the key state of the keyboard teleop tool. ROS-free.

teleop_twist_keyboard's layout, for a tool that moves in 3-D and turns about 3 axes::

    translation (x forward, y left, z up)               rotation: the same keys with shift
       u    i    o         t : up                          U    I    O
       j    k    l         b : down                        J    K    L
       m    ,    .                                              <

``i``/``,`` +x/-x, ``j``/``l`` +y/-y, ``u o m .`` the diagonals, ``t``/``b`` +z/-z;
``I``/``<`` turn about +y/-y, ``J``/``L`` about +z/-z, ``U``/``O`` about +x/-x (axes of
the frame in use). ``k`` or space: stop. ``q``/``z`` all speeds x1.1 / x0.9, ``w``/``x``
linear only, ``e``/``c`` angular only. ``g``: open / close the gripper. ``f``: base_link /
tool frame. Ctrl-C: quit.

A terminal sends no key-up events, only the auto-repeat of a held key (after a first delay of
0.25-0.66 s, then ~30 characters/s). A key therefore counts as held for ``first_hold`` [s]
after its first character and, once it repeats, for ``repeat_hold`` after each repeat; while
held, its twist is sent at the tool's rate. On release one zero twist is sent (the cerebellum
halts without snapping back), then nothing, so that teleop's hold on the arm can time out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MOVE = {   # key -> (x, y, z) direction of the tool [unit]
    'i': (1, 0, 0), ',': (-1, 0, 0), 'j': (0, 1, 0), 'l': (0, -1, 0),
    'u': (1, 1, 0), 'o': (1, -1, 0), 'm': (-1, 1, 0), '.': (-1, -1, 0),
    't': (0, 0, 1), 'b': (0, 0, -1),
}
TURN = {   # key -> (x, y, z) rotation axis [unit]
    'I': (0, 1, 0), '<': (0, -1, 0), 'J': (0, 0, 1), 'L': (0, 0, -1),
    'U': (1, 0, 0), 'O': (-1, 0, 0),
}
SPEED = {'q': (1.1, 1.1), 'z': (0.9, 0.9), 'w': (1.1, 1.0), 'x': (0.9, 1.0),
         'e': (1.0, 1.1), 'c': (1.0, 0.9)}
STOP_KEYS = ('k', ' ', 'K')
QUIT_KEYS = ('\x03', '\x04')     # Ctrl-C, Ctrl-D
FRAMES = ('base_link', 'tcp_link')
HELP = __doc__.split('::', 1)[1].split('A terminal', 1)[0].rstrip()


@dataclass
class Event:
    """What a key asks for: ``kind`` one of ``twist`` (a motion key), ``stop``, ``speed``,
    ``gripper``, ``frame``, ``quit``, ``unknown``."""
    kind: str
    key: str


class KeyState:
    """Which motion key is held and what to send. Times in seconds on the caller's clock."""

    def __init__(self, speed: float = 0.05, turn: float = 0.3, max_speed: float = 0.25,
                 max_turn: float = 1.0, first_hold: float = 0.7, repeat_hold: float = 0.15):
        self.speed, self.turn = speed, turn              # [m/s], [rad/s]
        self.max_speed, self.max_turn = max_speed, max_turn
        self.first_hold, self.repeat_hold = first_hold, repeat_hold
        self.frame = FRAMES[0]
        self.key = ''                  # the held motion key ('' none)
        self.t_first = self.t_last = -math.inf
        self.repeats = 0
        self.stop_due = False          # one zero twist to send

    def press(self, key: str, now: float) -> Event:
        if key in MOVE or key in TURN:
            if key != self.key:
                self.key, self.t_first, self.repeats = key, now, 0
            else:
                self.repeats += 1
            self.t_last = now
            return Event('twist', key)
        if key in STOP_KEYS:
            self._release()
            return Event('stop', key)
        if key in SPEED:
            a, b = SPEED[key]
            self.speed = min(self.speed * a, self.max_speed)
            self.turn = min(self.turn * b, self.max_turn)
            return Event('speed', key)
        if key in ('g', 'G'):
            return Event('gripper', key)
        if key in ('f', 'F'):
            self.frame = FRAMES[1 - FRAMES.index(self.frame)]
            return Event('frame', key)
        if key in QUIT_KEYS:
            self._release()
            return Event('quit', key)
        return Event('unknown', key)

    def _release(self) -> None:
        if self.key:
            self.stop_due = True
        self.key = ''

    def held(self, now: float) -> bool:
        if self.key:
            hold = self.repeat_hold if self.repeats else self.first_hold
            if now - self.t_last > hold:
                self._release()
        return bool(self.key)

    def twist(self, now: float) -> tuple[tuple, tuple] | None:
        """(linear [m/s], angular [rad/s]) to send now, or None (nothing held, nothing due)."""
        if self.held(now):
            k = self.key
            if k in MOVE:
                d = MOVE[k]
                n = math.sqrt(sum(v * v for v in d))
                return tuple(self.speed * v / n for v in d), (0.0, 0.0, 0.0)
            return (0.0, 0.0, 0.0), tuple(self.turn * v for v in TURN[k])
        if self.stop_due:
            self.stop_due = False
            return (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
        return None

    def status(self) -> str:
        held = f'moving ({self.key!r})' if self.key else 'stopped'
        return (f'speed {self.speed:.3f} m/s  turn {self.turn:.2f} rad/s  frame {self.frame}  '
                f'{held}')
