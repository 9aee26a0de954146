"""Teleop in the cerebellum: who moves the arm. ROS-free.

The twist servo itself is the goal intake's (:meth:`.goals.GoalIntake.accept_twist`, the
SERVO source of the tick). :class:`TeleopArbiter` is the rule between teleop and the cortex:
an accepted teleop input (a ``teleop/twist``, a ``teleop/pose``) takes the arm; cortex goals
(``cortex/goal_pose``, ``cortex/joint_goal``) are refused, with the reason, until
``hold_time`` [s] after the last teleop input, or at once after an explicit hand-back
(``release``). ``hold_time`` 0: teleop keeps the arm until it is handed back. The cortex is not
told; it keeps planning, and its next goal after the hand-back moves the arm again.
"""
from __future__ import annotations

import math

TELEOP, CORTEX = 'teleop', 'cortex'


class TeleopArbiter:
    """Times are seconds on one clock chosen by the caller."""

    def __init__(self, hold_time: float = 3.0):
        self.hold_time = hold_time
        self.t_teleop = -math.inf
        self.preempted = 0          # cortex goals refused while teleop had the arm
        self.handbacks = 0

    def teleop_input(self, now: float) -> None:
        self.t_teleop = now

    def release(self) -> bool:
        """Explicit hand-back to the cortex; False when teleop did not have the arm."""
        had = math.isfinite(self.t_teleop)
        self.t_teleop = -math.inf
        if had:
            self.handbacks += 1
        return had

    def owner(self, now: float) -> str:
        if not math.isfinite(self.t_teleop):
            return CORTEX
        if self.hold_time <= 0.0 or now - self.t_teleop < self.hold_time:
            return TELEOP
        return CORTEX

    def hold_left(self, now: float) -> float:
        """Seconds until the cortex gets the arm back (inf: until the hand-back; 0: it has it)."""
        if self.owner(now) == CORTEX:
            return 0.0
        return math.inf if self.hold_time <= 0.0 else self.hold_time - (now - self.t_teleop)

    def cortex_refusal(self, now: float) -> str | None:
        """Why a cortex goal arriving at ``now`` is refused, or None when it may go through."""
        if self.owner(now) == CORTEX:
            return None
        self.preempted += 1
        left = self.hold_left(now)
        until = ('until handed back' if math.isinf(left)
                 else f'for {left:.1f} s more unless handed back')
        return f'cortex goal refused: teleop has the arm {until} (~/release_teleop)'


def status(intake, arbiter: TeleopArbiter, now: float) -> dict:
    """Teleop values for /diagnostics (``intake``: the core's :class:`.goals.GoalIntake`)."""
    out = {'control': arbiter.owner(now), 'teleop_hold_left_s': arbiter.hold_left(now),
           'cortex_goals_preempted': arbiter.preempted, 'twists_limited': intake.twists_limited}
    if intake.last_twist_limit:
        out['last_twist_limit'] = intake.last_twist_limit
    return out
